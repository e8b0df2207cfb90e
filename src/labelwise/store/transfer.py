"""Bringing items into a project from a data file (all or nothing).

A file is read with :func:`read_data` and becomes :class:`ItemRecord` rows: texts as they are,
images as PNG files copied into the project's ``media/`` folder. Tabular files take another
path, :func:`import_tabular`: read a chunk of rows at a time where the format allows
(:func:`labelwise.data.open_tabular_stream`: delimited text, Parquet, ``.npy``), each chunk's
items inserted in bulk and its features appended to the project's feature file
(:mod:`labelwise.store.row_file`), so neither the file nor the pool is ever held in memory.
Labels in the file are imported only when asked for (``with_labels``, recorded as the
``import`` annotator): by default a label column just suggests the label set.

:func:`read_data` reads what :func:`labelwise.data.load_dataset` reads, and Label Studio JSON
(see :mod:`labelwise.store.label_studio`).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelwise._stream import dataset_stream
from labelwise.data import Dataset, TabularStream, load_dataset, open_tabular_stream
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.store.embeddings import Progress, embed_import
from labelwise.store.features import begin_tabular_import
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import ItemRecord, ItemWriter, add_items, check_ids, row_count
from labelwise.store.label_studio import label_studio_tasks, read_label_studio
from labelwise.store.models import Item, Project
from labelwise.store.projects import feature_spec
from labelwise.store.restore import Answer, check_answers, read_answers, restore_answers

__all__ = [
    "add_records",
    "dataset_records",
    "import_file",
    "import_tabular",
    "read_data",
    "read_label_studio",
    "sweep_media",
]

#: The name of a batch folder under ``media/`` (one per image import), and how old a batch
#: folder no item names must be before it counts as left by a killed import: an import running
#: now keeps writing into its folder, which keeps the folder's time fresh.
_BATCH = re.compile(r"[0-9a-f]{12}")
MEDIA_SWEEP_AGE_S = 3600.0


def read_data(
    path: str | Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    kind: str | None = None,
    annotations: bool = True,
) -> Dataset:
    """Read a data file (or image folder) into a :class:`Dataset`, Label Studio JSON included.

    Parameters
    ----------
    path : str or Path
        The file; a ``.json`` list of tasks with a ``data`` object is read as Label Studio
        JSON, everything else by :func:`labelwise.data.load_dataset`.
    text_column, image_column, label_column, feature_columns : str, optional
        As for :func:`~labelwise.data.load_dataset`. For Label Studio, the ``data`` keys of the
        text or image, and the ``from_name`` of the choices that give the label.
    kind : {"text", "image", "tabular"}, optional
        The kind of the project the data goes into, when known: guides which ``data`` key of a
        Label Studio task holds the item.
    annotations : bool
        Read Label Studio choice annotations as labels (when False they are not even checked).
    """
    path = Path(path)
    tasks = label_studio_tasks(path)
    if tasks is not None:
        if feature_columns is not None:
            raise InvalidParameterError(
                f"{path.name} holds Label Studio tasks: feature_columns do not apply"
            )
        return read_label_studio(
            path,
            tasks,
            text_column=text_column,
            image_column=image_column,
            label_column=label_column,
            kind=kind,
            annotations=annotations,
        )
    # Strict ids: a project addresses its items by id, so an id column with duplicates is an
    # error here rather than a column passed over.
    return load_dataset(
        path,
        text_column=text_column,
        image_column=image_column,
        label_column=label_column,
        feature_columns=feature_columns,
        strict_ids=True,
    )


# ------------------------------------------------------------------------------------- records


def _save_images(images: np.ndarray, folder: ProjectFolder) -> tuple[Path, list[str]]:
    """Write each image as PNG into a new batch folder under ``media/``; (folder, names relative
    to ``media/``). A failure part way removes the batch folder again."""
    from PIL import Image

    batch = folder.media_dir / uuid.uuid4().hex[:12]
    batch.mkdir(parents=True)
    names = []
    try:
        for i, image in enumerate(images):
            array = np.asarray(image)
            if array.dtype != np.uint8:
                scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
                array = np.clip(array * scale, 0, 255).astype(np.uint8)
            path = batch / f"{i:07d}.png"
            Image.fromarray(array).save(path)
            names.append(path.relative_to(folder.media_dir).as_posix())
    except BaseException:
        shutil.rmtree(batch, ignore_errors=True)
        raise
    return batch, names


def sweep_media(
    session: Session,
    project: Project,
    folder: ProjectFolder,
    *,
    min_age_s: float = MEDIA_SWEEP_AGE_S,
) -> list[Path]:
    """Remove the image batch folders no item names; returns what was removed.

    An image import copies its images into ``media/<batch>/`` before its items are committed.
    Killed in between (or its transaction failing after the copy), it leaves a folder nothing
    refers to. Only folders named like a batch and untouched for ``min_age_s`` go: one whose
    import is still running is left alone, and so is anything else in ``media/``.
    """
    media = folder.media_dir
    if project.kind != "image" or not media.is_dir():
        return []
    now = time.time()
    old = [
        path
        for path in sorted(media.iterdir())
        if _BATCH.fullmatch(path.name)
        and path.is_dir()
        and not path.is_symlink()
        and now - path.stat().st_mtime >= min_age_s
    ]
    if not old:
        return []
    named = set(
        session.scalars(
            select(func.substr(Item.content, 1, 12)).where(Item.project_id == project.id).distinct()
        )
    )
    removed = [path for path in old if path.name not in named]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def dataset_records(
    dataset: Dataset, folder: ProjectFolder, *, with_labels: bool
) -> tuple[list[ItemRecord], Path | None]:
    """Records for every item of ``dataset`` (and the media folder written, if any)."""
    labels: list[Any] = (
        [None if v is None else str(v) for v in dataset.labels]
        if with_labels and dataset.labels is not None
        else [None] * len(dataset)
    )
    ids = [str(i) for i in dataset.ids]
    meta = {"source": Path(dataset.source).name}
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
        written, contents = _save_images(np.asarray(dataset.items), folder)
    return [
        ItemRecord(external_id=i, content=c, meta=dict(meta), label=lab)
        for i, c, lab in zip(ids, contents, labels, strict=True)
    ], written


def _check_labels(dataset: Dataset, project: Project, name: str) -> None:
    """Every label the file brings belongs to the project (checked before media is copied)."""
    if dataset.labels is None:
        return
    allowed = set(project.label_set)
    for i, value in enumerate(dataset.labels):
        if value is not None and str(value) not in allowed:
            raise InvalidDataError(
                f"{name}, row {i} (id {str(dataset.ids[i])!r}): label {str(value)!r} is not one "
                f"of the project's labels ({', '.join(project.label_set)})"
            )


def _check_like_existing(
    session: Session, project: Project, folder: ProjectFolder, dataset: Dataset, name: str
) -> None:
    """New images must fit the project's feature matrix: the same size and colour mode as those
    already there. (Tabular fields are checked against the feature file by
    :func:`import_tabular`.)"""
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
) -> int:
    """Add every item of a data file to ``project`` inside the caller's transaction.

    With ``with_labels``, the labels of a Labelwise export come back with their annotators,
    times and durations (:mod:`labelwise.store.restore`); any other file's labels are recorded
    once each, by the ``import`` annotator.

    Nothing is stored if anything is wrong: the data is checked before the first insert
    (readable, the project's kind, labels from the label set, tabular fields and image sizes
    like the items already there, ids new), and images copied in for a failed import are
    removed again. Errors name the file and the offending row or task. Returns how many items
    were added.

    Images are copied when the records are made, before the caller commits: if the caller's
    transaction fails after this returns, the copies stay behind in ``media/`` (unreferenced).
    When the project's features include an embedding, the new items are embedded too
    (``progress(done, total)`` is called as they are), in the same transaction.
    """
    path = Path(path)
    name = path.name
    stream = None
    if project.kind == "tabular":  # read a chunk at a time where the format allows
        stream = open_tabular_stream(
            path,
            text_column=text_column,
            image_column=image_column,
            label_column=label_column,
            feature_columns=feature_columns,
        )
    if stream is not None:
        answers = read_answers(path) if with_labels else None
        if answers is not None:
            check_answers(answers, project, name)
        return import_tabular(
            session, project, folder, stream, with_labels=with_labels, answers=answers
        )
    dataset = read_data(
        path,
        text_column=text_column,
        image_column=image_column,
        label_column=label_column,
        feature_columns=feature_columns,
        kind=project.kind,
        annotations=with_labels,
    )
    if dataset.kind != project.kind:
        raise InvalidDataError(
            f"{name} holds {dataset.kind} items but the project is a {project.kind} project"
        )
    # A Labelwise export brings its answers back as they were (labelwise.store.restore).
    answers = read_answers(path) if with_labels else None
    if answers is not None:
        check_answers(answers, project, name)
    elif with_labels:
        _check_labels(dataset, project, name)
    if dataset.kind == "tabular":
        return import_tabular(
            session,
            project,
            folder,
            dataset_stream(dataset),
            with_labels=with_labels,
            answers=answers,
        )
    _check_like_existing(session, project, folder, dataset, name)
    records, written = dataset_records(dataset, folder, with_labels=with_labels and answers is None)
    try:
        added = add_records(session, project, folder, records, dataset, progress=progress)
        if answers is not None:
            restore_answers(session, project, answers, name)
        return added
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
) -> int:
    """Add a text or image dataset's ``records`` (:func:`dataset_records`) and, when the
    project's features include an embedding, embed its items into the project's row file --
    all in the caller's transaction. Returns how many items were added."""
    first = row_count(session, project)
    added = add_items(session, project, records)
    spec = feature_spec(project)
    if spec.embedder is not None:
        items = list(dataset.items) if dataset.kind == "text" else np.asarray(dataset.items)
        embed_import(session, project, folder, spec.embedder, first, items, progress=progress)
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
) -> int:
    """Add every row of ``stream`` to a tabular ``project`` inside the caller's transaction.

    Chunk by chunk: ids and labels are checked, the items inserted in bulk
    (:class:`~labelwise.store.items.ItemWriter`) and the features appended to the project's
    feature file (:func:`~labelwise.store.features.begin_tabular_import`, the project's column
    order). The file's rows stand or fall with the transaction, so a failure at any chunk leaves
    neither items nor feature rows behind. ``with_labels`` records the stream's labels (by the
    ``import`` annotator) unless ``answers`` from a Labelwise export are given, which are
    restored after the items. Returns how many items were added.
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
    allowed = set(project.label_set)
    take_labels = with_labels and answers is None and stream.has_labels
    added = 0
    with writer:
        for chunk in stream.chunks():
            ids = [str(i) for i in chunk.ids.tolist()]
            labels: list[str | None] | None = None
            if take_labels and chunk.labels is not None:
                labels = chunk.labels.tolist()
                for i, value in enumerate(labels):
                    if value is not None and value not in allowed:
                        raise InvalidDataError(
                            f"{name}, row {chunk.start + i} (id {ids[i]!r}): label {value!r} "
                            f"is not one of the project's labels "
                            f"({', '.join(project.label_set)})"
                        )
            try:
                check_ids(ids, first=chunk.start)
                writer.add(ids, labels=labels)
            except InvalidDataError as exc:
                raise InvalidDataError(f"{name}: {exc}") from None
            in_order = order == list(range(len(order)))
            appender.write(chunk.features if in_order else chunk.features[:, order])
            added += len(chunk)
    if added == 0:
        raise InvalidDataError(f"{name}: nothing to import: the data holds no items")
    appender.flush()
    if answers is not None:
        restore_answers(session, project, answers, name)
    return added
