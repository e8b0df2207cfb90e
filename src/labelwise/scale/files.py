"""What ``labelwise score`` reads besides the pool: a saved model and a file of known labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelwise.exceptions import InvalidDataError
from labelwise.models.registry import has_decision_function, has_predict_proba
from labelwise.scale.partitions import PartitionedPool

__all__ = ["load_model", "read_labels"]


def load_model(path: str | os.PathLike[str]) -> Any:
    """A fitted classifier saved with joblib: the object itself, or a Labelwise model version
    (``models/vN.joblib`` of a project: a dict holding it under ``"model"``).

    joblib files are pickles: load only files you trust.
    """
    import joblib

    path = Path(path)
    if not path.is_file():
        raise InvalidDataError(f"no such model file: {path}")
    try:
        loaded = joblib.load(path)
    except Exception as exc:  # a corrupt or foreign file: say which, not a pickle traceback
        raise InvalidDataError(f"{path} is not a model saved with joblib: {exc}") from None
    model = loaded.get("model") if isinstance(loaded, dict) else loaded
    if model is None or not hasattr(model, "classes_"):
        raise InvalidDataError(
            f"{path} holds {type(loaded).__name__}, not a fitted classifier (no classes_)"
        )
    if not (has_predict_proba(model) or has_decision_function(model)):
        raise InvalidDataError(
            f"{path}: {type(model).__name__} has neither predict_proba nor decision_function"
        )
    return model


def read_labels(
    path: str | os.PathLike[str], pool: PartitionedPool, classes: NDArray[Any] | None = None
) -> tuple[NDArray[np.intp], NDArray[Any]]:
    """Rows and labels of the items a labels file names.

    The file is CSV, TSV (by suffix) or JSONL with columns ``id`` (as in the pool's ids, or row
    numbers for a pool without ids) and ``label``; rows with an empty label are skipped, so a
    project export (``labelwise export``) works as it is. Labels become integers when the
    model's ``classes`` are integers.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InvalidDataError(f"no such labels file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            table = pd.read_json(path, lines=True, dtype=False)
        elif suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            table = pd.read_csv(
                path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig"
            )
        else:
            raise InvalidDataError(f"{path.name}: labels must be .csv, .tsv or .jsonl")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidDataError(f"cannot read {path.name}: {exc}") from None
    missing = [c for c in ("id", "label") if c not in table.columns]
    if missing:
        raise InvalidDataError(
            f"{path.name} has no column {', '.join(missing)}; found {', '.join(map(str, table))}"
        )
    labels = table["label"].astype(object)
    given = labels.notna() & (labels.astype(str).str.strip() != "")
    ids = table.loc[given, "id"].astype(str).to_numpy()
    values = labels[given].astype(str).str.strip().to_numpy(dtype=object)
    if len(set(ids.tolist())) != len(ids):
        raise InvalidDataError(f"{path.name} labels an id twice")
    rows = pool.rows_of(ids)
    if classes is not None and np.asarray(classes).dtype.kind in "iu":
        try:
            values = np.asarray([int(v) for v in values], dtype=np.int64)
        except ValueError:
            bad = next(v for v in values if not v.lstrip("-").isdigit())
            raise InvalidDataError(
                f"{path.name}: label {bad!r} is not an integer, but the model's classes are"
            ) from None
    return rows, values
