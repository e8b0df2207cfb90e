"""A file's text (or a Parquet file) to a :class:`pandas.DataFrame` of its rows.

Delimited text: :func:`_sniff_delimiter` picks the delimiter (tab, comma, semicolon, pipe),
:func:`_has_header` decides from a sample whether the first row names the columns, and
:func:`_read_delimited` parses every cell as a string (a row with more values than the header
is refused). :func:`_read_json` reads a JSON list of objects or JSONL, one object per line;
:func:`_read_parquet` reads Parquet with pyarrow. The frame's columns get their roles in
:mod:`labelwise.io.tables`.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any, Literal, TypeAlias

import pandas as pd

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.io.columns import _ID_NAMES, _LABEL_NAMES, _TEXT_NAMES

_Quoting: TypeAlias = Literal[0, 1, 2, 3]

_SNIFF_CHARS = 65_536
_HEADER_SAMPLE_ROWS = 200
#: What a JSON document nested deeper than Python's recursion limit gets (a hostile file's trick).
_TOO_DEEP = "JSON nested too deeply to read (arrays or objects inside each other)"


def _sniff_delimiter(sample: str) -> str:
    lines = [ln for ln in sample.split("\n")[:50] if ln.strip()]
    tabs = {ln.count("\t") for ln in lines}
    if len(tabs) == 1 and tabs.pop() > 0:
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters="\t,;|").delimiter
    except csv.Error:
        # No consistent delimiter: one column, one item per line.
        return "\t"


def _read_delimited(
    path: Path, text: str, delimiter: str, requested: set[str]
) -> tuple[pd.DataFrame, bool]:
    # Free text often holds stray quotes; a tab-separated file does not need quoting, so quotes
    # are read as characters there rather than merging rows until the next quote.
    quoting: _Quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    sample = text[:_SNIFF_CHARS]
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(sample), delimiter=delimiter, quoting=quoting):
            if any(cell.strip() for cell in row):
                rows.append(row)
            if len(rows) > _HEADER_SAMPLE_ROWS:
                break
    except csv.Error:
        pass  # the sample ended inside a quoted field: the rows read so far will do
    header = bool(rows) and _has_header(rows, requested, sample)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.BytesIO(text.encode()),  # cheaper than StringIO, which widens to 4 bytes a char
                sep=delimiter,
                header=0 if header else None,
                quoting=quoting,
                dtype=str,
                na_filter=False,
                index_col=False,
                skip_blank_lines=True,
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        raise InvalidDataError(f"cannot parse {path}: {exc}".strip()) from None
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        # pandas drops the fields a row holds beyond the header's, with only a warning.
        _check_no_extra_fields(path, text, delimiter, quoting, len(frame.columns))
    if not header:
        frame.columns = [str(j) for j in range(frame.shape[1])]
        while frame.shape[1] > 1 and (frame.iloc[:, -1].str.strip() == "").all():
            frame = frame.iloc[:, :-1]  # a trailing delimiter on every line
    return frame, not header


def _check_no_extra_fields(
    path: Path, text: str, delimiter: str, quoting: _Quoting, n_columns: int
) -> None:
    """Refuse a row with more fields than the header, unless the extra ones are empty (a
    trailing delimiter): their values would be lost."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    next(reader, None)  # the header
    for number, row in enumerate(reader):
        extra = [cell for cell in row[n_columns:] if cell.strip()]
        if extra:
            raise InvalidDataError(
                f"{path}: row {number} has {len(row)} fields but the header names {n_columns} "
                f"(extra value {extra[0][:40]!r}); quote fields that hold {delimiter!r}"
            )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _has_header(rows: list[list[str]], requested: set[str], sample: str) -> bool:
    first, body = rows[0], rows[1:]
    if requested & {cell.strip() for cell in first}:
        return True
    plausible = []
    for j, cell in enumerate(first):
        cell = cell.strip()
        column = [row[j].strip() for row in body if len(row) > j and row[j].strip()]
        numeric = bool(column) and all(_is_number(v) for v in column)
        if not cell:
            plausible.append(True)
        elif numeric or cell in column:
            if not _is_number(cell) and cell not in column:
                return True  # a name over numbers
            plausible.append(True)
        elif cell.lower() in _LABEL_NAMES | _ID_NAMES | _TEXT_NAMES:
            return True
        else:
            # A sentence over a column of distinct sentences is data; a short name is not.
            free_text = len(set(column)) > len(column) / 2
            plausible.append(free_text and len(cell.split()) >= 3)
    if all(plausible):
        return False
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return False


def _read_json(path: Path, text: str, *, lines: bool) -> pd.DataFrame:
    records: list[Any] = []
    if lines:
        # Split on "\n" only: JSON strings may hold a raw U+2028, which splitlines() breaks on.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidDataError(f"{path}, line {number}: invalid JSON ({exc.msg})") from None
            except RecursionError:
                raise InvalidDataError(f"{path}, line {number}: {_TOO_DEEP}") from None
            if not isinstance(record, dict):
                raise InvalidDataError(f"{path}, line {number}: expected a JSON object")
            records.append(record)
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidDataError(
                f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})"
            ) from None
        except RecursionError:
            raise InvalidDataError(f"{path}: {_TOO_DEEP}") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InvalidDataError(f"{path} must hold a JSON list of objects (records)")
    return pd.DataFrame.from_records(records)


def _need_pyarrow() -> None:
    """Parquet needs pyarrow (the ``parquet`` extra): say how to install it."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InvalidParameterError(
            "reading Parquet needs pyarrow: pip install labelwise[parquet]"
        ) from None


def _read_parquet(path: Path) -> pd.DataFrame:
    _need_pyarrow()
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InvalidDataError(f"cannot read Parquet file {path}: {exc}") from None
