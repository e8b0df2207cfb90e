"""The served model's prediction for every item, kept in a file: what the data browser filters
on without predicting a million rows per request.

After each fit the worker writes ``models/vNNNNN.predictions.npy``: one record per pool row, in
row order, with the predicted label's index in the project's label set (``label``, int16) and
the model's probability for it (``confidence``, float32; NaN for a model that gives decision
values only). It is written under a temporary name, flushed to disk and renamed, and the files
of earlier versions are removed, so the folder holds the served version's file at most (a
million items: 6 MB). Readers map it into memory; a missing or damaged file, or one made for a
pool of another size, reads as None (the predictions of that version are not there yet).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from labelwise.models.registry import ModelOutputs, map_outputs
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import count_items
from labelwise.store.models import Project
from labelwise.store.versions import served_version

__all__ = [
    "PREDICTION_DTYPE",
    "cached_predictions",
    "predictions_path",
    "served_predictions",
    "write_predictions",
]

log = logging.getLogger(__name__)

PREDICTION_DTYPE = np.dtype([("label", "<i2"), ("confidence", "<f4")])


def predictions_path(folder: ProjectFolder, version: int) -> Path:
    """Where the predictions of model version ``version`` are kept."""
    return folder.models_dir / f"v{version:05d}.predictions.npy"


def _records(outputs: ModelOutputs, index: dict[str, int]) -> NDArray[Any]:
    out = np.empty(len(outputs.values), dtype=PREDICTION_DTYPE)
    out["label"] = [index.get(str(c), -1) for c in outputs.predicted()]
    if outputs.kind == "proba":
        out["confidence"] = np.max(outputs.values, axis=1)
    else:
        out["confidence"] = np.nan
    return out


def write_predictions(
    folder: ProjectFolder, version: int, model: Any, X: Any, labels: list[str]
) -> Path:
    """Predict every row of ``X`` with ``model`` (chunk by chunk) and publish the file."""
    index = {label: i for i, label in enumerate(labels)}
    rows = np.arange(X.shape[0], dtype=np.intp)
    records = map_outputs(model, X, rows, lambda outputs: _records(outputs, index))
    target = predictions_path(folder, version)
    pending = folder.models_dir / f"pending-{uuid.uuid4().hex}.predictions.npy"
    try:
        with pending.open("wb") as fh:
            np.save(fh, records.astype(PREDICTION_DTYPE, copy=False))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pending, target)
    finally:
        pending.unlink(missing_ok=True)
    for old in folder.models_dir.glob("*.predictions.npy"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def cached_predictions(folder: ProjectFolder, version: int, n_rows: int) -> NDArray[Any] | None:
    """The predictions of ``version`` for a pool of ``n_rows``, memory-mapped, or None."""
    path = predictions_path(folder, version)
    try:
        found = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        if path.exists():
            log.warning("the predictions file %s cannot be read (%s)", path, exc)
        return None
    if found.dtype != PREDICTION_DTYPE or found.shape != (n_rows,):
        return None
    return found


def served_predictions(
    session: Session, folder: ProjectFolder, project: Project
) -> NDArray[Any] | None:
    """The cached predictions of the version the project serves, for its whole pool; None
    before the first model or while that version's file is not there."""
    version = served_version(session, project)
    if version is None:
        return None
    return cached_predictions(folder, version.version, count_items(session, project))
