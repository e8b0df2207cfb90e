"""Many annotators at once: every item gets exactly the labels it needs, from different people,
and at no moment do leases promise an item to more annotators than it has free slots."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select, text

from labelwise.store.answers import submit_label
from labelwise.store.items import ItemRecord, add_items
from labelwise.store.leasing import next_item
from labelwise.store.models import Annotator, Item, Label, Lease, utcnow
from labelwise.store.projects import get_project

pytestmark = pytest.mark.slow

N_ANNOTATORS = 8
N_SINGLE, N_DOUBLE = 60, 6

# One statement, so it reads one consistent snapshot on both databases: items whose current
# labels plus unexpired leases exceed their target, or whose lease holder already labeled them.
OVERBOOKED = text(
    """
    SELECT i.id, i.target, i.n_labels,
           (SELECT count(*) FROM leases l WHERE l.item_id = i.id AND l.expires_at > :now) AS held,
           (SELECT count(*) FROM leases l JOIN labels b
              ON b.item_id = l.item_id AND b.annotator_id = l.annotator_id AND b.is_current
            WHERE l.item_id = i.id AND l.expires_at > :now) AS held_by_labelers
    FROM items i
    WHERE i.project_id = :pid
      AND (i.n_labels + (SELECT count(*) FROM leases l
                         WHERE l.item_id = i.id AND l.expires_at > :now) > i.target
           OR EXISTS (SELECT 1 FROM leases l JOIN labels b
                        ON b.item_id = l.item_id AND b.annotator_id = l.annotator_id
                           AND b.is_current
                      WHERE l.item_id = i.id AND l.expires_at > :now))
    """
)


def _project(store) -> tuple[int, list[int]]:
    pid = store.project(0)
    with store.db.write() as s:
        project = get_project(s, project_id=pid)
        records = [ItemRecord(f"i{i}", f"message {i}") for i in range(N_SINGLE + N_DOUBLE)]
        add_items(s, project, records)
        # The last few need two annotators each.
        for item in s.scalars(select(Item).where(Item.row >= N_SINGLE)):
            item.target = 2
    return pid, store.annotators(pid, N_ANNOTATORS)


def _run_annotators(store, pid, annotators, *, use_queue: bool):
    db = store.db
    if use_queue:
        ids = store.item_ids(pid)
        store.queue(pid, ids[::2])  # half the items ranked; the rest come by fallback
    errors: list[BaseException] = []
    overbooked: list[tuple] = []
    handed: dict[int, list[int]] = {aid: [] for aid in annotators}
    start = threading.Barrier(len(annotators))

    def open_for(aid: int) -> int:
        with db.read() as s:
            mine = select(Label.item_id).where(
                Label.annotator_id == aid, Label.is_current.is_(True)
            )
            return (
                s.scalar(
                    select(func.count(Item.id)).where(
                        Item.project_id == pid, Item.done.is_(False), Item.id.not_in(mine)
                    )
                )
                or 0
            )

    def check() -> None:
        with db.read() as s:
            rows = s.execute(OVERBOOKED, {"pid": pid, "now": utcnow()}).all()
        overbooked.extend(tuple(r) for r in rows)

    def annotate(aid: int) -> None:
        try:
            start.wait()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with db.write() as s:
                    got = next_item(s, get_project(s, project_id=pid), s.get_one(Annotator, aid))
                check()
                if got is None:
                    if open_for(aid) == 0:
                        return
                    time.sleep(0.01)  # the rest is leased to others who are still at work
                    continue
                handed[aid].append(got.item.id)
                value = "spam" if got.item.row % 3 else "ham"
                with db.write() as s:
                    result = submit_label(
                        s,
                        get_project(s, project_id=pid),
                        s.get_one(Annotator, aid),
                        item_id=got.item.id,
                        value=value,
                        request_id=f"{aid}-{got.item.id}",
                    )
                assert not result.replayed
                check()
            raise AssertionError(f"annotator {aid} still busy after 60 s")
        except BaseException as exc:  # reported below, with every other thread's
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(aid,)) for aid in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    assert overbooked == [], f"leases beyond free slots: {overbooked[:5]}"
    return handed


def _assert_final_state(store, pid, annotators, handed):
    with store.db.read() as s:
        items = s.scalars(select(Item).where(Item.project_id == pid)).all()
        labels = s.scalars(select(Label).where(Label.project_id == pid)).all()
        live = s.scalars(select(Lease).where(Lease.expires_at > utcnow())).all()
    current = [lab for lab in labels if lab.is_current]
    per_item = Counter(lab.item_id for lab in current)
    for item in items:
        assert per_item[item.id] == item.target == item.n_labels, item.external_id
        assert item.done
    pairs = Counter((lab.item_id, lab.annotator_id) for lab in labels)
    assert max(pairs.values()) == 1  # no one labeled an item twice, and nothing was redone
    assert len(current) == len(labels) == N_SINGLE + 2 * N_DOUBLE
    assert all(lab.action == "label" for lab in labels)
    assert live == []
    # Every hand-out led to exactly one label: no item was handed to two people for one slot.
    assert sum(len(v) for v in handed.values()) == len(labels)
    for aid, got in handed.items():
        assert len(got) == len(set(got)), f"annotator {aid} was handed an item twice"


@pytest.mark.parametrize("use_queue", [False, True], ids=["cold-start", "queue"])
def test_many_annotators_label_everything_exactly_as_often_as_needed(store, use_queue):
    pid, annotators = _project(store)
    handed = _run_annotators(store, pid, annotators, use_queue=use_queue)
    _assert_final_state(store, pid, annotators, handed)
    # The work was shared, not done by one fast thread.
    assert sum(1 for got in handed.values() if got) >= 2


def _at_once(n: int, work) -> list:
    """Run ``work(i)`` in ``n`` threads released together; their results (errors re-raised)."""
    results: list = [None] * n
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("target", [1, 2])
def test_a_race_for_one_item_never_gives_it_to_more_than_target_annotators(store, target):
    pid = store.project(0)
    with store.db.write() as s:
        add_items(s, get_project(s, project_id=pid), [ItemRecord("only", "the last item")])
        s.execute(Item.__table__.update().values(target=target))
    annotators = store.annotators(pid, N_ANNOTATORS)

    def take(i: int):
        with store.db.write() as s:
            got = next_item(s, get_project(s, project_id=pid), s.get_one(Annotator, annotators[i]))
            return None if got is None else got.item.id

    winners = [i for i, got in enumerate(_at_once(N_ANNOTATORS, take)) if got is not None]
    # Never more than the free slots. Possibly fewer on PostgreSQL: SKIP LOCKED passes over the
    # row another annotator is leasing at that instant, though a second slot is left.
    assert 1 <= len(winners) <= target
    late = [take(i) for i in range(N_ANNOTATORS) if i not in winners]
    assert len(winners) + sum(got is not None for got in late) == target
    assert len({lease.annotator_id for lease in store.leases()}) == target


def test_a_request_retried_concurrently_is_stored_once(store):
    pid = store.project(1)
    (item_id,) = store.item_ids(pid)
    aid = store.annotator(pid, "a")
    store.next(pid, aid)

    def send(_: int):
        with store.db.write() as s:
            result = submit_label(
                s,
                get_project(s, project_id=pid),
                s.get_one(Annotator, aid),
                item_id=item_id,
                value="spam",
                request_id="same-request",
            )
            return result.label.id, result.replayed

    results = _at_once(6, send)
    assert len({label_id for label_id, _ in results}) == 1
    assert sorted(replayed for _, replayed in results) == [False] + [True] * 5
    assert len(store.labels()) == 1
    assert store.item(item_id).n_labels == 1
