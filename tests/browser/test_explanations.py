"""The "why" panel in a real browser: explanations that agree with themselves.

- on an image project, the heat map an answer reveals is drawn over the image just answered,
  with a legend; with the guess shown before answering, over the item itself;
- the sentence's percentages are the bars' (three classes: never the first two renormalised);
- the chip's ``#id`` and its tooltip name one identifier, the item's id in the data;
- a table's nearest labeled items show as small tables, their values rounded for reading.

Watches the console: the Content-Security-Policy forbids inline styles and scripts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from labelwise.server import ServerConfig, create_app
from labelwise.services import worker
from labelwise.services.setup import OpenProject, init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.models import Annotator, Item
from labelwise.store.projects import ProjectSettings, get_project, update_settings
from sessions import link_for, sign_in_page
from threaded_server import ThreadedServer

pytestmark = pytest.mark.browser

CLASSES = ["clear", "marked", "striped"]


def _image_project(root: Path) -> tuple[OpenProject, str]:
    """90 small grey images in three classes (a bright square, a bright stripe, or neither),
    half of them labeled, a model trained: its queue carries occlusion maps."""
    rng = np.random.default_rng(0)
    n = 90
    images = rng.uniform(0, 110, size=(n, 28, 28)).astype(np.uint8)
    y = np.asarray(CLASSES * (n // 3))
    images[y == "marked", 4:10, 18:24] += 130
    images[y == "striped", 20:24, 2:26] += 130
    data = root / "images.npz"
    np.savez(data, images=images, labels=y)
    settings = ProjectSettings(retrain_every=500, queue_size=10, overlap=0.0, routine=0.0)
    opened, _ = init_project(root / "p", data, settings=settings)
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        admin = s.get_one(Annotator, 1)
        items = s.scalars(select(Item).order_by(Item.row)).all()
        for item in items[:45]:
            submit_label(s, project, admin, item_id=item.id, value=str(y[item.row]))
        _, token = create_annotator(s, project, name="ann", role="annotator")
    assert worker.train_once(opened.folder, opened.db, force=True).status == "trained"
    return opened, token


def _watch(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def _item_on_screen(page: Any, opened: OpenProject) -> Item:
    page.wait_for_selector('#annotate[data-state="item"] img.item-image', timeout=20_000)
    src = page.get_attribute("img.item-image", "src")
    found = re.search(r"/items/(\d+)/image", src or "")
    assert found, src
    with opened.db.read() as s:
        item = s.get_one(Item, int(found.group(1)))
        s.expunge(item)
    return item


def _numbers(texts: list[str]) -> list[int]:
    return [int(n) for t in texts for n in re.findall(r"\d+", t)]


def test_an_image_answer_draws_its_heat_map_and_the_panel_agrees_with_itself(
    chromium: Any, tmp_path: Path
) -> None:
    opened, token = _image_project(tmp_path)
    try:
        with ThreadedServer(create_app(ServerConfig(opened))) as base:
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            problems = _watch(page)
            sign_in_page(page, link_for(opened.db, opened.project_id, token, base))

            # one identifier for the item: the chip and its tooltip say the same
            item = _item_on_screen(page, opened)
            assert item.external_id and str(item.external_id) != str(item.id)
            assert page.inner_text("#item-ref") == f"#{item.external_id}"
            assert page.get_attribute("#item-ref", "title") == f"Item {item.external_id}"
            # the guess stays hidden before the answer: no heat map on the item yet
            assert page.locator("#item-body .heat-overlay").count() == 0

            page.keyboard.press("1")
            page.wait_for_selector("#why-last-heat .heat-overlay", timeout=20_000)
            heat = page.locator("#why-last-heat")
            assert heat.is_visible()
            image = heat.locator("img.last-image")
            assert image.get_attribute("src").endswith(f"/items/{item.id}/image")
            page.wait_for_function(
                "() => document.querySelector('#why-last-heat img').naturalWidth === 28"
            )
            # drawn over the image: the overlay covers it exactly, its cells shaded
            box, over = image.bounding_box(), heat.locator("svg.heat-overlay").bounding_box()
            assert box and over and box["width"] >= 100
            for key in ("x", "y", "width", "height"):
                assert abs(box[key] - over[key]) < 1.5, (key, box, over)
            assert heat.locator("rect.heat-cell").count() >= 1
            legend = heat.locator(".heat-legend").inner_text()
            guess = page.inner_text("#why-last-split .split-row.top .split-label")
            assert "Shaded patches" in legend and f"probability for {guess}" in legend
            assert heat.locator(".heat-legend svg.heat-key rect").count() == 4

            # three classes: the sentence gives the bars' numbers, not the top two renormalised
            summary = page.inner_text("#why-last-summary")
            bars = page.locator("#why-last-split .split-value").all_inner_texts()
            assert len(bars) == 3, bars
            assert _numbers(re.findall(r"\d+%", summary)) == _numbers(bars), (summary, bars)

            # with the guess shown before answering, the heat map is over the item itself
            with opened.db.write() as s:
                update_settings(
                    s, get_project(s, project_id=opened.project_id), {"show_guess": "before"}
                )
            page.reload()
            _item_on_screen(page, opened)
            page.wait_for_selector("#item-body .image-holder .heat-overlay", timeout=20_000)
            main = page.locator("#item-body img.item-image").bounding_box()
            over = page.locator("#item-body svg.heat-overlay").bounding_box()
            assert main and over and abs(main["width"] - over["width"]) < 1.5
            assert page.locator("#why-occlusion-box").is_visible()
            assert "Shaded patches" in page.inner_text("#why-occlusion-text")
            assert not problems, problems
    finally:
        opened.db.dispose()


def _table_project(root: Path) -> tuple[OpenProject, str]:
    rng = np.random.default_rng(3)
    n = 80
    columns = ["age", "dose", "noise", "weight"]
    frame = pd.DataFrame(rng.normal(size=(n, 4)) * [10, 1, 0.001, 1000] / 3, columns=columns)
    frame["label"] = np.where(frame["dose"] > 0, "high", "low")
    frame["id"] = [f"r{i}" for i in range(n)]
    frame.to_csv(root / "table.csv", index=False)
    settings = ProjectSettings(retrain_every=500, queue_size=10, overlap=0.0, routine=0.0)
    opened, _ = init_project(root / "p", root / "table.csv", settings=settings)
    truth = dict(zip(frame["id"], frame["label"], strict=True))
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        admin = s.get_one(Annotator, 1)
        for item in s.scalars(select(Item).order_by(Item.row)).all()[:40]:
            submit_label(s, project, admin, item_id=item.id, value=truth[item.external_id])
        _, token = create_annotator(s, project, name="ann", role="annotator")
    assert worker.train_once(opened.folder, opened.db, force=True).status == "trained"
    return opened, token


def _significant(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0")
    return len(digits)


def test_tabular_neighbours_show_as_small_tables_of_rounded_values(
    chromium: Any, tmp_path: Path
) -> None:
    opened, token = _table_project(tmp_path)
    try:
        with ThreadedServer(create_app(ServerConfig(opened))) as base:
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            problems = _watch(page)
            sign_in_page(page, link_for(opened.db, opened.project_id, token, base))
            page.wait_for_selector('#annotate[data-state="item"]', timeout=20_000)
            for _ in range(10):  # an item with close labeled neighbours
                if page.locator("#why-neighbors li").count():
                    break
                ref = page.inner_text("#item-ref")
                page.keyboard.press("1")
                page.wait_for_function(
                    "ref => document.querySelector('#item-ref').textContent !== ref",
                    arg=ref,
                )
            neighbours = page.locator("#why-neighbors li")
            assert neighbours.count() >= 1
            first = neighbours.first
            table = first.locator(".neighbor-fields table")
            assert table.count() == 1
            names = table.locator("th").all_inner_texts()
            assert sorted(names) == ["age", "dose", "noise", "weight"]
            cells = table.locator("td")
            values = cells.all_inner_texts()
            assert len(values) == 4
            for i, value in enumerate(values):
                exact = float(cells.nth(i).get_attribute("title"))
                assert re.fullmatch(r"-?\d+(\.\d+)?", value), value
                assert _significant(value) <= max(4, len(str(int(abs(exact))))), value
                assert float(value) == pytest.approx(exact, rel=1e-3, abs=1e-12)
            assert "{" not in page.inner_text("#why-neighbors")  # no raw JSON left
            assert not problems, problems
    finally:
        opened.db.dispose()
