"""A pool stored as partitioned files: what the workers of a Dask cluster read.

A partitioned pool is a folder::

    pool/
      manifest.json      what follows, and how the rows are split
      part-00000.npy     rows 0 … r0-1
      part-00001.npy     rows r0 … r0+r1-1
      …
      ids.npy            one id per row (optional: numbers or strings)

``manifest.json`` holds ``format`` (``"labelwise-partitioned-pool"``), ``version`` (1),
``rows``, ``features``, ``dtype``, ``storage``, the ``partitions`` (``file``, ``offset``,
``rows``) in row order, ``ids`` (the ids file or null) and ``source`` (whatever the writer
recorded about where the rows came from, so that a copy can be checked for staleness).

Storages:

- ``npy``: dense, one ``np.save`` file per partition, opened as a memory map (the fast path:
  scoring reads it in place, and a worker reads single rows without loading the file);
- ``npz``: sparse CSR (``scipy.sparse.save_npz``), for TF-IDF and other sparse features;
- ``parquet``: dense, one column ``features`` of fixed-size lists (needs ``pyarrow``), for
  stores that expect Parquet; a worker loads a whole partition to read from it.

The folder must be visible at the same path to the client and to every worker (a shared
filesystem): workers open the files themselves, nothing but row numbers crosses the network.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.pool import Matrix, check_finite, check_matrix

__all__ = [
    "FORMAT",
    "STORAGES",
    "Partition",
    "PartitionedPool",
    "PoolReader",
    "ensure_partitioned",
    "open_partitioned",
    "take_grouped",
    "write_partitioned",
]

FORMAT = "labelwise-partitioned-pool"
_VERSION = 1
MANIFEST = "manifest.json"
STORAGES = ("npy", "npz", "parquet")
_SUFFIX = {"npy": ".npy", "npz": ".npz", "parquet": ".parquet"}
#: Partition size when none is given: about this many bytes of features per file.
_TARGET_BYTES = 64 * 2**20


def _parquet() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidParameterError(
            "Parquet partitions need pyarrow: pip install labelwise[parquet]"
        ) from None
    return pa, pq


@dataclass(frozen=True)
class Partition:
    """One file of a partitioned pool: rows ``offset … offset + rows - 1`` of the pool."""

    path: str
    offset: int
    rows: int
    n_features: int
    dtype: str
    storage: str

    def open(self) -> Matrix:
        """The partition's rows: a memory map (``npy``), a CSR matrix or an array."""
        path = Path(self.path)
        if not path.is_file():
            raise InvalidDataError(f"partition file missing: {path}")
        if self.storage == "npy":
            X: Any = np.load(path, mmap_mode="r")
        elif self.storage == "npz":
            X = sp.load_npz(path).tocsr()
        else:
            X = _read_parquet(path, self.n_features)
        if X.shape != (self.rows, self.n_features) or X.dtype != np.dtype(self.dtype):
            raise InvalidDataError(
                f"{path.name} holds {X.shape[0]}x{X.shape[1]} {X.dtype} but the manifest says "
                f"{self.rows}x{self.n_features} {self.dtype}; the pool folder is damaged"
            )
        return X


def _read_parquet(path: Path, n_features: int) -> NDArray[Any]:
    _, pq = _parquet()
    table = pq.read_table(path, columns=["features"], memory_map=True)
    column = table.column("features").combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(-1, n_features)


@dataclass(frozen=True, eq=False)
class PartitionedPool:
    """A partitioned pool folder, opened: its shape, dtype and partitions (see the module doc).

    Attributes
    ----------
    root : str
        The folder (absolute).
    n_rows, n_features : int
    dtype : str
    storage : {"npy", "npz", "parquet"}
    partitions : tuple of Partition
        In row order, consecutive.
    ids_file : str or None
    source : dict or None
        What the writer recorded about the rows' origin.
    """

    root: str
    n_rows: int
    n_features: int
    dtype: str
    storage: str
    partitions: tuple[Partition, ...]
    ids_file: str | None = None
    source: dict[str, Any] | None = None
    offsets: NDArray[np.int64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offsets = np.asarray([p.offset for p in self.partitions] + [self.n_rows], dtype=np.int64)
        object.__setattr__(self, "offsets", offsets)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_features)

    @property
    def is_sparse(self) -> bool:
        return self.storage == "npz"

    def locate(self, rows: NDArray[np.intp]) -> NDArray[np.intp]:
        """The partition number of each (global) row."""
        return (np.searchsorted(self.offsets, rows, side="right") - 1).astype(np.intp)

    def reader(self) -> PoolReader:
        """A reader that keeps the partitions it opens (for the duration of one task)."""
        return PoolReader(self)

    def take(self, rows: ArrayLike) -> Matrix:
        """Rows of the pool, in the order given (read here, from the files)."""
        return self.reader().take(np.asarray(rows, dtype=np.intp))

    def ids(self) -> NDArray[Any] | None:
        """Every row's id (a memory map), or None when the pool was written without ids."""
        return None if self.ids_file is None else np.load(self.ids_file, mmap_mode="r")

    def rows_of(self, ids: ArrayLike) -> NDArray[np.intp]:
        """The rows of the given ids (row numbers when the pool has no ids).

        Raises :class:`InvalidDataError` naming the first id that is not in the pool.
        """
        wanted = np.asarray(ids)
        if wanted.ndim != 1:
            raise InvalidParameterError(f"ids must be 1-D, got shape {wanted.shape}")
        known = self.ids()
        if known is None or known.dtype.kind in "iu":
            try:
                as_int = np.asarray([int(str(v)) for v in wanted], dtype=np.int64)
            except ValueError:
                bad = next(str(v) for v in wanted if not _is_int(v))
                raise InvalidDataError(
                    f"id {bad!r} is not in the pool (its ids are "
                    f"{'row numbers' if known is None else 'integers'})"
                ) from None
            if known is None:
                outside = (as_int < 0) | (as_int >= self.n_rows)
                if outside.any():
                    raise InvalidDataError(
                        f"id {int(as_int[outside][0])} is not a row of the pool "
                        f"(rows 0..{self.n_rows - 1}; the pool has no ids)"
                    )
                return as_int.astype(np.intp)
            wanted = as_int
        else:
            wanted = wanted.astype(str)
        order = np.argsort(known, kind="stable")
        ordered = known[order]
        pos = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
        found = ordered[pos] == wanted
        if not found.all():
            raise InvalidDataError(f"id {wanted[~found][0].item()!r} is not in the pool")
        return order[pos].astype(np.intp)


def _is_int(value: Any) -> bool:
    try:
        int(str(value))
    except ValueError:
        return False
    return True


class PoolReader:
    """Reads rows of a partitioned pool, opening each partition once."""

    def __init__(self, pool: PartitionedPool):
        self.pool = pool
        self._open: dict[int, Matrix] = {}

    def partition(self, number: int) -> Matrix:
        if number not in self._open:
            self._open[number] = self.pool.partitions[number].open()
        return self._open[number]

    def range(self, start: int, stop: int) -> Matrix:
        """Rows ``start … stop - 1``: a view when they lie in one dense partition."""
        first, last = self.pool.locate(np.asarray([start, stop - 1]))
        parts = []
        for number in range(int(first), int(last) + 1):
            offset, end = int(self.pool.offsets[number]), int(self.pool.offsets[number + 1])
            parts.append(
                self.partition(number)[max(start, offset) - offset : min(stop, end) - offset]
            )
        return _stack(parts)

    def take(self, rows: NDArray[np.intp]) -> Matrix:
        """Rows in the order given."""
        return take_grouped(
            self.pool, rows, lambda asks: [self.partition(n)[local] for n, local in asks]
        )


def take_grouped(
    pool: PartitionedPool,
    rows: NDArray[np.intp],
    read: Callable[[list[tuple[int, NDArray[np.intp]]]], list[Matrix]],
) -> Matrix:
    """Rows of ``pool`` in the order given, read partition by partition.

    ``read`` receives ``(partition number, local rows)`` pairs and returns their rows (it may
    read them here or have a cluster read them).
    """
    if len(rows) == 0:
        if pool.is_sparse:
            return sp.csr_matrix((0, pool.n_features), dtype=pool.dtype)
        return np.empty((0, pool.n_features), dtype=pool.dtype)
    owner = pool.locate(rows)
    order = np.argsort(owner, kind="stable")
    asks = []
    for number in np.unique(owner):
        picked = order[owner[order] == number]
        asks.append((int(number), (rows[picked] - int(pool.offsets[number])).astype(np.intp)))
    stacked = _stack(read(asks))
    if np.array_equal(order, np.arange(len(rows))):
        return stacked
    inverse = np.empty(len(rows), dtype=np.intp)
    inverse[order] = np.arange(len(rows))
    return stacked[inverse]


def _stack(parts: list[Any]) -> Matrix:
    if len(parts) == 1:
        return parts[0]
    if sp.issparse(parts[0]):
        return sp.vstack(parts, format="csr")
    return np.concatenate(parts)


def _manifest_partitions(root: Path, manifest: Mapping[str, Any]) -> tuple[Partition, ...]:
    parts = []
    offset = 0
    for i, entry in enumerate(manifest["partitions"]):
        name = str(entry["file"])
        if Path(name).name != name:
            raise InvalidDataError(f"{root / MANIFEST}: partition {i} names {name!r}, not a file")
        if int(entry["offset"]) != offset or int(entry["rows"]) < 1:
            raise InvalidDataError(
                f"{root / MANIFEST}: partition {i} starts at row {entry['offset']} with "
                f"{entry['rows']} rows; expected row {offset} and at least one row"
            )
        parts.append(
            Partition(
                path=str(root / name),
                offset=offset,
                rows=int(entry["rows"]),
                n_features=int(manifest["features"]),
                dtype=str(manifest["dtype"]),
                storage=str(manifest["storage"]),
            )
        )
        offset += int(entry["rows"])
    if offset != int(manifest["rows"]) or not parts:
        raise InvalidDataError(
            f"{root / MANIFEST}: the partitions hold {offset} rows but the pool has "
            f"{manifest['rows']}"
        )
    return tuple(parts)


def open_partitioned(folder: str | os.PathLike[str]) -> PartitionedPool:
    """Open a partitioned pool folder (checks its manifest, and that every file is there)."""
    root = Path(folder).resolve()
    path = root / MANIFEST
    if not path.is_file():
        raise InvalidDataError(f"{root} is not a partitioned pool: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidDataError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidDataError(f"{path} is not a Labelwise partitioned-pool manifest")
    if manifest.get("version") != _VERSION:
        raise InvalidDataError(
            f"{path} has version {manifest.get('version')!r}; this Labelwise reads {_VERSION}"
        )
    try:
        storage = str(manifest["storage"])
        if storage not in STORAGES:
            raise InvalidDataError(f"{path}: unknown storage {storage!r}")
        np.dtype(manifest["dtype"])
        partitions = _manifest_partitions(root, manifest)
        ids = manifest.get("ids")
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidDataError(f"{path} is incomplete or malformed: {exc!r}") from None
    for part in partitions:
        if not Path(part.path).is_file():
            raise InvalidDataError(f"partition file missing: {part.path}")
    if ids is not None and not (root / str(ids)).is_file():
        raise InvalidDataError(f"ids file missing: {root / str(ids)}")
    return PartitionedPool(
        root=str(root),
        n_rows=int(manifest["rows"]),
        n_features=int(manifest["features"]),
        dtype=str(np.dtype(manifest["dtype"])),
        storage=storage,
        partitions=partitions,
        ids_file=None if ids is None else str(root / str(ids)),
        source=manifest.get("source"),
    )


def _source_matrix(X: Any) -> Matrix:
    """``X`` as a 2-D numeric matrix with rows and features, without reading its values (the
    writer checks them part by part, :func:`~labelwise.pool.check_finite`)."""
    X = check_matrix(X, values=False)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidDataError(f"X must have rows and features, got shape {X.shape}")
    return X


def _auto_rows(X: Any) -> int:
    n, d = X.shape
    if sp.issparse(X):
        per_row = X.nnz / n * (X.dtype.itemsize + X.indices.dtype.itemsize) + 8
    else:
        per_row = d * X.dtype.itemsize
    return int(max(1, min(n, _TARGET_BYTES // max(1, int(per_row)))))


def _checked_ids(ids: ArrayLike, n: int) -> NDArray[Any]:
    values = np.asarray(ids)
    if values.ndim != 1 or len(values) != n:
        raise InvalidParameterError(
            f"ids must be 1-D with one id per row ({n}), got {values.shape}"
        )
    if values.dtype.kind not in "iu":
        values = values.astype(str)
    distinct = len(np.unique(values))
    if distinct != n:
        raise InvalidParameterError(f"ids must be unique: {n - distinct} repeat an earlier id")
    return values


def _write_part(path: Path, block: Matrix, storage: str) -> None:
    if storage == "npy":
        np.save(path, np.ascontiguousarray(block), allow_pickle=False)
    elif storage == "npz":
        sp.save_npz(path, sp.csr_matrix(block))
    else:
        pa, pq = _parquet()
        flat = pa.array(np.ascontiguousarray(block).reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(flat, block.shape[1])
        pq.write_table(pa.table({"features": column}), path)


def _iter_parts(n: int, rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, rows):
        yield start, min(start + rows, n)


def write_partitioned(
    X: Any,
    folder: str | os.PathLike[str],
    *,
    rows_per_partition: int | None = None,
    storage: str | None = None,
    ids: ArrayLike | None = None,
    source: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> PartitionedPool:
    """Write ``X`` as a partitioned pool folder and open it.

    Parameters
    ----------
    X : array, memory map or sparse matrix of shape (n_rows, n_features)
        Read one partition at a time (a memory map larger than memory is fine); each part is
        checked for NaN and infinity as it is written.
    folder : path
        Created; written through a temporary folder beside it and renamed into place, so a
        failed write leaves nothing (and an existing pool stays as it was).
    rows_per_partition : int, optional
        Rows per file; by default about 64 MiB of features per file. Give a cluster a few
        partitions per worker.
    storage : {"npy", "npz", "parquet"}, optional
        ``npz`` for sparse ``X`` (the only choice there), ``npy`` for dense by default.
    ids : array-like of shape (n_rows,), optional
        Unique ids (integers or strings) to name rows by, e.g. in a labels file.
    source : mapping, optional
        JSON-serialisable facts about where ``X`` came from, kept in the manifest
        (:func:`ensure_partitioned` compares them).
    overwrite : bool
        Replace an existing partitioned pool at ``folder`` (never another kind of folder).
    """
    X = _source_matrix(X)
    n, d = X.shape
    sparse = sp.issparse(X)
    storage = storage or ("npz" if sparse else "npy")
    if storage not in STORAGES:
        raise InvalidParameterError(
            f"storage must be one of {', '.join(STORAGES)}, got {storage!r}"
        )
    if sparse != (storage == "npz"):
        raise InvalidParameterError(
            f"storage {storage!r} is for {'sparse' if storage == 'npz' else 'dense'} features "
            f"but X is {'sparse' if sparse else 'dense'}; use "
            f"{'npz' if sparse else 'npy or parquet'}"
        )
    if storage == "parquet":
        _parquet()
    if rows_per_partition is None:
        rows_per_partition = _auto_rows(X)
    if isinstance(rows_per_partition, bool) or not isinstance(rows_per_partition, int):
        raise InvalidParameterError(
            f"rows_per_partition must be a positive integer, got {rows_per_partition!r}"
        )
    if rows_per_partition < 1:
        raise InvalidParameterError(
            f"rows_per_partition must be at least 1, got {rows_per_partition}"
        )
    id_values = None if ids is None else _checked_ids(ids, n)
    source_dict = None if source is None else json.loads(json.dumps(dict(source)))

    target = Path(folder).resolve()
    if target.exists():
        if not target.is_dir():
            raise InvalidParameterError(f"{target} exists and is not a folder")
        if any(target.iterdir()):
            if not (target / MANIFEST).is_file():
                raise InvalidParameterError(
                    f"{target} is a non-empty folder but not a partitioned pool; choose "
                    "another folder"
                )
            if not overwrite:
                raise InvalidParameterError(
                    f"{target} already holds a partitioned pool; pass overwrite=True "
                    "(--overwrite) to replace it"
                )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        entries = []
        for number, (start, stop) in enumerate(_iter_parts(n, rows_per_partition)):
            block = X[start:stop]
            check_finite(block, offset=start)
            name = f"part-{number:05d}{_SUFFIX[storage]}"
            _write_part(partial / name, block, storage)
            entries.append({"file": name, "offset": start, "rows": stop - start})
        if id_values is not None:
            np.save(partial / "ids.npy", id_values, allow_pickle=False)
        manifest = {
            "format": FORMAT,
            "version": _VERSION,
            "rows": n,
            "features": d,
            "dtype": str(X.dtype),
            "storage": storage,
            "partitions": entries,
            "ids": None if id_values is None else "ids.npy",
            "source": source_dict,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        _swap_into_place(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return open_partitioned(target)


def _swap_into_place(partial: Path, target: Path) -> None:
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        os.replace(partial, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, target)


def ensure_partitioned(
    X: Any,
    folder: str | os.PathLike[str],
    *,
    source: Mapping[str, Any],
    rows_per_partition: int | None = None,
    storage: str | None = None,
    ids: ArrayLike | None = None,
) -> PartitionedPool:
    """The partitioned copy of ``X`` at ``folder``: reused when its manifest records the same
    ``source``, written anew (replacing a stale copy) otherwise."""
    target = Path(folder)
    if (target / MANIFEST).is_file():
        try:
            pool = open_partitioned(target)
        except InvalidDataError:
            pool = None  # a damaged copy is rewritten
        if pool is not None and pool.source == json.loads(json.dumps(dict(source))):
            return pool
    return write_partitioned(
        X,
        target,
        rows_per_partition=rows_per_partition,
        storage=storage,
        ids=ids,
        source=source,
        overwrite=True,
    )
