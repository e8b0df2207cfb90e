"""Items: added all or nothing, with consecutive rows and overlap targets; scoped by project."""

import pytest
from sqlalchemy import select

from labelwise.exceptions import InvalidDataError, NotFoundError
from labelwise.store.items import MAX_CONTENT, ItemRecord, add_items, count_items, get_item
from labelwise.store.models import Annotator, Item, Label
from labelwise.store.projects import ProjectSettings, create_project, get_project


def _records(n, prefix="x", start=0):
    return [ItemRecord(f"{prefix}{i}", f"text {i}") for i in range(start, start + n)]


def _new_project(db, name="p", **settings):
    with db.write() as s:
        return create_project(
            s, name=name, kind="text", labels=["ham", "spam"], settings=ProjectSettings(**settings)
        ).id


def _items(db, pid):
    with db.read() as s:
        return list(s.scalars(select(Item).where(Item.project_id == pid).order_by(Item.row)))


def test_add_items_gives_consecutive_rows_from_zero(db):
    pid = _new_project(db)
    with db.write() as s:
        assert add_items(s, get_project(s, project_id=pid), _records(5)) == 5
    items = _items(db, pid)
    assert [i.row for i in items] == [0, 1, 2, 3, 4]
    assert [i.external_id for i in items] == ["x0", "x1", "x2", "x3", "x4"]
    assert all(i.n_labels == 0 and not i.done for i in items)


@pytest.mark.parametrize("first_batch", [1, 3])
def test_a_second_import_continues_the_rows(db, first_batch):
    # One existing item is the tricky case: its row is 0, which is falsy.
    pid = _new_project(db)
    with db.write() as s:
        add_items(s, get_project(s, project_id=pid), _records(first_batch))
    with db.write() as s:
        add_items(s, get_project(s, project_id=pid), _records(2, prefix="y"))
    assert [i.row for i in _items(db, pid)] == list(range(first_batch + 2))


def test_rows_are_per_project(db):
    first, second = _new_project(db, "one"), _new_project(db, "two")
    for pid in (first, second):
        with db.write() as s:
            add_items(s, get_project(s, project_id=pid), _records(3))  # same ids: other project
    assert [i.row for i in _items(db, second)] == [0, 1, 2]


@pytest.mark.parametrize(("overlap", "targets"), [(0.0, {1}), (1.0, {2})])
def test_overlap_extremes_decide_every_target(db, overlap, targets):
    pid = _new_project(db, overlap=overlap)
    with db.write() as s:
        add_items(s, get_project(s, project_id=pid), _records(20))
    assert {i.target for i in _items(db, pid)} == targets


def test_overlap_draws_roughly_its_share_of_target_two_items_reproducibly(db):
    first, second = _new_project(db, "one", overlap=0.3), _new_project(db, "two", overlap=0.3)
    for pid in (first, second):
        with db.write() as s:
            add_items(s, get_project(s, project_id=pid), _records(400))
    targets = [i.target for i in _items(db, first)]
    assert set(targets) == {1, 2}
    assert 0.2 < targets.count(2) / len(targets) < 0.4
    assert targets == [i.target for i in _items(db, second)]  # same seed, same draw


def test_imported_labels_count_towards_the_target(db):
    pid = _new_project(db, overlap=0.0)
    records = [ItemRecord("a", "text a", label="spam"), ItemRecord("b", "text b")]
    with db.write() as s:
        add_items(s, get_project(s, project_id=pid), records)
    a, b = _items(db, pid)
    assert (a.n_labels, a.done, b.n_labels, b.done) == (1, True, 0, False)
    with db.read() as s:
        label = s.scalars(select(Label)).one()
        importer = s.get_one(Annotator, label.annotator_id)
    assert (label.item_id, label.value, label.reason_kind, label.is_current) == (
        a.id,
        "spam",
        "import",
        True,
    )
    assert importer.name == "import" and importer.disabled


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([], "nothing to import"),
        ([ItemRecord("x0", "a"), ItemRecord("x0", "b")], "item id 'x0' appears twice"),
        (
            [ItemRecord("new", "a"), ItemRecord("old0", "b")],
            r"1 item id\(s\) already exist.*'old0'",
        ),
        ([ItemRecord("n", "a", label="maybe")], "label 'maybe', which is not one of"),
        ([ItemRecord("n1", "a"), ItemRecord("n2", "")], "item 'n2' has no content"),
        ([ItemRecord("n", "x" * (MAX_CONTENT + 1))], "characters long; the limit is 1,000,000"),
        ([ItemRecord("", "a")], "item 3: id must be 1 to 300 characters"),
        ([ItemRecord("n", "a"), ItemRecord("i" * 301, "b")], "item 4: id must be 1 to 300"),
    ],
)
def test_a_bad_batch_is_refused_whole(db, records, message):
    pid = _new_project(db)
    with db.write() as s:
        add_items(s, get_project(s, project_id=pid), _records(2, prefix="old"))
    good = [ItemRecord(f"good{i}", "fine", label="ham") for i in range(3)]
    with db.write() as s:
        project = get_project(s, project_id=pid)
        with pytest.raises(InvalidDataError, match=message):
            add_items(s, project, good + records if records else records)
        # Checked before anything is written: nothing reached even this open transaction.
        assert count_items(s, project) == 2
        assert s.scalars(select(Label)).all() == []
    with db.read() as s:
        assert count_items(s, get_project(s, project_id=pid)) == 2


def test_get_item_is_scoped_by_project(db):
    first, second = _new_project(db, "one"), _new_project(db, "two")
    with db.write() as s:
        add_items(s, get_project(s, project_id=first), _records(1))
    item_id = _items(db, first)[0].id
    with db.read() as s:
        assert get_item(s, get_project(s, project_id=first), item_id).external_id == "x0"
        with pytest.raises(NotFoundError, match=f"no item {item_id} in this project"):
            get_item(s, get_project(s, project_id=second), item_id)
        with pytest.raises(NotFoundError):
            get_item(s, get_project(s, project_id=first), item_id + 1000)
