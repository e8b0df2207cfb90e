"""The annotator's loop: next item under a lease, submit, skip, undo."""

import threading

import pytest
from sqlalchemy import delete, select

from labelwise.exceptions import ConflictError, InvalidParameterError, NotFoundError
from labelwise.store import answers, leasing
from labelwise.store import undo as undoing
from labelwise.store.models import Annotator, Item, Label, Lease, utcnow
from labelwise.store.projects import get_project

# -- next_item ---------------------------------------------------------------------------------


def test_next_item_serves_the_best_ranked_queue_item(store):
    pid = store.project(6)
    ids = store.item_ids(pid)
    version = store.queue(pid, [ids[4], ids[1], ids[3]])
    a, b = store.annotators(pid, 2)
    first = store.next(pid, a)
    assert first.item.id == ids[4]
    assert (first.kind, first.model_version_id, first.predicted) == ("strategy", version, "spam")
    assert first.reason.rank == 0 and first.reason.summary == "pick 0"
    assert store.next(pid, b).item.id == ids[1]  # ids[4] is leased to a


def test_next_item_gives_back_the_annotators_own_lease_on_reload(store):
    pid = store.project(5)
    store.queue(pid, store.item_ids(pid))
    a = store.annotator(pid, "a")
    first = store.next(pid, a)
    again = store.next(pid, a)
    assert again.item.id == first.item.id
    assert again.expires_at >= first.expires_at  # the same lease, renewed: not a second one
    assert len(store.leases()) == 1


def test_next_item_respects_exclude_for_prefetching(store):
    pid = store.project(5)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a = store.annotator(pid, "a")
    shown = store.next(pid, a).item.id
    prefetched = store.next(pid, a, exclude={shown}).item.id
    assert (shown, prefetched) == (ids[0], ids[1])
    assert store.next(pid, a, exclude={prefetched}).item.id == shown  # reload: the held one
    assert {lease.item_id for lease in store.leases()} == {shown, prefetched}


def test_an_annotator_holds_at_most_max_held_leases(store):
    pid = store.project(8)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a = store.annotator(pid, "a")
    seen: set[int] = set()
    for _ in range(leasing.MAX_HELD + 2):
        seen.add(store.next(pid, a, exclude=seen).item.id)
    assert len(seen) == leasing.MAX_HELD + 2
    held = {lease.item_id for lease in store.leases()}
    assert len(held) == leasing.MAX_HELD
    assert held == set(ids[2 : 2 + leasing.MAX_HELD])  # the oldest were given back


def test_items_with_answers_on_their_way_are_kept_and_not_counted(store):
    """A fast annotator on a slow line: three answers still on their way, the page asks for
    the next item. Their leases are kept (giving the oldest back could let someone else fill
    it first, and its answer be refused), and are not handed out again."""
    pid = store.project(8)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a, b = store.annotators(pid, 2)
    sent: set[int] = set()
    for _ in range(leasing.MAX_HELD + 1):
        got = store.next(pid, a, exclude=set(), answering=sent)
        assert got is not None and got.item.id not in sent
        sent.add(got.item.id)
    assert {lease.item_id for lease in store.leases()} == sent  # nothing given back
    assert store.next(pid, b).item.id not in sent
    for item_id in sorted(sent):  # the answers land
        assert not store.submit(pid, a, item_id, "ham").replayed
    # Shown or prefetched items still count: asking past the limit gives the oldest back.
    shown = {store.next(pid, a, exclude=set()).item.id}
    shown.add(store.next(pid, a, exclude=shown).item.id)
    shown.add(store.next(pid, a, exclude=shown).item.id)
    store.next(pid, a, exclude=shown, answering={min(sent)})
    assert len(store.leases()) == leasing.MAX_HELD


def test_a_retry_stored_and_undone_while_its_first_attempt_waited_is_not_stored_twice(
    store, backend
):
    """Found under load with requests cut off: the first attempt of an answer checks its
    request id, then waits for the item; meanwhile the retry is stored and undone. The first
    attempt must find the stored answer by its id, not insert it again (a unique violation,
    answered with a 500)."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: the attempts cannot interleave")
    pid = store.project(2)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a = store.annotator(pid, "a")
    assert store.next(pid, a).item.id == ids[0]
    got: list = []
    with store.db.write() as retry:
        project, annotator = get_project(retry, project_id=pid), retry.get_one(Annotator, a)
        stored = answers.submit_label(
            retry, project, annotator, item_id=ids[0], value="ham", request_id="r-1"
        ).label
        undoing.undo_last(retry, project, annotator)
        first = threading.Thread(
            target=lambda: got.append(store.submit(pid, a, ids[0], "ham", request_id="r-1"))
        )
        first.start()
        first.join(timeout=1)  # it waits for the item held by the retry's transaction
    first.join()
    assert got and got[0].replayed and got[0].label.id == stored.id
    assert len(store.labels(request_id="r-1")) == 1
    assert store.item(ids[0]).n_labels == 0  # the undo stands


def test_two_nexts_at_once_may_both_give_the_oldest_lease_back(store, backend):
    """Found by holding a key down: two "next" requests of one annotator over the limit both
    give back the same oldest lease; the second must find it gone without complaint."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: the two cannot overlap")
    pid = store.project(8)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a = store.annotator(pid, "a")
    seen: set[int] = set()
    for _ in range(leasing.MAX_HELD):
        seen.add(store.next(pid, a, exclude=seen).item.id)
    got: list = []
    with store.db.write() as first:
        got.append(
            leasing.next_item(
                first, get_project(first, project_id=pid), first.get_one(Annotator, a), exclude=seen
            )
        )
        # The second waits for the first's delete of the same lease, then finds it gone.
        second = threading.Thread(target=lambda: got.append(store.next(pid, a, exclude=seen)))
        second.start()
        second.join(timeout=1)
    second.join()
    assert len(got) == 2 and all(g is not None for g in got)
    assert ids[0] not in {lease.item_id for lease in store.leases()}


def test_a_target_one_item_goes_to_one_annotator_only(store):
    pid = store.project(1)
    a, b = store.annotators(pid, 2)
    assert store.next(pid, a) is not None
    assert store.next(pid, b) is None


def test_a_target_two_item_goes_to_exactly_two_different_annotators(store):
    pid = store.project(1, overlap=1.0)
    (item_id,) = store.item_ids(pid)
    assert store.item(item_id).target == 2
    a, b, c = store.annotators(pid, 3)
    assert store.next(pid, a).item.id == item_id
    assert store.next(pid, b).item.id == item_id
    assert store.next(pid, c) is None
    store.submit(pid, a, item_id, "ham")
    assert store.next(pid, a) is None  # never the same item twice to one annotator
    assert store.next(pid, c) is None  # b still holds the second slot
    store.submit(pid, b, item_id, "spam")
    assert (store.item(item_id).n_labels, store.item(item_id).done) == (2, True)
    assert store.next(pid, c) is None


def test_an_expired_lease_returns_the_item_to_the_pool(store):
    pid = store.project(1)
    (item_id,) = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    store.next(pid, a)
    assert store.next(pid, b) is None
    store.expire_leases(annotator_id=a)
    taken = store.next(pid, b)
    assert taken is not None and taken.item.id == item_id
    assert store.next(pid, a) is None  # now b holds it


def test_a_short_lease_setting_expires_by_itself(store, monkeypatch):
    pid = store.project(1, lease_seconds=5)
    a, b = store.annotators(pid, 2)
    lease = store.next(pid, a)
    assert (lease.expires_at - store.leases()[0].created_at).total_seconds() == 5
    later = lease.expires_at
    monkeypatch.setattr(leasing, "database_now", lambda session: later)  # when it runs out
    assert store.next(pid, b) is not None


def test_leases_run_on_the_databases_clock_not_the_servers(store, backend, monkeypatch):
    # A second server whose clock is 11 minutes ahead took every item still leased to others
    # (and their answers were refused). Lease times come from the database's clock.
    if backend != "postgresql":
        pytest.skip("SQLite lives on one machine: every process reads the same clock")
    pid = store.project(1, lease_seconds=600)
    (held,) = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    assert store.next(pid, a).item.id == held
    from datetime import timedelta

    ahead = utcnow() + timedelta(minutes=11)
    monkeypatch.setattr(leasing, "utcnow", lambda: ahead)  # this server's clock runs ahead
    assert store.next(pid, b) is None  # a's lease stands
    assert [lease.annotator_id for lease in store.leases()] == [a]
    assert store.submit(pid, a, held, "ham").label.value == "ham"  # a's answer is taken


def test_queue_used_up_falls_back_to_a_random_open_item(store):
    pid = store.project(3)
    ids = store.item_ids(pid)
    version = store.queue(pid, [ids[1]])
    a = store.annotator(pid, "a")
    first = store.next(pid, a)
    assert first.item.id == ids[1] and first.kind == "strategy"
    store.submit(pid, a, ids[1], "ham")
    second = store.next(pid, a)
    assert second.item.id in {ids[0], ids[2]}
    assert second.kind == "fallback" and second.reason.kind == "fallback"
    assert second.model_version_id == version and second.predicted is None


def test_before_any_model_version_items_are_cold_start_picks(store):
    pid = store.project(3)
    a = store.annotator(pid, "a")
    first = store.next(pid, a)
    assert first.kind == "cold-start" and first.model_version_id is None
    store.submit(pid, a, first.item.id, "spam")
    assert store.labels(item_id=first.item.id)[0].reason_kind == "cold-start"


def test_queue_items_already_labeled_or_done_are_passed_over(store):
    pid = store.project(3)
    ids = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    store.submit(pid, b, ids[0], "ham")  # labeled before the queue was written
    store.queue(pid, ids)
    assert store.next(pid, a).item.id == ids[1]


def test_next_item_is_none_when_everything_is_done(store):
    pid = store.project(4)
    a, b = store.annotators(pid, 2)
    assert len(store.label_all(pid, a)) == 4
    assert store.next(pid, a) is None
    assert store.next(pid, b) is None
    assert all(store.item(i).done for i in store.item_ids(pid))


def test_random_fallback_finds_a_free_item_behind_many_leased_ones(store):
    # 40 items; 33 of them (rows 0..32) are leased by eleven other annotators. The random
    # fallback must still find one of the 7 free ones, wherever its random walk starts.
    pid = store.project(40)
    ids = store.item_ids(pid)
    store.queue(pid, ids[:33])
    others = store.annotators(pid, 11)
    for other in others:
        held: set[int] = set()
        for _ in range(3):
            held.add(store.next(pid, other, exclude=held).item.id)
    assert {lease.item_id for lease in store.leases()} == set(ids[:33])
    me = store.annotator(pid, "me")
    for _ in range(30):  # the start row is random: try many
        got = store.next(pid, me)
        assert got is not None, "an open item was free, but next_item said nothing is left"
        assert got.item.id in ids[33:]
        with store.db.write() as s:
            leasing.release(s, s.get_one(Annotator, me), leases=[got.lease])


# -- submit_label ------------------------------------------------------------------------------


def test_submit_records_who_how_long_and_why_from_the_lease(store):
    pid = store.project(3)
    ids = store.item_ids(pid)
    version = store.queue(pid, ids)
    a = store.annotator(pid, "a")
    got = store.next(pid, a)
    result = store.submit(pid, a, got.item.id, "spam", duration_ms=1234, request_id="r1")
    assert not result.replayed
    (label,) = store.labels()
    assert (label.item_id, label.annotator_id, label.action, label.value) == (
        ids[0],
        a,
        "label",
        "spam",
    )
    assert (label.duration_ms, label.model_version_id, label.reason_kind, label.predicted) == (
        1234,
        version,
        "strategy",
        "spam",
    )
    assert label.is_current and label.supersedes_id is None and label.request_id == "r1"
    assert (result.item.n_labels, result.item.done) == (1, True)
    assert store.leases(live=False) == []  # the lease is used up


def test_the_same_request_id_twice_is_stored_once(store):
    pid = store.project(2)
    a = store.annotator(pid, "a")
    item_id = store.next(pid, a).item.id
    first = store.submit(pid, a, item_id, "ham", request_id="req-1")
    again = store.submit(pid, a, item_id, "ham", request_id="req-1")
    assert again.replayed
    assert again.label.id == first.label.id
    # The same id for another answer is a client bug: refused, and nothing changes.
    with pytest.raises(ConflictError, match="already used for another answer"):
        store.submit(pid, a, item_id, "spam", request_id="req-1")
    assert [(lab.value, lab.is_current) for lab in store.labels()] == [("ham", True)]
    assert store.item(item_id).n_labels == 1


def test_the_same_answer_twice_without_request_id_is_a_no_op(store):
    pid = store.project(2)
    a = store.annotator(pid, "a")
    item_id = store.next(pid, a).item.id
    first = store.submit(pid, a, item_id, "ham")
    again = store.submit(pid, a, item_id, "ham")
    assert again.replayed and again.label.id == first.label.id
    assert len(store.labels()) == 1
    assert store.item(item_id).n_labels == 1


def test_a_different_answer_supersedes_without_deleting(store):
    pid = store.project(2)
    a = store.annotator(pid, "a")
    item_id = store.next(pid, a).item.id
    first = store.submit(pid, a, item_id, "ham", duration_ms=10)
    second = store.submit(pid, a, item_id, "spam", duration_ms=20)
    assert not second.replayed
    old, new = store.labels()
    assert (old.id, old.value, old.is_current) == (first.label.id, "ham", False)
    assert (new.value, new.is_current, new.supersedes_id) == ("spam", True, old.id)
    assert new.reason_kind == old.reason_kind == "cold-start"  # carried over from the label
    assert (store.item(item_id).n_labels, store.item(item_id).done) == (1, True)


def test_an_unknown_label_value_is_refused(store):
    pid = store.project(1)
    a = store.annotator(pid, "a")
    item_id = store.next(pid, a).item.id
    with pytest.raises(InvalidParameterError, match="'eggs' is not a label of this project"):
        store.submit(pid, a, item_id, "eggs")
    assert store.labels() == []
    assert len(store.leases()) == 1  # still held


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_ms": -1}, "duration_ms must be a non-negative integer, got -1"),
        ({"duration_ms": 1.5}, "duration_ms must be a non-negative integer, got 1.5"),
        ({"request_id": ""}, "request_id must be 1 to 64 characters"),
        ({"request_id": "r" * 65}, "request_id must be 1 to 64 characters"),
    ],
)
def test_bad_submit_parameters_are_refused(store, kwargs, message):
    pid = store.project(1)
    a = store.annotator(pid, "a")
    item_id = store.next(pid, a).item.id
    with pytest.raises(InvalidParameterError, match=message):
        store.submit(pid, a, item_id, "ham", **kwargs)


def test_submitting_for_another_projects_item_is_not_found(store):
    mine, theirs = store.project(1, name="mine"), store.project(1, name="theirs")
    a = store.annotator(mine, "a")
    (their_item,) = store.item_ids(theirs)
    with pytest.raises(NotFoundError, match=f"no item {their_item} in this project"):
        store.submit(mine, a, their_item, "ham")
    with pytest.raises(NotFoundError):
        store.skip(mine, a, their_item)
    assert store.labels() == []


def test_a_late_submit_after_someone_else_finished_the_item_conflicts(store):
    pid = store.project(1)
    (item_id,) = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    store.next(pid, a)
    store.expire_leases(annotator_id=a)
    assert store.next(pid, b).item.id == item_id
    store.submit(pid, b, item_id, "ham")
    with pytest.raises(ConflictError, match="after your lease expired"):
        store.submit(pid, a, item_id, "spam")
    assert [lab.annotator_id for lab in store.labels()] == [b]
    assert (store.item(item_id).n_labels, store.item(item_id).done) == (1, True)


def test_counts_follow_labels_on_a_target_two_item(store):
    pid = store.project(1, overlap=1.0)
    (item_id,) = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    store.next(pid, a)
    store.next(pid, b)
    assert store.submit(pid, a, item_id, "ham").item.n_labels == 1
    assert not store.item(item_id).done
    store.submit(pid, a, item_id, "spam")  # a relabel: still one label from a
    assert (store.item(item_id).n_labels, store.item(item_id).done) == (1, False)
    result = store.submit(pid, b, item_id, "spam")
    assert (result.item.n_labels, result.item.done) == (2, True)


# -- skip_item ---------------------------------------------------------------------------------


def test_a_skipped_item_goes_to_others_but_not_back_to_the_skipper(store):
    pid = store.project(2)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a, b = store.annotators(pid, 2)
    assert store.next(pid, a).item.id == ids[0]
    result = store.skip(pid, a, ids[0], duration_ms=50)
    assert result.label.action == "skip" and result.label.value is None
    assert result.label.reason_kind == "strategy" and result.label.duration_ms == 50
    assert (store.item(ids[0]).n_labels, store.item(ids[0]).done) == (0, False)
    assert store.leases() == []
    assert store.next(pid, a).item.id == ids[1]
    assert store.next(pid, b).item.id == ids[0]


def test_skipping_twice_is_a_no_op_and_skipping_a_labeled_item_conflicts(store):
    pid = store.project(2)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a = store.annotator(pid, "a")
    assert store.next(pid, a).item.id == ids[0]
    first = store.skip(pid, a, ids[0])
    assert store.skip(pid, a, ids[0]).label.id == first.label.id
    store.submit(pid, a, ids[1], "ham")
    with pytest.raises(ConflictError, match="already labeled by you; undo it first"):
        store.skip(pid, a, ids[1])
    assert [lab.action for lab in store.labels()] == ["skip", "label"]


def test_labeling_an_item_one_skipped_supersedes_the_skip(store):
    pid = store.project(1)
    (item_id,) = store.item_ids(pid)
    a = store.annotator(pid, "a")
    assert store.next(pid, a).item.id == item_id
    skip = store.skip(pid, a, item_id).label
    store.submit(pid, a, item_id, "ham")
    old, new = store.labels()
    assert (old.id, old.is_current) == (skip.id, False)
    assert (new.supersedes_id, new.is_current, store.item(item_id).n_labels) == (skip.id, True, 1)


def test_only_an_item_handed_to_you_can_be_skipped(store):
    # A skip records that the annotator was shown the item; without the lease it would also
    # make any item readable to them afterwards (as one they answered).
    pid = store.project(2)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a, b = store.annotators(pid, 2)
    held = store.next(pid, a).item.id
    for who, item_id in ((b, held), (b, ids[1]), (a, ids[1])):
        with pytest.raises(ConflictError, match=f"you do not hold item {item_id}"):
            store.skip(pid, who, item_id)
    assert store.labels() == []
    assert store.skip(pid, a, held).label.action == "skip"


# -- undo_last ---------------------------------------------------------------------------------


def test_undo_takes_back_the_last_label_and_leases_the_item_back(store):
    pid = store.project(3)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a, b = store.annotators(pid, 2)
    store.next(pid, a)
    labeled = store.submit(pid, a, ids[0], "spam").label
    back = store.undo(pid, a)
    assert back.item.id == ids[0]
    # The item comes back with the reason it was queued for, and the answer that was undone.
    assert back.reason.summary == "pick 0"
    assert back.kind == "strategy"
    assert back.previous == "spam"
    assert (store.item(ids[0]).n_labels, store.item(ids[0]).done) == (0, False)
    original, undo = store.labels()
    assert (original.id, original.is_current) == (labeled.id, False)  # kept in history
    assert (undo.action, undo.supersedes_id, undo.is_current) == ("undo", labeled.id, False)
    assert store.next(pid, a).item.id == ids[0]  # leased back to a
    assert store.next(pid, b).item.id == ids[1]  # and not handed to b
    store.submit(pid, a, ids[0], "ham")
    assert store.item(ids[0]).n_labels == 1


def test_undoing_a_relabel_restores_the_earlier_answer(store):
    pid = store.project(2)
    ids = store.item_ids(pid)
    a = store.annotator(pid, "a")
    first = store.submit(pid, a, ids[0], "ham").label
    store.submit(pid, a, ids[0], "spam")
    back = store.undo(pid, a)
    assert back.previous == "spam"
    current = [lab for lab in store.labels() if lab.is_current]
    assert [(lab.id, lab.value) for lab in current] == [(first.id, "ham")]
    assert store.item(ids[0]).n_labels == 1


def test_undo_twice_walks_back_two_steps(store):
    pid = store.project(3)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a = store.annotator(pid, "a")
    store.submit(pid, a, ids[0], "ham")
    assert store.next(pid, a).item.id == ids[1]
    store.skip(pid, a, ids[1])
    store.submit(pid, a, ids[2], "spam")
    assert store.undo(pid, a).item.id == ids[2]
    assert store.undo(pid, a).item.id == ids[1]
    assert [(lab.item_id, lab.action, lab.is_current) for lab in store.labels()] == [
        (ids[0], "label", True),
        (ids[1], "skip", False),
        (ids[2], "label", False),
        (ids[2], "undo", False),
        (ids[1], "undo", False),
    ]
    assert [store.item(i).n_labels for i in ids] == [1, 0, 0]


def test_an_undo_retried_with_its_request_id_takes_back_nothing_more(store):
    """A retried undo (its first answer lost on the way) must not take back a second answer."""
    pid = store.project(3)
    ids = store.item_ids(pid)
    a = store.annotator(pid, "a")
    store.submit(pid, a, ids[0], "ham")
    store.submit(pid, a, ids[1], "spam")

    def undo(request_id: str) -> leasing.Assignment:
        with store.db.write() as s:
            project, annotator = get_project(s, project_id=pid), s.get_one(Annotator, a)
            return undoing.undo_last(s, project, annotator, request_id=request_id)

    first, again = undo("u-1"), undo("u-1")
    assert (first.item.id, again.item.id, again.previous) == (ids[1], ids[1], "spam")
    assert [(lab.item_id, lab.action, lab.is_current) for lab in store.labels()] == [
        (ids[0], "label", True),
        (ids[1], "label", False),
        (ids[1], "undo", False),
    ]
    store.submit(pid, a, ids[1], "ham")  # answered again: the old undo has nothing to return
    with pytest.raises(ConflictError, match="already done"):
        undo("u-1")
    with pytest.raises(ConflictError, match="already used for another answer"):
        store.submit(pid, a, ids[2], "ham", request_id="u-1")
    assert undo("u-2").item.id == ids[1]


def test_undo_only_touches_the_annotators_own_labels(store):
    pid = store.project(2)
    ids = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    store.submit(pid, a, ids[0], "ham")
    with pytest.raises(ConflictError, match="nothing to undo"):
        store.undo(pid, b)
    assert store.undo(pid, a).item.id == ids[0]
    with pytest.raises(ConflictError, match="nothing to undo"):
        store.undo(pid, a)


def test_labels_are_never_deleted(store, db):
    pid = store.project(2)
    ids = store.item_ids(pid)
    a = store.annotator(pid, "a")
    store.submit(pid, a, ids[0], "ham")
    store.submit(pid, a, ids[0], "spam")
    store.undo(pid, a)  # restores "ham"
    store.submit(pid, a, ids[0], "spam")
    with db.read() as s:
        rows = s.execute(select(Label.action, Label.value, Label.is_current).order_by(Label.id))
        assert [tuple(r) for r in rows] == [
            ("label", "ham", False),
            ("label", "spam", False),
            ("undo", None, False),
            ("label", "spam", True),
        ]
        assert s.scalar(select(Item.n_labels).where(Item.id == ids[0])) == 1
        assert s.scalars(select(Lease).where(Lease.expires_at > utcnow())).all() == []


@pytest.mark.parametrize("target", [1, 2])
def test_undoing_a_skip_of_an_item_others_finished_is_refused(store, target):
    # Leasing it back would hand out a slot the item no longer has: the annotator would be
    # shown a finished item, and told it conflicts only after answering.
    pid = store.project(2, overlap=float(target == 2))
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a, *others = store.annotators(pid, 1 + target)
    store.submit(pid, a, ids[1], "ham")
    store.next(pid, a)
    store.skip(pid, a, ids[0])
    for other in others:
        assert store.next(pid, other).item.id == ids[0]
        store.submit(pid, other, ids[0], "spam")
    assert store.item(ids[0]).done
    with pytest.raises(ConflictError, match="others have finished it"):
        store.undo(pid, a)
    assert [lab.action for lab in store.labels(annotator_id=a)] == ["label", "skip"]
    assert all(lab.is_current for lab in store.labels())
    assert store.leases() == []


def test_undoing_a_skip_of_an_item_still_open_leases_it_back(store):
    pid = store.project(2)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a, b = store.annotators(pid, 2)
    assert store.next(pid, a).item.id == ids[0]
    store.skip(pid, a, ids[0])
    back = store.undo(pid, a)
    assert back.item.id == ids[0]
    assert store.next(pid, b).item.id == ids[1]


def _release(store, aid: int, **which) -> int:
    with store.db.write() as s:
        return leasing.release(s, s.get_one(Annotator, aid), **which)


@pytest.mark.parametrize("by", ["leases", "items"])
def test_release_gives_leases_back_at_once(store, by):
    pid = store.project(1)
    (item_id,) = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    lease = store.next(pid, a).lease
    which = {"leases": [lease]} if by == "leases" else {"items": [item_id]}
    assert _release(store, b, **which) == 0  # not b's
    assert store.next(pid, b) is None
    assert _release(store, a, **which) == 1
    assert store.next(pid, b).item.id == item_id
    assert _release(store, a) == 0  # nothing named, nothing released


def test_a_late_release_does_not_end_a_newer_lease_on_the_same_item(store):
    """Found under load: a release cut off and retried, or sent as a page unloads, can arrive
    after the annotator was given the same item again (released items go back to the top of
    the queue). Ending that newer lease handed the item on screen to someone else, and the
    annotator's answer was refused. A release names the grant by its token, not the item."""
    pid = store.project(3)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a, b = store.annotators(pid, 2)
    first = store.next(pid, a)
    assert _release(store, a, leases=[first.lease]) == 1
    again = store.next(pid, a)
    assert again.item.id == first.item.id
    assert again.lease and again.lease != first.lease
    assert _release(store, a, leases=[first.lease]) == 0  # the late copy
    assert store.next(pid, b).item.id != first.item.id  # still a's
    assert not store.submit(pid, a, first.item.id, "ham").replayed
    assert store.next(pid, a, exclude={first.item.id}).lease != again.lease


def test_a_reload_gets_its_item_under_a_fresh_token_and_the_unloaded_page_ends_nothing(store):
    """Found in the browser under load: a reload's new page asked for its item before the old
    page's release arrived. Handed back under the same token, the late release ended the lease
    of the item on screen: its image was refused and others could take it."""
    pid = store.project(2)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a, b = store.annotators(pid, 2)
    shown = store.next(pid, a)
    reloaded = store.next(pid, a)
    assert reloaded.item.id == shown.item.id and reloaded.kind == shown.kind
    assert reloaded.reason == shown.reason and reloaded.lease != shown.lease
    assert _release(store, a, leases=[shown.lease]) == 0  # the unloaded page's release
    assert store.next(pid, b).item.id != shown.item.id  # still a's
    assert not store.submit(pid, a, shown.item.id, "ham").replayed
    back = store.undo(pid, a)  # a new grant of the same item
    assert back.item.id == shown.item.id and back.lease != shown.lease
    assert {lease.token for lease in store.leases() if lease.annotator_id == a} == {back.lease}


def test_a_held_lease_ended_by_a_concurrent_request_is_passed_over(store, monkeypatch):
    """Found under load on PostgreSQL (one annotator, six requests at once): a release or an
    answer of the same annotator deleted the held lease between /next reading it and granting
    it again, and /next failed (0 rows updated). It passes over it and grants another item."""
    pid = store.project(3)
    ids = store.item_ids(pid)
    store.queue(pid, ids)
    a = store.annotator(pid, "a")
    first = store.next(pid, a)
    read_held = leasing._held

    def ended_meanwhile(session, annotator, now):
        held = read_held(session, annotator, now)
        session.execute(
            delete(Lease).where(Lease.id.in_([lease.id for lease in held])),
            execution_options={"synchronize_session": False},
        )
        return held

    monkeypatch.setattr(leasing, "_held", ended_meanwhile)
    got = store.next(pid, a)
    assert got is not None and got.lease != first.lease
    assert [lease.token for lease in store.leases()] == [got.lease]


def test_annotators_only_ever_see_their_own_projects_items(store):
    mine, theirs = store.project(2, name="mine"), store.project(5, name="theirs")
    store.queue(theirs, store.item_ids(theirs))
    a = store.annotator(mine, "a")
    assert sorted(store.label_all(mine, a)) == store.item_ids(mine)
    assert all(not store.item(i).done for i in store.item_ids(theirs))
