"""Tabular files read a chunk of rows at a time: pools larger than memory.

:func:`open_tabular_stream` reads a sample of a delimited text, Parquet or ``.npy`` file,
decides each column's part from it as :func:`labelwise.io.load.load_dataset` decides from a
whole file (the id, the label, the numeric features; ids strict, as a project needs them), and
returns a :class:`~labelwise.io.chunks.TabularStream` (:mod:`labelwise.io.chunks`) that reads the
file again, start to end, one chunk at a time:

* delimited text: up to ``sample_bytes`` (32 MiB) are read as ``load_dataset`` reads a file;
  a file no larger is served from that sample, so it is parsed exactly as before. A larger one
  is then parsed by pandas' C reader in chunks, only the columns in use, the features straight
  to float64, and must be UTF-8 past its sample;
* Parquet: the first ``sample_rows`` rows decide, then the file is read by record batches, only
  the columns in use (pyarrow: ``pip install labelwise[parquet]``);
* ``.npy``: a 2-D numeric array, memory-mapped and sliced (features ``f1``, ``f2``, ...).

A file the sample shows not to be tabular (a text column, image paths), and any other format,
gives None: such files are read whole. :func:`dataset_stream` serves a :class:`Dataset` already
in memory the same way, so importers have one path for every tabular source.

A file without an id column gives row numbers as ids and says so (``ids_numbered``), so that
an importer can number its rows on from a project's last item. ``label_names`` name integer
classes as :func:`labelwise.io.load.load_dataset` does.

Features keep float32 when every feature column is float32 or narrower (Parquet, ``.npy``);
anything else is float64. Every chunk is checked as the whole file would be (numeric, finite,
ids present and unique within the chunk, compound values refused), and errors cite rows by
their number in the file.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.io.chunks import (
    TableChunk,
    TabularStream,
    _float_type,
    _frame_chunks,
    _label_strings,
)
from labelwise.io.columns import Columns
from labelwise.io.dataset import Dataset
from labelwise.io.encoding import _decode, _warn_encoding
from labelwise.io.frames import (
    _SNIFF_CHARS,
    _need_pyarrow,
    _Quoting,
    _read_delimited,
    _sniff_delimiter,
)
from labelwise.io.tables import _Table

__all__ = ["SAMPLE_BYTES", "SAMPLE_ROWS", "dataset_stream", "open_tabular_stream", "read_npy"]

#: Bytes of a delimited file read to decide the columns' parts.
SAMPLE_BYTES = 32 * 2**20
#: Rows of a Parquet file read to decide the columns' parts.
SAMPLE_ROWS = 100_000

# Bytes buffered per Parquet column while reading.
_PARQUET_BUFFER = 2**20


# ------------------------------------------------------------------------------ delimited text


def _delimited(
    path: Path,
    roles_of: Callable[[_Table, bool], Any],
    given: Columns,
    sample_bytes: int,
    label_lists: bool = False,
) -> TabularStream | None:
    with path.open("rb") as fh:
        head = fh.read(sample_bytes + 1)
    whole = len(head) <= sample_bytes
    if not whole:
        head = head[: head.rfind(b"\n") + 1]
        try:
            head.decode("utf-8-sig")
        except UnicodeDecodeError:
            return None  # mixed encodings: the whole-file reader decodes line by line
    if not head.strip() or b"\0" in head[:_SNIFF_CHARS]:
        return None  # empty, binary or UTF-16: the whole-file reader says what is wrong
    text, guess = _decode(head)  # guessed only for a file read whole (checked above)
    delimiter = {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower())
    if delimiter is None:
        from labelwise.io.media import _looks_like_libsvm

        if _looks_like_libsvm(text[:_SNIFF_CHARS]):
            return None
        delimiter = _sniff_delimiter(text[:_SNIFF_CHARS])
    try:
        sample, headerless = _read_delimited(path, text, delimiter, given.header_names)
    except InvalidDataError:
        if whole:
            raise
        return None  # the sample may end inside a quoted field: read the file whole
    if sample.shape[0] == 0:
        return None
    table = _Table(sample, path, label_lists=label_lists)
    roles = roles_of(table, headerless)
    if roles.features is None:
        return None
    names = table.names
    dtype = np.dtype(np.float64)
    if whole:

        def frames(used: list[int], rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
            for start in range(0, len(sample), rows):
                yield start, sample.iloc[start : start + rows, used]

    else:
        columns = list(sample.columns)
        quoting: _Quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL

        def read_csv(used: list[int], rows: int, as_text: bool) -> Any:
            key = (lambda j: j) if headerless else (lambda j: columns[j])
            types: dict[Any, Any] = {
                key(j): (np.float64 if j in roles.features and not as_text else str) for j in used
            }
            return pd.read_csv(
                path,
                sep=delimiter,
                header=None if headerless else 0,
                quoting=quoting,
                usecols=used,
                dtype=types,
                keep_default_na=False,
                na_values=[""],
                index_col=False,
                skip_blank_lines=True,
                chunksize=rows,
                encoding="utf-8-sig",
            )

        def frames(used: list[int], rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
            start, number = 0, 0
            try:
                with read_csv(used, rows, as_text=False) as reader:
                    for frame in reader:
                        yield start, frame
                        start, number = start + len(frame), number + 1
            except UnicodeDecodeError as exc:
                raise InvalidDataError(
                    f"{path} is not UTF-8 past its first {sample_bytes:,} bytes "
                    f"({exc.reason}); save it as UTF-8"
                ) from None
            except (pd.errors.ParserError, csv.Error) as exc:
                raise InvalidDataError(f"cannot parse {path}: {exc}".strip()) from None
            except ValueError as exc:
                # A feature cell that is not a number: read that chunk again as text, so the
                # message names the column and the row.
                reader = read_csv(used, rows, as_text=True)
                _explain_bad_chunk(reader, number, used, roles.features, names, path)
                raise InvalidDataError(
                    f"{path}: a feature column holds a value that is not a number after row "
                    f"{start} ({exc})"
                ) from None

    read = _frame_chunks(
        frames, path, names, roles.id, roles.label, roles.features, dtype, label_lists=label_lists
    )
    features = tuple(names[j] for j in roles.features)
    n_rows = len(sample) if whole else None
    # A larger file's rows, estimated from the sample's (for a progress bar only).
    hint = n_rows or int(len(sample) * path.stat().st_size / max(1, len(head)))
    _warn_encoding(path, guess)  # once, and only when the stream is what reads the file
    return _stream(path, names, roles, features, dtype, n_rows, read, hint)


def _explain_bad_chunk(
    reader: Any, number: int, used: list[int], features: list[int], names: list[str], path: Path
) -> None:
    """Raise the exact error of chunk ``number`` (read as text): the column and the row."""
    start = 0
    with reader:
        for k, frame in enumerate(reader):
            if k == number:
                table = _Table(frame, path, names=[names[j] for j in used], offset=start)
                for position, j in enumerate(used):
                    if j in features and table.numbers(position) is None:
                        table._feature(position)  # raises, naming the value and the row
                return
            start += len(frame)


# ------------------------------------------------------------------------------------ Parquet


def _parquet(
    path: Path,
    roles_of: Callable[[_Table, bool], Any],
    sample_rows: int,
    label_lists: bool = False,
) -> TabularStream | None:
    _need_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # Buffered reads of each column: without them every batch re-reads its pages from the
        # file, and a batch of 65,536 rows costs seven times more. No pre-buffering: it keeps
        # every column chunk read so far (a 10M-row file grew the process by 2 GB); without it
        # memory is bounded by one row group.
        parquet = pq.ParquetFile(path, buffer_size=_PARQUET_BUFFER, pre_buffer=False)
        schema = parquet.schema_arrow
        batch = next(parquet.iter_batches(batch_size=max(1, sample_rows)), None)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InvalidDataError(f"cannot read Parquet file {path}: {exc}") from None
    if batch is None:
        return None
    sample = pa.Table.from_batches([batch], schema=schema).to_pandas()
    table = _Table(sample, path, label_lists=label_lists)
    roles = roles_of(table, False)
    if roles.features is None:
        return None
    columns = [str(c) for c in sample.columns]
    dtype = _float_type([sample.dtypes.iloc[j] for j in roles.features])

    def frames(used: list[int], rows: int) -> Iterator[tuple[int, pd.DataFrame]]:
        start = 0
        batches = parquet.iter_batches(batch_size=rows, columns=[columns[j] for j in used])
        while True:
            try:
                part = next(batches, None)
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise InvalidDataError(f"cannot read Parquet file {path}: {exc}") from None
            if part is None:
                return
            yield start, part.to_pandas()
            start += part.num_rows

    read = _frame_chunks(
        frames,
        path,
        table.names,
        roles.id,
        roles.label,
        roles.features,
        dtype,
        label_lists=label_lists,
    )
    features = tuple(table.names[j] for j in roles.features)
    n_rows = int(parquet.metadata.num_rows)
    return _stream(path, table.names, roles, features, dtype, n_rows, read, n_rows)


# ---------------------------------------------------------------------------------------- npy


def read_npy(path: Path) -> np.ndarray:
    """A 2-D numeric ``.npy`` array, memory-mapped (nothing read yet)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidDataError(f"cannot read {path} as .npy: {exc}") from None
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InvalidDataError(
            f"{path}: expected a numeric matrix of shape (n, d), got {array.dtype} array of "
            f"shape {array.shape}"
        )
    return array


def _matrix_stream(
    source: str,
    matrix: Any,
    names: tuple[str, ...],
    ids: np.ndarray | None,
    labels: np.ndarray | None,
    dtype: np.dtype[Any],
    *,
    splits: np.ndarray | None = None,
) -> TabularStream:
    n = int(matrix.shape[0])

    def read(rows: int, labels_only: bool) -> Iterator[TableChunk]:
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            part = None if labels is None else _label_strings(labels[start:stop])
            split = None if splits is None else splits[start:stop]
            if labels_only:
                yield TableChunk(start, np.empty(0, dtype=object), np.empty((0, 0)), part)
                continue
            block = matrix[start:stop]
            block = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
            values = block.astype(dtype, copy=False)
            finite = np.isfinite(values)
            if not finite.all():
                row, col = np.argwhere(~finite)[0]
                raise InvalidDataError(
                    f"{source}: feature {names[col]} holds NaN or infinity (row {start + row})"
                )
            if ids is None:
                chunk_ids = np.arange(start, stop).astype(str).astype(object)
            else:
                chunk_ids = ids[start:stop]
            yield TableChunk(start, chunk_ids, values, part, split)

    return TabularStream(
        source, names, dtype, labels is not None, n, read, rows_hint=n, ids_numbered=ids is None
    )


def dataset_stream(dataset: Dataset) -> TabularStream:
    """A tabular :class:`Dataset` (already in memory) as a stream of chunks."""
    if dataset.kind != "tabular":
        raise InvalidParameterError(f"a stream needs tabular data, got {dataset.kind} items")
    stream = _matrix_stream(
        dataset.source,
        dataset.items,
        tuple(dataset.feature_names),
        np.asarray(dataset.ids, dtype=object),
        dataset.labels,
        np.dtype(np.float64),
        splits=dataset.splits,
    )
    return replace(
        stream,
        ids_numbered=dataset.ids_numbered,
        label_column=dataset.label_column,
        classes=dataset.classes,
    )


# ---------------------------------------------------------------------------------- the entry


def open_tabular_stream(
    path: str | Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    id_column: str | None = None,
    sample_bytes: int | None = None,
    sample_rows: int | None = None,
    label_names: Sequence[str] | None = None,
    multi_label: bool = False,
) -> TabularStream | None:
    """A :class:`~labelwise.io.chunks.TabularStream` over a tabular file, or None when it is not
    one read so.

    Columns are named and inferred as for :func:`labelwise.io.load.load_dataset`, with strict ids.
    None for a text or image file, a format read only whole (JSON, LIBSVM, ``.npz``, an image
    folder), or a file whose sample cannot be read (the whole-file reader then says why).
    ``sample_bytes`` and ``sample_rows`` default to :data:`SAMPLE_BYTES` and
    :data:`SAMPLE_ROWS`. ``label_names`` name integer classes (see
    :meth:`~labelwise.io.chunks.TabularStream.with_label_names`). ``multi_label``: the label
    column holds label lists, read as :func:`labelwise.io.load.load_dataset` reads them.
    """
    if multi_label and label_names is not None:
        raise InvalidParameterError(
            "label_names name the integer classes of one label per row; a file of label lists "
            "(multi_label) gives the labels by name"
        )
    stream = _open(
        Path(path),
        label_column=label_column,
        feature_columns=feature_columns,
        id_column=id_column,
        text_column=text_column,
        image_column=image_column,
        sample_bytes=sample_bytes,
        sample_rows=sample_rows,
        label_lists=multi_label,
    )
    if stream is not None and label_names is not None:
        stream = stream.with_label_names(label_names)
    return stream


def _open(
    path: Path,
    *,
    text_column: str | None,
    image_column: str | None,
    label_column: str | None,
    feature_columns: Sequence[str] | None,
    id_column: str | None,
    sample_bytes: int | None,
    sample_rows: int | None,
    label_lists: bool = False,
) -> TabularStream | None:
    path = Path(path)
    sample_bytes = SAMPLE_BYTES if sample_bytes is None else sample_bytes
    sample_rows = SAMPLE_ROWS if sample_rows is None else sample_rows
    if text_column is not None or image_column is not None:
        return None
    if not path.is_file() or path.stat().st_size == 0:
        return None
    columns = Columns.of(
        label_column=label_column, feature_columns=feature_columns, id_column=id_column
    )

    def roles_of(table: _Table, headerless: bool) -> Any:
        return table.roles(columns, headerless=headerless, strict_ids=True)

    suffix = path.suffix.lower()
    if suffix == ".npy":
        columns.refuse(path, "an .npy file")
        array = read_npy(path)
        names = tuple(f"f{j + 1}" for j in range(array.shape[1]))
        dtype = _float_type([array.dtype])
        return _matrix_stream(str(path), array, names, None, None, dtype)
    if suffix == ".parquet":
        return _parquet(path, roles_of, sample_rows, label_lists)
    if suffix in (".json", ".jsonl", ".ndjson", ".svm", ".libsvm", ".svmlight", ".npz"):
        return None
    return _delimited(path, roles_of, columns, sample_bytes, label_lists)


def _stream(
    path: Path,
    names: Sequence[str],
    roles: Any,
    features: tuple[str, ...],
    dtype: Any,
    n_rows: int | None,
    read: Callable[[int, bool], Iterator[TableChunk]],
    hint: int,
) -> TabularStream:
    """The stream of a file whose columns play ``roles`` (id, label, features)."""
    return TabularStream(
        str(path),
        features,
        dtype,
        roles.label is not None,
        n_rows,
        read,
        rows_hint=hint,
        ids_numbered=roles.id is None,
        label_column=None if roles.label is None else names[roles.label],
    )
