"""The served model's prediction for every item, kept in a file: what the data browser filters
on without predicting a million rows per request.

After each fit the worker writes ``models/vNNNNN.predictions.npy``: one record per pool row, in
row order, with the predicted label's index in the project's label set (``label``, int16) and
the model's probability for it (``confidence``, float32; NaN for a model that gives decision
values only); a multi-label project's file holds each predicted set as a bit mask over the
label set (``labels``, uint64) and the probability of its least sure label decision. It is
written under a temporary name, flushed to disk and renamed, and the files
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
    "MAX_SET_LABELS",
    "PREDICTION_DTYPE",
    "SET_PREDICTION_DTYPE",
    "cached_predictions",
    "mask_labels",
    "predictions_path",
    "served_predictions",
    "set_mask",
    "write_predictions",
]

log = logging.getLogger(__name__)

PREDICTION_DTYPE = np.dtype([("label", "<i2"), ("confidence", "<f4")])
#: A multi-label project's records: the predicted set as a bit mask over the label set (bit
#: ``j`` for label ``j``), and the probability of the least sure label decision.
SET_PREDICTION_DTYPE = np.dtype([("labels", "<u8"), ("confidence", "<f4")])
#: Most labels a set's bit mask holds; a project with more keeps no predictions file.
MAX_SET_LABELS = 64


def predictions_path(folder: ProjectFolder, version: int) -> Path:
    """Where the predictions of model version ``version`` are kept."""
    return folder.models_dir / f"v{version:05d}.predictions.npy"


def _records(outputs: ModelOutputs, index: dict[str, int]) -> NDArray[Any]:
    confidence = outputs.confidence()
    if outputs.multi_label:
        out = np.zeros(len(outputs.values), dtype=SET_PREDICTION_DTYPE)
        assert outputs.thresholds is not None
        on = outputs.values >= outputs.thresholds[None, :]
        for k, cls in enumerate(outputs.classes):
            out["labels"] |= on[:, k].astype(np.uint64) << np.uint64(index[str(cls)])
    else:
        out = np.empty(len(outputs.values), dtype=PREDICTION_DTYPE)
        out["label"] = [index.get(str(c), -1) for c in outputs.predicted()]
    out["confidence"] = np.nan if confidence is None else confidence
    return out


def set_mask(labels: list[str], chosen: list[str]) -> int:
    """The bit mask of the labels ``chosen`` among ``labels`` (a set's record)."""
    return sum(1 << labels.index(label) for label in chosen)


def mask_labels(labels: list[str], mask: int) -> list[str]:
    """The labels of a set's bit mask, in label order."""
    return [label for j, label in enumerate(labels) if mask >> j & 1]


def write_predictions(
    folder: ProjectFolder, version: int, model: Any, X: Any, labels: list[str]
) -> Path | None:
    """Predict every row of ``X`` with ``model`` (chunk by chunk) and publish the file; None
    for a multi-label model of more than :data:`MAX_SET_LABELS` labels (no file)."""
    multi = bool(getattr(model, "multi_label", False))
    if multi and len(labels) > MAX_SET_LABELS:
        log.info(
            "no predictions file: %d labels exceed a set's %d bits", len(labels), MAX_SET_LABELS
        )
        return None
    index = {label: i for i, label in enumerate(labels)}
    rows = np.arange(X.shape[0], dtype=np.intp)
    records = map_outputs(model, X, rows, lambda outputs: _records(outputs, index))
    dtype = SET_PREDICTION_DTYPE if multi else PREDICTION_DTYPE
    target = predictions_path(folder, version)
    pending = folder.models_dir / f"pending-{uuid.uuid4().hex}.predictions.npy"
    try:
        with pending.open("wb") as fh:
            np.save(fh, records.astype(dtype, copy=False))
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
    if found.dtype not in (PREDICTION_DTYPE, SET_PREDICTION_DTYPE) or found.shape != (n_rows,):
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
