"""Reading a dataset file into a :class:`Dataset`: items, labels and external ids.

:func:`load_dataset` picks a reader from the path:

* ``.csv`` (comma), ``.tsv`` (tab, quoting off), and ``.txt`` or any other suffix, which is
  sniffed: LIBSVM lines (``+1 3:0.5 7:1``) or delimited text (tab, comma, semicolon, pipe);
* ``.jsonl``/``.ndjson`` (one object per line) and ``.json`` (a list of objects);
* ``.parquet`` (pandas and pyarrow: ``pip install labelwise[parquet]``);
* ``.npy``: a 2-D numeric array, tabular features ``f1``, ``f2``, ... without labels;
* ``.svm``/``.libsvm``/``.svmlight``: LIBSVM, kept as a sparse CSR matrix;
* ``.npz``: ``images``/``labels``, ``X``/``y`` or ``x``/``y`` arrays, splits kept as
  ``train_images``/``train_labels``, ``val_...``, ``test_...`` (MedMNIST) or ``X_train``/
  ``y_train``, ... (concatenated in train, val, test order, each item's split in
  :attr:`Dataset.splits`), or a matrix saved with :func:`scipy.sparse.save_npz`; integer
  labels take their names from a ``label_names`` or ``classes`` array when the file has one;
* a directory of images, one sub-folder per class or
  flat without labels.

Rows count from 0 in file order, not counting a header; row numbers are the default ids
(:attr:`Dataset.ids_numbered`) and what error messages cite (JSONL errors cite the 1-based line
instead). Every problem with the file is an :class:`~labelwise.exceptions.InvalidDataError`
naming the file and what was wrong; a text file that is not UTF-8 is read all the same, its
encoding guessed line by line and said in a :class:`~labelwise.exceptions.DataWarning`.

The readers live in private modules: :mod:`labelwise.io.encoding` (bytes to text, the encoding
guessed), :mod:`labelwise.io.frames` (delimited text, JSON, Parquet to a frame),
:mod:`labelwise.io.tables` (column inference, a frame to a Dataset) and :mod:`labelwise.io.media`
(LIBSVM, ``.npz``, images).

A tabular file too large for memory is read a chunk of rows at a time with
:func:`open_tabular_stream` (delimited text, Parquet, ``.npy``; see :mod:`labelwise.io.stream`).
"""

from __future__ import annotations

__all__ = ["Dataset", "TableChunk", "TabularStream", "load_dataset", "open_tabular_stream"]

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.io.chunks import TableChunk, TabularStream
from labelwise.io.columns import Columns
from labelwise.io.dataset import Dataset, _with_label_names
from labelwise.io.encoding import _decode, _decode_unicode, _looks_like_utf16, _warn_encoding
from labelwise.io.frames import (
    _SNIFF_CHARS,
    _read_delimited,
    _read_json,
    _read_parquet,
    _sniff_delimiter,
)
from labelwise.io.media import (
    _looks_like_libsvm,
    _matrix_dataset,
    _read_image_folder,
    _read_libsvm,
    _read_npz,
)
from labelwise.io.stream import open_tabular_stream, read_npy
from labelwise.io.tables import _Table

# The readers take the limit as an argument, read from here at each call, so that this module
# stays the one place to change it.
_MAX_IMAGE_PIXELS = 50_000_000


def load_dataset(
    path: str | Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    id_column: str | None = None,
    strict_ids: bool = False,
    label_names: Sequence[str] | None = None,
    multi_label: bool = False,
) -> Dataset:
    """Read a dataset file (or image folder) into a :class:`Dataset`.

    Columns are named, or given by 0-based position as a string of digits (``"0"``) when no
    column has that name; a headerless file's columns are named ``"0"``, ``"1"``, ... Columns not
    given are inferred: the label from its name (label, class, target, ...) or, in a headerless
    two-column file, as the column with few distinct values; the id from its name (id, item_id,
    uid) when unique; the text from its name (text, message, sentence, ...) or as the longest
    string column. With no text column, the numeric columns are the tabular features.
    ``image_column`` names a column of image paths, relative to the file's folder.

    ``strict_ids``: a column named like an id is the id even when it holds duplicates or blanks,
    which are then errors (a project addresses its items by id); by default such a column is
    passed over and the rows are numbered.

    ``label_names``: the names of integer classes 0, 1, ...; each label ``k`` becomes
    ``label_names[k]`` (an ``.npz`` file's own ``label_names``/``classes`` array is then not
    used). A label that is not such an integer is an error.

    ``multi_label``: the label column holds a list of labels per row (a multi-label project's
    file): in CSV or TSV the names joined by ``;`` (``insult;threat``), in JSON or JSONL a list
    (``["insult", "threat"]``), in Parquet a list column; a JSON list written in a text cell is
    read too. Each label becomes the row's names joined by ``;`` in the file's order, each once.
    An empty list (``[]``, in JSON or in a cell) is the empty set, ``""``; an empty cell, a null
    or a missing key is no label (None), as for one label per row. In ``.npz``, labels of
    shape (n, L) are one 0/1 column per label, named by the file's ``label_names``/``classes``
    array (else ``0``, ``1``, ...); read without ``multi_label`` they are refused. Image folders,
    LIBSVM and one label column per item give a set of one.
    """
    if multi_label and label_names is not None:
        raise InvalidParameterError(
            "label_names name the integer classes of one label per row; a file of label lists "
            "(multi_label) gives the labels by name"
        )
    dataset = _load(
        Path(path),
        text_column=text_column,
        image_column=image_column,
        label_column=label_column,
        feature_columns=feature_columns,
        id_column=id_column,
        strict_ids=strict_ids,
        label_names=label_names,
        multi_label=multi_label,
    )
    # An .npz reader names its labels itself (label_names first, else the file's own names).
    if label_names is not None and Path(path).suffix.lower() != ".npz":
        dataset = _with_label_names(dataset, label_names)
    return dataset


def _load(
    path: Path,
    *,
    text_column: str | None,
    image_column: str | None,
    label_column: str | None,
    feature_columns: Sequence[str] | None,
    id_column: str | None,
    strict_ids: bool,
    label_names: Sequence[str] | None,
    multi_label: bool,
) -> Dataset:
    if not path.exists():
        raise InvalidDataError(f"no such file or directory: {path}")
    columns = Columns.of(
        text_column=text_column,
        image_column=image_column,
        label_column=label_column,
        feature_columns=feature_columns,
        id_column=id_column,
    )
    columns.check()
    if path.is_dir():
        columns.refuse(path, "an image folder")
        return _read_image_folder(path, max_pixels=_MAX_IMAGE_PIXELS)
    if path.stat().st_size == 0:
        raise InvalidDataError(f"{path} is empty")
    suffix = path.suffix.lower()
    if suffix in (".svm", ".libsvm", ".svmlight"):
        columns.refuse(path, "a LIBSVM file")
        return _read_libsvm(path)
    if suffix == ".npz":
        columns.refuse(path, "an .npz file")
        return _read_npz(
            path, max_pixels=_MAX_IMAGE_PIXELS, label_names=label_names, multi_label=multi_label
        )
    if suffix == ".npy":
        columns.refuse(path, "an .npy file")
        return _matrix_dataset(path, np.asarray(read_npy(path)), None)
    headerless = False
    if suffix == ".parquet":
        frame = _read_parquet(path)
    else:
        raw = path.read_bytes()
        unicode = _decode_unicode(raw, path)
        if unicode is None and b"\0" in raw[:_SNIFF_CHARS]:
            if _looks_like_utf16(raw[:_SNIFF_CHARS]):
                raise InvalidDataError(
                    f"{path} looks like UTF-16 text without a byte order mark; save it as UTF-8 "
                    "(or as UTF-16 with a byte order mark)"
                )
            raise InvalidDataError(
                f"unsupported file type {suffix or '(no suffix)'}: {path} is binary; expected "
                "delimited text, JSON, JSONL, Parquet, LIBSVM, .npz or a folder of images"
            )
        text, guess = _decode(raw) if unicode is None else (unicode, None)
        _warn_encoding(path, guess)
        if not text.strip():
            raise InvalidDataError(f"{path} is empty")
        if suffix in (".jsonl", ".ndjson", ".json"):
            frame = _read_json(path, text, lines=suffix != ".json")
        else:
            delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix)
            if delimiter is None:
                if _looks_like_libsvm(text[:_SNIFF_CHARS]):
                    columns.refuse(path, "a LIBSVM file")
                    return _read_libsvm(path)
                delimiter = _sniff_delimiter(text[:_SNIFF_CHARS])
            frame, headerless = _read_delimited(path, text, delimiter, columns.header_names)
    if frame.shape[0] == 0:
        raise InvalidDataError(f"{path} holds no rows")
    table = _Table(frame, path, label_lists=multi_label)
    return table.to_dataset(
        columns,
        headerless=headerless,
        max_pixels=_MAX_IMAGE_PIXELS,
        strict_ids=strict_ids,
    )
