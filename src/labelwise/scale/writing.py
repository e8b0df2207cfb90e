"""Writing a partitioned pool folder (the format is :mod:`labelwise.scale.partitions`'s).

:func:`write_partitioned` writes a matrix as partitions, checking each part's values as it goes
(the whole matrix is never read at once), through a temporary folder renamed into place;
:func:`ensure_partitioned` keeps a copy in step with its source (the worker's copy of a
project's features).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.pool import Matrix, check_finite, check_matrix
from labelwise.scale.partitions import (
    FORMAT,
    MANIFEST,
    STORAGES,
    VERSION,
    PartitionedPool,
    open_partitioned,
    parquet_modules,
)

__all__ = ["ensure_partitioned", "write_partitioned"]

_SUFFIX = {"npy": ".npy", "npz": ".npz", "parquet": ".parquet"}
#: Partition size when none is given: about this many bytes of features per file.
_TARGET_BYTES = 64 * 2**20


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
        pa, pq = parquet_modules()
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
        parquet_modules()
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
            "version": VERSION,
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
