"""A multi-label project in a real browser, by keyboard only.

An annotator labels 10 items with several labels each (label keys turn labels on and off, the
pressed ones show it, Enter submits the set), turns a label off again, undoes an answer and
gives that item another set, answers one item "none of these" (Enter with nothing on); the
stored answers, the CSV and JSONL exports hold the sets; a colleague answers five of the items
too and the dashboard gives the agreement of the two on them. After a fit, the why-panel shows
every label's probability with its threshold, and the guessed set.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from labelwise.server import ServerConfig, create_app
from labelwise.services.setup import init_project
from labelwise.services.worker import train_once
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.models import Annotator, Item, Label
from labelwise.store.projects import ProjectSettings, get_project
from threaded_server import ThreadedServer

pytestmark = pytest.mark.browser

LABELS = ["sports", "politics", "tech"]
KEY = {"sports": "1", "politics": "2", "tech": "3"}
#: Each item's set, as the annotator reads it from the text (every set has two labels or more).
SETS = [["sports", "politics"], ["politics", "tech"], ["sports", "tech"], LABELS]
WORDS = {"sports": "the match", "politics": "the senate vote", "tech": "the new chip"}


def _set_of(number: int) -> list[str]:
    return SETS[number % len(SETS)]


def _project(root: Path) -> tuple[Any, str, str, str]:
    rows = [
        {"id": f"n{i}", "text": f"story {i}: " + " and ".join(WORDS[x] for x in _set_of(i))}
        for i in range(24)
    ]
    pd.DataFrame(rows).to_csv(root / "news.csv", index=False)
    # Every item is wanted twice (overlap 1): a colleague can answer what the annotator did.
    settings = ProjectSettings(multi_label=True, overlap=1.0, routine=0.0, retrain_every=1000)
    opened, admin = init_project(root / "p", root / "news.csv", labels=LABELS, settings=settings)
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        _, alice = create_annotator(s, project, name="alice", role="annotator")
        _, bob = create_annotator(s, project, name="bob", role="annotator")
    return opened, admin, alice, bob


def _call(
    base: str, token: str, method: str, path: str, body: Any = None, raw: bool = False
) -> Any:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        text = r.read().decode()
        return text if raw else json.loads(text)


def _shown(page: Any) -> int:
    """The number of the item on screen (its id in the data is n<number>)."""
    page.wait_for_selector('#annotate[data-state="item"]')
    return int(page.inner_text("#item-ref").strip().lstrip("#n"))


def _pressed(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        '#label-bar .btn-label[aria-pressed="true"]', "bs => bs.map(b => b.dataset.value)"
    )


def _next_after(page: Any, number: int) -> None:
    page.wait_for_function(
        "n => { const r = document.getElementById('item-ref').textContent.trim();"
        " return r && r !== '#n' + n && document.getElementById('annotate').dataset.state"
        " === 'item'; }",
        arg=number,
    )


def _standing(db: Any, name: str) -> dict[str, str]:
    with db.read() as s:
        rows = s.execute(
            select(Item.external_id, Label.value)
            .join(Label, Label.item_id == Item.id)
            .join(Annotator, Annotator.id == Label.annotator_id)
            .where(Annotator.name == name, Label.action == "label", Label.is_current.is_(True))
        )
        return {str(ext): str(value) for ext, value in rows.all()}


def test_label_sets_by_keyboard_undo_export_and_agreement(chromium: Any, tmp_path: Path) -> None:
    opened, admin, alice, bob = _project(tmp_path)
    problems: list[str] = []
    with ThreadedServer(create_app(ServerConfig(opened))) as base:
        page = chromium.new_page(viewport={"width": 1360, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{base}/login")
        page.fill("input[name=token]", alice)
        page.keyboard.press("Enter")
        number = _shown(page)
        assert _pressed(page) == []
        assert "answers “none of these”" in page.inner_text("#set-line")

        answered: dict[int, list[str]] = {}
        for k in range(10):
            wanted = _set_of(number)
            if k == 0:  # a label turned on by mistake, then off again
                page.keyboard.press(KEY["tech"])
                assert _pressed(page) == ["tech"]
                page.keyboard.press(KEY["tech"])
                assert _pressed(page) == []
            for label in reversed(wanted):  # any order: the set is what counts
                page.keyboard.press(KEY[label])
            assert _pressed(page) == wanted  # in label order, as the bar shows them
            assert page.locator('.btn-label[aria-pressed="true"] .btn-label-check').count() == len(
                wanted
            )
            assert ", ".join(wanted) in page.inner_text("#set-line")
            page.keyboard.press("Enter")
            answered[number] = wanted
            _next_after(page, number)
            number = _shown(page)
        last_line = page.inner_text("#last-answer")
        assert "You: " in last_line and ", " in last_line

        # Undo the last answer: its item comes back with nothing on and its set marked; another
        # set replaces it.
        undone = list(answered)[-1]
        page.keyboard.press("u")
        page.wait_for_function(
            "n => document.getElementById('item-ref').textContent.trim() === '#n' + n",
            arg=undone,
        )
        assert page.inner_text("#reason-chip") == "Back after undo"
        assert _pressed(page) == []
        previous = page.eval_on_selector_all(
            ".btn-label.is-previous", "bs => bs.map(b => b.dataset.value)"
        )
        assert previous == answered[undone]
        page.keyboard.press(KEY["tech"])
        page.keyboard.press("Enter")
        answered[undone] = ["tech"]
        _next_after(page, undone)

        # Nothing on: Enter answers "none of these", and the page says so.
        empty = _shown(page)
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.getElementById('last-answer').textContent.includes('none of these')"
        )
        answered[empty] = []

        # Every answer stored (the page sends in the background).
        expected = {f"n{n}": ";".join(s) for n, s in answered.items()}
        for _ in range(100):
            if _standing(opened.db, "alice") == expected:
                break
            page.wait_for_timeout(100)
        assert _standing(opened.db, "alice") == expected
        with opened.db.read() as s:
            taken_back = s.scalars(
                select(Label.value)
                .join(Item, Item.id == Label.item_id)
                .where(Item.external_id == f"n{undone}", Label.is_current.is_(False))
                .where(Label.action == "label")
            ).all()
        assert taken_back == [";".join(_set_of(undone))]

        # The exports hold the sets: ';'-joined in CSV ([] the empty set), lists in JSONL.
        api = f"/api/projects/{opened.project_id}"
        table = _call(base, admin, "GET", api + "/export?format=csv&labeled_only=true", raw=True)
        rows = {r["id"]: r["label"] for r in csv.DictReader(io.StringIO(table))}
        assert rows == {k: v if v else "[]" for k, v in expected.items()}
        lines = _call(base, admin, "GET", api + "/export?format=jsonl&labeled_only=true", raw=True)
        records = {r["id"]: r["label"] for r in map(json.loads, lines.splitlines())}
        assert records == {f"n{n}": s for n, s in answered.items()}

        # A colleague answers five of the items too: the agreement of two on sets.
        shared = [n for n, s in answered.items() if s][:5]
        with opened.db.read() as s:
            ids = dict(s.execute(select(Item.external_id, Item.id)).all())
        for i, n in enumerate(shared):
            labels = answered[n] if i else ["sports"]  # one set differs
            got = _call(base, bob, "POST", f"{api}/items/{ids[f'n{n}']}/label", {"labels": labels})
            assert got["labels"] == labels
        agreement = _call(base, admin, "GET", api + "/stats")["agreement"]
        assert agreement["items"] == 5 and agreement["percent_agreement"] == pytest.approx(0.8)
        assert isinstance(agreement["alpha_masi"], float)
        page.goto(f"{base}/p/{opened.project_id}/dashboard")
        shown = page.inner_text("section[aria-labelledby=agree-title]")
        assert "5 items with two or more answers" in shown and "80" in shown
        assert "Krippendorff's α (MASI)" in shown and f"{agreement['alpha_masi']:.2f}" in shown
    assert not problems, problems
    opened.db.dispose()


@pytest.mark.parametrize("strategy", ["default", "qbc"])
def test_the_why_panel_shows_each_label_with_its_threshold(
    chromium: Any, tmp_path: Path, strategy: str
) -> None:
    """After a fit, with the guess shown first: the guessed set on the chip and the buttons, one
    bar per label in label order with its threshold marked, the labels at or above it ticked (a
    committee's votes per label too); clicks toggle, Backspace turns every label off."""
    opened, _, alice, _ = _project(tmp_path)
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        shown_first = {"show_guess": "before", "overlap": 0.0, "strategy": strategy}
        project.settings = {**(project.settings or {}), **shown_first}
        admin = s.get_one(Annotator, 1)
        for item in s.scalars(select(Item).order_by(Item.id)).all()[:16]:
            value = ";".join(_set_of(int(item.external_id[1:])))
            submit_label(s, project, admin, item_id=item.id, value=value)
    assert train_once(opened.folder, opened.db, force=True).status == "trained"
    problems: list[str] = []
    with ThreadedServer(create_app(ServerConfig(opened))) as base:
        page = chromium.new_page(viewport={"width": 1360, "height": 900})
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{base}/login")
        page.fill("input[name=token]", alice)
        page.keyboard.press("Enter")
        _shown(page)
        if page.locator("#why-panel").is_hidden():
            page.keyboard.press("w")
        rows = page.eval_on_selector_all(
            "#why-split .set-row",
            "rs => rs.map(r => [r.dataset.label, r.classList.contains('top'),"
            " r.querySelectorAll('.minibar-threshold').length])",
        )
        assert [label for label, _, _ in rows] == LABELS
        assert all(marks == 1 for _, _, marks in rows)
        voted = page.eval_on_selector_all(
            "#why-votes .split-label", "ls => ls.map(l => l.textContent)"
        )
        assert voted == (LABELS if strategy == "qbc" else [])
        assert page.locator("#why-votes-box").is_hidden() == (strategy != "qbc")
        over = [label for label, top, _ in rows if top]
        guessed = page.eval_on_selector_all(
            ".btn-label.is-guess", "bs => bs.map(b => b.dataset.value)"
        )
        assert guessed == over
        chip = page.inner_text("#guess-chip")
        assert chip == "Model guess: " + (", ".join(over) if over else "none of these")
        page.click('.btn-label[data-value="politics"]')
        page.click('.btn-label[data-value="sports"]')
        assert _pressed(page) == ["sports", "politics"]
        page.keyboard.press("Backspace")
        assert _pressed(page) == []
        for label in over:
            page.keyboard.press(KEY[label])
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => document.getElementById('last-answer').textContent.includes('model agreed')"
        )
        assert not page.locator("#why-last-box").is_hidden()
        assert page.locator("#why-last-split .set-row").count() == 3
    assert not problems, problems
    opened.db.dispose()
