"""One answer for a group of near-duplicates: only what was offered, only what is open, and
undo takes the whole group back."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from labelwise.exceptions import InvalidParameterError
from labelwise.store.models import Item


def _offer(store, pid, ids, members):
    """Queue ids[0] first, offering ``members`` as its near-duplicates."""
    dups = [{"item_id": m, "similarity": 0.95, "preview": "…"} for m in members]
    store.queue(pid, [ids[0]], reasons={ids[0]: {"duplicates": dups}})


def test_a_confirmed_group_gets_the_same_answer_in_one_go(store):
    pid = store.project(8)
    ana = store.annotator(pid, "ana")
    ids = store.item_ids(pid)
    _offer(store, pid, ids, ids[1:4])
    assert store.next(pid, ana).item.id == ids[0]
    result = store.submit(pid, ana, ids[0], "spam", group=ids[1:4])
    assert result.grouped == tuple(ids[1:4]) and result.group_skipped == ()
    stored = store.labels(annotator_id=ana, action="label", is_current=True)
    assert {(label.item_id, label.value) for label in stored} == {(i, "spam") for i in ids[:4]}
    assert {label.reason_kind for label in stored if label.item_id != ids[0]} == {"group"}
    assert all(store.item(i).n_labels == 1 for i in ids[:4])
    # the group is done: nobody is handed those items again
    bob = store.annotator(pid, "bob")
    handed = set(store.label_all(pid, bob))
    assert handed == set(ids[4:])


def test_items_not_offered_are_refused_and_nothing_is_stored(store):
    pid = store.project(8)
    ana = store.annotator(pid, "ana")
    ids = store.item_ids(pid)
    _offer(store, pid, ids, ids[1:3])
    store.next(pid, ana)
    with pytest.raises(InvalidParameterError, match=str(ids[5])):
        store.submit(pid, ana, ids[0], "spam", group=[ids[1], ids[5]])
    assert store.labels() == []


def test_members_taken_meanwhile_are_left_alone(store):
    pid = store.project(8)
    ana, bob = store.annotators(pid, 2)
    ids = store.item_ids(pid)
    _offer(store, pid, ids, ids[1:4])
    store.next(pid, ana)
    # bob labels one member and holds a lease on another
    store.submit(pid, bob, ids[1], "ham")
    store.queue(pid, [ids[2]])
    assert store.next(pid, bob).item.id == ids[2]
    result = store.submit(pid, ana, ids[0], "spam", group=ids[1:4])
    assert result.grouped == (ids[3],)
    assert set(result.group_skipped) == {ids[1], ids[2]}
    assert store.item(ids[1]).n_labels == 1  # bob's answer only


def test_undo_takes_the_whole_group_back(store):
    pid = store.project(8)
    ana = store.annotator(pid, "ana")
    ids = store.item_ids(pid)
    _offer(store, pid, ids, ids[1:4])
    store.next(pid, ana)
    store.submit(pid, ana, ids[0], "spam", group=ids[1:4])
    back = store.undo(pid, ana)
    assert back.item.id == ids[0] and back.previous == "spam"
    assert store.labels(annotator_id=ana, action="label", is_current=True) == []
    assert all(store.item(i).n_labels == 0 for i in ids[:4])
    # history keeps everything: four answers, four undos
    assert len(store.labels(action="undo")) == 4
    assert len(store.labels(action="label")) == 4


def test_crossing_groups_do_not_wait_for_each_other(store, backend):
    """Ana answers item 0 with item 1 as its near-duplicate while bob's answer to item 1, with
    item 0 as its near-duplicate, is under way. Waiting for bob's lock deadlocked on
    PostgreSQL; a member someone else holds at that moment is left alone instead."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: nothing to cross")
    pid = store.project(4)
    ana, bob = store.annotators(pid, 2)
    ids = store.item_ids(pid)
    _offer(store, pid, ids, [ids[1]])
    assert store.next(pid, ana).item.id == ids[0]
    results: list = []
    with store.db.write() as session:
        # Bob's submit has begun: it holds item 1's row, as submit_label does first.
        session.execute(select(Item).where(Item.id == ids[1]).with_for_update())
        ana_answers = threading.Thread(
            target=lambda: results.append(store.submit(pid, ana, ids[0], "spam", group=[ids[1]]))
        )
        ana_answers.start()
        ana_answers.join(timeout=10)
        waited = ana_answers.is_alive()
    ana_answers.join()
    assert not waited, "ana's answer waited for bob's transaction"
    assert results[0].grouped == () and results[0].group_skipped == (ids[1],)
    assert store.item(ids[0]).n_labels == 1 and store.item(ids[1]).n_labels == 0
