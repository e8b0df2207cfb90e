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
This module opens and reads the folder; :mod:`labelwise.scale.writing` writes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.pool import Matrix

__all__ = [
    "FORMAT",
    "MANIFEST",
    "STORAGES",
    "VERSION",
    "Partition",
    "PartitionedPool",
    "PoolReader",
    "open_partitioned",
    "parquet_modules",
    "take_grouped",
]

FORMAT = "labelwise-partitioned-pool"
VERSION = 1
MANIFEST = "manifest.json"
STORAGES = ("npy", "npz", "parquet")


def parquet_modules() -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.parquet``, or an error that says how to install them."""
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
    _, pq = parquet_modules()
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
    if manifest.get("version") != VERSION:
        raise InvalidDataError(
            f"{path} has version {manifest.get('version')!r}; this Labelwise reads {VERSION}"
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
