"""Undo: an annotator takes back their last answer, in one write transaction.

The answer is superseded by an undo row (history is append-only, nothing is deleted), the item
goes back to the annotator with its lease renewed and the reason it was queued for; a group
answer is taken back as a whole; a retried undo (the same ``request_id``) changes nothing more.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise.exceptions import ConflictError
from labelwise.store.answers import _check_request_id, _recount
from labelwise.store.leasing import (
    Assignment,
    _assignment,
    _check_member,
    _free_slots,
    _lock_item,
    _queued,
    database_now,
    grant,
    queued_reason,
)
from labelwise.store.models import Annotator, Label, Lease, Project
from labelwise.strategies.reasons import BACK_AFTER_UNDO, Kind, Reason

__all__ = ["undo_last"]


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
    if last.reason_kind != Kind.GROUP:
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
        reason = queued_reason(entry)
    else:
        reason = Reason(Kind(last.reason_kind or Kind.STRATEGY), summary=BACK_AFTER_UNDO)
    return grant(
        session,
        project,
        annotator,
        item,
        now=now,
        reason=reason,
        model_version_id=last.model_version_id,
        predicted=last.predicted,
        previous=last.value,
    )


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
            Label.reason_kind == Kind.GROUP.value,
            Label.created_at == last.created_at,
        )
    ).all()
    for member in members:
        item = _lock_item(session, project, member.item_id, wait=True)
        assert item is not None
        _take_back(session, member, now)
        session.flush()
        _recount(session, item)
