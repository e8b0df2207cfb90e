"""Feature rows on disk: one row per item, appended at import, memory-mapped.

A :class:`RowFile` is three files in the project's ``features/`` folder, named by its stem::

    features/<stem>.npy    the rows, float32 or float64, in NPY format (np.load works on it)
    features/<stem>.json   {"columns": [...], ...}: the column names, in order, and what made them
    features/<stem>.lock   held while rows are appended

A tabular project's pool is the row file ``tabular`` (:class:`TabularStore`: a tabular item
keeps no copy of its fields in the database); a project whose features include an embedding
keeps the embedder's rows in ``embedding-<embedder>`` (:func:`embedding_file`).

Row ``i`` of the file belongs to the item whose ``row`` is ``i``. The database says how many
rows count: item rows run from 0 without gaps, so the pool is the file's first ``count_items``
rows, and anything past them was left by an import that never committed.

:func:`append_rows` binds an append to the database transaction that adds the items: it takes
the lock (one import at a time, across processes), cuts off any uncommitted tail, and returns a
:class:`RowAppender`. Its rows are flushed to disk before the transaction commits; if the
transaction rolls back they are cut off again at once. A process killed mid-import leaves only
rows past the item count, which no reader maps and the next append removes. The header's shape
is rewritten in place after each append (NumPy leaves room in the header for the first axis to
grow), so the file stays a valid ``.npy`` file throughout.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from labelwise.exceptions import InvalidDataError

__all__ = [
    "RowAppender",
    "RowFile",
    "TabularStore",
    "active_append",
    "append_rows",
    "create_store",
    "embedding_file",
    "lock_store",
    "shown",
]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _header(dtype: np.dtype[Any], n_rows: int, n_columns: int) -> bytes:
    out = io.BytesIO()
    npy.write_array_header_1_0(
        out,
        {
            "descr": npy.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": (n_rows, n_columns),
        },
    )
    return out.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def shown(value: Any) -> float:
    """A stored value as the data had it: a float32 by its shortest spelling (0.1, not
    0.10000000149011612), a float64 as it is."""
    if isinstance(value, np.float32):
        return float(str(value))
    return float(value)


class RowFile:
    """One file of feature rows (see the module docstring).

    Parameters
    ----------
    directory : Path
        The project's ``features/`` folder.
    stem : str
        The file's name without its suffix.
    """

    def __init__(self, directory: Path, stem: str) -> None:
        self.directory = Path(directory)
        self.stem = stem
        self.path = self.directory / f"{stem}.npy"
        self.columns_path = self.directory / f"{stem}.json"
        self.lock_path = self.directory / f"{stem}.lock"

    def exists(self) -> bool:
        return self.path.is_file() and self.columns_path.is_file()

    def columns(self) -> tuple[str, ...]:
        """The field names, in column order."""
        try:
            columns = json.loads(self.columns_path.read_text())["columns"]
        except FileNotFoundError:
            raise InvalidDataError(f"no feature file in {self.directory}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidDataError(f"{self.columns_path} is damaged: {exc}") from None
        return tuple(str(c) for c in columns)

    def layout(self) -> tuple[np.dtype[Any], int, int]:
        """(dtype, number of columns, header length in bytes) read from the file's header."""
        try:
            with self.path.open("rb") as fh:
                version = npy.read_magic(fh)
                if version != (1, 0):
                    raise ValueError(f"NPY version {version}, expected 1.0")
                shape, fortran, dtype = npy.read_array_header_1_0(fh)
                offset = fh.tell()
        except FileNotFoundError:
            raise InvalidDataError(f"no feature file in {self.directory}") from None
        except ValueError as exc:
            raise InvalidDataError(f"{self.path} is damaged: {exc}") from None
        if len(shape) != 2 or fortran or dtype not in _DTYPES:
            raise InvalidDataError(
                f"{self.path} is not a feature file: {dtype} of shape {shape}"
                f"{' (Fortran order)' if fortran else ''}"
            )
        return dtype, int(shape[1]), offset

    def rows_on_disk(self) -> int:
        """Rows the file holds, committed or not."""
        dtype, d, offset = self.layout()
        return (self.path.stat().st_size - offset) // max(1, dtype.itemsize * d)

    def matrix(self, n_rows: int) -> np.ndarray:
        """The first ``n_rows`` rows, memory-mapped read-only: shape (n_rows, n_columns)."""
        dtype, d, offset = self.layout()
        if n_rows == 0:
            return np.empty((0, d), dtype=dtype)
        on_disk = self.rows_on_disk()
        if on_disk < n_rows:
            raise InvalidDataError(
                f"{self.path} holds {on_disk:,} rows but the project has {n_rows:,} items; "
                "the feature file is damaged or from another project"
            )
        return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=(n_rows, d))

    def fields(self, rows: list[int], n_rows: int) -> list[dict[str, float]]:
        """The fields of ``rows`` (each below ``n_rows``, the committed count), name to value."""
        if not rows:
            return []
        names = self.columns()
        matrix = self.matrix(n_rows)
        values = np.asarray(matrix[np.asarray(rows, dtype=np.intp)])
        return [{name: shown(v) for name, v in zip(names, row, strict=True)} for row in values]

    def info(self) -> dict[str, Any]:
        """What the column file records besides the columns (e.g. the embedder's name)."""
        try:
            return dict(json.loads(self.columns_path.read_text()))
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError) as exc:
            raise InvalidDataError(f"{self.columns_path} is damaged: {exc}") from None


class TabularStore(RowFile):
    """A tabular project's pool: the row file ``tabular``."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "tabular")


def embedding_file(directory: Path, embedder: str) -> RowFile:
    """The row file holding ``embedder``'s embeddings of a project's items: named after the
    embedder (readable, filesystem-safe), with a digest of the full name so two names never
    share a file."""
    readable = re.sub(r"[^a-z0-9]+", "-", embedder.lower()).strip("-")[:40] or "embedder"
    digest = hashlib.sha1(embedder.encode()).hexdigest()[:8]
    return RowFile(directory, f"embedding-{readable}-{digest}")


class RowAppender:
    """Rows added by one import to a :class:`RowFile`; see :func:`append_rows`.

    Attributes
    ----------
    start : int
        The row the import's first item gets (the committed item count).
    written : int
        Rows appended so far.
    columns : tuple of str
    dtype : numpy dtype
    """

    def __init__(
        self,
        store: RowFile,
        lock: IO[str] | None,
        start: int,
        columns: tuple[str, ...],
        dtype: np.dtype[Any],
    ) -> None:
        self.store = store
        self.start = start
        self.written = 0
        self.columns = columns
        self.dtype = dtype
        self._lock: IO[str] | None = lock
        self._offset = store.layout()[2]
        self._row_bytes = dtype.itemsize * len(columns)
        self._fh: IO[bytes] | None = store.path.open("r+b")
        self._fh.truncate(self._offset + start * self._row_bytes)  # an uncommitted tail
        self._fh.seek(0, os.SEEK_END)

    @property
    def next_row(self) -> int:
        """The row the next appended item gets."""
        return self.start + self.written

    @property
    def active(self) -> bool:
        """Whether the append is still open (its transaction has not ended)."""
        return self._fh is not None

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` of shape (n, n_columns) (cast to the file's dtype); rows must be
        finite."""
        if self._fh is None:
            raise RuntimeError("this append has ended")
        if block.ndim != 2 or block.shape[1] != len(self.columns):
            raise InvalidDataError(
                f"feature rows of shape {block.shape} do not fit a file of "
                f"{len(self.columns)} columns"
            )
        values = np.ascontiguousarray(block, dtype=self.dtype)
        if not np.isfinite(values).all():
            row, col = np.argwhere(~np.isfinite(values))[0]
            raise InvalidDataError(
                f"feature {self.columns[col]!r} of row {self.start + self.written + row} is "
                "NaN or infinite (or too large for the project's float32 features)"
            )
        self._fh.write(values.data)  # the buffer itself: no copy
        self.written += len(values)

    def flush(self) -> None:
        """Put the rows on disk and the new row count in the header (before the commit)."""
        if self._fh is None:
            return
        self._fh.flush()
        self._set_rows(self.start + self.written)
        os.fsync(self._fh.fileno())

    def _set_rows(self, n_rows: int) -> None:
        assert self._fh is not None
        header = _header(self.dtype, n_rows, len(self.columns))
        if len(header) != self._offset:
            raise InvalidDataError(f"{self.store.path}: the header has no room for {n_rows} rows")
        os.pwrite(self._fh.fileno(), header, 0)

    def abort(self) -> None:
        """Cut the import's rows off again and end the append."""
        if self._fh is not None:
            self._fh.truncate(self._offset + self.start * self._row_bytes)
            self._set_rows(self.start)
            os.fsync(self._fh.fileno())
        self.close()

    def close(self) -> None:
        """End the append (the rows stay) and release the lock."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def lock_store(store: RowFile) -> IO[str]:
    """Take the store's exclusive lock (waiting for another import to end); returns the handle
    to close."""
    store.directory.mkdir(parents=True, exist_ok=True)
    lock = store.lock_path.open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def create_store(
    store: RowFile,
    columns: tuple[str, ...],
    dtype: np.dtype[Any],
    info: dict[str, Any] | None = None,
) -> None:
    """(Re)create an empty feature file for ``columns`` of ``dtype`` (under the lock); ``info``
    is recorded beside the columns."""
    if np.dtype(dtype) not in _DTYPES:
        raise InvalidDataError(f"features must be float32 or float64, got {dtype}")
    if len(set(columns)) != len(columns) or not columns:
        raise InvalidDataError(f"feature names must be distinct and non-empty: {list(columns)}")
    _atomic_write(store.path, _header(np.dtype(dtype), 0, len(columns)))
    record = {**(info or {}), "columns": list(columns)}
    _atomic_write(store.columns_path, json.dumps(record).encode())


def _active_key(store: RowFile) -> str:
    return f"labelwise.rows:{store.path.resolve()}"


def active_append(session: Session, store: RowFile) -> RowAppender | None:
    """The append ``session``'s transaction already holds on ``store`` (a second import in the
    same transaction continues it: taking the lock again would wait for itself)."""
    appender = session.info.get(_active_key(store))
    return appender if isinstance(appender, RowAppender) and appender.active else None


def append_rows(session: Session, store: RowFile, lock: IO[str], start: int) -> RowAppender:
    """A :class:`RowAppender` at row ``start`` whose rows stand or fall with ``session``'s
    transaction: flushed to disk before it commits, cut off if it rolls back. ``lock`` (from
    :func:`lock_store`) is released when the transaction ends."""
    root = session.get_transaction()
    if root is None:
        raise RuntimeError("rows are appended inside a transaction")
    dtype, _, _ = store.layout()
    appender = RowAppender(store, lock, start, store.columns(), dtype)
    session.info[_active_key(store)] = appender
    committed = False
    ended = False

    # The listeners stay on the session when the transaction ends (SQLAlchemy refuses removing
    # one while its event runs); ``ended`` makes them inert from then on.
    def before_commit(sess: Session) -> None:
        if not ended and sess.get_nested_transaction() is None:  # the real commit
            appender.flush()

    def after_commit(sess: Session) -> None:
        nonlocal committed
        committed = committed or (not ended and sess.get_nested_transaction() is None)

    def after_end(sess: Session, transaction: SessionTransaction) -> None:
        nonlocal ended
        if ended or transaction is not root:
            return
        ended = True
        session.info.pop(_active_key(store), None)
        if committed:
            appender.close()
        else:
            appender.abort()

    event.listen(session, "before_commit", before_commit)
    event.listen(session, "after_commit", after_commit)
    event.listen(session, "after_transaction_end", after_end)
    return appender
