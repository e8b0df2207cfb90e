"""Project-level API: summary, dashboard figures, item media, and the admin's tools
(settings, annotators and tokens, review of conflicts, import, triage, export)."""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, model_validator

from labelwise import label_sets
from labelwise.exceptions import (
    InvalidDataError,
    InvalidParameterError,
    LabelwiseError,
    NotFoundError,
)
from labelwise.learning.triage import TriageTarget
from labelwise.server.deps import (
    Admin,
    ItemId,
    LabelName,
    ProjectId,
    State,
    User,
    one_of_value_or_labels,
    project_session,
)
from labelwise.server.schemas import (
    AddedAnnotator,
    AnnotatorRow,
    Dashboard,
    ImportResult,
    ItemView,
    Resolution,
    ReviewEntry,
    Settings,
    Summary,
    TriageResult,
)
from labelwise.server.views import item_view
from labelwise.services.dashboard import dashboard as dashboard_figures
from labelwise.services.dashboard import hide_colleagues
from labelwise.services.transfer import import_file
from labelwise.services.triage import import_and_triage
from labelwise.store.annotators import create_annotator, list_annotators, own_answers
from labelwise.store.fatigue import assess, recent_answers
from labelwise.store.items import get_item, visible_to
from labelwise.store.models import Annotator, Item, utcnow
from labelwise.store.projects import get_project, settings_of, update_settings
from labelwise.store.review import adjudicate, count_resolved_items, list_conflicts
from labelwise.store.stats import item_progress
from labelwise.store.versions import served_version

router = APIRouter(prefix="/api/projects/{project_id}", tags=["projects"])

#: Largest upload accepted by the import endpoint.
MAX_UPLOAD = 200 * 1024 * 1024


@router.get("", response_model=Summary)
def summary(project_id: ProjectId, state: State, user: User) -> dict[str, Any]:
    """The project as the annotate page needs it: labels, who you are, progress."""
    with project_session(state, user, project_id) as (session, project):
        settings = settings_of(project)
        mine = own_answers(session, user.annotator_id)
        served = served_version(session, project)
        n_resolved = count_resolved_items(session, project)
        return {
            "id": project.id,
            "name": project.name,
            "kind": project.kind,
            "labels": project.label_set,
            "show_guess": settings.show_guess,
            "me": {
                "name": user.name,
                "role": user.role,
                "labels": mine.labels,
                "can_undo": mine.can_undo,
                "fatigue": assess(recent_answers(session, user.annotator_id), utcnow()).to_dict(),
            },
            "progress": item_progress(session, project),
            "model": (
                {
                    "version": served.version,
                    "labels": served.n_labels,
                    "created_at": served.created_at.isoformat() + "Z",
                }
                if served is not None
                else None
            ),
            # Labels still needed before the worker fits the next model (approximate: agreeing
            # answers on overlap items count once).
            "retrain_in": max(
                0,
                (served.n_labels if served else 0) + settings.retrain_every - n_resolved,
            ),
            "settings": settings.to_dict() if user.is_admin else None,
        }


@router.get("/stats", response_model=Dashboard, response_model_exclude_unset=True)
def dashboard(project_id: ProjectId, state: State, user: User) -> dict[str, Any]:
    with project_session(state, user, project_id) as (session, project):
        figures = dashboard_figures(session, project)
    if not user.is_admin:
        hide_colleagues(figures, user.name)
    return figures


@router.get("/items/{item_id}", response_model=ItemView)
def item(project_id: ProjectId, item_id: ItemId, state: State, user: User) -> dict[str, Any]:
    """An item's content: for admins any item, for annotators one they hold or answered."""
    with project_session(state, user, project_id) as (session, project):
        found = get_item(session, project, item_id)
        _check_access(session, user, found)
        return item_view(found, project, state.folder)


def _check_access(session: Any, user: Any, item: Item) -> None:
    if not user.is_admin and not visible_to(session, item, user.annotator_id):
        raise NotFoundError(f"no item {item.id} in this project")


@router.get("/items/{item_id}/image")
def item_image(project_id: ProjectId, item_id: ItemId, state: State, user: User) -> FileResponse:
    with project_session(state, user, project_id) as (session, project):
        found = get_item(session, project, item_id)
        if project.kind != "image":
            raise NotFoundError(f"item {item_id} has no image")
        _check_access(session, user, found)
        path = state.folder.inside(found.content, state.folder.media_dir)
    if not path.is_file():
        raise NotFoundError(f"the image of item {item_id} is missing")
    return FileResponse(path, media_type="image/png")


class SettingsChange(BaseModel):
    changes: dict[str, Any]


@router.patch("/settings", response_model=Settings)
def change_settings(
    project_id: ProjectId, body: SettingsChange, state: State, admin: Admin
) -> dict[str, Any]:
    with project_session(state, admin, project_id, write=True) as (session, project):
        return update_settings(session, project, body.changes).to_dict()


class NewAnnotator(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: str = "annotator"


@router.get("/annotators", response_model=list[AnnotatorRow])
def annotators(project_id: ProjectId, state: State, admin: Admin) -> list[dict[str, Any]]:
    with project_session(state, admin, project_id) as (session, project):
        return [
            {
                "id": a.id,
                "name": a.name,
                "role": a.role,
                "token_hint": a.token_hint,
                "disabled": a.disabled,
            }
            for a in list_annotators(session, project)
        ]


@router.post("/annotators", status_code=201, response_model=AddedAnnotator)
def add_annotator(
    project_id: ProjectId, body: NewAnnotator, state: State, admin: Admin
) -> dict[str, Any]:
    """A new annotator; the token is in this response and nowhere else."""
    with project_session(state, admin, project_id, write=True) as (session, project):
        annotator, token = create_annotator(session, project, name=body.name, role=body.role)
        return {"id": annotator.id, "name": annotator.name, "role": annotator.role, "token": token}


@router.get("/review", response_model=list[ReviewEntry])
def review_queue(project_id: ProjectId, state: State, admin: Admin) -> list[dict[str, Any]]:
    """Items whose annotators disagree, with every answer: ``votes`` (each value and who gave
    it) and ``answers`` (each annotator's answer; in a multi-label project with its set as a
    list, ``labels``)."""
    with project_session(state, admin, project_id) as (session, project):
        multi_label = settings_of(project).multi_label
        out = []
        for conflict in list_conflicts(session, project):
            found = session.get(Item, conflict.item_id)
            assert found is not None
            view = item_view(found, project, state.folder)
            given = [
                {"annotator": name, "value": value}
                | ({"labels": label_sets.decode(value)} if multi_label else {})
                for name, value in conflict.answers.items()
            ]
            out.append({"item": view, "votes": conflict.votes, "answers": given})
        return out


class Adjudication(BaseModel):
    value: str | None = Field(
        default=None,
        max_length=10_000,
        description="The decision: one label; in a multi-label project the set's labels joined "
        "by ';' or as a JSON list ('' for none of them).",
    )
    labels: list[LabelName] | None = Field(
        default=None,
        max_length=1000,
        description="A multi-label project's decision as a list of its labels ([] for none of "
        "them). Give value or labels, not both.",
    )

    @model_validator(mode="after")
    def _one_decision(self) -> Adjudication:
        one_of_value_or_labels(self.value, self.labels, "decision")
        return self


@router.post("/review/{item_id}", response_model=Resolution, response_model_exclude_unset=True)
def resolve(
    project_id: ProjectId, item_id: ItemId, body: Adjudication, state: State, admin: Admin
) -> dict[str, Any]:
    """An admin's final word on an item: a label, or a multi-label project's set (one
    annotator's, their union, or any set of the labels)."""
    with project_session(state, admin, project_id, write=True) as (session, project):
        annotator = session.get(Annotator, admin.annotator_id)
        assert annotator is not None
        decision = body.labels if body.labels is not None else body.value
        label = adjudicate(session, project, annotator, item_id=item_id, value=decision)
        out: dict[str, Any] = {"item_id": item_id, "value": label.value, "label_id": label.id}
        if settings_of(project).multi_label:
            out["labels"] = label_sets.decode(label.value)
        return out


_IMPORT_SUFFIXES = {".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json", ".parquet", ".npz"}


@router.post("/import", response_model=ImportResult)
def import_items(
    project_id: ProjectId,
    state: State,
    admin: Admin,
    file: Annotated[UploadFile, File()],
    text_column: Annotated[str | None, Query(max_length=200)] = None,
    label_column: Annotated[str | None, Query(max_length=200)] = None,
    with_labels: bool = False,
) -> dict[str, Any]:
    """Add the items of an uploaded file; all of them or none."""
    admin.check_project(project_id)
    with _uploaded(file) as (path, name), state.db.write() as session:
        project = get_project(session, project_id=project_id)
        added = import_file(
            session,
            project,
            state.folder,
            path,
            text_column=text_column,
            label_column=label_column,
            with_labels=with_labels,
        )
    state.db.analyze()
    return {"imported": added, "file": name}


def _safe_name(filename: str | None) -> str:
    """The client's file name reduced to a plain name: no folders (``/`` or ``\\``), no control
    or odd characters, at most 100 characters, never hidden."""
    name = PureWindowsPath(PurePosixPath(filename or "upload").name).name
    name = re.sub(r"[^\w.\- ]", "_", name).strip(" .") or "upload"
    stem, suffix = os.path.splitext(name)
    return stem[: 100 - len(suffix)] + suffix


@contextmanager
def _uploaded(file: UploadFile) -> Iterator[tuple[Path, str]]:
    """The upload as a temporary file with a safe name and a known suffix (and that name).

    Errors raised while the file is read name it as the client did, without the temporary
    folder (which is no business of the client's)."""
    name = _safe_name(file.filename)  # never trust a client path
    suffix = Path(name).suffix.lower()
    if suffix not in _IMPORT_SUFFIXES:
        raise InvalidParameterError(
            f"cannot import {name!r}: expected one of {', '.join(sorted(_IMPORT_SUFFIXES))}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        with path.open("wb") as out:
            copied = _copy_limited(file.file, out, MAX_UPLOAD)
        if copied == 0:
            raise InvalidDataError(f"{name} is empty")
        try:
            yield path, name
        except LabelwiseError as exc:
            message = str(exc)
            for folder in dict.fromkeys((str(Path(tmp).resolve()), tmp)):
                message = message.replace(f"{folder}{os.sep}", "")
                message = message.replace(folder, "the upload's folder")
            raise type(exc)(message) from None


@router.post("/triage", response_model=TriageResult)
def triage_new_items(
    project_id: ProjectId,
    state: State,
    admin: Admin,
    file: Annotated[UploadFile, File()],
    sensitivity: Annotated[float | None, Query(gt=0, lt=1)] = None,
    positive: Annotated[str | None, Query(max_length=200)] = None,
    precision: Annotated[float | None, Query(gt=0, lt=1)] = None,
    audit: Annotated[float, Query(ge=0, le=1)] = 0.05,
    point_estimate: bool = False,
    text_column: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Import a batch of new items and decide the confident ones automatically.

    Exactly one target: ``sensitivity`` (with ``positive``, the class never decided
    automatically) or ``precision``. The rest, and a random ``audit`` share of the automatic
    decisions, go to the experts' queue. The fit runs here, in this request (seconds to
    minutes): annotators are not held up, as the database is only written at the end.
    """
    admin.check_project(project_id)
    target = TriageTarget.from_options(
        sensitivity=sensitivity,
        precision=precision,
        positive=positive,
        point_estimate=point_estimate,
    )
    with _uploaded(file) as (path, name):
        summary = import_and_triage(
            state.db,
            state.folder,
            project_id,
            path,
            target,
            audit=audit,
            text_column=text_column,
        )
    return {"file": name, **summary.to_dict()}


def _copy_limited(src: Any, dst: Any, limit: int) -> int:
    total = 0
    while chunk := src.read(1 << 20):
        total += len(chunk)
        if total > limit:
            raise InvalidDataError(f"upload larger than {limit // (1024 * 1024)} MB")
        dst.write(chunk)
    return total


@router.get("/export")
def export(
    project_id: ProjectId,
    state: State,
    admin: Admin,
    format: Annotated[str, Query(pattern="^(csv|jsonl|label-studio)$")] = "csv",
    labeled_only: bool = False,
    predictions: bool = False,
) -> Response:
    from labelwise.services.export import export_project

    suffix = {"csv": "csv", "jsonl": "jsonl", "label-studio": "json"}[format]
    buffer = io.StringIO()
    with project_session(state, admin, project_id) as (session, project):
        export_project(
            session,
            project,
            format,
            buffer,
            labeled_only=labeled_only,
            folder=state.folder,
            predictions=predictions,  # refused (409) without a model: see store.export
        )
        name = f"{project.name}-labels.{suffix}"
    media = "text/csv" if format == "csv" else "application/json"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return StreamingResponse(
        iter([buffer.getvalue()]),
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )
