"""The annotator's loop over HTTP: next item, label, skip, undo, release."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select

from labelwise.server.deps import BodyId, ItemId, ProjectId, State, User
from labelwise.server.views import assignment_view, reveal_view
from labelwise.store import labeling
from labelwise.store.models import Annotator, Lease, Project
from labelwise.store.projects import get_project

LeaseToken = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,32}$")]

router = APIRouter(prefix="/api/projects/{project_id}", tags=["labeling"])


class NextRequest(BaseModel):
    exclude: list[BodyId] = Field(
        default_factory=list,
        max_length=20,
        description="Items the page shows or has prefetched: not handed out again.",
    )
    answering: list[BodyId] = Field(
        default_factory=list,
        max_length=20,
        description="Items whose answers are on their way: not handed out again, and their "
        "leases kept (they do not count against the items one annotator may hold).",
    )


class LabelRequest(BaseModel):
    value: str = Field(min_length=1, max_length=200)
    duration_ms: int | None = Field(default=None, ge=0)
    request_id: str | None = Field(default=None, min_length=1, max_length=64)
    group: list[BodyId] = Field(
        default_factory=list,
        max_length=labeling.MAX_GROUP,
        description="Near-duplicates offered with the item that get the same answer.",
    )


class SkipRequest(BaseModel):
    duration_ms: int | None = Field(default=None, ge=0)
    request_id: str | None = Field(default=None, min_length=1, max_length=64)


class ReleaseRequest(BaseModel):
    leases: list[LeaseToken] = Field(
        default_factory=list,
        max_length=20,
        description="Lease tokens from /next or /undo: only those grants end, so a release "
        "that arrives late never ends a newer lease on the same item.",
    )
    items: list[BodyId] = Field(
        default_factory=list,
        max_length=20,
        description="Item ids: ends whatever lease you hold on them, even one granted after "
        "this request was sent. Prefer leases.",
    )


def _load(session: Any, user: Any, project_id: int) -> tuple[Project, Annotator]:
    user.check_project(project_id)
    project = get_project(session, project_id=project_id)
    annotator = session.get(Annotator, user.annotator_id)
    return project, annotator


@router.post("/next", responses={204: {"description": "nothing left to label"}})
def next_item(project_id: ProjectId, body: NextRequest, state: State, user: User) -> Any:
    """The next item for this annotator, leased to them (their unfinished one first)."""
    with state.db.write(durable=False) as session:  # only a lease: no need to wait for the disk
        project, annotator = _load(session, user, project_id)
        assignment = labeling.next_item(
            session, project, annotator, exclude=body.exclude, answering=body.answering
        )
        if assignment is None:
            return Response(status_code=204)
        return assignment_view(assignment, project, state.folder)


def _submitted(
    result: labeling.SubmitResult, reason: dict[str, Any], project: Project
) -> dict[str, Any]:
    return {
        "label_id": result.label.id,
        "item_id": result.item.id,
        "value": result.label.value,
        "action": result.label.action,
        "replayed": result.replayed,
        "item_labels": result.item.n_labels,
        "reveal": reveal_view(reason, project) if reason else None,
        "grouped": list(result.grouped),
        "group_skipped": list(result.group_skipped),
    }


def _lease_reason(session: Any, item_id: int, annotator_id: int) -> dict[str, Any]:
    lease = session.scalar(
        select(Lease).where(Lease.item_id == item_id, Lease.annotator_id == annotator_id)
    )
    return dict(lease.reason or {}) if lease is not None else {}


@router.post("/items/{item_id}/label")
def label_item(
    project_id: ProjectId, item_id: ItemId, body: LabelRequest, state: State, user: User
) -> dict[str, Any]:
    """Store an answer. Repeating a request (same ``request_id``) or the same answer is a no-op."""
    with state.db.write() as session:
        project, annotator = _load(session, user, project_id)
        reason = _lease_reason(session, item_id, annotator.id)
        result = labeling.submit_label(
            session,
            project,
            annotator,
            item_id=item_id,
            value=body.value,
            duration_ms=body.duration_ms,
            request_id=body.request_id,
            group=body.group,
        )
        return _submitted(result, reason, project)


@router.post("/items/{item_id}/skip")
def skip_item(
    project_id: ProjectId, item_id: ItemId, body: SkipRequest, state: State, user: User
) -> dict[str, Any]:
    with state.db.write() as session:
        project, annotator = _load(session, user, project_id)
        result = labeling.skip_item(
            session,
            project,
            annotator,
            item_id=item_id,
            duration_ms=body.duration_ms,
            request_id=body.request_id,
        )
        return _submitted(result, {}, project)


class UndoRequest(BaseModel):
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Makes a retried undo harmless: the same id never takes back a second answer.",
    )


@router.post("/undo")
def undo(
    project_id: ProjectId, state: State, user: User, body: UndoRequest | None = None
) -> dict[str, Any]:
    """Take back the latest answer; the item comes back to this annotator."""
    request_id = body.request_id if body is not None else None
    with state.db.write() as session:
        project, annotator = _load(session, user, project_id)
        assignment = labeling.undo_last(session, project, annotator, request_id=request_id)
        return assignment_view(assignment, project, state.folder)


@router.post("/release")
def release(
    project_id: ProjectId, body: ReleaseRequest, state: State, user: User
) -> dict[str, int]:
    """Hand leased items back (the page is closing)."""
    with state.db.write(durable=False) as session:
        _, annotator = _load(session, user, project_id)
        released = labeling.release(session, annotator, leases=body.leases, items=body.items)
        return {"released": released}
