"""Delimited text, JSON, JSONL and Parquet: from a file's text to a table, and on to a Dataset.

The readers decode bytes (UTF-16 or UTF-32 with a byte order mark; else UTF-8, else line
by line cp1252 or latin-1, which :func:`_warn_encoding` reports as a
:class:`~labelwise.exceptions.DataWarning`), sniff the delimiter and
whether the first row is a header, and return a :class:`pandas.DataFrame`; :class:`_Table` then
infers each column's role (text, image paths, label, id, numeric feature) and builds the
:class:`~labelwise.io.load.Dataset`. :func:`labelwise.io.load.load_dataset` picks the reader.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd

from labelwise.exceptions import DataWarning, InvalidDataError, InvalidParameterError
from labelwise.io.columns import Columns
from labelwise.io.dataset import Dataset, _row_ids
from labelwise.io.media import _read_images

_Quoting: TypeAlias = Literal[0, 1, 2, 3]

_LABEL_NAMES = frozenset({"label", "labels", "class", "target", "y", "category", "annotation"})
_ID_NAMES = frozenset({"id", "item_id", "uid"})
_TEXT_NAMES = frozenset(
    {"text", "message", "sentence", "content", "body", "comment", "review", "document"}
)
_SNIFF_CHARS = 65_536
_HEADER_SAMPLE_ROWS = 200
# A label column of a headerless file holds few distinct values: at most this many, and at most
# this fraction of the rows.
_MAX_INFERRED_CLASSES = 50
_MAX_CLASS_FRACTION = 0.2
# Text once decoded as latin-1 and saved as UTF-8 holds cp1252 punctuation as C1 control
# characters (U+0092 for a right quote); real text never uses C1 controls, so map them back.
_C1_TO_CP1252 = {
    code: bytes([code]).decode("cp1252")
    for code in range(0x80, 0xA0)
    if code not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)  # undefined in cp1252
}
_C1 = re.compile("[\x80-\x9f]")
#: What a JSON document nested deeper than Python's recursion limit gets (a hostile file's trick).
_TOO_DEEP = "JSON nested too deeply to read (arrays or objects inside each other)"


# ---------------------------------------------------------------------------------- file readers


# Byte order marks of the encodings that hold NUL bytes in ordinary text (UTF-32 first: its
# little-endian mark begins with UTF-16's).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def _decode_unicode(raw: bytes, path: Path) -> str | None:
    """Text saved as UTF-16 or UTF-32 with a byte order mark (what spreadsheet programs write as
    "Unicode text"), else None. Such a file holds NUL bytes, so it must be told apart from a
    binary file before the NUL test."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise InvalidDataError(
                    f"{path} starts with a {encoding.upper()} byte order mark but is not valid "
                    f"{encoding.upper()} (byte {exc.start}: {exc.reason})"
                ) from None
    return None


def _looks_like_utf16(sample: bytes) -> bool:
    """Text in UTF-16 without a byte order mark: one byte of each pair is mostly NUL."""
    pairs = len(sample) // 2
    if pairs < 4:
        return False
    even, odd = sample[0 : 2 * pairs : 2].count(0), sample[1 : 2 * pairs : 2].count(0)
    return max(even, odd) >= 0.9 * pairs and min(even, odd) <= 0.1 * pairs


@dataclass(frozen=True)
class _Guess:
    """How a text that is not all UTF-8 was decoded: how many lines each fallback encoding
    read (cp1252, latin-1), the first such line (1-based) and the number of lines."""

    lines: dict[str, int]
    first_line: int
    total_lines: int


def _decode(raw: bytes) -> tuple[str, _Guess | None]:
    """The text of ``raw`` (UTF-8, with or without a byte order mark), and None; or, where it is
    not UTF-8, the text decoded line by line and what was guessed."""
    try:
        return _fix_c1(raw.decode("utf-8-sig")), None
    except UnicodeDecodeError:
        pass
    # Collections assembled from several sources mix encodings line by line; decoding each line
    # on its own (UTF-8, else cp1252, else latin-1, which never fails) keeps every row.
    lines = []
    guessed = {"cp1252": 0, "latin-1": 0}
    first = 0
    for number, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        for encoding in ("utf-8", "cp1252", "latin-1"):
            try:
                lines.append(line.decode(encoding))
            except UnicodeDecodeError:
                continue
            if encoding != "utf-8":
                guessed[encoding] += 1
                first = first or number
            break
    total = len(lines) - (lines[-1] == "")  # no line after the last newline
    return _fix_c1("\n".join(lines)), _Guess(guessed, first, total)


def _warn_encoding(path: Path, guess: _Guess | None) -> None:
    """A :class:`DataWarning` saying which encoding was guessed for a file that is not UTF-8."""
    if guess is None:
        return
    parts = " and ".join(f"{n:,} as {enc}" for enc, n in guess.lines.items() if n)
    warnings.warn(
        f"{path.name} is not UTF-8: the encoding was guessed line by line, {parts} of its "
        f"{guess.total_lines:,} lines (first at line {guess.first_line}), the rest as UTF-8; "
        "if accented letters look wrong, save the file as UTF-8",
        DataWarning,
        stacklevel=3,
    )


def _fix_c1(text: str) -> str:
    return text.translate(_C1_TO_CP1252) if _C1.search(text) else text


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


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InvalidParameterError(
            "reading Parquet needs pyarrow: pip install labelwise[parquet]"
        ) from None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InvalidDataError(f"cannot read Parquet file {path}: {exc}") from None


# -------------------------------------------------------------------------- tables of columns


class _Table:
    """A frame's columns with the views inference needs (missing mask, numbers), each cached."""

    def __init__(
        self,
        frame: pd.DataFrame,
        path: Path,
        *,
        names: Sequence[str] | None = None,
        offset: int = 0,
    ) -> None:
        self.frame = frame
        self.path = path
        self.names = [str(c).strip() for c in (frame.columns if names is None else names)]
        # A chunk of a larger file (see labelwise.io.stream): its first row's number in the file,
        # added to every row an error message cites.
        self.offset = offset
        self.n = int(frame.shape[0])
        self._missing: dict[int, np.ndarray] = {}
        self._numbers: dict[int, np.ndarray | None] = {}
        self._compound: dict[int, int | None] = {}

    def resolve(self, name: str, role: str) -> int:
        if name.strip() in self.names:
            return self.names.index(name.strip())
        if name.isdigit() and int(name) < len(self.names):
            return int(name)
        raise InvalidDataError(
            f"{role} {name!r} is not a column of {self.path}; "
            f"available columns: {', '.join(map(repr, self.names))}"
        )

    def missing(self, j: int) -> np.ndarray:
        """Boolean mask of shape (n,): True where column ``j`` is null, NaN or blank."""
        if j not in self._missing:
            column = self.frame.iloc[:, j]
            missing = column.isna().to_numpy(dtype=bool)
            try:
                blank = (column.str.strip() == "").to_numpy(dtype=bool, na_value=False)
            except AttributeError:  # not a column of strings
                blank = np.zeros(self.n, dtype=bool)
            self._missing[j] = missing | blank
        return self._missing[j]

    def numbers(self, j: int) -> np.ndarray | None:
        """Column ``j`` as float64 (NaN where missing), or None when some value is not a number."""
        if j not in self._numbers:
            column = self.frame.iloc[:, j]
            missing = self.missing(j)
            try:
                numbers = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, copy=True)
                numbers[missing] = np.nan
                # to_numeric refuses some spellings Python accepts ("nan", " 1e3 "): ask float().
                unread = np.flatnonzero(np.isnan(numbers) & ~missing)
                values = column.to_numpy(dtype=object)[unread]
                numbers[unread] = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                numbers = None
            self._numbers[j] = numbers
        return self._numbers[j]

    def strings(self, j: int) -> np.ndarray:
        """Column ``j`` as an object array of str, None where missing."""
        out = np.full(self.n, None, dtype=object)
        missing = self.missing(j)
        values = self.frame.iloc[:, j].to_numpy(dtype=object)
        out[~missing] = [_as_str(v) for v in values[~missing]]
        return out

    def compound(self, j: int) -> int | None:
        """The first row where column ``j`` holds a list, an object or bytes (JSON arrays and
        objects, Parquet lists, structs and binary), or None when every value is a single one."""
        if j not in self._compound:
            column = self.frame.iloc[:, j]
            found = None
            if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) not in (
                _SCALAR_KINDS
            ):
                values = column.to_numpy(dtype=object)
                found = next((i for i, v in enumerate(values) if isinstance(v, _COMPOUND)), None)
            self._compound[j] = found
        return self._compound[j]

    def values(self, j: int, role: str) -> np.ndarray:
        """:meth:`strings` of a column used as ``role``; refused when it holds compound values,
        which would otherwise be stored as their Python spelling (``"['a', 'b']"``)."""
        row = self.compound(j)
        if row is not None:
            value = self.frame.iloc[row, j]
            kind = (
                "binary data"
                if isinstance(value, (bytes, bytearray))
                else "an object"
                if isinstance(value, dict)
                else "a list"
            )
            raise InvalidDataError(
                f"{self.path}: {role} {self.names[j]!r} holds {kind} at row {self.offset + row} "
                f"({_as_str(value)[:60]!r}); expected one text or number per row"
            )
        return self.strings(j)

    def first_missing(self, j: int, role: str) -> None:
        missing = np.flatnonzero(self.missing(j))
        if missing.size:
            raise InvalidDataError(
                f"{self.path}: {role} {self.names[j]!r} is empty in {missing.size} rows "
                f"(first at row {self.offset + int(missing[0])})"
            )

    def to_dataset(
        self,
        columns: Columns,
        *,
        headerless: bool,
        max_pixels: int,
        strict_ids: bool = False,
    ) -> Dataset:
        roles = self.roles(columns, headerless=headerless, strict_ids=strict_ids)
        text_j, image_j, features = roles.text, roles.image, roles.features
        labels = None if roles.label is None else self._labels(roles.label)
        ids = _row_ids(self.n) if roles.id is None else self._ids(roles.id)
        # Where ids and labels came from, for the importers (numbering, warnings).
        origin: dict[str, Any] = {
            "ids_numbered": roles.id is None,
            "label_column": None if roles.label is None else self.names[roles.label],
        }

        if image_j is not None:
            self.first_missing(image_j, "image column")
            folder = self.path.parent.resolve()
            files = []
            for i, name in enumerate(self.values(image_j, "image column")):
                # Image paths are local and stay inside the data file's folder: no absolute
                # paths, no "..", never a URL.
                if "\0" in str(name):
                    raise InvalidDataError(
                        f"{self.path.name}, row {i}: image path {str(name)[:80]!r} holds a NUL "
                        "character"
                    )
                target = (folder / str(name)).resolve()
                if "://" in str(name) or not target.is_relative_to(folder):
                    raise InvalidDataError(
                        f"{self.path.name}, row {i}: image path {str(name)[:80]!r} must be "
                        f"relative to {folder} and stay inside it"
                    )
                files.append(target)
            items = _read_images(files, max_pixels=max_pixels)
            return Dataset("image", items, labels, ids, (), str(self.path), **origin)
        if text_j is not None:
            self.first_missing(text_j, "text column")
            items = self.values(text_j, "text column")
            name = (self.names[text_j],)
            return Dataset("text", items, labels, ids, name, str(self.path), **origin)
        assert features is not None
        matrix = np.empty((self.n, len(features)), dtype=np.float64)
        for k, j in enumerate(features):
            matrix[:, k] = self._feature(j)
        names = tuple(self.names[j] for j in features)
        return Dataset("tabular", matrix, labels, ids, names, str(self.path), **origin)

    def roles(self, columns: Columns, *, headerless: bool, strict_ids: bool = False) -> _Roles:
        """Which column plays which part: the ``columns`` named, the others inferred."""
        text_j = None if columns.text is None else self.resolve(columns.text, "text_column")
        image_j = None if columns.image is None else self.resolve(columns.image, "image_column")
        label_j = None if columns.label is None else self.resolve(columns.label, "label_column")
        id_j = None if columns.id is None else self.resolve(columns.id, "id_column")
        features = None
        if columns.features is not None:
            features = [self.resolve(c, "feature column") for c in columns.features]
        chosen = [j for j in (text_j, image_j, label_j, id_j) if j is not None] + (features or [])
        if len(set(chosen)) != len(chosen):
            raise InvalidParameterError(
                f"one column of {self.path} is given two roles: {[self.names[j] for j in chosen]}"
            )
        taken = set(chosen)
        if id_j is None:
            # Strict: a column named like an id is the id, so its duplicates and blanks are
            # errors, not a reason to fall back to row numbers.
            id_j = self._named(_ID_NAMES, taken, unique=not strict_ids)
            taken |= set() if id_j is None else {id_j}
        if label_j is None:
            label_j = self._infer_label(taken, headerless)
            taken |= set() if label_j is None else {label_j}
        if image_j is None and text_j is None and features is None:
            text_j = self._named(_TEXT_NAMES, taken, unique=False)
            if text_j is None:
                text_j, features = self._infer_text_or_features(taken)
        if image_j is not None or text_j is not None:
            features = None
        return _Roles(text=text_j, image=image_j, label=label_j, id=id_j, features=features)

    def _named(self, names: frozenset[str], taken: set[int], *, unique: bool) -> int | None:
        for j, name in enumerate(self.names):
            if j in taken or name.strip().lower() not in names:
                continue
            if not unique or (
                not self.missing(j).any() and not pd.Series(self.strings(j)).duplicated().any()
            ):
                return j
        return None

    def _distinct(self, j: int) -> int:
        return int(pd.Series(self.strings(j)).str.strip().nunique(dropna=True))

    def _infer_label(self, taken: set[int], headerless: bool) -> int | None:
        named = self._named(_LABEL_NAMES, taken, unique=False)
        if named is not None or not headerless or len(self.names) != 2:
            return named
        free = [j for j in (0, 1) if j not in taken]
        if not free:
            return None
        j = min(free, key=self._distinct)
        count, other = self._distinct(j), self._distinct(1 - j)
        limit = max(2.0, _MAX_CLASS_FRACTION * self.n)
        return j if count <= _MAX_INFERRED_CLASSES and count <= limit and count < other else None

    def _infer_text_or_features(self, taken: set[int]) -> tuple[int | None, list[int]]:
        free = [j for j in range(len(self.names)) if j not in taken and not self.missing(j).all()]
        numeric = [j for j in free if self.numbers(j) is not None]
        # Columns of lists or objects are neither the text nor features: left out.
        strings = [j for j in free if self.numbers(j) is None and self.compound(j) is None]
        if strings:
            lengths = {j: [len(v) for v in self.strings(j) if v is not None] for j in strings}
            best = max(strings, key=lambda j: np.mean(lengths[j]))
            words = np.mean([len(v.split()) for v in self.strings(best) if v is not None])
            # A short string column beside numeric columns is a category, not the text to label.
            if not numeric or words >= 3:
                return best, []
        if not numeric:
            raise InvalidDataError(
                f"{self.path} has no text column and no numeric columns to use as features; "
                f"columns: {', '.join(map(repr, self.names))}; pass text_column=, image_column= "
                "or feature_columns="
            )
        return None, numeric

    def _feature(self, j: int) -> np.ndarray:
        numbers = self.numbers(j)
        name = self.names[j]
        if numbers is None:
            values = self.frame.iloc[:, j].to_numpy(dtype=object)
            row = next((i for i, v in enumerate(values) if not _is_number_value(v)), 0)
            raise InvalidDataError(
                f"{self.path}: feature column {name!r} is not numeric "
                f"(row {self.offset + row}: {values[row]!r})"
            )
        bad = np.flatnonzero(~np.isfinite(numbers))
        if bad.size:
            raise InvalidDataError(
                f"{self.path}: feature column {name!r} holds a missing value, NaN or infinity "
                f"(first at row {self.offset + int(bad[0])})"
            )
        return numbers

    def _labels(self, j: int) -> np.ndarray:
        numbers = self.numbers(j)
        missing = self.missing(j)
        if numbers is not None:
            present = numbers[~missing]
            if np.isfinite(present).all() and (present == np.round(present)).all():
                if not missing.any():
                    return numbers.astype(np.int64)
                out = np.full(self.n, None, dtype=object)
                out[~missing] = [int(v) for v in present]
                return out
        out = self.values(j, "label column")
        out[~missing] = [v.strip() for v in out[~missing]]
        return out

    def _ids(self, j: int) -> np.ndarray:
        self.first_missing(j, "id column")
        ids = self.values(j, "id column")
        duplicated = np.flatnonzero(pd.Series(ids).duplicated().to_numpy())
        if duplicated.size:
            row = int(duplicated[0])
            first = int(np.flatnonzero(ids == ids[row])[0])
            raise InvalidDataError(
                f"{self.path}: id column {self.names[j]!r} holds duplicate id {ids[row]!r} "
                f"(rows {self.offset + first} and {self.offset + row})"
            )
        return ids


@dataclass(frozen=True)
class _Roles:
    """Column positions by part: the text, image paths, label and id (None where absent), and
    the feature columns (None unless the table is tabular)."""

    text: int | None
    image: int | None
    label: int | None
    id: int | None
    features: list[int] | None


# What pandas.api.types.infer_dtype calls a column of single values (anything else is looked at
# value by value for the compound ones).
_SCALAR_KINDS = frozenset(
    {"string", "integer", "floating", "mixed-integer-float", "boolean", "decimal", "empty"}
)
_COMPOUND = (list, tuple, dict, set, np.ndarray, bytes, bytearray)


def _as_str(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an integer id read as float beside a missing value
    return str(value)


def _is_number_value(value: Any) -> bool:
    if value is None or isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and (not value.strip() or _is_number(value))
