"""Bringing items into a project from a data file (all or nothing).

A file is read with :func:`read_data` and becomes :class:`ItemRecord` rows: texts as they are,
images as PNG files copied into the project's ``media/`` folder. Tabular files take another
path, :func:`import_tabular`: read a chunk of rows at a time where the format allows
(:func:`labelwise.io.load.open_tabular_stream`: delimited text, Parquet, ``.npy``), each chunk's
items inserted in bulk and its features appended to the project's feature file
(:mod:`labelwise.store.row_file`), so neither the file nor the pool is ever held in memory.
Labels in the file are imported only when asked for (``with_labels``, recorded as the
``import`` annotator): by default a label column just suggests the label set. A multi-label
project's file gives a list of labels per item (see ``multi_label`` of
:func:`labelwise.io.load.load_dataset`: ``;``-joined names in CSV, JSON lists, Label Studio
multi-choice); each is stored as its canonical set (:mod:`labelwise.label_sets`), ``[]`` as the
empty set, an empty cell as no label.

:func:`read_data` reads what :func:`labelwise.io.load.load_dataset` reads, and Label Studio JSON
(see :mod:`labelwise.services.label_studio`).

Ids. A file without an id column has its items numbered by the row each takes in the project:
0, 1, ... for the first file, and on from the project's last item for every later one, so a
second file (or the same file again) never reuses an id. An id column, when there is one, is
used as it is.

What looks wrong but can be used is imported (:mod:`labelwise.services.import_checks`), with a
:class:`~labelwise.exceptions.DataWarning` for each finding (one line naming the file, the column
and the figures); adapters show them (the CLI prints ``warning: ...`` lines):

* a label column with more than :data:`ID_LIKE_MIN_VALUES` distinct values that also outnumber
  :data:`ID_LIKE_FRACTION` of its labeled rows: ids or free text rather than classes (checked
  where the file's labels are used: the label set taken from them, or ``with_labels``);
* a text that is already in the project, or that repeats an earlier row of the file, under a
  new id: both copies become items, labeled separately;
* an ``.npz`` file's train, val and test splits, which go into one pool: each item keeps its
  split in its ``meta`` (``"split"``);
* a file that is not UTF-8, whose encoding was guessed (see :mod:`labelwise.io.load`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.io.dataset import _with_label_names
from labelwise.io.load import Dataset, TabularStream, load_dataset, open_tabular_stream
from labelwise.io.stream import dataset_stream
from labelwise.services.import_checks import (
    ID_LIKE_FRACTION,
    ID_LIKE_MIN_VALUES,
    _check_labels,
    _check_like_existing,
    _label_counts,
    _stored_labels,
    _warn_label_values,
    _warn_repeated_texts,
    _warn_splits,
)
from labelwise.services.label_studio import label_studio_tasks, read_label_studio
from labelwise.services.restore import Answer, check_answers, read_answers, restore_answers
from labelwise.store.embeddings import Progress, embed_import
from labelwise.store.features import begin_tabular_import
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import (
    IdClashError,
    ItemRecord,
    ItemWriter,
    add_items,
    check_ids,
    row_count,
)
from labelwise.store.media import MEDIA_SWEEP_AGE_S, save_images, sweep_media
from labelwise.store.models import Project
from labelwise.store.projects import feature_spec, settings_of

__all__ = [
    "ID_LIKE_FRACTION",
    "ID_LIKE_MIN_VALUES",
    "MEDIA_SWEEP_AGE_S",
    "StepProgress",
    "add_records",
    "dataset_records",
    "import_file",
    "import_tabular",
    "read_data",
    "read_label_studio",
    "sweep_media",
]

#: ``steps(step, done, total)``: how far an import has come. ``step`` is ``"reading"`` (rows
#: read and parsed), ``"saving images"``, ``"inserting"`` (items written) or ``"embedding"``;
#: ``total`` is None while not known (a large file's rows before the end).
StepProgress = Callable[[str, int, int | None], None]


class _ColumnOptions(TypedDict):
    """The column keywords :func:`import_file` hands on, as it was given them, to the reader
    of its file (:func:`read_data`, :func:`~labelwise.io.load.open_tabular_stream`)."""

    text_column: str | None
    image_column: str | None
    label_column: str | None
    feature_columns: Sequence[str] | None
    id_column: str | None
    label_names: Sequence[str] | None


def _step(steps: StepProgress | None, step: str, done: int, total: int | None) -> None:
    if steps is not None:
        steps(step, done, total)


def _embedding_progress(progress: Progress | None, steps: StepProgress | None) -> Progress | None:
    """The embedding's ``(done, total)`` callback: ``progress``, else the ``embedding`` step."""
    if progress is not None or steps is None:
        return progress
    return lambda done, total: steps("embedding", done, total)


def read_data(
    path: str | Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    kind: str | None = None,
    annotations: bool = True,
    id_column: str | None = None,
    label_names: Sequence[str] | None = None,
    multi_label: bool = False,
) -> Dataset:
    """Read a data file (or image folder) into a :class:`Dataset`, Label Studio JSON included.

    Parameters
    ----------
    path : str or Path
        The file; a ``.json`` list of tasks with a ``data`` object is read as Label Studio
        JSON, everything else by :func:`labelwise.io.load.load_dataset`.
    text_column, image_column, label_column, feature_columns : str, optional
        As for :func:`~labelwise.io.load.load_dataset`. For Label Studio, the ``data`` keys of the
        text or image, and the ``from_name`` of the choices that give the label.
    kind : {"text", "image", "tabular"}, optional
        The kind of the project the data goes into, when known: guides which ``data`` key of a
        Label Studio task holds the item.
    annotations : bool
        Read Label Studio choice annotations as labels (when False they are not even checked).
    id_column, label_names, multi_label : optional
        As for :func:`~labelwise.io.load.load_dataset` (Label Studio tasks have their own ids;
        with ``multi_label`` their multi-choice annotations are label sets).
    """
    path = Path(path)
    tasks = label_studio_tasks(path)
    if tasks is not None:
        if feature_columns is not None or id_column is not None:
            what = "feature_columns do" if id_column is None else "id_column does"
            raise InvalidParameterError(f"{path.name} holds Label Studio tasks: {what} not apply")
        dataset = read_label_studio(
            path,
            tasks,
            text_column=text_column,
            image_column=image_column,
            label_column=label_column,
            kind=kind,
            annotations=annotations,
            multi_label=multi_label,
        )
        return dataset if label_names is None else _with_label_names(dataset, label_names)
    # Strict ids: a project addresses its items by id, so an id column with duplicates is an
    # error here rather than a column passed over.
    return load_dataset(
        path,
        text_column=text_column,
        image_column=image_column,
        label_column=label_column,
        feature_columns=feature_columns,
        id_column=id_column,
        strict_ids=True,
        label_names=label_names,
        multi_label=multi_label,
    )


# ------------------------------------------------------------------------------------- records


def dataset_records(
    dataset: Dataset,
    folder: ProjectFolder,
    *,
    with_labels: bool,
    first_row: int = 0,
    progress: Progress | None = None,
    project: Project | None = None,
) -> tuple[list[ItemRecord], Path | None]:
    """Records for every item of ``dataset`` (and the media folder written, if any).

    A dataset without ids of its own (:attr:`~labelwise.io.load.Dataset.ids_numbered`) has its
    items numbered from ``first_row``, the project row the first of them takes. Each record's
    ``meta`` holds the source file's name and, for a file that keeps splits apart, the item's
    ``split``. ``progress(done, n)`` as images are saved. Given the ``project``, the labels
    are checked and stored as it stores answers (a multi-label project's sets canonical), before
    any image is saved.
    """
    ids = _ids(dataset, first_row)
    labels: list[Any] = [None] * len(dataset)
    if with_labels and dataset.labels is not None:
        labels = [None if v is None else str(v) for v in dataset.labels]
        if project is not None:
            labels = _stored_labels(labels, ids, project, Path(dataset.source).name)
    source = Path(dataset.source).name
    metas: Iterable[dict[str, Any]] = (
        ({"source": source} for _ in range(len(dataset)))
        if dataset.splits is None
        else ({"source": source, "split": str(s)} for s in dataset.splits.tolist())
    )
    written: Path | None = None
    if dataset.kind == "text":
        contents = [str(t) for t in dataset.items]
    elif dataset.kind == "tabular":
        matrix = dataset.items.toarray() if hasattr(dataset.items, "toarray") else dataset.items
        names = list(dataset.feature_names)
        contents = [
            json.dumps({n: float(v) for n, v in zip(names, row, strict=True)}) for row in matrix
        ]
    else:
        written, contents = save_images(np.asarray(dataset.items), folder, progress)
    return [
        ItemRecord(external_id=i, content=c, meta=m, label=lab)
        for i, c, m, lab in zip(ids, contents, metas, labels, strict=True)
    ], written


def _ids(dataset: Dataset, first_row: int) -> list[str]:
    """The ids the items get: the file's, or numbered from ``first_row`` when it has none."""
    if dataset.ids_numbered:
        return [str(first_row + i) for i in range(len(dataset))]
    return [str(i) for i in dataset.ids]


def _explain_clash(exc: IdClashError, name: str, numbered: bool, first_row: int) -> str:
    """The message for ids a project holds already: for numbered items, why they clashed."""
    if not numbered:
        return f"{name}: {exc}"
    return (
        f"{name}: {exc}; {name} has no id column, so its items are numbered by the row they "
        f"take in the project (from {first_row}), and an earlier file gave such numbers as "
        "ids: add an id column to the file (or name one with id_column=)"
    )


def import_file(
    session: Session,
    project: Project,
    folder: ProjectFolder,
    path: str | Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    with_labels: bool = False,
    progress: Progress | None = None,
    id_column: str | None = None,
    label_names: Sequence[str] | None = None,
    steps: StepProgress | None = None,
) -> int:
    """Add every item of a data file to ``project`` inside the caller's transaction.

    With ``with_labels``, the labels of a Labelwise export come back with their annotators,
    times and durations (:mod:`labelwise.services.restore`); any other file's labels are recorded
    once each, by the ``import`` annotator. ``label_names`` name integer classes (label ``k``
    becomes ``label_names[k]``; an ``.npz`` file may name them itself).

    Nothing is stored if anything is wrong: the data is checked before the first insert
    (readable, the project's kind, labels from the label set, tabular fields and image sizes
    like the items already there, ids new), and images copied in for a failed import are
    removed again. Errors name the file and the offending row or task. Returns how many items
    were added. A file without an id column has its items numbered on from the project's last
    row (see the module docstring); what looks wrong but can be used comes as
    :class:`~labelwise.exceptions.DataWarning` warnings.

    Images are copied when the records are made, before the caller commits: if the caller's
    transaction fails after this returns, the copies stay behind in ``media/`` (unreferenced).
    When the project's features include an embedding, the new items are embedded too
    (``progress(done, total)`` is called as they are), in the same transaction. ``steps``
    follows the whole import (:data:`StepProgress`), the embedding too unless ``progress`` is
    given.
    """
    path = Path(path)
    name = path.name
    columns = _ColumnOptions(
        text_column=text_column,
        image_column=image_column,
        label_column=label_column,
        feature_columns=feature_columns,
        id_column=id_column,
        label_names=label_names,
    )
    _step(steps, "reading", 0, None)
    multi = settings_of(project).multi_label
    stream = None
    if project.kind == "tabular":  # read a chunk at a time where the format allows
        stream = open_tabular_stream(path, **columns, multi_label=multi)
    if stream is not None:
        answers = read_answers(path) if with_labels else None
        if answers is not None:
            check_answers(answers, project, name)
        return import_tabular(
            session, project, folder, stream, with_labels=with_labels, answers=answers, steps=steps
        )
    dataset = read_data(
        path, **columns, kind=project.kind, annotations=with_labels, multi_label=multi
    )
    if dataset.kind != project.kind:
        raise InvalidDataError(
            f"{name} holds {dataset.kind} items but the project is a {project.kind} project"
        )
    # A Labelwise export brings its answers back as they were (labelwise.services.restore).
    answers = read_answers(path) if with_labels else None
    if answers is not None:
        check_answers(answers, project, name)
    elif with_labels and dataset.kind != "tabular":  # import_tabular checks its own
        counts = _label_counts(dataset.labels)
        _warn_label_values(name, dataset.label_column, counts, multi_label=multi)
        _check_labels(dataset, project, name)
    if dataset.kind == "tabular":
        return import_tabular(
            session,
            project,
            folder,
            dataset_stream(dataset),
            with_labels=with_labels,
            answers=answers,
            steps=steps,
        )
    _step(steps, "reading", len(dataset), len(dataset))
    _check_like_existing(session, project, folder, dataset, name)
    first = row_count(session, project)
    _warn_repeated_texts(session, project, dataset, _ids(dataset, first))
    _warn_splits(name, dataset.splits)
    records, written = dataset_records(
        dataset,
        folder,
        with_labels=with_labels and answers is None,
        first_row=first,
        progress=None if steps is None else lambda d, t: steps("saving images", d, t),
        project=project,
    )
    try:
        added = add_records(
            session, project, folder, records, dataset, progress=progress, steps=steps
        )
        if answers is not None:
            restore_answers(session, project, answers, name)
        return added
    except IdClashError as exc:
        if written is not None:
            shutil.rmtree(written, ignore_errors=True)
        raise InvalidDataError(_explain_clash(exc, name, dataset.ids_numbered, first)) from None
    except InvalidDataError as exc:
        if written is not None:
            shutil.rmtree(written, ignore_errors=True)
        raise InvalidDataError(f"{name}: {exc}") from None
    except BaseException:
        if written is not None:
            shutil.rmtree(written, ignore_errors=True)
        raise


def add_records(
    session: Session,
    project: Project,
    folder: ProjectFolder,
    records: Sequence[ItemRecord],
    dataset: Dataset,
    *,
    progress: Progress | None = None,
    steps: StepProgress | None = None,
) -> int:
    """Add a text or image dataset's ``records`` (:func:`dataset_records`) and, when the
    project's features include an embedding, embed its items into the project's row file --
    all in the caller's transaction. Returns how many items were added. ``steps`` follows the
    inserting (and the embedding, unless ``progress`` is given)."""
    first = row_count(session, project)
    inserting = None if steps is None else lambda d, t: steps("inserting", d, t)
    added = add_items(session, project, records, progress=inserting)
    spec = feature_spec(project)
    if spec.embedder is not None:
        items = list(dataset.items) if dataset.kind == "text" else np.asarray(dataset.items)
        embedding = _embedding_progress(progress, steps)
        embed_import(session, project, folder, spec.embedder, first, items, progress=embedding)
    return added


# -------------------------------------------------------------------------------- tabular data


def import_tabular(
    session: Session,
    project: Project,
    folder: ProjectFolder,
    stream: TabularStream,
    *,
    with_labels: bool = False,
    answers: dict[str, list[Answer]] | None = None,
    steps: StepProgress | None = None,
) -> int:
    """Add every row of ``stream`` to a tabular ``project`` inside the caller's transaction.

    Chunk by chunk: ids and labels are checked, the items inserted in bulk
    (:class:`~labelwise.store.items.ItemWriter`) and the features appended to the project's
    feature file (:func:`~labelwise.store.features.begin_tabular_import`, the project's column
    order). The file's rows stand or fall with the transaction, so a failure at any chunk leaves
    neither items nor feature rows behind. ``with_labels`` records the stream's labels (by the
    ``import`` annotator) unless ``answers`` from a Labelwise export are given, which are
    restored after the items. Returns how many items were added.

    A stream without ids (:attr:`~labelwise.io.load.TabularStream.ids_numbered`) has its rows
    numbered on from the project's last item. ``steps("reading", ...)`` and
    ``steps("inserting", ...)`` are called after each chunk, with the stream's row estimate as
    the total until the end.
    """
    name = Path(stream.source).name
    if project.kind != "tabular":
        raise InvalidDataError(
            f"{name} holds tabular items but the project is a {project.kind} project"
        )
    appender = begin_tabular_import(
        session, project, folder, stream.feature_names, stream.dtype, source=name
    )
    order = [stream.feature_names.index(c) for c in appender.columns]
    writer = ItemWriter(session, project, meta={"source": name})
    if writer.next_row != appender.next_row:
        raise InvalidDataError(
            f"the project's items end at row {writer.next_row} but its feature file at "
            f"{appender.next_row}; the project folder is damaged"
        )
    first = writer.next_row
    multi = settings_of(project).multi_label
    take_labels = with_labels and answers is None and stream.has_labels
    counts: dict[str, int] = {}
    splits: list[np.ndarray] = []
    added = 0
    with writer:
        for chunk in stream.chunks():
            read = added + len(chunk)
            _step(steps, "reading", read, max(read, stream.rows_hint or 0) or None)
            if stream.ids_numbered:
                ids = [str(first + chunk.start + k) for k in range(len(chunk))]
            else:
                ids = [str(i) for i in chunk.ids.tolist()]
            labels: list[str | None] | None = None
            if take_labels and chunk.labels is not None:
                for value, number in _label_counts(chunk.labels).items():
                    counts[value] = counts.get(value, 0) + number
                try:
                    labels = _stored_labels(
                        chunk.labels.tolist(), ids, project, name, first=chunk.start
                    )
                except InvalidDataError:
                    _warn_label_values(name, stream.label_column, counts, multi_label=multi)
                    raise
            metas = None
            if chunk.splits is not None:
                splits.append(chunk.splits)
                metas = [{"source": name, "split": str(s)} for s in chunk.splits.tolist()]
            try:
                check_ids(ids, first=chunk.start)
                writer.add(ids, labels=labels, metas=metas)
            except IdClashError as exc:
                raise InvalidDataError(
                    _explain_clash(exc, name, stream.ids_numbered, first)
                ) from None
            except InvalidDataError as exc:
                raise InvalidDataError(f"{name}: {exc}") from None
            in_order = order == list(range(len(order)))
            appender.write(chunk.features if in_order else chunk.features[:, order])
            added += len(chunk)
            _step(steps, "inserting", added, max(added, stream.rows_hint or 0) or None)
    if added == 0:
        raise InvalidDataError(f"{name}: nothing to import: the data holds no items")
    _step(steps, "reading", added, added)
    _step(steps, "inserting", added, added)
    if take_labels:
        _warn_label_values(name, stream.label_column, counts, multi_label=multi)
    if splits:
        _warn_splits(name, np.concatenate(splits))
    appender.flush()
    if answers is not None:
        restore_answers(session, project, answers, name)
    return added
