"""Review: the training label of every item, conflicts between annotators, adjudication."""

import pytest

from labelwise.exceptions import InvalidParameterError, NotFoundError, PermissionDeniedError
from labelwise.store.models import Annotator
from labelwise.store.projects import get_project
from labelwise.store.review import adjudicate, list_conflicts, resolved_labels


def _resolve(db, pid):
    with db.read() as s:
        return resolved_labels(s, get_project(s, project_id=pid))


def _adjudicate(db, pid, aid, item_id, value):
    with db.write() as s:
        return adjudicate(
            s,
            get_project(s, project_id=pid),
            s.get_one(Annotator, aid),
            item_id=item_id,
            value=value,
        )


def test_resolved_labels_agreement_conflict_and_adjudication(db, store):
    pid = store.project(5, overlap=1.0)
    ids = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    boss = store.annotator(pid, "boss", role="admin")
    store.submit(pid, a, ids[0], "ham")  # one vote
    store.submit(pid, a, ids[1], "spam")  # two agreeing votes
    store.submit(pid, b, ids[1], "spam")
    store.submit(pid, a, ids[2], "ham")  # disagreement
    store.submit(pid, b, ids[2], "spam")
    store.submit(pid, a, ids[3], "ham")  # disagreement, settled by the admin
    store.submit(pid, b, ids[3], "spam")
    _adjudicate(db, pid, boss, ids[3], "ham")
    store.queue(pid, [ids[4]])
    assert store.next(pid, a).item.id == ids[4]
    store.skip(pid, a, ids[4])  # skips are not votes
    _adjudicate(db, pid, boss, ids[4], "spam")  # adjudicated without any vote
    final, conflicts = _resolve(db, pid)
    assert final == {ids[0]: "ham", ids[1]: "spam", ids[3]: "ham", ids[4]: "spam"}
    assert [(c.item_id, c.votes) for c in conflicts] == [(ids[2], {"ham": ["a0"], "spam": ["a1"]})]
    with db.read() as s:
        assert list_conflicts(s, get_project(s, project_id=pid)) == conflicts


def test_only_current_labels_count(db, store):
    pid = store.project(2, overlap=1.0)
    ids = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    store.submit(pid, a, ids[0], "ham")
    store.submit(pid, b, ids[0], "spam")
    store.submit(pid, a, ids[0], "spam")  # a changes their mind: agreement now
    store.submit(pid, a, ids[1], "ham")
    store.undo(pid, a)  # undone: no vote left on ids[1]
    assert _resolve(db, pid) == ({ids[0]: "spam"}, [])


def test_a_later_adjudication_supersedes_the_earlier_one(db, store):
    pid = store.project(1)
    (item_id,) = store.item_ids(pid)
    boss = store.annotator(pid, "boss", role="admin")
    first = _adjudicate(db, pid, boss, item_id, "ham")
    second = _adjudicate(db, pid, boss, item_id, "spam")
    assert second.supersedes_id == first.id
    assert [(lab.value, lab.is_current) for lab in store.labels(action="adjudicate")] == [
        ("ham", False),
        ("spam", True),
    ]
    assert _resolve(db, pid) == ({item_id: "spam"}, [])


def test_adjudicate_needs_an_admin(db, store):
    pid = store.project(1)
    (item_id,) = store.item_ids(pid)
    a = store.annotator(pid, "a")
    with pytest.raises(PermissionDeniedError, match="needs an admin token"):
        _adjudicate(db, pid, a, item_id, "ham")
    assert store.labels() == []


def test_adjudicate_needs_a_valid_label_and_item(db, store):
    pid = store.project(1)
    other = store.project(1, name="other")
    boss = store.annotator(pid, "boss", role="admin")
    (item_id,) = store.item_ids(pid)
    with pytest.raises(InvalidParameterError, match="'maybe' is not a label of this project"):
        _adjudicate(db, pid, boss, item_id, "maybe")
    with pytest.raises(NotFoundError, match="no item"):
        _adjudicate(db, pid, boss, store.item_ids(other)[0], "ham")
    assert store.labels() == []


# ------------------------------------------------------------------------------ multi-label

LABELS = ("insult", "threat", "spam")


def test_multi_label_conflicts_list_each_annotators_set(db, store):
    pid = store.project(4, labels=LABELS, overlap=1.0, multi_label=True)
    ids = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    store.submit(pid, a, ids[0], "insult;threat")  # the same set: agreed
    store.submit(pid, b, ids[0], "insult;threat")
    store.submit(pid, a, ids[1], "insult")  # different sets: a conflict
    store.submit(pid, b, ids[1], "insult;spam")
    store.submit(pid, a, ids[2], "")  # the empty set against a non-empty one: a conflict
    store.submit(pid, b, ids[2], "threat")
    store.submit(pid, a, ids[3], "")  # both chose none of the labels: agreed on the empty set
    store.submit(pid, b, ids[3], "")
    final, conflicts = _resolve(db, pid)
    assert final == {ids[0]: "insult;threat", ids[3]: ""}
    assert [(c.item_id, c.votes, c.answers) for c in conflicts] == [
        (ids[1], {"insult": ["a0"], "insult;spam": ["a1"]}, {"a0": "insult", "a1": "insult;spam"}),
        (ids[2], {"": ["a0"], "threat": ["a1"]}, {"a0": "", "a1": "threat"}),
    ]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (["spam", "insult"], "insult;spam"),  # a list, in any order: stored in label order
        ('["threat"]', "threat"),  # a JSON list
        ("spam;insult;threat", "insult;threat;spam"),  # names joined by ';'
        ([], ""),  # the empty set: none of the labels
    ],
)
def test_multi_label_adjudication_stores_the_canonical_set(db, store, given, stored):
    pid = store.project(1, labels=LABELS, overlap=1.0, multi_label=True)
    (item_id,) = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    boss = store.annotator(pid, "boss", role="admin")
    store.submit(pid, a, item_id, "insult")
    store.submit(pid, b, item_id, "spam")
    label = _adjudicate(db, pid, boss, item_id, given)
    assert label.value == stored
    assert _resolve(db, pid) == ({item_id: stored}, [])
    assert store.item(item_id).done


@pytest.mark.parametrize(
    ("given", "error"),
    [
        (["insult", "maybe"], "'maybe' is not a label of this project"),
        ("insult;nope", "'nope' is not a label of this project"),
        (5, "must be a list of label names"),
        ([1, 2], "must hold label names"),
        ("[not json", "is not a JSON list"),
    ],
)
def test_multi_label_adjudication_refuses_bad_sets_and_keeps_the_answers(db, store, given, error):
    pid = store.project(1, labels=LABELS, overlap=1.0, multi_label=True)
    (item_id,) = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    boss = store.annotator(pid, "boss", role="admin")
    store.submit(pid, a, item_id, "insult")
    store.submit(pid, b, item_id, "spam")
    with pytest.raises(InvalidParameterError, match=error):
        _adjudicate(db, pid, boss, item_id, given)
    assert store.labels(action="adjudicate") == []
    assert [c.item_id for c in _resolve(db, pid)[1]] == [item_id]


def test_a_single_label_project_refuses_a_list_as_adjudication(db, store):
    pid = store.project(1)
    (item_id,) = store.item_ids(pid)
    boss = store.annotator(pid, "boss", role="admin")
    with pytest.raises(InvalidParameterError, match="takes one label per answer"):
        _adjudicate(db, pid, boss, item_id, ["ham", "spam"])
    assert store.labels() == []
