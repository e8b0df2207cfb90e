"""Model versions and their ranked queues, written together or not at all.

The server serves the queue of ``projects.current_version_id``. A new version, its metrics and
its queue land in one transaction that also retires the previous queue, so annotators switch
from one ranking to the next without ever seeing a half-written one; a failed fit is recorded
and changes nothing that is served.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import joblib
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError, NotFoundError
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import ModelVersion, Project, QueueEntry
from labelwise.strategies.reasons import Reason

__all__ = [
    "COLD_START",
    "DamagedArtefactError",
    "QueuedItem",
    "list_versions",
    "load_artefact",
    "record_failure",
    "record_version",
    "served_version",
]

#: The status of a version that serves a cold-start queue: chosen before any model, it has
#: no artefact (see :func:`labelwise.services.worker.train_once`).
COLD_START = "cold-start"


@dataclass(frozen=True)
class QueuedItem:
    """One ranked queue entry (rank 0 is served first), with the reason shown for it (a
    stored reason's JSON is taken too, and read as a
    :class:`~labelwise.strategies.reasons.Reason`)."""

    item_id: int
    rank: int
    kind: str
    utility: float | None = None
    predicted: str | None = None
    reason: Reason = field(default_factory=lambda: Reason("strategy"))

    def __post_init__(self) -> None:
        if not isinstance(self.reason, Reason):
            object.__setattr__(self, "reason", Reason.from_dict(self.reason, kind=self.kind))


def _next_version(session: Session, project: Project) -> int:
    last = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project.id)
    )
    return int(last or 0) + 1


def record_version(
    session: Session,
    project: Project,
    *,
    n_labels: int,
    label_counts: dict[str, int],
    metrics: dict[str, Any],
    strategy: str,
    model_name: str,
    artefact: str | None,
    fit_seconds: float,
    queue: Sequence[QueuedItem],
    status: str = "ready",
) -> ModelVersion:
    """Store a fitted model's version and queue (or a cold-start queue, without a model), and
    make it the one served."""
    version = ModelVersion(
        project_id=project.id,
        version=_next_version(session, project),
        status=status,
        n_labels=n_labels,
        label_counts=label_counts,
        metrics=metrics,
        strategy=strategy,
        model_name=model_name,
        artefact=artefact,
        fit_seconds=fit_seconds,
    )
    session.add(version)
    session.flush()
    if queue:
        session.execute(
            insert(QueueEntry),
            [
                {
                    "project_id": project.id,
                    "model_version_id": version.id,
                    "item_id": q.item_id,
                    "rank": q.rank,
                    "kind": q.kind,
                    "utility": q.utility,
                    "predicted": q.predicted,
                    "reason": q.reason.to_dict(),
                }
                for q in queue
            ],
        )
    session.execute(
        delete(QueueEntry).where(
            QueueEntry.project_id == project.id, QueueEntry.model_version_id != version.id
        )
    )
    project.current_version_id = version.id
    session.flush()
    return version


def record_failure(
    session: Session,
    project: Project,
    *,
    n_labels: int,
    strategy: str,
    model_name: str,
    error: str,
) -> ModelVersion:
    """Record a fit that failed; the served version and queue stay as they are."""
    version = ModelVersion(
        project_id=project.id,
        version=_next_version(session, project),
        status="failed",
        n_labels=n_labels,
        label_counts={},
        metrics={},
        strategy=strategy,
        model_name=model_name,
        error=error[:4000],
    )
    session.add(version)
    session.flush()
    return version


def list_versions(session: Session, project: Project) -> list[ModelVersion]:
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project.id)
            .order_by(ModelVersion.version)
        )
    )


def served_version(session: Session, project: Project) -> ModelVersion | None:
    """The version whose queue is served (``projects.current_version_id``), None before the
    first; a :data:`COLD_START` one has no model."""
    if project.current_version_id is None:
        return None
    return session.get(ModelVersion, project.current_version_id)


class DamagedArtefactError(InvalidDataError):
    """A version's model file is there but cannot be read back (cut short by a full disk or a
    crash, or not a model file)."""


def load_artefact(folder: ProjectFolder, version: ModelVersion) -> dict[str, Any]:
    """What the fit of ``version`` wrote (:func:`labelwise.services.worker.train_once`): a dict with
    ``model`` (the fitted estimator), ``classes``, ``stop_rows`` and ``stop_predictions``, and,
    from versions fitted by this release on, ``features``: the
    :func:`~labelwise.store.features.feature_source` of the matrix it was fitted on.

    Raises
    ------
    NotFoundError
        The version has no model (cold start, failed fit) or its file is gone.
    InvalidDataError
        The stored path leads outside ``models/`` (never unpickled, see
        :meth:`ProjectFolder.loadable`); :class:`DamagedArtefactError` when the file cannot be
        read back.
    """
    if not version.artefact:
        raise NotFoundError(f"model version v{version.version} ({version.status}) has no model")
    path = folder.loadable(version.artefact, folder.models_dir)
    try:
        record = _load_model_file(path)
    except Exception as exc:  # a damaged pickle raises anything
        raise DamagedArtefactError(
            f"the model file of v{version.version} ({version.artefact}) is damaged: {exc}"
        ) from None
    if not isinstance(record, dict) or "model" not in record:
        raise DamagedArtefactError(
            f"the model file of v{version.version} ({version.artefact}) holds no model"
        )
    return record


#: Modules that held classes a model file pickles (a fitted model's steps) under an earlier
#: release's layout, and where they are now: model files written before the move are still read.
MOVED_MODULES = {
    "labelwise.semi": "labelwise.models.semi",
    "labelwise.features.auto": "labelwise.models.auto",
    "labelwise.torch_model": "labelwise.models.torch_model",
    "labelwise._torch_net": "labelwise.models.torch_net",
}


def _load_model_file(path: Any) -> Any:
    """``joblib.load(path)``; a class the file names under a module of :data:`MOVED_MODULES`
    is looked up where it moved (only the modules the file asks for are imported)."""
    while True:
        try:
            return joblib.load(path)
        except ModuleNotFoundError as exc:
            moved = MOVED_MODULES.get(exc.name or "")
            if moved is None or exc.name in sys.modules:
                raise
            # The unpickler looks a class's module up in sys.modules: the old name now leads
            # to the new module.
            sys.modules[str(exc.name)] = importlib.import_module(moved)
