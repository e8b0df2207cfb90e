"""Model versions and their ranked queues, written together or not at all.

The server serves the queue of ``projects.current_version_id``. A new version, its metrics and
its queue land in one transaction that also retires the previous queue, so annotators switch
from one ranking to the next without ever seeing a half-written one; a failed fit is recorded
and changes nothing that is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from labelwise.store.models import ModelVersion, Project, QueueEntry

__all__ = ["COLD_START", "QueuedItem", "list_versions", "record_failure", "record_version"]

#: The status of a version that serves a cold-start queue: chosen before any model, it has
#: no artefact (see :func:`labelwise.worker.train_once`).
COLD_START = "cold-start"


@dataclass(frozen=True)
class QueuedItem:
    """One ranked queue entry (rank 0 is served first)."""

    item_id: int
    rank: int
    kind: str
    utility: float | None = None
    predicted: str | None = None
    reason: dict[str, Any] = field(default_factory=dict)


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
                    "reason": q.reason,
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
