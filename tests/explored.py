"""A served model version made by hand: its queue serves items as random exploration picks with
the model's guesses, the items the unbiased estimate is measured on (no model is fitted)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from labelwise.store.models import ModelVersion, Project
from labelwise.store.versions import QueuedItem, record_version


def explored_version(
    session: Session,
    project: Project,
    guesses: Sequence[tuple[int, str]],
    *,
    n_labels: int = 10,
    metrics: dict[str, Any] | None = None,
) -> ModelVersion:
    """A ready version whose queue serves ``(item id, predicted)`` in that order as exploration
    items."""
    queue = [
        QueuedItem(
            item_id=item_id,
            rank=rank,
            kind="exploration",
            predicted=predicted,
            reason={"kind": "exploration", "summary": "drawn at random"},
        )
        for rank, (item_id, predicted) in enumerate(guesses)
    ]
    return record_version(
        session,
        project,
        n_labels=n_labels,
        label_counts={},
        metrics=metrics or {},
        strategy="mean-margin",
        model_name="logreg",
        artefact="models/v.joblib",
        fit_seconds=0.0,
        queue=queue,
    )
