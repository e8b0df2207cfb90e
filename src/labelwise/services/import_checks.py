"""What an import checks of a data file before its items go in, and what it warns about.

Refused (:class:`~labelwise.exceptions.InvalidDataError`): a label not in the project's label
set (in a multi-label project, a set naming one; a single-label project given a list is told
of ``--multi-label``), and images of another size or colour mode than the project's. Imported
with a :class:`~labelwise.exceptions.DataWarning` each: a label column that looks like ids or
free text (more than :data:`ID_LIKE_MIN_VALUES` distinct values, also more than
:data:`ID_LIKE_FRACTION` of the labeled rows; in a multi-label file the individual labels are
counted), texts repeated under new ids, and an ``.npz`` file's splits going into one pool.
:mod:`labelwise.services.transfer` runs these checks on every file it imports.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise import label_sets
from labelwise.exceptions import DataWarning, InvalidDataError, InvalidParameterError
from labelwise.io.load import Dataset
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Item, Project
from labelwise.store.projects import answer_value, settings_of

__all__ = ["ID_LIKE_FRACTION", "ID_LIKE_MIN_VALUES"]

#: A label column looks like ids or free text, not classes, when it holds more distinct values
#: than this and than ``ID_LIKE_FRACTION`` of its labeled rows (200 labels for 200 rows).
ID_LIKE_MIN_VALUES = 20
ID_LIKE_FRACTION = 0.5


def _label_source(name: str, column: str | None) -> str:
    return f"label column {column!r} of {name}" if column else f"the labels of {name}"


def _warn_label_values(
    name: str, column: str | None, counts: dict[str, int], *, multi_label: bool = False
) -> None:
    """A :class:`DataWarning` when a label column looks like ids or free text rather than
    classes: more than :data:`ID_LIKE_MIN_VALUES` distinct values, which also outnumber
    :data:`ID_LIKE_FRACTION` of the labeled rows. ``counts``: rows per label value; with
    ``multi_label`` the values are label lists (names joined by ``;``), and each label of them
    is counted on its own (:func:`_per_label`)."""
    labeled = sum(counts.values())
    if multi_label:
        counts = _per_label(counts)
    distinct = len(counts)
    if distinct > ID_LIKE_MIN_VALUES and distinct > ID_LIKE_FRACTION * labeled:
        warnings.warn(
            f"{_label_source(name, column)} has {distinct:,} distinct values in {labeled:,} "
            "labeled rows, more like ids or free text than classes; if another column holds "
            "the labels, name it with label_column=",
            DataWarning,
            stacklevel=2,
        )


def _per_label(counts: dict[str, int]) -> dict[str, int]:
    """Rows per label of a multi-label file, from ``counts``, rows per label list (names joined
    by ``;``; the empty list counts for no label)."""
    out: dict[str, int] = {}
    for value, number in counts.items():
        for label in label_sets.decode(value):
            out[label] = out.get(label, 0) + number
    return out


def _label_counts(labels: np.ndarray | None) -> dict[str, int]:
    if labels is None:
        return {}
    present = [str(v) for v in labels.tolist() if v is not None]
    values, numbers = np.unique(np.asarray(present, dtype=str), return_counts=True)
    return dict(zip(values.tolist(), numbers.tolist(), strict=True))


def _warn_repeated_texts(
    session: Session | None, project: Project | None, dataset: Dataset, ids: Sequence[str]
) -> None:
    """A :class:`DataWarning` when texts of ``dataset`` repeat under new ids: a text already in
    ``project`` (when given), or one that repeats an earlier row of the file. Texts compare
    exactly; the project's are read in one pass."""
    if dataset.kind != "text" or not len(dataset):
        return
    name = Path(dataset.source).name
    texts = pd.Series(dataset.items, dtype=object)
    within = texts.duplicated().to_numpy()
    before = np.zeros(len(texts), dtype=bool)
    if session is not None and project is not None:
        wanted = set(texts.tolist())
        known: set[str] = set()
        query = select(Item.content).where(Item.project_id == project.id)
        for content in session.execute(query.execution_options(yield_per=10_000)).scalars():
            if content in wanted:
                known.add(content)
        if known:
            before = texts.isin(known).to_numpy()
    within = within & ~before
    if not within.any() and not before.any():
        return
    parts = []
    if before.any():
        parts.append(f"{int(before.sum()):,} already in the project")
    if within.any():
        parts.append(f"{int(within.sum()):,} repeating an earlier row of the file")
    repeated = before | within
    row = int(np.flatnonzero(repeated)[0])
    text = str(texts.iloc[row])
    sample = text if len(text) <= 40 else text[:39] + "…"
    warnings.warn(
        f"{name}: {int(repeated.sum()):,} of its {len(texts):,} texts "
        f"{'repeats' if repeated.sum() == 1 else 'repeat'} under new ids "
        f"({', '.join(parts)}; first at row {row}, id {ids[row]!r}: {sample!r}); every copy is "
        "imported as an item of its own",
        DataWarning,
        stacklevel=2,
    )


def _warn_splits(name: str, splits: np.ndarray | None) -> None:
    """A :class:`DataWarning` that a file's splits (``.npz`` train/val/test) go into one pool,
    each item's split kept in its ``meta``."""
    if splits is None:
        return
    names, counts = np.unique(splits.astype(str), return_counts=True)
    count = dict(zip(names.tolist(), counts.tolist(), strict=True))
    first = {s: int(np.argmax(splits == s)) for s in count}  # the file's order of splits
    listed = ", ".join(f"{s} {count[s]:,}" for s in sorted(count, key=first.__getitem__))
    warnings.warn(
        f"{name} keeps its items in splits ({listed}): all of them go into the pool to label, "
        "each item's split recorded in its meta ('split')",
        DataWarning,
        stacklevel=2,
    )


def _check_labels(dataset: Dataset, project: Project, name: str) -> list[str | None] | None:
    """Every label the file brings belongs to the project (checked before media is copied):
    the labels in their stored form (:func:`_stored_labels`), None without labels."""
    if dataset.labels is None:
        return None
    return _stored_labels(dataset.labels.tolist(), [str(i) for i in dataset.ids], project, name)


def _looks_like_a_set(text: str, allowed: set[str]) -> bool:
    """Whether a label that is not one of ``allowed`` reads as a set of them (names joined by
    ``;``, or a JSON list of them)."""
    try:
        names = label_sets.parse_label_list(text)
    except InvalidDataError:
        return False
    return bool(names) and set(names) <= allowed and text.strip() not in allowed


def _stored_labels(
    values: list[object], ids: list[str], project: Project, name: str, *, first: int = 0
) -> list[str | None]:
    """``values``, the labels of rows ``first``, ``first + 1``, ... of file ``name`` (None for
    no label), as the project stores them: one of its labels, or in a multi-label project the
    canonical string of a set (:func:`labelwise.store.projects.answer_value`). A value that is
    not that is an :class:`InvalidDataError` naming the row, its id and what was wrong."""
    multi = settings_of(project).multi_label
    allowed = set(project.label_set)
    canonical: dict[str, str] = {}  # a file repeats its label lists: each is read once
    out: list[str | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        where = f"{name}, row {first + i} (id {ids[i]!r})"
        if multi:
            text = str(value)
            if text not in canonical:
                try:
                    canonical[text] = answer_value(project, text)
                except InvalidParameterError as exc:
                    raise InvalidDataError(f"{where}: {exc}") from None
            out.append(canonical[text])
            continue
        text = str(value)
        if text not in allowed:
            hint = (
                "; this project takes one label per item (a project whose answers are sets of "
                "labels is made with --multi-label)"
                if _looks_like_a_set(text, allowed)
                else ""
            )
            raise InvalidDataError(
                f"{where}: label {text!r} is not one of the project's labels "
                f"({', '.join(project.label_set)}){hint}"
            )
        out.append(text)
    return out


def _check_like_existing(
    session: Session, project: Project, folder: ProjectFolder, dataset: Dataset, name: str
) -> None:
    """New images must fit the project's feature matrix: the same size and colour mode as those
    already there. (Tabular fields are checked against the feature file by
    :func:`~labelwise.services.transfer.import_tabular`.)"""
    if project.kind != "image":
        return
    first = session.scalar(
        select(Item.content).where(Item.project_id == project.id).order_by(Item.row).limit(1)
    )
    if first is None:
        return
    from PIL import Image

    try:
        with Image.open(folder.inside(first, folder.media_dir)) as image:
            width, height = image.size
            gray = image.mode in ("L", "1", "P")  # as the feature builder reads them
    except OSError:
        return  # the project's own media is missing: not this file's fault
    items = np.asarray(dataset.items)
    new = (items.shape[1], items.shape[2], items.ndim == 3)
    if new != (height, width, gray):

        def describe(h: int, w: int, g: bool) -> str:
            return f"{w}x{h} {'grayscale' if g else 'colour'}"

        raise InvalidDataError(
            f"{name} holds {describe(*new)} images but the project's images are "
            f"{describe(height, width, gray)}; resize or convert them first"
        )
