"""A tabular source as chunks of rows: :class:`TableChunk` and :class:`TabularStream`.

A stream reads its source again, start to end, one chunk at a time (:meth:`TabularStream.chunks`),
or its label column alone (:meth:`TabularStream.label_counts`). :func:`_frame_chunks` makes the
chunks from frames of the columns in use, converted and checked as
:class:`~labelwise.io.tables._Table` converts a whole file; :func:`_float_type` says whether the
features keep float32. The readers that open a file as a stream are in
:mod:`labelwise.io.stream`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.io.dataset import _check_label_names, _named_labels
from labelwise.io.tables import _Table

__all__ = ["DEFAULT_CHUNK_ROWS", "TableChunk", "TabularStream"]

#: Rows per chunk unless the caller says otherwise (50 float64 features: 26 MB).
DEFAULT_CHUNK_ROWS = 65_536

# Feature types that float32 holds exactly.
_NARROW = (np.float16, np.float32, np.int8, np.int16, np.uint8, np.uint16, np.bool_)

# (first row, frame of the requested columns, in the order requested) for each chunk.
_Frames = Callable[[list[int], int], Iterator[tuple[int, pd.DataFrame]]]


@dataclass(frozen=True)
class TableChunk:
    """Consecutive rows of a tabular file.

    Attributes
    ----------
    start : int
        The number of the chunk's first row in the file (0 for the first data row).
    ids : ndarray of shape (n,)
        Object array of ``str``: the id column, else the row numbers.
    features : ndarray of shape (n, n_features)
        The stream's ``dtype``; finite.
    labels : ndarray of shape (n,) or None
        Object array of ``str``, ``None`` where a row has no label; None without a label column.
        A stream of label lists (``multi_label``) gives each row's names joined by ``;``.
    splits : ndarray of shape (n,) or None
        Object array of ``str``: each row's split (see :attr:`labelwise.io.load.Dataset.splits`);
        None when the source does not keep splits apart.
    """

    start: int
    ids: np.ndarray
    features: np.ndarray
    labels: np.ndarray | None
    splits: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class TabularStream:
    """A tabular source read chunk by chunk (see the module docstring).

    Attributes
    ----------
    source : str
        The path read (what error messages name).
    feature_names : tuple of str
    dtype : numpy dtype
        float32 or float64: the features of every chunk.
    has_labels : bool
        Whether the source has a label column.
    n_rows : int or None
        Known in advance for Parquet, ``.npy`` and in-memory data; None for large delimited text.
    rows_hint : int or None
        ``n_rows`` when known, else an estimate from the sample (for progress bars).
    ids_numbered : bool
        True when the source has no id column and the ids are its row numbers.
    label_column : str or None
        The label column's name (None without one, or for arrays).
    classes : tuple of str
        The names of integer classes when ``label_names`` gave them (the labels are then names).
    """

    source: str
    feature_names: tuple[str, ...]
    dtype: np.dtype[Any]
    has_labels: bool
    n_rows: int | None
    _read: Callable[[int, bool], Iterator[TableChunk]]
    rows_hint: int | None = None
    ids_numbered: bool = False
    label_column: str | None = None
    classes: tuple[str, ...] = ()

    def chunks(self, rows: int | None = None) -> Iterator[TableChunk]:
        """Every row, in file order, ``rows`` (default :data:`DEFAULT_CHUNK_ROWS`) at a time;
        the last chunk may be shorter."""
        rows = DEFAULT_CHUNK_ROWS if rows is None else rows
        if rows < 1:
            raise InvalidParameterError(f"rows must be at least 1, got {rows}")
        return self._read(rows, False)

    def label_values(self) -> list[str]:
        """The distinct labels of the file, sorted; one pass that reads the label column only."""
        return sorted(self.label_counts())

    def label_counts(
        self, progress: Callable[[int, int | None], None] | None = None
    ) -> dict[str, int]:
        """How many rows hold each label; one pass that reads the label column only.
        ``progress(rows read, rows_hint)`` is called after each chunk."""
        counts: dict[str, int] = {}
        done = 0
        for chunk in self._read(DEFAULT_CHUNK_ROWS, True):
            if chunk.labels is not None:
                values, numbers = np.unique(
                    np.asarray([v for v in chunk.labels.tolist() if v is not None], dtype=str),
                    return_counts=True,
                )
                for value, number in zip(values.tolist(), numbers.tolist(), strict=True):
                    counts[value] = counts.get(value, 0) + number
                done += len(chunk.labels)
            if progress is not None:
                progress(done, self.rows_hint)
        return counts

    def with_label_names(self, names: Sequence[str]) -> TabularStream:
        """This stream with its integer labels replaced by ``names`` (class ``k`` becomes
        ``names[k]``); a label that is not such an integer is an error when its chunk is read."""
        checked = _check_label_names(names)
        if not self.has_labels:
            raise InvalidDataError(f"{self.source} has no labels to name (label_names)")
        read = self._read

        def named(rows: int, labels_only: bool) -> Iterator[TableChunk]:
            for chunk in read(rows, labels_only):
                if chunk.labels is None:
                    yield chunk
                    continue
                labels = _named_labels(chunk.labels, checked, self.source, offset=chunk.start)
                yield replace(chunk, labels=labels)

        return replace(self, _read=named, classes=checked)


def _label_strings(values: np.ndarray | None) -> np.ndarray | None:
    """Labels (int64, or object of str/int/None) as an object array of str and None."""
    if values is None:
        return None
    out = np.empty(len(values), dtype=object)
    out[:] = [None if v is None else str(v) for v in values.tolist()]
    return out


def _frame_chunks(
    frames: _Frames,
    path: Path,
    names: Sequence[str],
    id_j: int | None,
    label_j: int | None,
    features: list[int],
    dtype: np.dtype[Any],
    *,
    label_lists: bool = False,
) -> Callable[[int, bool], Iterator[TableChunk]]:
    """Chunks from frames of the columns in use, converted as :class:`_Table` converts them
    (``label_lists``: labels read as lists, see :meth:`_Table._label_lists`)."""

    def read(rows: int, labels_only: bool) -> Iterator[TableChunk]:
        wanted = [label_j] if labels_only else [id_j, label_j, *features]
        used = sorted({j for j in wanted if j is not None})
        at = {j: k for k, j in enumerate(used)}
        for start, frame in frames(used, rows):
            table = _Table(
                frame,
                path,
                names=[names[j] for j in used],
                offset=start,
                label_lists=label_lists,
            )
            n = table.n
            labels = None if label_j is None else _label_strings(table._labels(at[label_j]))
            if labels_only:
                yield TableChunk(start, np.empty(0, dtype=object), np.empty((0, 0)), labels)
                continue
            if id_j is None:
                ids = np.arange(start, start + n).astype(str).astype(object)
            else:
                ids = table._ids(at[id_j])
            matrix = np.empty((n, len(features)), dtype=dtype)
            for k, j in enumerate(features):
                column = frame.iloc[:, at[j]]
                if column.dtype.kind in "fiu":  # numbers already: no conversion, no copy
                    matrix[:, k] = column.to_numpy()
                else:
                    matrix[:, k] = table._feature(at[j])
            if not np.isfinite(matrix).all():
                bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=0))[0])
                table._feature(at[features[bad]])  # raises, naming the column and the row
                raise InvalidDataError(  # a float64 value too large for float32
                    f"{path}: feature column {names[features[bad]]!r} holds a value too large "
                    f"for float32 (rows {start} to {start + n - 1})"
                )
            yield TableChunk(start, ids, matrix, labels)

    return read


def _float_type(dtypes: Sequence[Any]) -> np.dtype[Any]:
    """float32 when every column's type is one float32 holds exactly, else float64."""

    def narrow(dtype: Any) -> bool:
        try:
            return any(np.dtype(dtype) == np.dtype(t) for t in _NARROW)
        except TypeError:  # a pandas extension type (strings, categories, nullable integers)
            return False

    return np.dtype(np.float32 if dtypes and all(narrow(d) for d in dtypes) else np.float64)
