"""Annotators' answers: label and skip, each in one write transaction (undo:
:mod:`labelwise.store.undo`).

- Every path that labels an item first locks the item's row (``FOR UPDATE`` on PostgreSQL;
  SQLite's ``BEGIN IMMEDIATE`` serialises writers), then re-checks that the item still has a
  free slot, so two annotators can never both take its last one;
- a submit with a ``request_id`` already stored, or repeating the annotator's current answer,
  changes nothing and returns the stored label (a retried or doubled request is harmless);
- an answer records where its item came from (the model version that queued it, why, what it
  predicted): from the annotator's lease (:mod:`labelwise.store.leasing`), else the served
  queue, else the answer it replaces;
- history is append-only: relabel and undo add rows that supersede, nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from labelwise.exceptions import ConflictError, InvalidParameterError, NotFoundError
from labelwise.store.leasing import (
    _check_member,
    _current,
    _free_slots,
    _give_back,
    _is_available,
    _lock_item,
    _queued,
    _renew,
    database_now,
    stored_reason,
)
from labelwise.store.models import Annotator, Item, Label, Lease, Project, QueueEntry
from labelwise.store.projects import check_label
from labelwise.strategies.reasons import Kind, Reason

__all__ = ["MAX_GROUP", "SubmitResult", "skip_item", "submit_label"]

#: The longest group of near-duplicates one answer may label.
MAX_GROUP = 50


@dataclass(frozen=True)
class SubmitResult:
    """What an answer (or a skip) stored.

    Attributes
    ----------
    label : Label
        The stored answer: the new one, or the one a repeated request already stored.
    item : Item
        The item answered, with its counts after the answer.
    replayed : bool
        Whether the request repeated one already stored (nothing changed).
    reason : Reason or None
        Why the item was handed out: the reason of the annotator's lease on it when the answer
        came (None without one), what the reveal after the answer shows.
    grouped, group_skipped : tuple of int
        Near-duplicates labeled with the same answer, and those no longer open (left alone).
    """

    label: Label
    item: Item
    replayed: bool
    reason: Reason | None = None
    grouped: tuple[int, ...] = ()
    group_skipped: tuple[int, ...] = ()


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


def _open(
    session: Session,
    project: Project,
    annotator: Annotator,
    item_id: int,
    action: str,
    value: str | None,
    request_id: str | None,
    duration_ms: int | None,
) -> tuple[Item, int | None]:
    """What every answer checks first, then its item, locked: (the item, the time to store)."""
    _check_member(project, annotator)
    _check_request_id(request_id)
    duration = _check_duration(duration_ms)
    if action == "label":
        check_label(project, value)
    item = _lock_item(session, project, item_id, wait=True)
    if item is None:
        raise NotFoundError(f"no item {item_id} in this project")
    return item, duration


def _new_answer(
    item: Item,
    annotator: Annotator,
    action: str,
    value: str | None,
    now: Any,
    *,
    model_version_id: int | None,
    reason_kind: str | None,
    predicted: str | None,
    duration_ms: int | None = None,
    request_id: str | None = None,
    supersedes_id: int | None = None,
) -> Label:
    """A standing answer of ``annotator`` on ``item`` at ``now``, with where the item came from
    (not yet in the session)."""
    return Label(
        project_id=item.project_id,
        item_id=item.id,
        annotator_id=annotator.id,
        action=action,
        value=value,
        duration_ms=duration_ms,
        model_version_id=model_version_id,
        reason_kind=reason_kind,
        predicted=predicted,
        request_id=request_id,
        supersedes_id=supersedes_id,
        is_current=True,
        created_at=now,
    )


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
    item, duration = _open(
        session, project, annotator, item_id, "label", value, request_id, duration_ms
    )
    lease = session.scalar(
        select(Lease).where(Lease.item_id == item.id, Lease.annotator_id == annotator.id)
    )
    reason = stored_reason(lease) if lease is not None else None
    # Looked up under the item's lock: the first attempt of a retried request may have been
    # stored while this one waited, and even undone since; it must be found, not stored again.
    replay = _replay(session, annotator, request_id, item_id, "label", value)
    if replay is not None:
        return SubmitResult(replay, item, replayed=True, reason=reason)
    now = database_now(session)
    current = _current(session, item.id, annotator.id)
    if current is not None and current.action == "label" and current.value == value:
        session.execute(
            delete(Lease).where(Lease.item_id == item.id, Lease.annotator_id == annotator.id)
        )
        return SubmitResult(current, item, replayed=True, reason=reason)
    relabel = current is not None and current.action == "label"
    group_ids = _check_group(reason, item.id, group)
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
    if reason is not None:
        reason_kind: str | None = reason.type.value
    elif isinstance(source, QueueEntry):
        reason_kind = source.kind
    else:
        reason_kind = getattr(current, "reason_kind", None)
    label = _new_answer(
        item,
        annotator,
        "label",
        value,
        now,
        model_version_id=getattr(source, "model_version_id", None),
        reason_kind=reason_kind,
        predicted=getattr(source, "predicted", None),
        duration_ms=duration,
        request_id=request_id,
        supersedes_id=current.id if current is not None else None,
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
    return SubmitResult(label, item, False, reason, grouped, skipped)


def _check_group(reason: Reason | None, item_id: int, group: Sequence[int]) -> list[int]:
    wanted = list(dict.fromkeys(int(i) for i in group))
    if not wanted:
        return []
    if len(wanted) > MAX_GROUP:
        raise InvalidParameterError(f"a group holds at most {MAX_GROUP} items, got {len(wanted)}")
    offered = {int(d["item_id"]) for d in (reason.duplicates or () if reason else ())}
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
            _new_answer(
                item,
                annotator,
                "label",
                source.value,
                now,
                model_version_id=source.model_version_id,
                reason_kind=Kind.GROUP.value,
                predicted=None,
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
    item, duration = _open(
        session, project, annotator, item_id, "skip", None, request_id, duration_ms
    )
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
    reason = stored_reason(lease)
    label = _new_answer(
        item,
        annotator,
        "skip",
        None,
        database_now(session),
        model_version_id=lease.model_version_id,
        reason_kind=reason.type.value,
        predicted=lease.predicted,
        duration_ms=duration,
        request_id=request_id,
    )
    session.add(label)
    _give_back(session, lease)
    _renew(session, project, annotator, label.created_at)
    session.flush()
    return SubmitResult(label, item, replayed=False, reason=reason)
