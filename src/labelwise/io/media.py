"""LIBSVM files, ``.npz`` arrays and images (a folder of them, or a column of paths).

Each reader returns a :class:`~labelwise.io.load.Dataset`, except :func:`_read_images`, which
returns the pixel array for a folder or for a table's image column. Pillow is imported only
when images are read.

An ``.npz`` file may keep its splits apart (``train_images``/``train_labels``, ``val_...``,
``test_...`` as MedMNIST does, or ``X_train``/``y_train``, ...): they are concatenated in train,
val, test order and each item's split is kept in :attr:`Dataset.splits`. Integer labels take
their names from a ``label_names`` (or ``classes``) array of strings in the file, or from the
caller's ``label_names``, which come first.
"""

from __future__ import annotations

import math
import os
import re
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from labelwise import label_sets
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.io.dataset import Dataset, _named_labels, _row_ids, _with_label_names

_IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
#: Split names an .npz file may use, in the order their items are concatenated.
_SPLITS = ("train", "val", "valid", "validation", "test")
#: Arrays of an .npz file that name its integer classes (the first found is used).
_NAME_KEYS = ("label_names", "classes")
_LIBSVM_LINE = re.compile(
    r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(,\S+)*(\s+qid:\d+)?(\s+\d+:\S+)*\s*(#.*)?$"
)


# ---------------------------------------------------------------------------------------- LIBSVM


def _looks_like_libsvm(sample: str) -> bool:
    # The sample's last line may be cut short: leave it out unless it is the only one.
    lines = [ln for ln in (sample.split("\n")[:-1] or [sample]) if ln.strip()][:20]
    return (
        bool(lines)
        and all(_LIBSVM_LINE.match(ln) for ln in lines)
        and any(re.search(r"\s\d+:", ln) for ln in lines)
    )


def _read_libsvm(path: Path) -> Dataset:
    from sklearn.datasets import load_svmlight_file

    try:
        X, y = load_svmlight_file(str(path), dtype=np.float64)
    except (ValueError, RuntimeError) as exc:
        raise InvalidDataError(f"{path} is not a valid LIBSVM file: {exc}") from None
    return _matrix_dataset(path, sp.csr_matrix(X), y)


# ------------------------------------------------------------------------------------- arrays


def _memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:,.1f} MiB"


def _check_npz_sizes(path: Path, *, max_pixels: int) -> None:
    """Refuse, from the array headers alone, an ``.npz`` whose arrays cannot be loaded.

    A compressed archive of a few megabytes can declare arrays of terabytes (a decompression
    bomb): each array's shape is read before any data, and an array larger than this machine's
    memory, or images larger than ``max_pixels``, are refused before anything is allocated.
    """
    limit = _memory_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    # Read whole as bytes by np.load: its declared size is what it would take
                    # (zipfile never reads past it).
                    if limit is not None and info.file_size > limit:
                        raise InvalidDataError(
                            f"{path}: member {info.filename!r} would take "
                            f"{_size(info.file_size)}, more than this machine's memory "
                            f"({_size(limit)})"
                        )
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(member)
                name = info.filename.removesuffix(".npy")
                size = math.prod(shape) * dtype.itemsize
                if limit is not None and size > limit:
                    raise InvalidDataError(
                        f"{path}: array {name!r} of shape {shape} would take {_size(size)}, more "
                        f"than this machine's memory ({_size(limit)})"
                    )
                if len(shape) in (3, 4):  # read as images (n, h, w) or (n, h, w, c)
                    pixels = shape[1] * shape[2]
                    if pixels > max_pixels:
                        raise InvalidDataError(
                            f"{path}: images in {name!r} have {shape[2]}x{shape[1]} pixels, more "
                            f"than the limit of {max_pixels:,}; resize them first"
                        )
    except InvalidDataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidDataError(f"cannot read {path} as .npz: {exc}") from None


def _split_keys(arrays: dict[str, np.ndarray], split: str) -> tuple[str, str] | None:
    """(items key, labels key) of one split of an .npz file, or None when it has no such split."""
    for items, labels in (
        (f"{split}_images", f"{split}_labels"),
        (f"X_{split}", f"y_{split}"),
        (f"x_{split}", f"y_{split}"),
    ):
        if items in arrays:
            return items, labels
    return None


def _read_npz(
    path: Path,
    *,
    max_pixels: int,
    label_names: Sequence[str] | None = None,
    multi_label: bool = False,
) -> Dataset:
    _check_npz_sizes(path, max_pixels=max_pixels)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InvalidDataError(f"cannot read {path} as .npz: {exc}") from None
    names_key = next((key for key in _NAME_KEYS if key in arrays), None)
    file_names = None if names_key is None else arrays.pop(names_key)
    found = [(split, pair) for split in _SPLITS if (pair := _split_keys(arrays, split))]
    labels: np.ndarray | None
    splits = None
    label_key = None
    if found:
        parts = [arrays[items_key] for _, (items_key, _) in found]
        try:
            items = np.concatenate(parts)
        except ValueError:
            shapes = ", ".join(f"{key} {arrays[key].shape}" for _, (key, _) in found)
            raise InvalidDataError(
                f"{path}: the splits' items do not fit together ({shapes})"
            ) from None
        names = np.array([split for split, _ in found], dtype=object)
        splits = np.repeat(names, [len(part) for part in parts])
        label_keys = [labels_key for _, (_, labels_key) in found]
        labels = None
        if all(key in arrays for key in label_keys):
            labels = np.concatenate(
                [arrays[key].reshape(len(arrays[key]), -1) for key in label_keys]
            )
            split = found[0][0]
            label_key = label_keys[0].replace(f"{split}_", "").replace(f"_{split}", "")
    elif {"data", "indices", "indptr", "shape", "format"} <= arrays.keys():
        items, labels = sp.load_npz(path).tocsr(), None
    else:
        pair = next(
            (p for p in (("images", "labels"), ("X", "y"), ("x", "y")) if p[0] in arrays), None
        )
        if pair is None and len(arrays) != 1:
            raise InvalidDataError(
                f"{path} holds arrays {sorted(arrays)}; expected images/labels, X/y, x/y, "
                "train_images/train_labels, ... or X_train/y_train, ..."
            )
        items = arrays[pair[0]] if pair else next(iter(arrays.values()))
        labels = arrays.get(pair[1]) if pair else None
        label_key = pair[1] if pair and labels is not None else None
    if labels is not None:
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.ravel()
        elif labels.ndim == 2 and labels.shape[0] == items.shape[0]:
            labels = _indicator_sets(labels, file_names, names_key, path, multi_label)
        if labels.shape != (items.shape[0],):
            raise InvalidDataError(
                f"{path}: labels have shape {labels.shape}, expected ({items.shape[0]},)"
            )
    if sp.issparse(items) or items.ndim == 2:
        dataset = _matrix_dataset(path, items, labels, splits=splits, label_column=label_key)
    else:
        if items.ndim not in (3, 4) or not (
            np.issubdtype(items.dtype, np.number) or items.dtype == bool
        ):
            raise InvalidDataError(
                f"{path}: expected images of shape (n, h, w) or (n, h, w, c), or a matrix "
                f"(n, d); got {items.dtype} array of shape {items.shape}"
            )
        if np.issubdtype(items.dtype, np.floating) and not np.isfinite(items).all():
            raise InvalidDataError(f"{path}: images hold NaN or infinity")
        ids = _row_ids(items.shape[0])
        y = _array_labels(labels, path)
        dataset = Dataset(
            "image",
            items,
            y,
            ids,
            (),
            str(path),
            ids_numbered=True,
            label_column=label_key,
            splits=splits,
        )
    if label_names is not None:
        return _with_label_names(dataset, label_names)
    return _name_from_file(dataset, file_names, names_key, path)


def _indicator_sets(
    labels: np.ndarray, names: np.ndarray | None, key: str | None, path: Path, multi_label: bool
) -> np.ndarray:
    """Labels of shape (n, L), one 0/1 column per label, as label sets: each row's names (the
    file's ``label_names``/``classes`` array, else ``0``, ``1``, ...) joined by ``;``."""
    n_labels = labels.shape[1]
    if not multi_label:
        raise InvalidDataError(
            f"{path}: labels have shape {labels.shape}, one column per label: a multi-label "
            "file; read it as label sets (--multi-label)"
        )
    if labels.dtype == bool or np.issubdtype(labels.dtype, np.number):
        values = np.asarray(labels, dtype=np.float64)
    else:
        values = np.full(labels.shape, np.nan)
    if not np.isin(values, (0.0, 1.0)).all():
        raise InvalidDataError(
            f"{path}: labels of shape {labels.shape} must hold only 0 and 1 (one column per label)"
        )
    if names is None:
        label_set = tuple(str(j) for j in range(n_labels))
    else:
        label_set = tuple(str(name).strip() for name in np.ravel(names).tolist())
        if names.dtype.kind not in "US" or len(label_set) != n_labels:
            raise InvalidDataError(
                f"{path}: array {key!r} must name each of the {n_labels} label columns, "
                f"got {names.dtype} of shape {names.shape}"
            )
        if len(set(label_set)) != n_labels or not all(label_set):
            raise InvalidDataError(f"{path}: array {key!r} holds a blank or repeated label name")
        if any(label_sets.SEPARATOR in name for name in label_set):
            raise InvalidDataError(
                f"{path}: array {key!r} holds a label name with {label_sets.SEPARATOR!r}, which "
                "separates the labels of a set"
            )
    on = values.astype(bool)
    return np.array(
        [
            label_sets.SEPARATOR.join(n for n, x in zip(label_set, row, strict=True) if x)
            for row in on
        ],
        dtype=object,
    )


def _name_from_file(
    dataset: Dataset, names: np.ndarray | None, key: str | None, path: Path
) -> Dataset:
    """``dataset`` with its integer labels named by the file's ``label_names`` or ``classes``
    array (strings, one per class); as it is when there is no such array, no labels, or labels
    that are names already (a numeric ``classes`` array is left alone too)."""
    if names is None or dataset.labels is None or names.dtype.kind not in "US":
        return dataset
    if names.ndim != 1 or not names.size:
        raise InvalidDataError(
            f"{path}: array {key!r} must list one name per class, got shape {names.shape}"
        )
    if dataset.labels.dtype == object and any(isinstance(v, str) for v in dataset.labels.tolist()):
        return dataset
    classes = tuple(str(n).strip() for n in names.tolist())
    if len(set(classes)) != len(classes) or not all(classes):
        raise InvalidDataError(f"{path}: array {key!r} holds a blank or repeated class name")
    labels = _named_labels(dataset.labels, classes, f"{path} (array {key!r})")
    return replace(dataset, labels=labels, classes=classes)


def _matrix_dataset(
    path: Path,
    X: Any,
    y: np.ndarray | None,
    *,
    splits: np.ndarray | None = None,
    label_column: str | None = None,
) -> Dataset:
    """A tabular Dataset from a matrix of shape (n, d) (dense or sparse) and labels (n,); the
    ids are the row numbers."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(X.data))
        if bad.size:
            row = int(np.searchsorted(X.indptr, bad[0], side="right")) - 1
            col = int(X.indices[bad[0]])
            raise InvalidDataError(f"{path}: feature f{col + 1} holds NaN or infinity (row {row})")
    else:
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidDataError(f"{path}: the matrix is not numeric ({X.dtype})") from None
        finite = np.isfinite(X)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            raise InvalidDataError(f"{path}: feature f{col + 1} holds NaN or infinity (row {row})")
    names = tuple(f"f{j + 1}" for j in range(X.shape[1]))
    return Dataset(
        "tabular",
        X,
        _array_labels(y, path),
        _row_ids(X.shape[0]),
        names,
        str(path),
        ids_numbered=True,
        label_column=label_column,
        splits=splits,
    )


def _array_labels(y: np.ndarray | None, path: Path) -> np.ndarray | None:
    """Labels of shape (n,) from an array: integers (integral floats too) as int64, else str;
    label sets (object, from :func:`_indicator_sets`) as they are."""
    if y is None:
        return None
    if y.dtype == object:
        return y
    if y.dtype == bool or np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        present = ~np.isnan(y)
        if np.isfinite(y[present]).all() and (y[present] == np.round(y[present])).all():
            if present.all():
                return y.astype(np.int64)
            out = np.full(y.shape, None, dtype=object)
            out[present] = [int(v) for v in y[present]]
            return out
        return np.array([None if np.isnan(v) else str(v) for v in y], dtype=object)
    if y.dtype.kind in "US":
        values = y.astype(str)
        return np.array([v.strip() or None for v in values], dtype=object)
    raise InvalidDataError(f"{path}: labels must be integers or strings, got {y.dtype}")


# ------------------------------------------------------------------------------------- images


def _inside(path: Path, root: Path) -> Path:
    """``path`` when it (after following links) stays inside ``root``; a link out is refused."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise InvalidDataError(
            f"{path} is a link to {path.resolve()}, outside {root}; copy the file in instead"
        )
    return path


def _read_image_folder(root: Path, *, max_pixels: int) -> Dataset:
    """The images under ``root``: one sub-folder per class (the labels), or flat without labels.

    Files and class folders that are links leading out of ``root`` are refused."""
    entries = sorted(_inside(p, root) for p in root.iterdir() if not p.name.startswith("."))
    folders = [p for p in entries if p.is_dir()]
    labels: list[str] | None = None
    if folders:
        stray = [p for p in entries if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES]
        if stray:
            raise InvalidDataError(
                f"{root} has class folders and also images at its top level ({stray[0].name}); "
                "move every image into its class folder"
            )
        files, labels = [], []
        for folder in folders:
            for file in sorted(
                _inside(p, root) for p in folder.iterdir() if not p.name.startswith(".")
            ):
                if file.is_dir():
                    raise InvalidDataError(f"{file} is a folder inside class folder {folder.name}")
                files.append(file)
                labels.append(folder.name)
    else:
        files = entries
    if not files:
        raise InvalidDataError(f"no images found in {root}")
    items = _read_images(files, max_pixels=max_pixels)
    ids = np.array([f.relative_to(root).as_posix() for f in files], dtype=object)
    y = None if labels is None else np.array(labels, dtype=object)
    return Dataset("image", items, y, ids, (), str(root))


def _read_images(files: Sequence[Path], *, max_pixels: int) -> np.ndarray:
    """Images of one size as uint8 (n, h, w), or (n, h, w, 3) unless all are single-channel.

    An image of more than ``max_pixels`` pixels (width times height) is refused before decoding.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise InvalidParameterError("reading images needs Pillow: pip install pillow") from None

    def open_image(file: Path) -> Image.Image:
        if not file.is_file():
            raise InvalidDataError(f"no such image file: {file}")
        if file.suffix.lower() not in _IMAGE_SUFFIXES:
            raise InvalidDataError(f"{file} is not an image file (expected {_IMAGE_SUFFIXES})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(file)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise InvalidDataError(f"{file} is too large to load as an image") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidDataError(f"{file} is not a readable image: {exc}") from None
        width, height = image.size
        if width * height > max_pixels:
            image.close()
            raise InvalidDataError(
                f"{file} has {width}x{height} pixels, more than the limit of "
                f"{max_pixels:,}; resize it first"
            )
        return image

    size, gray = None, True
    for file in files:  # headers only: sizes and modes, before decoding any pixels
        with open_image(file) as image:
            if size is None:
                size = image.size
            elif image.size != size:
                raise InvalidDataError(
                    f"{file} is {image.size[0]}x{image.size[1]} pixels but {files[0]} is "
                    f"{size[0]}x{size[1]}; all images must have one size"
                )
            gray = gray and image.mode in _GRAY_MODES
    assert size is not None  # files is never empty here
    mode = "L" if gray else "RGB"
    shape = (len(files), size[1], size[0]) + (() if gray else (3,))
    items = np.empty(shape, dtype=np.uint8)
    for i, file in enumerate(files):
        with open_image(file) as image:
            try:
                # Palette images go through RGBA so that transparency converts without a warning.
                converted = image.convert("RGBA") if image.mode in ("P", "PA") else image
                items[i] = np.asarray(converted.convert(mode))
            except (OSError, ValueError) as exc:
                raise InvalidDataError(f"{file} is not a readable image: {exc}") from None
    return items
