"""Handing items to annotators under leases: next item, release, and the one way a lease
is granted.

An item is handed out only while its current labels plus other annotators' unexpired leases
stay below its ``target`` (1, or 2 for overlap items), and never twice to the same annotator.
Every path that leases an item first locks the item's row (``FOR UPDATE`` on PostgreSQL;
SQLite's ``BEGIN IMMEDIATE`` serialises writers), then re-checks availability in a fresh
statement, so two annotators can never both take the last free slot. A lease carries the
item's :class:`~labelwise.strategies.reasons.Reason` (why it was chosen), the model version that
queued it and its prediction: what the answer records as its provenance
(:mod:`labelwise.store.answers`).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Select, delete, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from labelwise.exceptions import NotFoundError
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
from labelwise.strategies.reasons import WORDING, Kind, Reason

__all__ = [
    "MAX_HELD",
    "Assignment",
    "database_now",
    "fallback_reason",
    "next_item",
    "queued_reason",
    "release",
]

#: Leases one annotator may hold at once: the item on screen plus prefetched ones.
MAX_HELD = 3
#: Candidates fetched per try before falling back to a random open item.
_CANDIDATES = 24
#: Where a random open item is looked for (unseeded: annotators do not all start at one place).
_FALLBACK_RNG = np.random.default_rng()
#: Answers read to judge whether an annotator is tired (see labelwise.store.fatigue).
ROUTINE_HISTORY = 200


@dataclass(frozen=True)
class Assignment:
    """An item handed to an annotator, with why it was chosen.

    Attributes
    ----------
    item : Item
    expires_at : datetime
        When the lease ends (by the database's clock) unless the annotator answers or renews.
    kind : str
        The reason's kind (``reason.kind``), as labels record it.
    reason : Reason
        Why the item was chosen: what the "why this item" panel shows, and what the answer's
        reveal shows afterwards.
    model_version_id : int or None
        The version whose queue chose it (the served one for a random fallback).
    predicted : str or None
        What that version's model predicted for it.
    previous : str or None
        After an undo: the answer taken back.
    lease : str or None
        The lease's token: what ``release`` takes to give back this grant and no later one.
    """

    item: Item
    expires_at: Any
    kind: str
    reason: Reason
    model_version_id: int | None
    predicted: str | None
    previous: str | None = None
    lease: str | None = None


@dataclass(frozen=True)
class _Offer:
    """An item that may be leased, with what its lease carries."""

    item_id: int
    reason: Reason
    model_version_id: int | None
    predicted: str | None


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


def queued_reason(entry: QueueEntry) -> Reason:
    """The reason a queue entry is leased with: the one stored with the queue (of any
    release), at the entry's place in the queue."""
    return Reason.from_dict(entry.reason, kind=entry.kind).with_rank(entry.rank)


def fallback_reason(session: Session, project: Project) -> Reason:
    """The reason of a random open item handed out when the queue is used up: a fallback
    while a model is served, a cold-start pick before the first."""
    served = (
        session.get(ModelVersion, project.current_version_id)
        if project.current_version_id is not None
        else None
    )
    if served and served.status != COLD_START:
        return Reason.of(Kind.FALLBACK)
    return Reason(Kind.COLD_START, summary=WORDING[Kind.COLD_START].neutral)


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


def _others_leases(item_id: Any, annotator: Annotator, now: Any) -> Select[int]:
    """Counts the unexpired leases other annotators hold on ``item_id``: an id, or the column
    of an outer query (as a scalar subquery)."""
    return select(func.count(Lease.id)).where(
        Lease.item_id == item_id, Lease.annotator_id != annotator.id, Lease.expires_at > now
    )


def _free_slots(session: Session, item: Item, annotator: Annotator, now: Any) -> int:
    """Labels the item still needs, minus other annotators' unexpired leases."""
    others = session.scalar(_others_leases(item.id, annotator, now))
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


def stored_reason(lease: Lease) -> Reason:
    """The reason a lease was granted with (as stored, by any release)."""
    return Reason.from_dict(lease.reason)


def _assignment(session: Session, lease: Lease, previous: str | None = None) -> Assignment:
    item = session.get(Item, lease.item_id)
    assert item is not None  # the lease's foreign key guarantees it
    reason = stored_reason(lease)
    return Assignment(
        item=item,
        expires_at=lease.expires_at,
        kind=reason.type.value,
        reason=reason,
        model_version_id=lease.model_version_id,
        predicted=lease.predicted,
        previous=previous,
        lease=lease.token,
    )


def _new_token() -> str:
    return secrets.token_hex(16)


def grant(
    session: Session,
    project: Project,
    annotator: Annotator,
    item: Item,
    *,
    now: Any,
    reason: Reason,
    model_version_id: int | None,
    predicted: str | None,
    previous: str | None = None,
) -> Assignment:
    """Lease ``item`` (locked by the caller, and available to ``annotator``) for the project's
    lease time from ``now``, with a fresh token: the one place an item is leased (one the
    annotator still holds is handed again by :func:`_grant_again`). An earlier lease of the
    annotator on the item is renewed in place."""
    lease = session.scalar(
        select(Lease).where(Lease.item_id == item.id, Lease.annotator_id == annotator.id)
    )
    if lease is None:
        lease = Lease(project_id=project.id, item_id=item.id, annotator_id=annotator.id)
        session.add(lease)
    lease.expires_at = now + timedelta(seconds=settings_of(project).lease_seconds)
    lease.created_at = now
    lease.token = _new_token()
    lease.reason = reason.to_dict()
    lease.model_version_id = model_version_id
    lease.predicted = predicted
    session.flush()
    return _assignment(session, lease, previous)


def _grant_again(session: Session, project: Project, lease: Lease, now: Any) -> Assignment | None:
    """A lease the annotator holds, handed to them again (a reloaded page, a retried request)
    under a fresh token and a renewed lease time, with its reason; None when another request
    of the annotator (an answer, a release) ended it meanwhile.

    The page that asked before may still send a release naming the old token (a reload's
    unloading page, whose release can arrive after this): it must end nothing, where with the
    same token it ended the lease of the item now on screen, and the annotator's own item was
    gone from under them (its image refused). One conditional update, not the ORM's flush: a
    lease deleted by a concurrent answer is passed over, not an error."""
    renewed = session.execute(
        update(Lease)
        .where(Lease.id == lease.id)
        .values(
            token=_new_token(),
            created_at=now,
            expires_at=now + timedelta(seconds=settings_of(project).lease_seconds),
        )
        .execution_options(synchronize_session="evaluate")  # the held object: no reload
    )
    if not getattr(renewed, "rowcount", 0):
        session.expunge(lease)
        return None
    return _assignment(session, lease)


def _grant_first(
    session: Session, project: Project, annotator: Annotator, now: Any, offers: Iterable[_Offer]
) -> Assignment | None:
    """The first of ``offers`` still available once its row is locked, leased; rows others
    are locking right now are passed over, not waited for."""
    for offer in offers:
        item = _lock_item(session, project, offer.item_id, wait=False)
        if item is None or not _is_available(session, item, annotator, now):
            continue
        return grant(
            session,
            project,
            annotator,
            item,
            now=now,
            reason=offer.reason,
            model_version_id=offer.model_version_id,
            predicted=offer.predicted,
        )
    return None


def _routine_turn(session: Session, annotator: Annotator, now: Any) -> bool:
    """Whether a tired annotator's next item should be a routine one: every other item."""
    answers = recent_answers(session, annotator.id, limit=ROUTINE_HISTORY)
    last_was_routine = bool(answers) and answers[-1].reason_kind == Kind.ROUTINE
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
    others_leases = _others_leases(QueueEntry.item_id, annotator, now).scalar_subquery()
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
    others_leases = _others_leases(Item.id, annotator, now).scalar_subquery()
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
    page already shows or prefetched) comes back first, so a reload or a crash loses nothing:
    granted again, under a fresh token.
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
    for lease in [lease for lease in held if lease.item_id not in exclude]:
        again = _grant_again(session, project, lease, now)
        if again is not None:
            return again
        held.remove(lease)
    open_ = [lease for lease in held if lease.item_id not in answering]
    if len(open_) >= MAX_HELD:
        # Too many prefetched items: give the oldest back before taking another.
        _give_back(session, open_[0])

    candidates = _queue_candidates(session, project, annotator, exclude, now)
    if candidates and _routine_turn(session, annotator, now):
        # A tired annotator gets every other item from the confident ones: easier, and each
        # one also tells whether attention is back.
        routine = _queue_candidates(
            session, project, annotator, exclude, now, kind=Kind.ROUTINE.value
        )
        candidates = routine + candidates
    queued = (
        _Offer(entry.item_id, queued_reason(entry), entry.model_version_id, entry.predicted)
        for entry in candidates
    )
    found = _grant_first(session, project, annotator, now, queued)
    if found is not None:
        return found
    fallback = fallback_reason(session, project)
    randoms = (
        _Offer(candidate.id, fallback, project.current_version_id, None)
        for candidate in _random_candidates(session, project, annotator, exclude, now)
    )
    return _grant_first(session, project, annotator, now, randoms)


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
