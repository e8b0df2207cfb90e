"""The labeling API of a multi-label project: an answer is a set of labels (a list, a string of
labels joined by ';', a JSON list, or the empty set), stored in its one canonical form and sent
back as a list; undo, relabel, skip and near-duplicate groups work on sets; a wrong label is
refused by name and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from labelwise.server import ServerConfig, create_app
from labelwise.services.setup import init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.models import Item, Label, Lease
from labelwise.store.projects import ProjectSettings, get_project
from server.conftest import Served

LABELS = ["sports", "politics", "tech"]
TOPICS = ["match goal", "vote senate", "chip software", "league election", "app budget"]


def make_multilabel(root: Path, db_url: str, **settings: Any) -> Served:
    """A served multi-label text project of 30 items (labels: sports, politics, tech)."""
    lines = ["id,text"] + [f"t{i},{TOPICS[i % 5]} story {i}" for i in range(30)]
    (root / "news.csv").write_text("\n".join(lines) + "\n")
    opened, admin = init_project(
        root / "project",
        root / "news.csv",
        name=f"ml-{root.name}",
        labels=LABELS,
        db_url=db_url,
        settings=ProjectSettings(multi_label=True, overlap=0.0, routine=0.0, **settings),
    )
    with opened.db.write() as session:
        project = get_project(session, project_id=opened.project_id)
        _, alice = create_annotator(session, project, name="alice", role="annotator")
        _, bob = create_annotator(session, project, name="bob", role="annotator")
    return Served(TestClient(create_app(ServerConfig(opened))), opened, admin, alice, bob)


@pytest.fixture
def multi(tmp_path: Path, db_url: str) -> Iterator[Served]:
    s = make_multilabel(tmp_path, db_url)
    yield s
    s.client.close()
    s.project.db.dispose()


def _next(s: Served, token: str) -> dict[str, Any]:
    r = s.client.post(s.api("/next"), json={}, headers=s.h(token))
    assert r.status_code == 200, r.text
    return r.json()


def _label(s: Served, token: str, item_id: int, body: dict[str, Any]) -> Any:
    return s.client.post(s.api(f"/items/{item_id}/label"), json=body, headers=s.h(token))


def _stored(s: Served) -> list[tuple[int, str | None, bool]]:
    with s.project.db.read() as session:
        rows = session.execute(
            select(Label.item_id, Label.value, Label.is_current).order_by(Label.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("sent", "stored", "listed"),
    [
        ({"labels": ["tech", "sports"]}, "sports;tech", ["sports", "tech"]),
        ({"value": "tech;politics"}, "politics;tech", ["politics", "tech"]),
        ({"value": '["politics", "sports", "tech"]'}, "sports;politics;tech", LABELS),
        ({"labels": []}, "", []),
        ({"value": "[]"}, "", []),
    ],
)
def test_a_set_is_stored_in_its_one_form_and_answered_as_a_list(multi, sent, stored, listed):
    s = multi
    item = _next(s, s.alice)["item"]
    r = _label(s, s.alice, item["id"], sent)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["value"] == stored and got["labels"] == listed and got["action"] == "label"
    assert _stored(s) == [(item["id"], stored, True)]


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        ({"labels": ["sports", "weather"]}, "'weather' is not a label"),
        ({"value": "sport"}, "'sport' is not a label"),
        ({"value": '["sports", "tech"'}, "is not a JSON list"),
        ({"value": "[1, 2]"}, "must hold label names"),
        ({"labels": ["tech"], "value": "tech"}, "exactly one of them"),
        ({}, "exactly one of them"),
        ({"value": ""}, "invalid request: value"),
    ],
)
def test_a_wrong_set_is_refused_by_name_and_stores_nothing(multi, sent, named):
    s = multi
    item = _next(s, s.alice)["item"]
    r = _label(s, s.alice, item["id"], sent)
    assert r.status_code == 422 and named in r.text, r.text
    assert _stored(s) == []
    # The item is still the annotator's to answer.
    assert _next(s, s.alice)["item"]["id"] == item["id"]


def test_undo_relabel_and_skip_work_on_sets(multi):
    s = multi
    first = _next(s, s.alice)["item"]
    assert _label(s, s.alice, first["id"], {"labels": ["politics", "sports"]}).status_code == 200
    undone = s.client.post(s.api("/undo"), json={}, headers=s.h(s.alice)).json()
    assert undone["item"]["id"] == first["id"]
    assert undone["previous"] == "sports;politics"
    assert undone["previous_labels"] == ["sports", "politics"]
    # Answered again with another set: the undone one stays in the history, not current.
    again = _label(s, s.alice, first["id"], {"labels": ["tech"]}).json()
    assert again["labels"] == ["tech"]
    # The same set again (in another form) changes nothing; another set relabels the item.
    same = _label(s, s.alice, first["id"], {"value": '["tech"]'}).json()
    assert same["replayed"] is True and same["label_id"] == again["label_id"]
    relabeled = _label(s, s.alice, first["id"], {"value": "tech;sports"}).json()
    assert relabeled["labels"] == ["sports", "tech"] and relabeled["item_labels"] == 1
    assert [(v, c) for i, v, c in _stored(s) if i == first["id"] and v is not None] == [
        ("sports;politics", False),
        ("tech", False),
        ("sports;tech", True),
    ]
    # The empty set is an answer, and undoing it gives back an empty list (not nothing).
    second = _next(s, s.alice)["item"]
    assert _label(s, s.alice, second["id"], {"labels": []}).json()["labels"] == []
    undone = s.client.post(s.api("/undo"), json={}, headers=s.h(s.alice)).json()
    assert undone["previous"] == "" and undone["previous_labels"] == []
    skipped = s.client.post(s.api(f"/items/{second['id']}/skip"), json={}, headers=s.h(s.alice))
    assert skipped.status_code == 200
    assert skipped.json()["action"] == "skip" and "labels" not in skipped.json()
    history = s.client.get(s.api(f"/items/{first['id']}/history"), headers=s.h(s.admin)).json()
    assert [e["labels"] for e in history["history"] if e["action"] == "label"] == [
        ["sports", "politics"],
        ["tech"],
        ["sports", "tech"],
    ]


def _lease_reason(s: Served, item_id: int, reason: dict[str, Any], predicted: str | None) -> None:
    """Give alice's lease on ``item_id`` a reason, as the worker's queue gives it."""
    with s.project.db.write() as session:
        lease = session.scalars(select(Lease).where(Lease.item_id == item_id)).one()
        lease.reason = reason
        lease.predicted = predicted


def _ranked(duplicates: list[int]) -> dict[str, Any]:
    return {
        "kind": "strategy",
        "strategy": "mean-margin",
        "summary": "the model is unsure about politics",
        "utility": 0.4,
        "rank": 0,
        "class_split": [["sports", 0.81], ["politics", 0.44], ["tech", 0.12]],
        "output_kind": "proba",
        "details": {"thresholds": {"sports": 0.5, "politics": 0.4, "tech": 0.35}},
        "duplicates": [{"item_id": i, "similarity": 0.97, "preview": "x"} for i in duplicates],
    }


def test_a_group_gets_the_set_and_the_reveal_shows_the_guessed_set(multi):
    s = multi
    held = _next(s, s.alice)["item"]
    bobs = _next(s, s.bob)["item"]["id"]
    # Three items nobody holds (the queue's order is random: pick from the stored items).
    with s.project.db.read() as session:
        ids = session.scalars(select(Item.id).order_by(Item.id)).all()
    group = [i for i in ids if i not in (held["id"], bobs)][:3]
    _lease_reason(s, held["id"], _ranked(group), "sports;politics")
    body = {"labels": ["tech", "politics"], "group": group}
    r = _label(s, s.alice, held["id"], body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert sorted(got["grouped"]) == sorted(group) and got["labels"] == ["politics", "tech"]
    assert got["reveal"]["guess"] == {"labels": ["sports", "politics"]}
    assert [label for label, _ in got["reveal"]["why"]["class_split"]] == LABELS
    assert got["reveal"]["why"]["details"]["thresholds"]["tech"] == 0.35
    values = {i: v for i, v, current in _stored(s) if current}
    assert {values[i] for i in [held["id"], *group]} == {"politics;tech"}


def test_the_guess_before_the_answer_is_the_set_the_thresholds_give(tmp_path, db_url):
    s = make_multilabel(tmp_path, db_url, show_guess="before")
    try:
        item = _next(s, s.alice)["item"]
        _lease_reason(s, item["id"], _ranked([]), None)  # no stored prediction: from the split
        shown = _next(s, s.alice)
        assert shown["item"]["id"] == item["id"]
        assert shown["guess"] == {"labels": ["sports", "politics"]}
        assert [label for label, _ in shown["why"]["class_split"]] == LABELS
    finally:
        s.client.close()
        s.project.db.dispose()


def test_a_single_label_project_refuses_a_list(served):
    s = served
    item = _next(s, s.alice)["item"]
    r = _label(s, s.alice, item["id"], {"labels": ["spam"]})
    assert r.status_code == 422 and "one label per answer" in r.text, r.text
    r = _label(s, s.alice, item["id"], {"value": "spam;ham"})
    assert r.status_code == 422 and "'spam;ham' is not a label" in r.text, r.text
    ok = _label(s, s.alice, item["id"], {"value": "spam"}).json()
    assert ok["value"] == "spam" and "labels" not in ok
