"""The annotator's loop against the database: next item (under a lease), label, skip, undo.

Invariants kept here, inside one write transaction each:

- an item is handed out only while its current labels plus other annotators' unexpired leases
  stay below its ``target`` (1, or 2 for overlap items), and never twice to the same annotator;
- every path that leases or labels an item first locks the item's row (``FOR UPDATE`` on
  PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers), then re-checks availability in a
  fresh statement, so two annotators can never both take the last free slot;
- a submit with a ``request_id`` already stored, or repeating the annotator's current answer,
  changes nothing and returns the stored label (a retried or doubled request is harmless);
- history is append-only: relabel and undo add rows that supersede, nothing is deleted.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import delete, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from labelwise.exceptions import ConflictError, InvalidParameterError, NotFoundError
from labelwise.store.fatigue import assess, recent_answers
from labelwise.store.models import (
    Annotator,
    Item,
    Label,
    Lease,
    ModelVersion,
    Project,
    QueueEntry,
    utcnow,
)
from labelwise.store.projects import settings_of
from labelwise.store.versions import COLD_START

__all__ = [
    "Assignment",
    "SubmitResult",
    "database_now",
    "next_item",
    "skip_item",
    "submit_label",
    "undo_last",
]

#: Leases one annotator may hold at once: the item on screen plus prefetched ones.
MAX_HELD = 3
#: Candidates fetched per try before falling back to a random open item.
_CANDIDATES = 24
#: Where a random open item is looked for (unseeded: annotators do not all start at one place).
_FALLBACK_RNG = np.random.default_rng()

FALLBACK_REASON = {
    "kind": "fallback",
    "summary": "the ranked queue is used up: a random open item while the model retrains",
}
COLD_START_REASON = {
    "kind": "cold-start",
    "summary": "random pick: no model yet (fewer than two classes labeled)",
}


@dataclass(frozen=True)
class Assignment:
    """An item handed to an annotator, with why it was chosen."""

    item: Item
    expires_at: Any
    kind: str
    reason: dict[str, Any]
    model_version_id: int | None
    predicted: str | None
    previous: str | None = None
    #: The lease's token: what ``release`` takes to give back this grant and no later one.
    lease: str | None = None


@dataclass(frozen=True)
class SubmitResult:
    label: Label
    item: Item
    replayed: bool
    #: Near-duplicates labeled with the same answer, and those no longer open (left alone).
    grouped: tuple[int, ...] = ()
    group_skipped: tuple[int, ...] = ()


#: Answers read to judge whether an annotator is tired (see labelwise.store.fatigue).
ROUTINE_HISTORY = 200
#: The longest group of near-duplicates one answer may label.
MAX_GROUP = 50


def database_now(session: Session) -> datetime:
    """Now by the database's clock (naive UTC, as every timestamp is stored): leases are granted
    and compared by one clock, so a server whose own clock runs ahead cannot take items still
    leased to others (nor one running behind keep them). SQLite lives on one machine: its
    clock is this process's."""
    if session.get_bind().dialect.name == "postgresql":
        moment = session.scalar(text("SELECT now() AT TIME ZONE 'UTC'"))
        if isinstance(moment, datetime):
            return moment
    return utcnow()


def _check_member(project: Project, annotator: Annotator) -> None:
    """Annotators act only within their own project (the server checks too; this is the floor)."""
    if annotator.project_id != project.id:
        raise NotFoundError(f"no project {project.id}")


def _queued(session: Session, project: Project, item_id: int) -> QueueEntry | None:
    """The item's entry in the served queue, if any: where a label's provenance comes from when
    the annotator's lease is gone."""
    if project.current_version_id is None:
        return None
    return session.scalar(
        select(QueueEntry).where(
            QueueEntry.model_version_id == project.current_version_id,
            QueueEntry.item_id == item_id,
        )
    )


def _reason_of(entry: QueueEntry) -> dict[str, Any]:
    reason = dict(entry.reason or {})
    reason.setdefault("kind", entry.kind)
    reason["rank"] = entry.rank
    return reason


def _renew(session: Session, project: Project, annotator: Annotator, now: Any) -> None:
    """Answering shows the annotator is at work: their prefetched items stay theirs.

    Leases that another request of the same annotator has locked (an answer or a release sent
    at the same moment) are left to that request, which renews them itself. Waiting for them
    instead deadlocked on PostgreSQL: two answers sent at once each hold the lease they answer
    and wait for the other's.
    """
    ids = session.scalars(
        select(Lease.id)
        .where(Lease.annotator_id == annotator.id, Lease.expires_at > now)
        .with_for_update(skip_locked=True)
    ).all()
    if ids:
        session.execute(
            update(Lease)
            .where(Lease.id.in_(ids))
            .values(expires_at=now + timedelta(seconds=settings_of(project).lease_seconds))
        )


def _give_back(session: Session, lease: Lease) -> None:
    """Delete a lease, which another request of the same annotator may have deleted already
    (two "next" at once both giving back the oldest; a release while an answer is saved):
    finding it gone is fine, where the ORM's own delete would warn that no row matched."""
    session.execute(delete(Lease).where(Lease.id == lease.id))
    if lease in session:
        session.expunge(lease)


def _lock_item(session: Session, project: Project, item_id: int, *, wait: bool) -> Item | None:
    stmt = select(Item).where(Item.id == item_id, Item.project_id == project.id)
    stmt = stmt.with_for_update() if wait else stmt.with_for_update(skip_locked=True)
    return session.scalar(stmt.execution_options(populate_existing=True))


def _current(session: Session, item_id: int, annotator_id: int) -> Label | None:
    return session.scalar(
        select(Label).where(
            Label.item_id == item_id,
            Label.annotator_id == annotator_id,
            Label.is_current.is_(True),
            Label.action.in_(("label", "skip")),
        )
    )


def _free_slots(session: Session, item: Item, annotator: Annotator, now: Any) -> int:
    """Labels the item still needs, minus other annotators' unexpired leases."""
    others = session.scalar(
        select(func.count(Lease.id)).where(
            Lease.item_id == item.id, Lease.annotator_id != annotator.id, Lease.expires_at > now
        )
    )
    return item.target - item.n_labels - int(others or 0)


def _is_available(session: Session, item: Item, annotator: Annotator, now: Any) -> bool:
    if item.done or _current(session, item.id, annotator.id) is not None:
        return False
    return _free_slots(session, item, annotator, now) > 0


def _held(session: Session, annotator: Annotator, now: Any) -> list[Lease]:
    return list(
        session.scalars(
            select(Lease)
            .where(Lease.annotator_id == annotator.id, Lease.expires_at > now)
            .order_by(Lease.created_at, Lease.id)
        )
    )


def _assignment(session: Session, lease: Lease, previous: str | None = None) -> Assignment:
    item = session.get(Item, lease.item_id)
    assert item is not None  # the lease's foreign key guarantees it
    reason = dict(lease.reason or {})
    return Assignment(
        item=item,
        expires_at=lease.expires_at,
        kind=str(reason.get("kind", "strategy")),
        reason=reason,
        model_version_id=lease.model_version_id,
        predicted=lease.predicted,
        previous=previous,
        lease=lease.token,
    )


def _lease(
    session: Session,
    project: Project,
    annotator: Annotator,
    item: Item,
    *,
    now: Any,
    reason: dict[str, Any],
    model_version_id: int | None,
    predicted: str | None,
) -> Lease:
    expires = now + timedelta(seconds=settings_of(project).lease_seconds)
    lease = session.scalar(
        select(Lease).where(Lease.item_id == item.id, Lease.annotator_id == annotator.id)
    )
    if lease is None:
        lease = Lease(project_id=project.id, item_id=item.id, annotator_id=annotator.id)
        session.add(lease)
    lease.expires_at = expires
    lease.created_at = now
    lease.token = secrets.token_hex(16)
    lease.reason = reason
    lease.model_version_id = model_version_id
    lease.predicted = predicted
    session.flush()
    return lease


def _routine_turn(session: Session, annotator: Annotator, now: Any) -> bool:
    """Whether a tired annotator's next item should be a routine one: every other item."""
    answers = recent_answers(session, annotator.id, limit=ROUTINE_HISTORY)
    last_was_routine = bool(answers) and answers[-1].reason_kind == "routine"
    return not last_was_routine and assess(answers, now).tired


def _queue_candidates(
    session: Session,
    project: Project,
    annotator: Annotator,
    exclude: set[int],
    now: Any,
    *,
    kind: str | None = None,
) -> list[QueueEntry]:
    if project.current_version_id is None:
        return []
    mine = exists().where(
        Label.item_id == QueueEntry.item_id,
        Label.annotator_id == annotator.id,
        Label.is_current.is_(True),
    )
    others_leases = (
        select(func.count(Lease.id))
        .where(
            Lease.item_id == QueueEntry.item_id,
            Lease.annotator_id != annotator.id,
            Lease.expires_at > now,
        )
        .scalar_subquery()
    )
    my_lease = exists().where(
        Lease.item_id == QueueEntry.item_id,
        Lease.annotator_id == annotator.id,
        Lease.expires_at > now,
    )
    stmt = (
        select(QueueEntry)
        .join(Item, Item.id == QueueEntry.item_id)
        .where(
            QueueEntry.project_id == project.id,
            QueueEntry.model_version_id == project.current_version_id,
            Item.done.is_(False),
            ~mine,
            ~my_lease,
            Item.n_labels + others_leases < Item.target,
        )
        .order_by(QueueEntry.rank)
        .limit(_CANDIDATES + len(exclude))
    )
    if kind is not None:
        stmt = stmt.where(QueueEntry.kind == kind)
    return [q for q in session.scalars(stmt) if q.item_id not in exclude]


def _random_candidates(
    session: Session, project: Project, annotator: Annotator, exclude: set[int], now: Any
) -> list[Item]:
    max_row = session.scalar(select(func.max(Item.row)).where(Item.project_id == project.id))
    if max_row is None:
        return []
    start = int(_FALLBACK_RNG.integers(0, max_row + 1))
    mine = exists().where(
        Label.item_id == Item.id, Label.annotator_id == annotator.id, Label.is_current.is_(True)
    )
    # Items whose free slots others' leases fill are left out here, not only after locking:
    # otherwise a run of leased rows longer than _CANDIDATES hides the open items behind it.
    others_leases = (
        select(func.count(Lease.id))
        .where(
            Lease.item_id == Item.id,
            Lease.annotator_id != annotator.id,
            Lease.expires_at > now,
        )
        .scalar_subquery()
    )
    base = select(Item).where(
        Item.project_id == project.id,
        Item.done.is_(False),
        ~mine,
        Item.n_labels + others_leases < Item.target,
    )
    found: list[Item] = []
    for cond in (Item.row >= start, Item.row < start):
        rows = session.scalars(
            base.where(cond).order_by(Item.row).limit(_CANDIDATES + len(exclude))
        ).all()
        found.extend(i for i in rows if i.id not in exclude)
        if len(found) >= _CANDIDATES:
            break
    return found


def next_item(
    session: Session,
    project: Project,
    annotator: Annotator,
    *,
    exclude: Collection[int] = frozenset(),
    answering: Collection[int] = frozenset(),
) -> Assignment | None:
    """The item this annotator should see next, leased to them; None when nothing is open.

    An unexpired lease the annotator already holds (and is not in ``exclude``: the items the
    page already shows or prefetched) comes back first, so a reload or a crash loses nothing.
    Otherwise the best-ranked available item of the current queue; when the queue is used up,
    a random open item, so the annotator never waits for the model.

    An annotator holds at most :data:`MAX_HELD` items besides those in ``answering`` (items
    whose answers are on their way: never handed out again, and never given back to make
    room, where giving one back could let another annotator fill it first and the answer be
    refused); asking for more gives the oldest of the others back.
    """
    _check_member(project, annotator)
    now = database_now(session)
    answering = set(answering)
    exclude = set(exclude) | answering
    held = _held(session, annotator, now)
    for lease in held:
        if lease.item_id not in exclude:
            return _assignment(session, lease)
    open_ = [lease for lease in held if lease.item_id not in answering]
    if len(open_) >= MAX_HELD:
        # Too many prefetched items: give the oldest back before taking another.
        _give_back(session, open_[0])

    candidates = _queue_candidates(session, project, annotator, exclude, now)
    if candidates and _routine_turn(session, annotator, now):
        # A tired annotator gets every other item from the confident ones: easier, and each
        # one also tells whether attention is back.
        routine = _queue_candidates(session, project, annotator, exclude, now, kind="routine")
        candidates = routine + candidates
    for entry in candidates:
        item = _lock_item(session, project, entry.item_id, wait=False)
        if item is None or not _is_available(session, item, annotator, now):
            continue
        reason = _reason_of(entry)
        lease = _lease(
            session,
            project,
            annotator,
            item,
            now=now,
            reason=reason,
            model_version_id=entry.model_version_id,
            predicted=entry.predicted,
        )
        return _assignment(session, lease)

    served = (
        session.get(ModelVersion, project.current_version_id)
        if project.current_version_id is not None
        else None
    )
    fallback = FALLBACK_REASON if served and served.status != COLD_START else COLD_START_REASON
    for candidate in _random_candidates(session, project, annotator, exclude, now):
        item = _lock_item(session, project, candidate.id, wait=False)
        if item is None or not _is_available(session, item, annotator, now):
            continue
        lease = _lease(
            session,
            project,
            annotator,
            item,
            now=now,
            reason=dict(fallback),
            model_version_id=project.current_version_id,
            predicted=None,
        )
        return _assignment(session, lease)
    return None


def _recount(session: Session, item: Item) -> None:
    item.n_labels = int(
        session.scalar(
            select(func.count(Label.id)).where(
                Label.item_id == item.id, Label.action == "label", Label.is_current.is_(True)
            )
        )
        or 0
    )
    decided = session.scalar(
        select(Label.id).where(
            Label.item_id == item.id, Label.action == "adjudicate", Label.is_current.is_(True)
        )
    )
    # An admin's decision closes the item whatever its answers do later.
    item.done = item.n_labels >= item.target or decided is not None


def _replay(
    session: Session,
    annotator: Annotator,
    request_id: str | None,
    item_id: int,
    action: str,
    value: str | None,
) -> Label | None:
    """The label a repeated request already stored; a request id reused for another answer is
    refused rather than silently answered with the old one."""
    if not request_id:
        return None
    stored = session.scalar(
        select(Label).where(Label.annotator_id == annotator.id, Label.request_id == request_id)
    )
    if stored is not None and (
        stored.item_id != item_id or stored.action != action or stored.value != value
    ):
        raise ConflictError(
            f"request id {request_id!r} was already used for another answer; use a new one"
        )
    return stored


def _check_request_id(request_id: str | None) -> None:
    if request_id is not None and (not request_id or len(request_id) > 64):
        raise InvalidParameterError("request_id must be 1 to 64 characters")
    # PostgreSQL text cannot hold NUL: such an id would fail its query (a 500), not be refused.
    if request_id is not None and not request_id.isprintable():
        raise InvalidParameterError(
            f"request_id {request_id!r} holds a control character; use printable characters"
        )


def _check_duration(duration_ms: int | None) -> int | None:
    if duration_ms is None:
        return None
    if not isinstance(duration_ms, int) or isinstance(duration_ms, bool) or duration_ms < 0:
        raise InvalidParameterError(
            f"duration_ms must be a non-negative integer, got {duration_ms!r}"
        )
    return min(duration_ms, 24 * 3600 * 1000)


def submit_label(
    session: Session,
    project: Project,
    annotator: Annotator,
    *,
    item_id: int,
    value: str,
    duration_ms: int | None = None,
    request_id: str | None = None,
    group: Sequence[int] = (),
) -> SubmitResult:
    """Record ``annotator``'s answer ``value`` for an item.

    ``group``: near-duplicates of the item (from the reason it was queued with) that the
    annotator confirmed should get the same answer. Those still open get it in the same
    transaction (reason ``group``, no time recorded); the others are left alone and reported.
    Undoing the answer takes the whole group back.

    Raises
    ------
    NotFoundError
        No such item in this project.
    InvalidParameterError
        ``value`` is not one of the project's labels, or ``group`` names an item that is not a
        near-duplicate offered with this one.
    ConflictError
        The item already has all the labels it needs from others (the lease expired and the
        item was done meanwhile).
    """
    _check_member(project, annotator)
    _check_request_id(request_id)
    duration = _check_duration(duration_ms)
    if value not in project.label_set:
        raise InvalidParameterError(
            f"{value!r} is not a label of this project; expected one of "
            f"{', '.join(project.label_set)}"
        )
    item = _lock_item(session, project, item_id, wait=True)
    if item is None:
        raise NotFoundError(f"no item {item_id} in this project")
    # Looked up under the item's lock: the first attempt of a retried request may have been
    # stored while this one waited, and even undone since; it must be found, not stored again.
    replay = _replay(session, annotator, request_id, item_id, "label", value)
    if replay is not None:
        return SubmitResult(replay, item, replayed=True)
    now = database_now(session)
    current = _current(session, item.id, annotator.id)
    if current is not None and current.action == "label" and current.value == value:
        session.execute(
            delete(Lease).where(Lease.item_id == item.id, Lease.annotator_id == annotator.id)
        )
        return SubmitResult(current, item, replayed=True)
    lease = session.scalar(
        select(Lease).where(Lease.item_id == item.id, Lease.annotator_id == annotator.id)
    )
    relabel = current is not None and current.action == "label"
    group_ids = _check_group(lease, item.id, group)
    if not relabel and (item.done or _free_slots(session, item, annotator, now) <= 0):
        raise ConflictError(
            f"item {item.id} already has the {item.target} label(s) it needs, or others are on "
            "it; it was handed to someone else after your lease expired"
        )
    # Provenance (which model queued the item, why, what it predicted): the lease, else the
    # served queue, else the answer being replaced.
    source: Any = lease
    if source is None and not relabel:
        source = _queued(session, project, item.id)
    if source is None:
        source = current
    if lease is not None:
        reason_kind: str | None = str((lease.reason or {}).get("kind", "strategy"))
    elif isinstance(source, QueueEntry):
        reason_kind = source.kind
    else:
        reason_kind = getattr(current, "reason_kind", None)
    label = Label(
        project_id=project.id,
        item_id=item.id,
        annotator_id=annotator.id,
        action="label",
        value=value,
        duration_ms=duration,
        model_version_id=getattr(source, "model_version_id", None),
        reason_kind=reason_kind,
        predicted=getattr(source, "predicted", None),
        request_id=request_id,
        supersedes_id=current.id if current is not None else None,
        is_current=True,
        created_at=now,
    )
    if current is not None:
        current.is_current = False
    # The group first, so the item's own answer is the latest: undo finds it, then the group.
    grouped, skipped = _label_group(session, project, annotator, group_ids, label, now)
    session.add(label)
    session.flush()
    _recount(session, item)
    if lease is not None:
        _give_back(session, lease)
    _renew(session, project, annotator, now)
    session.flush()
    return SubmitResult(label, item, False, grouped, skipped)


def _check_group(lease: Lease | None, item_id: int, group: Sequence[int]) -> list[int]:
    wanted = list(dict.fromkeys(int(i) for i in group))
    if not wanted:
        return []
    if len(wanted) > MAX_GROUP:
        raise InvalidParameterError(f"a group holds at most {MAX_GROUP} items, got {len(wanted)}")
    offered = {
        int(d["item_id"])
        for d in ((lease.reason or {}).get("duplicates") or [] if lease is not None else [])
    }
    unknown = [i for i in wanted if i not in offered or i == item_id]
    if unknown:
        raise InvalidParameterError(
            f"item(s) {', '.join(map(str, unknown))} were not offered as near-duplicates of "
            f"item {item_id}; label them one by one"
        )
    return wanted


def _label_group(
    session: Session,
    project: Project,
    annotator: Annotator,
    item_ids: list[int],
    source: Label,
    now: Any,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    grouped: list[int] = []
    skipped: list[int] = []
    for item_id in item_ids:
        # A member someone else is handing out or answering right now is left alone. Waiting
        # for it deadlocked on PostgreSQL when that someone was answering it with this item
        # as its own near-duplicate: each held its item and waited for the other's.
        item = _lock_item(session, project, item_id, wait=False)
        if item is None or not _is_available(session, item, annotator, now):
            skipped.append(item_id)
            continue
        session.add(
            Label(
                project_id=project.id,
                item_id=item.id,
                annotator_id=annotator.id,
                action="label",
                value=source.value,
                duration_ms=None,
                model_version_id=source.model_version_id,
                reason_kind="group",
                predicted=None,
                is_current=True,
                created_at=now,
            )
        )
        session.flush()
        _recount(session, item)
        session.execute(
            delete(Lease).where(Lease.item_id == item.id, Lease.annotator_id == annotator.id)
        )
        grouped.append(item_id)
    return tuple(grouped), tuple(skipped)


def skip_item(
    session: Session,
    project: Project,
    annotator: Annotator,
    *,
    item_id: int,
    duration_ms: int | None = None,
    request_id: str | None = None,
) -> SubmitResult:
    """Pass on an item the annotator holds: it returns to the pool for others and is not offered
    to this annotator again (until the skip is undone). Without the item's lease:
    :class:`ConflictError`."""
    _check_member(project, annotator)
    _check_request_id(request_id)
    duration = _check_duration(duration_ms)
    item = _lock_item(session, project, item_id, wait=True)
    if item is None:
        raise NotFoundError(f"no item {item_id} in this project")
    replay = _replay(session, annotator, request_id, item_id, "skip", None)  # as in submit_label
    if replay is not None:
        return SubmitResult(replay, item, replayed=True)
    current = _current(session, item.id, annotator.id)
    if current is not None:
        if current.action == "skip":
            return SubmitResult(current, item, replayed=True)
        raise ConflictError(f"item {item.id} is already labeled by you; undo it first")
    lease = session.scalar(
        select(Lease).where(Lease.item_id == item.id, Lease.annotator_id == annotator.id)
    )
    if lease is None:
        # A skip records that the annotator saw the item; without a lease they never were
        # handed it (and a skip would let them read any item afterwards, as one they answered).
        raise ConflictError(
            f"you do not hold item {item.id}: only an item handed to you can be skipped (your "
            "lease may have expired)"
        )
    label = Label(
        project_id=project.id,
        item_id=item.id,
        annotator_id=annotator.id,
        action="skip",
        value=None,
        duration_ms=duration,
        model_version_id=lease.model_version_id,
        reason_kind=str((lease.reason or {}).get("kind", "strategy")),
        predicted=lease.predicted,
        request_id=request_id,
        is_current=True,
        created_at=database_now(session),
    )
    session.add(label)
    _give_back(session, lease)
    _renew(session, project, annotator, label.created_at)
    session.flush()
    return SubmitResult(label, item, replayed=False)


def undo_last(
    session: Session, project: Project, annotator: Annotator, *, request_id: str | None = None
) -> Assignment:
    """Take back the annotator's latest standing label or skip; the item is leased back to them.

    The undone row stays in the history, superseded by an ``undo`` row. Undoing a relabel
    restores the answer it replaced. The assignment carries the undone answer as ``previous``
    and the reason the item was first queued (from the served queue, when it is still there).

    ``request_id``: an undo repeated with the same id (a retry after a lost answer) takes
    nothing more back; it returns the item the first one gave back, while that is still
    leased. Without it, a retried undo would take back one more answer. The annotator's row is
    locked first, so undos sent at once by one annotator run one after the other.
    """
    _check_member(project, annotator)
    _check_request_id(request_id)
    session.execute(select(Annotator.id).where(Annotator.id == annotator.id).with_for_update())
    if request_id:
        done = session.scalar(
            select(Label).where(Label.annotator_id == annotator.id, Label.request_id == request_id)
        )
        if done is not None:
            return _undo_replay(session, annotator, done, request_id)
    last = session.scalar(
        select(Label)
        .where(
            Label.project_id == project.id,
            Label.annotator_id == annotator.id,
            Label.is_current.is_(True),
            Label.action.in_(("label", "skip")),
        )
        .order_by(Label.id.desc())
        .limit(1)
    )
    if last is None:
        raise ConflictError("nothing to undo")
    item = _lock_item(session, project, last.item_id, wait=True)
    assert item is not None
    now = database_now(session)
    # A skip holds no slot: others may have filled the item since. Leasing it back would hand
    # out a slot it no longer has (the label would then conflict), so the skip stays.
    if last.action == "skip" and (item.done or _free_slots(session, item, annotator, now) <= 0):
        raise ConflictError(
            f"cannot undo your skip of item {item.id}: others have finished it or are on it"
        )
    _take_back(session, last, now, request_id=request_id)
    if last.reason_kind != "group":
        _undo_group(session, project, annotator, last, now)
    replaced = session.get(Label, last.supersedes_id) if last.supersedes_id else None
    if (
        replaced is not None
        and replaced.annotator_id == annotator.id
        and replaced.action in ("label", "skip")
    ):
        replaced.is_current = True
    session.flush()
    _recount(session, item)
    entry = _queued(session, project, item.id)
    if entry is not None and entry.model_version_id == last.model_version_id:
        reason = _reason_of(entry)
    else:
        reason = {"kind": last.reason_kind or "strategy", "summary": "back after undo"}
    lease = _lease(
        session,
        project,
        annotator,
        item,
        now=now,
        reason=reason,
        model_version_id=last.model_version_id,
        predicted=last.predicted,
    )
    return _assignment(session, lease, previous=last.value)


def _take_back(session: Session, answer: Label, now: Any, request_id: str | None = None) -> None:
    """Record the undo of ``answer`` (an ``undo`` row superseding it, which keeps its
    provenance) and take it out of the standing answers."""
    session.add(
        Label(
            project_id=answer.project_id,
            item_id=answer.item_id,
            annotator_id=answer.annotator_id,
            action="undo",
            value=None,
            model_version_id=answer.model_version_id,
            reason_kind=answer.reason_kind,
            predicted=answer.predicted,
            request_id=request_id,
            supersedes_id=answer.id,
            is_current=False,
            created_at=now,
        )
    )
    answer.is_current = False


def _undo_replay(
    session: Session, annotator: Annotator, done: Label, request_id: str
) -> Assignment:
    """What a repeated undo answers: the item the first one leased back, if still held."""
    if done.action != "undo":
        raise ConflictError(
            f"request id {request_id!r} was already used for another answer; use a new one"
        )
    undone = session.get(Label, done.supersedes_id) if done.supersedes_id else None
    lease = session.scalar(
        select(Lease).where(Lease.item_id == done.item_id, Lease.annotator_id == annotator.id)
    )
    if lease is None or lease.expires_at <= database_now(session):
        raise ConflictError(
            f"undo {request_id!r} was already done, and item {done.item_id} is no longer yours "
            "to answer again"
        )
    return _assignment(session, lease, previous=undone.value if undone is not None else None)


def _undo_group(
    session: Session, project: Project, annotator: Annotator, last: Label, now: Any
) -> None:
    """The near-duplicates labeled along with ``last`` (same answer, same moment) go back too."""
    members = session.scalars(
        select(Label).where(
            Label.project_id == project.id,
            Label.annotator_id == annotator.id,
            Label.is_current.is_(True),
            Label.reason_kind == "group",
            Label.created_at == last.created_at,
        )
    ).all()
    for member in members:
        item = _lock_item(session, project, member.item_id, wait=True)
        assert item is not None
        _take_back(session, member, now)
        session.flush()
        _recount(session, item)


def release(
    session: Session,
    annotator: Annotator,
    *,
    leases: Collection[str] = (),
    items: Collection[int] = (),
) -> int:
    """Give leases back (the page closed): the items return to the pool at once.

    ``leases`` names grants by their tokens (``Assignment.lease``): only those end. A release
    can arrive late (a retry after a lost answer, a request sent as the page unloads) when the
    same item has been leased to the annotator again since; by token it leaves the new grant
    alone, where by item it would end it and hand the item on screen to someone else.
    ``items`` ends whatever lease the annotator holds on those items, with that risk.
    """
    conditions = []
    if leases:
        conditions.append(Lease.token.in_(sorted(set(leases))))
    if items:
        conditions.append(Lease.item_id.in_(sorted(set(items))))
    if not conditions:
        return 0
    result = session.execute(
        delete(Lease).where(Lease.annotator_id == annotator.id, or_(*conditions))
    )
    return int(getattr(result, "rowcount", 0) or 0)
