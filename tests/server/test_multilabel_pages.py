"""The pages of a multi-label project: the annotate page's label keys toggle labels (pressed
buttons, a set line, Enter submits), its help says so; the settings page shows multi_label, fixed.
A single-label project's pages show none of it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.conftest import Served
from server.test_multilabel_api import LABELS, make_multilabel


@pytest.fixture
def multi(tmp_path: Path) -> Iterator[Served]:
    s = make_multilabel(tmp_path, f"sqlite:///{tmp_path / 'ml.sqlite3'}")
    yield s
    s.client.close()
    s.project.db.dispose()


def _page(s: Served, token: str, path: str) -> str:
    r = s.client.get(f"/p/{s.pid}/{path}", headers=s.h(token))
    assert r.status_code == 200, r.text
    return r.text


def _page_data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_the_annotate_page_of_a_multi_label_project_toggles_labels(multi):
    html = _page(multi, multi.alice, "annotate")
    data = _page_data(html)
    assert data["multi_label"] is True and data["labels"] == LABELS
    buttons = re.findall(r'<button type="button" class="btn btn-label"[^>]*>', html)
    assert len(buttons) == 3 and all('aria-pressed="false"' in b for b in buttons)
    assert 'id="btn-submit"' in html and "none of these" in html
    assert "Submit the labels turned on" in html and "Turn sports on or off" in html


def test_the_settings_page_shows_multi_label_fixed(multi):
    html = _page(multi, multi.admin, "settings")
    shown = re.search(r'<p class="setting setting-fixed" id="s-multi-label">(.*?)</p>', html, re.S)
    assert shown is not None and "A set of labels per item (multi-label)" in shown.group(1)
    assert "data-setting" not in shown.group(1)  # shown, not sent back as a change
    assert _page_data(html)["settings"]["multi_label"] is True


def test_a_single_label_project_shows_no_set_controls(served):
    html = _page(served, served.alice, "annotate")
    assert _page_data(html)["multi_label"] is False
    assert 'aria-pressed="false" title="ham' not in html and 'id="btn-submit"' not in html
    assert "Turn ham on or off" not in html
    settings = _page(served, served.admin, "settings")
    assert "One label per item" in settings
