"""From a frame to a Dataset: which column is the text, image paths, label, id or a feature.

:class:`_Table` takes a :class:`pandas.DataFrame` read from delimited text, JSON, JSONL or
Parquet (:mod:`labelwise.io.frames`, after :mod:`labelwise.io.encoding` decoded the bytes),
infers each column's role (text, image paths, label, id, numeric feature) where the
:class:`~labelwise.io.columns.Columns` do not name it, checks the values, and builds the
:class:`~labelwise.io.load.Dataset`. :func:`labelwise.io.load.load_dataset` picks the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labelwise import label_sets
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.io.columns import _ID_NAMES, _LABEL_NAMES, _TEXT_NAMES, Columns
from labelwise.io.dataset import Dataset, _row_ids
from labelwise.io.frames import _is_number
from labelwise.io.media import _read_images

# A label column of a headerless file holds few distinct values: at most this many, and at most
# this fraction of the rows.
_MAX_INFERRED_CLASSES = 50
_MAX_CLASS_FRACTION = 0.2


# -------------------------------------------------------------------------- tables of columns


class _Table:
    """A frame's columns with the views inference needs (missing mask, numbers), each cached.

    ``label_lists``: the label column holds a list of labels per row (a multi-label project's
    file), read by :meth:`_labels` as each row's names joined by ``;``.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        path: Path,
        *,
        names: Sequence[str] | None = None,
        offset: int = 0,
        label_lists: bool = False,
    ) -> None:
        self.frame = frame
        self.path = path
        self.label_lists = label_lists
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
            hint = (
                "; a project whose answers are sets of labels reads a list here: make it "
                "multi-label (labelwise init --multi-label)"
                if role == "label column" and kind == "a list"
                else ""
            )
            raise InvalidDataError(
                f"{self.path}: {role} {self.names[j]!r} holds {kind} at row {self.offset + row} "
                f"({_as_str(value)[:60]!r}); expected one text or number per row{hint}"
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
        if self.label_lists:
            return self._label_lists(j)
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

    def _label_lists(self, j: int) -> np.ndarray:
        """Each row's labels joined by ``;`` in the file's order (each name once): a list (JSON,
        Parquet), a JSON list in text (``'["a", "b"]'``) or names joined by ``;``. An empty list
        (``[]``) is ``""``, the empty set; a missing or blank cell is None, no label."""
        out = np.full(self.n, None, dtype=object)
        missing = self.missing(j)
        values = self.frame.iloc[:, j].to_numpy(dtype=object)
        for i in np.flatnonzero(~missing).tolist():
            value = values[i]
            if isinstance(value, float) and value.is_integer():
                value = str(int(value))  # a label named by a number, read beside a blank
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            try:
                names = label_sets.parse_label_list(value, what="the label list")
            except InvalidDataError as exc:
                raise InvalidDataError(
                    f"{self.path}: label column {self.names[j]!r}, row {self.offset + i}: {exc}"
                ) from None
            out[i] = label_sets.SEPARATOR.join(names)
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
