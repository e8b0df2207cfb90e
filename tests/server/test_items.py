"""The data browser's API: filters, pages, history and an admin's relabel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelwise.services.worker import train_once
from labelwise.store.answers import submit_label
from labelwise.store.leasing import next_item
from labelwise.store.models import Annotator, ModelVersion
from labelwise.store.prediction_cache import PREDICTION_DTYPE, cached_predictions
from labelwise.store.projects import get_project


def _answer(s, name: str, external_ids: list[str], value_of) -> None:
    """``name`` answers the items with these external ids (through the store, in order)."""
    from sqlalchemy import select

    from labelwise.store.models import Item

    with s.project.db.write() as session:
        project = get_project(session, project_id=s.pid)
        who = session.scalar(select(Annotator).where(Annotator.name == name))
        for ext in external_ids:
            item = session.scalar(select(Item).where(Item.external_id == ext))
            if item.n_labels:  # a second opinion, as overlap items get
                item.target, item.done = 2, False
            submit_label(session, project, who, item_id=item.id, value=value_of(ext))


def _get(s, token=None, **params):
    return s.client.get(s.api("/items"), params=params, headers=s.h(token or s.admin))


def _ids(r) -> list[str]:
    assert r.status_code == 200, r.text
    return [i["external_id"] for i in r.json()["items"]]


def _truth(ext: str) -> str:
    return "spam" if int(ext[1:]) % 3 == 0 else "ham"


@pytest.fixture
def browsed(served):
    s = served
    first = [f"m{i}" for i in range(20)]
    _answer(s, "alice", first, _truth)
    _answer(s, "bob", ["m1", "m2"], lambda ext: "spam")  # m1: disagree; m2 too
    _answer(s, "bob", ["m3"], _truth)  # m3: agree
    assert train_once(s.project.folder, s.project.db, force=True).status == "trained"
    return s


def test_filters_find_what_they_say(browsed):
    s = browsed
    assert _ids(_get(s, text="MESSAGE 1")) == [
        f"m{i}" for i in [1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    ]
    assert _ids(_get(s, text="50%")) == []  # % and _ are plain characters
    spam = _ids(_get(s, label="spam"))
    assert spam == [f"m{i}" for i in range(20) if i % 3 == 0] and "m1" not in spam
    assert _ids(_get(s, status="review")) == ["m1", "m2"]
    assert _ids(_get(s, disagreement="true")) == ["m1", "m2"]
    assert _ids(_get(s, annotator="bob")) == ["m1", "m2", "m3"]
    unlabeled = _ids(_get(s, label="none", limit=200))
    assert unlabeled == [f"m{i}" for i in range(20, 60)]
    queued = set(_ids(_get(s, status="queued", limit=200)))
    rest = set(_ids(_get(s, status="unlabeled", limit=200)))
    assert queued and not queued & rest and queued | rest == set(unlabeled)
    labeled = _ids(_get(s, status="labeled", limit=200))
    assert labeled == [f"m{i}" for i in range(20) if i not in (1, 2)]
    both = _ids(_get(s, label="ham", annotator="bob"))
    assert both == ["m3"] if _truth("m3") == "ham" else both == []
    row = _get(s, text="message 3 ").json()["items"][0]
    assert row["label"] == _truth("m3") and row["status"] == "labeled"
    assert {a["annotator"] for a in row["answers"]} == {"alice", "bob"}


def test_the_served_models_predictions_are_shown_and_filter(browsed):
    s = browsed
    with s.project.db.read() as session:
        project = get_project(session, project_id=s.pid)
        version = session.get(ModelVersion, project.current_version_id).version
    cached = cached_predictions(s.project.folder, version, 60)
    assert cached is not None and cached.dtype == PREDICTION_DTYPE and len(cached) == 60
    page = _get(s, limit=200).json()
    assert page["predictions"] and all(i["predicted"] in ("ham", "spam") for i in page["items"])
    by_model = {i["external_id"]: i for i in page["items"]}
    spam = _ids(_get(s, predicted="spam", limit=200))
    assert spam == [e for e, i in by_model.items() if i["predicted"] == "spam"]
    sure = _get(s, min_confidence=0.6, limit=200).json()["items"]
    assert all(i["confidence"] >= 0.6 for i in sure)
    unsure = _ids(_get(s, max_confidence=0.6, limit=200))
    assert set(unsure) | {i["external_id"] for i in sure} == set(by_model)
    # Filters combine: the model's spam among the human-labeled ham.
    mismatch = _ids(_get(s, predicted="spam", label="ham", limit=200))
    assert mismatch == [
        e for e, i in by_model.items() if i["predicted"] == "spam" and i["label"] == "ham"
    ]


def test_pages_follow_each_other_without_gaps_or_repeats(browsed):
    s = browsed
    seen, after = [], None
    while True:
        params = {"limit": 7, **({"after": after} if after is not None else {})}
        body = _get(s, **params).json()
        seen += [i["external_id"] for i in body["items"]]
        after = body["next_after"]
        if after is None:
            break
    assert seen == [f"m{i}" for i in range(60)]
    seen, after = [], None  # narrowed by the answers, in blocks
    while True:
        params = {"limit": 4, "label": "ham", **({"after": after} if after is not None else {})}
        body = _get(s, **params).json()
        seen += [i["external_id"] for i in body["items"]]
        after = body["next_after"]
        if after is None:
            break
    assert seen == [f"m{i}" for i in range(20) if _truth(f"m{i}") == "ham" and i not in (1, 2)]


def test_relabel_keeps_the_history_and_closes_the_item(browsed):
    s = browsed
    item = _get(s, text="message 25 ").json()["items"][0]
    r = s.client.post(s.api(f"/review/{item['id']}"), json={"value": "spam"}, headers=s.h(s.admin))
    assert r.status_code == 200
    again = _get(s, text="message 25 ").json()["items"][0]
    assert again["label"] == "spam" and again["status"] == "labeled"
    # Relabeled once more: both decisions are in the history, the last one stands.
    s.client.post(s.api(f"/review/{item['id']}"), json={"value": "ham"}, headers=s.h(s.admin))
    history = s.client.get(s.api(f"/items/{item['id']}/history"), headers=s.h(s.admin)).json()
    assert [(h["action"], h["value"], h["current"]) for h in history["history"]] == [
        ("adjudicate", "spam", False),
        ("adjudicate", "ham", True),
    ]
    # A decided item is closed: nobody is handed it again.
    with s.project.db.write() as session:
        project = get_project(session, project_id=s.pid)
        from sqlalchemy import select

        alice = session.scalar(select(Annotator).where(Annotator.name == "alice"))
        handed = set()
        while (a := next_item(session, project, alice, exclude=handed)) is not None:
            handed.add(a.item.id)
    assert item["id"] not in handed
    exported = s.client.get(s.api("/export?format=jsonl"), headers=s.h(s.admin)).text
    records = {r["id"]: r for r in map(json.loads, exported.splitlines())}
    assert records["m25"]["label"] == "ham" and records["m25"]["status"] == "labeled"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "done"}, "status must be one of"),
        ({"label": "eggs"}, "label must be one of"),
        ({"predicted": "none"}, "predicted must be one of"),
        ({"annotator": "nobody"}, "no annotator named 'nobody'"),
        ({"min_confidence": 2}, "less than or equal to 1"),
        ({"limit": 500}, "less than or equal to 200"),
    ],
)
def test_a_bad_filter_is_named(served, params, message):
    r = _get(served, **params)
    assert r.status_code == 422 and message in r.text, r.text


def test_the_browser_is_for_admins(served):
    assert _get(served, token=served.alice).status_code == 403
    page = served.client.get(f"/p/{served.pid}/items", headers=served.h(served.alice))
    assert page.status_code in (303, 403)


def test_without_predictions_the_model_filters_say_so(served):
    body = _get(served, predicted="spam").json()
    assert body == {"items": [], "next_after": None, "predictions": False}


def test_a_damaged_or_stale_predictions_file_reads_as_none(browsed):
    s = browsed
    with s.project.db.read() as session:
        project = get_project(session, project_id=s.pid)
        version = session.get(ModelVersion, project.current_version_id).version
    path = s.project.folder.models_dir / f"v{version:05d}.predictions.npy"
    assert cached_predictions(s.project.folder, version, 61) is None  # another pool size
    path.write_bytes(b"not a numpy file")
    assert cached_predictions(s.project.folder, version, 60) is None
    np.save(path, np.zeros(60, dtype=np.float64))  # another layout
    assert cached_predictions(s.project.folder, version, 60) is None
    assert _get(s, predicted="spam").json()["predictions"] is False
