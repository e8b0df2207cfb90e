"""Near-duplicates in the browser: a group of more than three is shown, then takes a second G
to confirm before one answer goes to all of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from labelwise.server import ServerConfig, create_app
from labelwise.services import worker
from labelwise.services.setup import init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.models import Annotator, Item, Label
from labelwise.store.projects import ProjectSettings, get_project
from threaded_server import ThreadedServer

pytestmark = pytest.mark.browser

WORDS = ["lunch", "meeting", "prize", "cash", "tomorrow", "claim", "dinner", "offer"]


def _project(root: Path) -> tuple[Any, str]:
    rows = [
        {"id": f"m{i}", "text": f"{WORDS[i % 8]} {WORDS[(3 * i + 1) % 8]} note {i}", "label": ""}
        for i in range(40)
    ]
    copies = "claim your free cash prize now, reply YES"
    rows += [{"id": f"copy{k}", "text": copies, "label": ""} for k in range(6)]
    pd.DataFrame(rows).to_csv(root / "data.csv", index=False)
    settings = ProjectSettings(retrain_every=5, queue_size=10, overlap=0.0, routine=0.0)
    opened, _ = init_project(
        root / "p", root / "data.csv", labels=["ham", "spam"], settings=settings
    )
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        admin = s.get_one(Annotator, 1)
        for item in s.scalars(select(Item).where(Item.external_id.like("m%"))).all()[:20]:
            value = "spam" if any(w in item.content for w in ("prize", "cash", "claim")) else "ham"
            submit_label(s, project, admin, item_id=item.id, value=value)
        _, token = create_annotator(s, project, name="ann", role="annotator")
    assert worker.train_once(opened.folder, opened.db, force=True).status == "trained"
    return opened, token


def test_a_large_group_is_shown_and_confirmed_before_one_answer_goes_to_all(
    chromium: Any, tmp_path: Path
) -> None:
    opened, token = _project(tmp_path)
    with ThreadedServer(create_app(ServerConfig(opened))) as base:
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/login")
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_selector('#annotate[data-state="item"]')
        for _ in range(12):  # to the copy of the group, answering the others
            if not page.locator("#group-bar").is_hidden():
                break
            page.keyboard.press("1")
            page.wait_for_timeout(300)
        assert not page.locator("#group-bar").is_hidden()
        assert "5 near-identical items still open" in page.inner_text("#group-text")
        assert page.locator("#group-items li").count() == 5
        page.keyboard.press("g")  # more than three: first shown, with a question
        assert "Press G again to confirm" in page.inner_text("#group-text")
        assert page.eval_on_selector("#group-list", "d => d.open")
        page.keyboard.press("g")
        assert "Your answer also goes to 5 near-identical items" in page.inner_text("#group-text")
        page.keyboard.press("2")
        page.wait_for_timeout(1500)
    with opened.db.read() as s:
        given = s.scalars(
            select(Item.external_id)
            .join(Label, Label.item_id == Item.id)
            .where(Label.value == "spam", Item.external_id.like("copy%"))
        ).all()
    assert sorted(given) == [f"copy{k}" for k in range(6)]
    opened.db.dispose()
