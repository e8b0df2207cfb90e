"""The pool: one feature matrix addressed by indices, and which of its rows are labeled.

The matrix may be a dense array, a memory map (``np.load(path, mmap_mode="r")``) or a sparse CSR
matrix. It is validated once, chunk by chunk, when the pool is built, and never copied or grown
afterwards: the labeled and unlabeled sets are a boolean mask over its rows, labels are integer
codes in one array of the pool's length. Adding labels costs time proportional to the batch, not
to the pool.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError

__all__ = [
    "Matrix",
    "Pool",
    "as_indices",
    "check_finite",
    "check_labels",
    "check_matrix",
    "open_features",
    "take_rows",
]

Matrix: TypeAlias = "np.ndarray | sp.csr_matrix | sp.csr_array"

_VALIDATE_CHUNK = 262_144


def take_rows(X: Matrix, rows: NDArray[np.intp]) -> Matrix:
    """Rows of ``X`` (dense, memory-mapped or sparse) as a matrix.

    A run of consecutive rows of a dense matrix is a view (no copy: scoring a whole pool chunk
    by chunk reads it in place); anything else is gathered into memory.
    """
    n = len(rows)
    if (
        n > 1
        and isinstance(X, np.ndarray)
        and int(rows[-1]) - int(rows[0]) == n - 1
        and (n < 3 or bool(np.all(np.diff(rows) == 1)))
    ):
        return X[int(rows[0]) : int(rows[-1]) + 1]
    return X[rows]


def check_matrix(X: Any, *, name: str = "X", values: bool = True) -> Matrix:
    """Return ``X`` as a 2-D numeric matrix without copying, or raise :class:`InvalidDataError`.

    Sparse matrices are converted to CSR (row slicing is what the pool does most). With
    ``values`` (the default), every value is also checked for NaN and infinity, dense arrays
    and memory maps in chunks (bounded memory); without, only the shape and dtype are checked,
    for a caller that reads ``X`` part by part and checks each part with :func:`check_finite`
    (the partitioned-pool writer).
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X) if not isinstance(X, (sp.csr_matrix, sp.csr_array)) else X
    elif not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise InvalidDataError(f"{name} is not a numeric matrix: {exc}") from None
    if X.ndim != 2:
        raise InvalidDataError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype == bool or not np.issubdtype(X.dtype, np.number):
        raise InvalidDataError(f"{name} must be numeric, got dtype {X.dtype}")
    if values:
        if sp.issparse(X):
            check_finite(X, name=name)
        else:
            for start in range(0, X.shape[0], _VALIDATE_CHUNK):
                check_finite(X[start : start + _VALIDATE_CHUNK], name=name, offset=start)
    return X


def check_finite(block: Any, *, name: str = "X", offset: int = 0) -> None:
    """Raise :class:`InvalidDataError` naming the first NaN or infinity of ``block`` (dense or
    CSR), whose first row is row ``offset`` of ``name``."""
    if not np.issubdtype(block.dtype, np.floating):
        return
    if sp.issparse(block):
        finite = np.isfinite(block.data)
        if not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            row = int(np.searchsorted(block.indptr, first, side="right")) - 1
            raise InvalidDataError(f"{name} holds NaN or infinity (first in row {offset + row})")
        return
    finite = np.isfinite(block)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise InvalidDataError(
            f"{name} holds NaN or infinity (first at row {offset + int(row)}, column {int(col)})"
        )


def as_indices(indices: ArrayLike, n: int, *, name: str = "indices") -> NDArray[np.intp]:
    """Validate an index array against a pool of ``n`` rows; returns it as ``intp``."""
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise InvalidParameterError(f"{name} must be 1-D, got shape {idx.shape}")
    if idx.size == 0:
        return idx.astype(np.intp)
    if not np.issubdtype(idx.dtype, np.integer):
        raise InvalidParameterError(f"{name} must be integers, got dtype {idx.dtype}")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise InvalidParameterError(f"{name} holds {bad}, outside the pool's rows 0..{n - 1}")
    return idx.astype(np.intp, copy=False)


def open_features(path: str | Path) -> Matrix:
    """Open a feature matrix saved with ``np.save`` (memory-mapped) or ``scipy.sparse.save_npz``."""
    path = Path(path)
    if not path.exists():
        raise InvalidDataError(f"no such feature file: {path}")
    if path.suffix not in (".npy", ".npz"):
        raise InvalidDataError(f"unsupported feature file {path.name}: expected .npy or .npz")
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r")
        return sp.load_npz(path).tocsr()
    except (ValueError, EOFError, OSError, KeyError, zipfile.BadZipFile) as exc:
        # A file cut short (a full disk, a crash without fsync) or overwritten: named, not a
        # bare traceback from numpy's or zipfile's insides.
        raise InvalidDataError(f"the feature file {path} is damaged: {exc}") from None


class Pool:
    """Every item's features, plus the labels known so far.

    Parameters
    ----------
    X : array-like, memory map or sparse matrix of shape (n_items, n_features)
        Kept by reference: never copied, never modified.
    classes : sequence, optional
        Known label values, fixing their order; labels outside it are appended as they arrive.
    validate : bool, default True
        Check once that ``X`` is 2-D, numeric and finite.

    Notes
    -----
    ``labeled`` and ``unlabeled`` are computed from a boolean mask; labels are stored as integer
    codes into ``classes`` (``-1`` for unlabeled), so string and integer labels both work.
    """

    def __init__(self, X: Any, *, classes: Sequence[Any] | None = None, validate: bool = True):
        self.X: Matrix = check_matrix(X) if validate else X
        self.n_items: int = int(self.X.shape[0])
        if self.n_items == 0:
            raise InvalidDataError("the pool is empty: X has no rows")
        self._codes = np.full(self.n_items, -1, dtype=np.int32)
        self._classes: list[Any] = []
        self._code_of: dict[Any, int] = {}
        for value in classes or ():
            self._code(value)

    def __len__(self) -> int:
        return self.n_items

    @property
    def classes(self) -> NDArray[Any]:
        """Label values seen or declared so far, in the order they were first met."""
        return as_label_array(self._classes)

    @property
    def labeled_mask(self) -> NDArray[np.bool_]:
        """Boolean mask of shape (n_items,): True where a label is known. A fresh array."""
        return self._codes >= 0

    @property
    def labeled(self) -> NDArray[np.intp]:
        """Indices of labeled items, ascending."""
        return np.flatnonzero(self._codes >= 0)

    @property
    def unlabeled(self) -> NDArray[np.intp]:
        """Indices of unlabeled items, ascending."""
        return np.flatnonzero(self._codes < 0)

    @property
    def n_labeled(self) -> int:
        return int(np.count_nonzero(self._codes >= 0))

    def labels_of(self, indices: ArrayLike) -> NDArray[Any]:
        """The labels of ``indices``; every one of them must be labeled."""
        idx = as_indices(indices, self.n_items)
        codes = self._codes[idx]
        if (codes < 0).any():
            first = int(idx[np.flatnonzero(codes < 0)[0]])
            raise InvalidParameterError(f"item {first} has no label yet")
        return self.classes[codes]

    @property
    def y_labeled(self) -> NDArray[Any]:
        """Labels of :attr:`labeled`, aligned with it."""
        return self.labels_of(self.labeled)

    def label(self, indices: ArrayLike, labels: Iterable[Any]) -> None:
        """Record ``labels`` for ``indices`` (relabeling an item replaces its label)."""
        idx, values = check_labels(indices, labels, self.n_items)
        codes = np.empty(len(values), dtype=np.int32)
        for i, value in enumerate(values):
            codes[i] = self._code(value)
        self._codes[idx] = codes

    def unlabel(self, indices: ArrayLike) -> None:
        """Forget the labels of ``indices`` (they return to the unlabeled pool)."""
        self._codes[as_indices(indices, self.n_items)] = -1

    def _code(self, value: Any) -> int:
        key = value.item() if isinstance(value, np.generic) else value
        code = self._code_of.get(key)
        if code is None:
            code = len(self._classes)
            self._classes.append(key)
            self._code_of[key] = code
        return code


def check_labels(
    indices: ArrayLike,
    labels: Iterable[Any],
    n: int,
    *,
    name: str = "indices",
    noun: str = "indices",
    repeated: str = "indices to label must be unique",
) -> tuple[NDArray[np.intp], list[Any]]:
    """Rows of a pool of ``n`` and their labels, checked to pair up: as many labels as rows,
    no row twice (``repeated`` says so), no label missing (None or NaN).

    ``name`` names the rows in an index error, ``noun`` in a count mismatch: the pool says
    "indices", a partitioned pool's query "labeled rows".
    """
    idx = as_indices(np.asarray(indices), n, name=name)
    values = list(labels)
    if len(values) != len(idx):
        raise InvalidParameterError(
            f"got {len(idx)} {noun} but {len(values)} labels; they must pair up"
        )
    if len(np.unique(idx)) != len(idx):
        raise InvalidParameterError(repeated)
    for row, value in zip(idx, values, strict=True):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise InvalidParameterError(f"label for item {int(row)} is missing")
    return idx, values


def as_label_array(values: list[Any]) -> NDArray[Any]:
    """Labels as an array whose dtype scikit-learn understands (int, float or str)."""
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=object)
    return np.asarray([str(v) for v in values], dtype=object)
