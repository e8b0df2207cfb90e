"""An admin's first hour in a real browser: settings, guidelines, the data browser, relabeling,
and the export that shows it.

Signs in with a one-time link, changes the strategy and the guess mode on the settings page,
writes guidelines (an annotator sees them on a first visit, rendered, with a script in them shown
as text), finds an item in the data browser by a word of its text, relabels it, and reads the
new label in the export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from labelwise.server import ServerConfig, create_app
from labelwise.services.setup import init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.projects import ProjectSettings, get_project
from sessions import link_for, sign_in_page
from threaded_server import ThreadedServer

pytestmark = pytest.mark.browser

WORDS = ["lunch", "meeting", "prize", "cash", "tomorrow", "claim", "dinner", "offer"]
GUIDELINES = (
    "# How to label\n\nSay **spam** for anything *unsolicited*.\n\n"
    "<script>window.__xss = 1</script>\n"
)


def _shot(page: Any, name: str) -> None:
    folder = os.environ.get("LABELWISE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def _project(root: Path) -> tuple[Any, str, str]:
    rows = [
        {"id": f"m{i}", "text": f"{WORDS[i % 8]} {WORDS[(3 * i + 1) % 8]} note {i}"}
        for i in range(40)
    ]
    rows[17]["text"] = "the giraffe escaped from the zoo again"
    pd.DataFrame(rows).to_csv(root / "data.csv", index=False)
    opened, admin = init_project(
        root / "p",
        root / "data.csv",
        labels=["ham", "spam"],
        settings=ProjectSettings(overlap=0.0, routine=0.0),
    )
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        _, annotator = create_annotator(s, project, name="ann", role="annotator")
    return opened, admin, annotator


def test_settings_guidelines_browser_relabel_and_export(chromium: Any, tmp_path: Path) -> None:
    opened, admin, annotator = _project(tmp_path)
    problems: list[str] = []
    with ThreadedServer(create_app(ServerConfig(opened))) as base:
        page = chromium.new_page(viewport={"width": 1360, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        sign_in_page(page, link_for(opened.db, opened.project_id, admin, base))

        # Settings: strategy, guess mode and guidelines, saved through the page.
        page.click("nav >> text=Settings")
        page.wait_for_selector("#settings-form")
        page.select_option("#s-strategy", "margin")
        page.check("input[name=show_guess][value=before]")
        page.fill("#s-guidelines", GUIDELINES)
        page.fill("input[data-setting=label_help][data-label=spam]", "unsolicited advertising")
        page.click("#settings-save")
        page.wait_for_selector("#settings-status.alert-ok")
        assert "strategy" in page.inner_text("#settings-status")
        _shot(page, "settings.png")
        settings = opened.project().settings
        assert settings["strategy"] == "margin" and settings["show_guess"] == "before"
        assert settings["guidelines"] == GUIDELINES
        # A bad value is refused with the reason, and nothing changes.
        page.fill("#s-retrain_every", "0")
        page.click("#settings-save")
        page.wait_for_selector("#settings-status.alert-error")
        assert "retrain_every must be an integer from 1" in page.inner_text("#settings-status")
        assert opened.project().settings["retrain_every"] == 20
        assert [p for p in problems if "422" in p]  # the refusal, as the console saw it
        problems[:] = [p for p in problems if "422" not in p]

        # The data browser: find the item by a word of its text, open it, relabel it.
        page.click("nav >> text=Items")
        page.wait_for_selector("#browse-rows tr[data-id]")
        page.fill("#f-text", "giraffe")
        page.click("#filters button[type=submit]")
        page.wait_for_function(
            "() => document.querySelectorAll('#browse-rows tr[data-id]').length === 1"
        )
        assert "giraffe" in page.inner_text("#browse-rows")
        assert "text=giraffe" in page.url  # the search is in the address
        page.click("#browse-rows tr[data-id]")
        page.wait_for_selector("#detail:not([hidden]) .browse-full")
        page.click("#detail-labels button[data-value=spam]")
        page.wait_for_selector("#browse-status.alert-ok")
        page.wait_for_function(
            "() => document.querySelector('#detail-history').textContent.includes('decided spam')"
        )
        assert "spam" in page.inner_text("#browse-rows tr[data-id]")
        _shot(page, "items.png")

        # The export says so.
        exported = page.evaluate(
            "p => fetch(p).then(r => r.text())",
            f"/api/projects/{opened.project_id}/export?format=jsonl",
        )
        records = {r["id"]: r for r in map(json.loads, exported.splitlines())}
        assert records["m17"]["label"] == "spam"
        assert records["m17"]["annotations"][0]["action"] == "adjudicate"

        # An annotator's first visit opens the guidelines, rendered; I opens them again.
        other = chromium.new_context(viewport={"width": 1280, "height": 860})
        ann = other.new_page()
        ann.on("pageerror", lambda e: problems.append(str(e)))
        sign_in_page(ann, link_for(opened.db, opened.project_id, annotator, base))
        ann.wait_for_selector("#guidelines:not([hidden])")
        assert ann.inner_text("#guidelines-text h1") == "How to label"
        assert "<script>" in ann.inner_text("#guidelines-text")  # shown as text
        assert ann.evaluate("window.__xss") is None
        assert "unsolicited advertising" in ann.inner_text("#label-bar")
        _shot(ann, "guidelines.png")
        ann.keyboard.press("1")  # no answer goes through while they are open
        ann.keyboard.press("Escape")
        assert ann.locator("#guidelines").is_hidden()
        ann.reload()
        ann.wait_for_selector('#annotate[data-state="item"]')
        assert ann.locator("#guidelines").is_hidden()  # seen: not again
        ann.keyboard.press("i")
        assert not ann.locator("#guidelines").is_hidden()
        other.close()
        with opened.db.read() as s:
            from sqlalchemy import func, select

            from labelwise.store.models import Label

            answers = s.scalar(select(func.count(Label.id)).where(Label.action == "label"))
        assert answers == 0
    assert not problems, problems
