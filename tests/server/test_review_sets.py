"""Review of a multi-label project over HTTP: conflicts list each annotator's set, and the admin
decides with one annotator's set, their union, or any set (as a list or as one string); a bad
set is refused and nothing is stored. The dashboard's figures carry the multi-label keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from labelwise.store.answers import submit_label
from labelwise.store.models import Annotator, Item, Label
from labelwise.store.projects import ProjectSettings, get_project
from server.conftest import Served, make_served

SETTINGS = ProjectSettings(multi_label=True, overlap=1.0, routine=0.0)


@pytest.fixture
def multi(tmp_path: Path, db_url: str) -> Served:
    s = make_served(tmp_path, db_url, settings=SETTINGS)
    yield s
    s.client.close()


def _answer(s: Served, name: str, external_id: str, value: str) -> int:
    """``name``'s answer to an item (through the store); the item's id."""
    with s.project.db.write() as session:
        project = get_project(session, project_id=s.pid)
        who = session.scalar(select(Annotator).where(Annotator.name == name))
        item = session.scalar(select(Item).where(Item.external_id == external_id))
        submit_label(session, project, who, item_id=item.id, value=value)
        return item.id


def _conflict(s: Served) -> int:
    """alice says ham, bob says ham and spam: a conflict on m1."""
    _answer(s, "alice", "m1", "ham")
    return _answer(s, "bob", "m1", "ham;spam")


def test_the_review_queue_lists_each_annotators_set(multi):
    s = multi
    assert s.client.get(s.api(""), headers=s.h(s.admin)).json()["labels"] == ["ham", "spam"]
    item_id = _conflict(s)
    _answer(s, "alice", "m2", "")  # agreed on the empty set: no conflict
    _answer(s, "bob", "m2", "")
    r = s.client.get(s.api("/review"), headers=s.h(s.admin))
    assert r.status_code == 200, r.text
    [entry] = r.json()
    assert entry["item"]["id"] == item_id
    assert entry["votes"] == {"ham": ["alice"], "ham;spam": ["bob"]}
    assert entry["answers"] == [
        {"annotator": "alice", "value": "ham", "labels": ["ham"]},
        {"annotator": "bob", "value": "ham;spam", "labels": ["ham", "spam"]},
    ]


@pytest.mark.parametrize(
    ("body", "stored", "labels"),
    [
        ({"labels": ["ham"]}, "ham", ["ham"]),  # alice's set
        ({"labels": ["spam", "ham"]}, "ham;spam", ["ham", "spam"]),  # the union, any order
        ({"labels": []}, "", []),  # none of the labels
        ({"value": "spam;ham"}, "ham;spam", ["ham", "spam"]),  # one string
        ({"value": '["spam"]'}, "spam", ["spam"]),  # a JSON list
    ],
)
def test_the_admin_decides_with_a_set(multi, body, stored, labels):
    s = multi
    item_id = _conflict(s)
    r = s.client.post(s.api(f"/review/{item_id}"), json=body, headers=s.h(s.admin))
    assert r.status_code == 200, r.text
    assert r.json() | {"label_id": 0} == {
        "item_id": item_id,
        "value": stored,
        "labels": labels,
        "label_id": 0,
    }
    assert s.client.get(s.api("/review"), headers=s.h(s.admin)).json() == []
    with s.project.db.read() as session:
        decided = session.scalar(select(Label).where(Label.action == "adjudicate"))
        assert decided.value == stored


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"labels": ["ham", "eggs"]}, 422, "'eggs' is not a label of this project"),
        ({"value": "ham;eggs"}, 422, "'eggs' is not a label of this project"),
        ({"value": "ham", "labels": ["ham"]}, 422, "exactly one of them"),
        ({}, 422, "exactly one of them"),
        ({"labels": "ham"}, 422, None),
    ],
)
def test_a_bad_decision_is_refused_and_nothing_is_stored(multi, body, status, error):
    s = multi
    item_id = _conflict(s)
    r = s.client.post(s.api(f"/review/{item_id}"), json=body, headers=s.h(s.admin))
    assert r.status_code == status, r.text
    if error is not None:
        assert error in r.text
    with s.project.db.read() as session:
        assert session.scalar(select(Label).where(Label.action == "adjudicate")) is None
    assert len(s.client.get(s.api("/review"), headers=s.h(s.admin)).json()) == 1


def test_an_annotator_may_not_decide(multi):
    s = multi
    item_id = _conflict(s)
    r = s.client.post(s.api(f"/review/{item_id}"), json={"labels": ["ham"]}, headers=s.h(s.alice))
    assert r.status_code == 403


def test_a_single_label_project_takes_one_label_only(served):
    s = served
    with s.project.db.read() as session:
        item_id = session.scalar(select(Item.id).where(Item.external_id == "m1"))
    r = s.client.post(
        s.api(f"/review/{item_id}"), json={"labels": ["ham", "spam"]}, headers=s.h(s.admin)
    )
    assert r.status_code == 422 and "takes one label per answer" in r.text
    r = s.client.post(s.api(f"/review/{item_id}"), json={"value": "spam"}, headers=s.h(s.admin))
    assert r.status_code == 200 and "labels" not in r.json()


def test_the_dashboard_route_carries_the_multi_label_figures(multi):
    s = multi
    _conflict(s)
    for ext, value in [("m2", "ham"), ("m3", "spam"), ("m4", ""), ("m5", "ham;spam")]:
        _answer(s, "alice", ext, value)
    r = s.client.get(s.api("/stats"), headers=s.h(s.admin))
    assert r.status_code == 200, r.text
    figures = r.json()
    # m1 is a conflict: not counted; ham in m2 and m5, spam in m3 and m5, m4 empty.
    assert figures["distribution"] == {"ham": 2, "spam": 2}
    assert figures["multi_label"]["empty_sets"] == 1
    assert figures["agreement"]["items"] == 1
    assert figures["agreement"]["alpha_masi"] is None  # fewer than 5 shared items


def _explored(s: Served, answers: dict[str, tuple[str, str]]) -> None:
    """A version whose queue serves these items (external id -> (answer, predicted)) as
    exploration items, and alice's answers to them."""
    from explored import explored_version
    from labelwise.store.leasing import next_item

    with s.project.db.write() as session:
        project = get_project(session, project_id=s.pid)
        ids = {
            ext: session.scalar(select(Item.id).where(Item.external_id == ext)) for ext in answers
        }
        explored_version(
            session, project, [(ids[ext], predicted) for ext, (_, predicted) in answers.items()]
        )
    by_id = {ids[ext]: value for ext, (value, _) in answers.items()}
    with s.project.db.write() as session:
        project = get_project(session, project_id=s.pid)
        alice = session.scalar(select(Annotator).where(Annotator.name == "alice"))
        for _ in answers:
            offered = next_item(session, project, alice, exclude=set(), answering=frozenset())
            submit_label(
                session, project, alice, item_id=offered.item.id, value=by_id[offered.item.id]
            )


def test_the_dashboard_page_shows_the_multi_label_figures(multi):
    s = multi
    _explored(
        s,
        {
            "m10": ("ham", "ham"),
            "m11": ("ham;spam", "ham"),
            "m12": ("", ""),
            "m13": ("spam", "spam"),
            "m14": ("spam", "ham;spam"),
            "m15": ("", "spam"),
        },
    )
    for i, (x, y) in enumerate([("ham", "ham")] * 3 + [("spam", "ham;spam"), ("", "")]):
        _answer(s, "alice", f"m{20 + i}", x)
        _answer(s, "bob", f"m{20 + i}", y)
    s.client.post("/login", data={"token": s.admin}, follow_redirects=False)
    page = s.client.get(f"/p/{s.pid}/dashboard")
    assert page.status_code == 200, page.text
    html = page.text
    assert "Estimated macro-F1" in html and "Estimated accuracy" not in html
    assert "Model on random items" in html and "6 exploration items" in html
    assert "Subset accuracy" in html and "Hamming loss" in html
    assert "Krippendorff" in html and "Fleiss" not in html
    assert "CV subset accuracy" in html
    assert "Subset accuracy on random items" in html  # the chart's legend
    assert "Accuracy on random items" not in html
    review = s.client.get(f"/p/{s.pid}/review").text
    assert '"multi_label": true' in review and "<kbd>Enter</kbd> saves the set" in review


def test_a_single_label_dashboard_page_keeps_its_figures(served):
    s = served
    s.client.post("/login", data={"token": s.admin}, follow_redirects=False)
    html = s.client.get(f"/p/{s.pid}/dashboard").text
    assert "Estimated accuracy" in html and "Model on random items" not in html
    assert "Krippendorff" not in html
    review = s.client.get(f"/p/{s.pid}/review").text
    assert '"multi_label": false' in review and "label keys decide" in review
