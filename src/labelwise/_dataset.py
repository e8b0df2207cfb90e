"""The :class:`Dataset` that :func:`labelwise.data.load_dataset` returns.

Defined apart from :mod:`labelwise.data` so that the readers in :mod:`labelwise._tables` and
:mod:`labelwise._media` can build one without importing the dispatch that imports them; the
public name is :class:`labelwise.data.Dataset`.
"""

from __future__ import annotations

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
        None when the file has no label column.
    ids : ndarray of shape (n,)
        Object array of ``str``: the id column, else the row numbers ``"0"``, ``"1"``, ...
        (relative file paths for an image folder).
    feature_names : tuple of str
        tabular: the column names (``"f1"``... for LIBSVM and arrays); text: the text column's
        name; image: empty.
    source : str
        The path the data was read from.
    """

    kind: Kind
    items: np.ndarray | sp.csr_matrix
    labels: np.ndarray | None
    ids: np.ndarray
    feature_names: tuple[str, ...] = ()
    source: str = ""

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

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def subset(self, indices: ArrayLike) -> Dataset:
        """The rows at ``indices`` (integer array of shape (k,)), in that order."""
        idx = as_indices(indices, len(self))
        labels = None if self.labels is None else self.labels[idx]
        return replace(self, items=self.items[idx], labels=labels, ids=self.ids[idx])

    def require_labels(self) -> np.ndarray:
        """The labels, shape (n,); InvalidDataError when the file has none or some are missing."""
        if self.labels is None:
            raise InvalidDataError(
                f"{self.source} has no label column; name it with label_column=..."
            )
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
