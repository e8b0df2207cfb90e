"""The review page of a multi-label project in the browser: each annotator's set as chips, and
the admin's decision as one annotator's set, the union, or a set toggled with the label keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from labelwise.server import ServerConfig, create_app
from labelwise.services.setup import init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.models import Item, Label
from labelwise.store.projects import ProjectSettings, get_project
from threaded_server import ThreadedServer

pytestmark = pytest.mark.browser


def _project(root: Path) -> tuple[Any, str]:
    (root / "data.csv").write_text(
        "id,text\n" + "".join(f"m{i},message number {i}\n" for i in range(6))
    )
    settings = ProjectSettings(multi_label=True, overlap=1.0, routine=0.0)
    opened, admin = init_project(
        root / "p", root / "data.csv", labels=["insult", "threat", "spam"], settings=settings
    )
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        alice, _ = create_annotator(s, project, name="alice", role="annotator")
        bob, _ = create_annotator(s, project, name="bob", role="annotator")
        items = list(s.scalars(select(Item).order_by(Item.row)))
        for item, x, y in zip(
            items[:3], ["insult", "threat", ""], ["insult;spam", "spam", "insult"], strict=True
        ):
            submit_label(s, project, alice, item_id=item.id, value=x)
            submit_label(s, project, bob, item_id=item.id, value=y)
    return opened, admin


def _decided(opened: Any) -> dict[str, str]:
    with opened.db.read() as s:
        rows = s.execute(
            select(Item.external_id, Label.value)
            .join(Item, Item.id == Label.item_id)
            .where(Label.action == "adjudicate", Label.is_current.is_(True))
        ).all()
    return dict(rows)


def _signed_in(chromium: Any, base: str, token: str) -> tuple[Any, list[str]]:
    """A page signed in with ``token``, and the list its script errors go to."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    return page, errors


def test_the_admin_takes_a_set_the_union_or_an_edited_set(chromium: Any, tmp_path: Path) -> None:
    opened, admin = _project(tmp_path)
    with ThreadedServer(create_app(ServerConfig(opened))) as base:
        page, errors = _signed_in(chromium, base, admin)
        page.goto(f"{base}/p/{opened.project_id}/review")
        cards = page.locator("article.conflict")
        cards.first.wait_for()
        assert cards.count() == 3
        first = cards.nth(0)
        # Each annotator's set as chips; the empty set says so.
        assert first.locator(".vote").nth(1).inner_text().split() == ["bob", "insult", "spam"]
        assert "none of the labels" in cards.nth(2).locator(".vote").nth(0).inner_text()
        # m0: bob's set.
        first.get_by_role("button", name="Use bob’s").click()
        first.locator(".resolved-note", has_text="insult, spam").wait_for()
        # m1: the union of threat and spam.
        cards.nth(1).get_by_role("button", name="Merge (union)").click()
        cards.nth(1).locator(".resolved-note", has_text="threat, spam").wait_for()
        # m2: an edited set, toggled with the label keys (1 insult, 2 threat), saved with Enter.
        third = cards.nth(2)
        third.locator(".conflict-head").click()
        page.keyboard.press("1")
        page.keyboard.press("2")
        page.keyboard.press("1")  # insult off again
        assert third.locator('.btn-label[aria-pressed="true"]').count() == 1
        page.keyboard.press("Enter")
        third.locator(".resolved-note", has_text="threat").wait_for()
        assert page.locator("#review-count").inner_text() == "All conflicts resolved. Thank you."
        assert errors == []
    assert _decided(opened) == {"m0": "insult;spam", "m1": "threat;spam", "m2": "threat"}


def test_the_data_browser_shows_sets_and_relabels_an_item_with_a_set(
    chromium: Any, tmp_path: Path
) -> None:
    opened, admin = _project(tmp_path)
    with ThreadedServer(create_app(ServerConfig(opened))) as base:
        page, errors = _signed_in(chromium, base, admin)
        page.goto(f"{base}/p/{opened.project_id}/items")
        row = page.locator("#browse-rows tr", has_text="m0")
        row.wait_for()
        # Answers read as sets, not in their stored "a;b" form.
        assert "bob: insult, spam" in row.inner_text()
        assert ";" not in page.locator("#browse-rows").inner_text()
        assert (
            "alice: none of the labels"
            in page.locator("#browse-rows tr", has_text="m2").inner_text()
        )
        # Relabel m0 as {threat, spam}: toggles, then save.
        row.click()
        relabel = page.locator("#detail-labels")
        relabel.get_by_role("button", name="threat").click()
        relabel.get_by_role("button", name="spam").click()
        assert relabel.locator('[aria-pressed="true"]').count() == 2
        page.get_by_role("button", name="Save this set").click()
        page.locator("#browse-status", has_text="is now threat, spam").wait_for()
        page.locator("#detail-history", has_text="decided threat, spam").wait_for()
        # Reopened, the toggles show the item's set.
        page.locator("#browse-rows tr", has_text="m0").click()
        pressed = relabel.locator('[aria-pressed="true"]')
        assert sorted(pressed.all_inner_texts()) == ["spam", "threat"]
        # None toggled: none of the labels.
        page.locator("#browse-rows tr", has_text="m1").click()
        for b in relabel.locator('[aria-pressed="true"]').all():
            b.click()
        page.get_by_role("button", name="Save this set").click()
        page.locator("#browse-status", has_text="is now none of the labels").wait_for()
        assert errors == []
    assert _decided(opened) == {"m0": "threat;spam", "m1": ""}
