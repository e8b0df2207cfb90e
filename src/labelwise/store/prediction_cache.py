"""The served model's prediction for every item, kept in a file: what the data browser filters
on without predicting a million rows per request.

After each fit the worker writes ``models/vNNNNN.predictions.npy``: one record per pool row, in
row order, with the predicted label's index in the project's label set (``label``, int16) and
the model's probability for it (``confidence``, float32; NaN for a model that gives decision
values only); a multi-label project's file holds each predicted set as a bit mask over the
label set (``labels``: one uint64 word per 64 labels, label ``j`` at bit ``j % 64`` of word
``j // 64``) and the probability of its least sure label decision. It is
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
    "PREDICTION_DTYPE",
    "cached_predictions",
    "predicted_labels",
    "predictions_path",
    "rows_predicting",
    "served_predictions",
    "set_prediction_dtype",
    "write_predictions",
]

log = logging.getLogger(__name__)

PREDICTION_DTYPE = np.dtype([("label", "<i2"), ("confidence", "<f4")])
_WORD = 64  # labels per uint64 word of a set's bit mask


def set_prediction_dtype(n_labels: int) -> np.dtype[Any]:
    """A multi-label project's records: the predicted set as a bit mask over the label set
    (label ``j`` at bit ``j % 64`` of word ``j // 64``), and the probability of the least sure
    label decision."""
    words = max(1, -(-n_labels // _WORD))
    return np.dtype([("labels", "<u8", (words,)), ("confidence", "<f4")])


def _is_set_dtype(dtype: np.dtype[Any]) -> bool:
    """A set file's dtype: any number of words (a file of one word may hold it as a scalar)."""
    if dtype.names != ("labels", "confidence") or dtype["confidence"] != np.dtype("<f4"):
        return False
    return dtype["labels"].base == np.dtype("<u8") and dtype["labels"].ndim <= 1


def _words(field: NDArray[Any]) -> NDArray[np.uint64]:
    """A ``labels`` field as (rows, words)."""
    return np.asarray(field).reshape(len(field), -1)


def rows_predicting(predictions: NDArray[Any], j: int) -> NDArray[np.bool_]:
    """For a multi-label file: which rows' predicted set holds label ``j``."""
    words = _words(predictions["labels"])
    if j // _WORD >= words.shape[1]:
        return np.zeros(len(predictions), dtype=bool)
    bit = np.uint64(1) << np.uint64(j % _WORD)
    return (words[:, j // _WORD] & bit) != 0


def predicted_labels(record: Any, labels: list[str]) -> list[str]:
    """The labels of one multi-label record's predicted set, in label order."""
    words = np.atleast_1d(np.asarray(record["labels"]))
    return [
        label
        for j, label in enumerate(labels)
        if j // _WORD < len(words) and int(words[j // _WORD]) >> (j % _WORD) & 1
    ]


def predictions_path(folder: ProjectFolder, version: int) -> Path:
    """Where the predictions of model version ``version`` are kept."""
    return folder.models_dir / f"v{version:05d}.predictions.npy"


def _records(outputs: ModelOutputs, index: dict[str, int]) -> NDArray[Any]:
    confidence = outputs.confidence()
    if outputs.multi_label:
        out = np.zeros(len(outputs.values), dtype=set_prediction_dtype(len(index)))
        assert outputs.thresholds is not None
        on = outputs.values >= outputs.thresholds[None, :]
        for k, cls in enumerate(outputs.classes):
            j = index[str(cls)]
            bit = on[:, k].astype(np.uint64) << np.uint64(j % _WORD)
            out["labels"][:, j // _WORD] |= bit
    else:
        out = np.empty(len(outputs.values), dtype=PREDICTION_DTYPE)
        out["label"] = [index.get(str(c), -1) for c in outputs.predicted()]
    out["confidence"] = np.nan if confidence is None else confidence
    return out


def write_predictions(
    folder: ProjectFolder, version: int, model: Any, X: Any, labels: list[str]
) -> Path:
    """Predict every row of ``X`` with ``model`` (chunk by chunk) and publish the file."""
    multi = bool(getattr(model, "multi_label", False))
    index = {label: i for i, label in enumerate(labels)}
    rows = np.arange(X.shape[0], dtype=np.intp)
    records = map_outputs(model, X, rows, lambda outputs: _records(outputs, index))
    dtype = set_prediction_dtype(len(labels)) if multi else PREDICTION_DTYPE
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
    if not (found.dtype == PREDICTION_DTYPE or _is_set_dtype(found.dtype)):
        return None
    if found.shape != (n_rows,):
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
