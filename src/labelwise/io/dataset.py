"""The :class:`Dataset` that :func:`labelwise.io.load.load_dataset` returns.

Defined apart from :mod:`labelwise.io.load` so that the readers in :mod:`labelwise.io.tables` and
:mod:`labelwise.io.media` can build one without importing the dispatch that imports them; the
public name is :class:`labelwise.io.load.Dataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.pool import as_indices

Kind: TypeAlias = Literal["text", "image", "tabular"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Items to label, the labels the file already holds, and the ids that name the items.

    Attributes
    ----------
    kind : {"text", "image", "tabular"}
    items : ndarray or scipy.sparse.csr_matrix
        text: object array of shape (n,) holding ``str``; image: array of shape (n, h, w) or
        (n, h, w, c), uint8 or float; tabular: float64 array or CSR matrix of shape (n, d).
    labels : ndarray of shape (n,) or None
        int64, or object holding ``str`` (or ``int``) with ``None`` for a missing label;
        None when the file has no label column. Label lists (read with ``multi_label``) are
        each row's names joined by ``;`` in the file's order, ``""`` for an empty list.
    ids : ndarray of shape (n,)
        Object array of ``str``: the id column, else the row numbers ``"0"``, ``"1"``, ...
        (relative file paths for an image folder).
    feature_names : tuple of str
        tabular: the column names (``"f1"``... for LIBSVM and arrays); text: the text column's
        name; image: empty.
    source : str
        The path the data was read from.
    ids_numbered : bool
        True when the file has no ids and ``ids`` are its row numbers: an importer may number
        the rows on from where a project's items end instead (see
        :func:`labelwise.services.transfer.import_file`).
    label_column : str or None
        Where the labels came from: the label column's name (or the array's, for ``.npz``);
        None without labels or when they are class folders.
    splits : ndarray of shape (n,) or None
        Object array of ``str``: the split each item came from (``"train"``, ``"val"``,
        ``"test"``) in a file that keeps splits apart (``.npz``); None otherwise.
    classes : tuple of str
        The names of integer classes 0, 1, ... when the file or the caller gave them (an
        ``.npz`` ``label_names``/``classes`` array, ``label_names=``); the labels are then
        those names. Empty otherwise.
    """

    kind: Kind
    items: np.ndarray | sp.csr_matrix
    labels: np.ndarray | None
    ids: np.ndarray
    feature_names: tuple[str, ...] = ()
    source: str = ""
    ids_numbered: bool = False
    label_column: str | None = None
    splits: np.ndarray | None = None
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("text", "image", "tabular"):
            raise InvalidParameterError(
                f"kind must be 'text', 'image' or 'tabular', got {self.kind!r}"
            )
        n = self.items.shape[0]
        if self.ids.shape != (n,):
            raise InvalidDataError(f"ids have shape {self.ids.shape}, expected ({n},)")
        if self.labels is not None and self.labels.shape != (n,):
            raise InvalidDataError(f"labels have shape {self.labels.shape}, expected ({n},)")
        if self.splits is not None and self.splits.shape != (n,):
            raise InvalidDataError(f"splits have shape {self.splits.shape}, expected ({n},)")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def subset(self, indices: ArrayLike) -> Dataset:
        """The rows at ``indices`` (integer array of shape (k,)), in that order."""
        idx = as_indices(indices, len(self))
        labels = None if self.labels is None else self.labels[idx]
        splits = None if self.splits is None else self.splits[idx]
        return replace(self, items=self.items[idx], labels=labels, ids=self.ids[idx], splits=splits)

    def require_labels(self) -> np.ndarray:
        """The labels, shape (n,); InvalidDataError when the file has none or some are missing."""
        if self.labels is None:
            raise InvalidDataError(f"{self.source} has no label column; name it with label_column=")
        if self.labels.dtype == object:
            missing = np.flatnonzero(pd.isna(self.labels))
            if missing.size:
                raise InvalidDataError(
                    f"{self.source}: {missing.size} of {len(self)} items have no label "
                    f"(first at row {missing[0]})"
                )
        return self.labels


def _row_ids(n: int) -> np.ndarray:
    """The default ids, ``"0"``, ``"1"``, ...: object array of shape (n,) holding ``str``."""
    return np.arange(n).astype(str).astype(object)


def _check_label_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple: at least one, each a non-blank string, none twice."""
    out = tuple(str(n).strip() for n in names)
    if not out or any(not n for n in out):
        raise InvalidParameterError(f"label_names must be non-blank names, got {list(names)!r}")
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise InvalidParameterError(f"label_names names {twice[0]!r} twice")
    return out


def _named_labels(
    labels: np.ndarray, names: Sequence[str], source: str, *, offset: int = 0
) -> np.ndarray:
    """Integer class labels (int64, or ``int``/digit strings and None in an object array) as
    their names: object array of ``str`` (None where missing). A label that is not an integer
    from 0 to ``len(names) - 1`` is an :class:`InvalidDataError` naming the row (``offset``: the
    number of the first one in the file)."""
    if labels.dtype.kind in "iu":  # the common case, vectorised
        bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
        if not bad.size:
            return np.asarray(names, dtype=object)[labels]
    out = np.full(labels.shape, None, dtype=object)
    for i, value in enumerate(labels.tolist()):
        if value is None:
            continue
        number = value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidDataError(
                f"{source}: label_names name integer classes, but the label of row {offset + i} is "
                f"{value!r}; leave label_names out when the labels are names already"
            )
        if not 0 <= number < len(names):
            named = (
                "1 name, for class 0"
                if len(names) == 1
                else (f"{len(names)} names, for the classes 0 to {len(names) - 1}")
            )
            raise InvalidDataError(
                f"{source}: label {number} (row {offset + i}) has no name: label_names gives "
                f"{named}"
            )
        out[i] = names[number]
    return out


def _with_label_names(dataset: Dataset, names: Sequence[str]) -> Dataset:
    """``dataset`` with its integer labels replaced by ``names`` (see :func:`_named_labels`)."""
    checked = _check_label_names(names)
    if dataset.labels is None:
        raise InvalidDataError(f"{dataset.source} has no labels to name (label_names)")
    labels = _named_labels(dataset.labels, checked, dataset.source)
    return replace(dataset, labels=labels, classes=checked)
