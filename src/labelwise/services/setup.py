"""Creating a project folder from a data file, and opening an existing one."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError
from labelwise.io.load import Dataset, TabularStream, open_tabular_stream
from labelwise.io.stream import dataset_stream
from labelwise.services.import_checks import _per_label
from labelwise.services.restore import added_columns, answer_labels, read_answers, restore_answers
from labelwise.services.transfer import (
    StepProgress,
    _step,
    _warn_label_values,
    _warn_repeated_texts,
    _warn_splits,
    add_records,
    dataset_records,
    import_tabular,
    read_data,
)
from labelwise.store.annotators import create_annotator
from labelwise.store.db import Database
from labelwise.store.embeddings import Progress
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Annotator, Project
from labelwise.store.projects import ProjectSettings, create_project, get_project

__all__ = ["FIRST_ADMIN", "OpenProject", "first_admin_name", "init_project", "open_project"]

#: The name of the admin a new project starts with (see :func:`first_admin_name`).
FIRST_ADMIN = "admin"


@dataclass
class OpenProject:
    """A project folder with its database connection and project row (as read at opening)."""

    folder: ProjectFolder
    db: Database
    project_id: int

    def project(self) -> Project:
        with self.db.read() as session:
            return get_project(session, project_id=self.project_id)


def open_project(root: str | Path, *, db_url: str | None = None) -> OpenProject:
    """Open a project folder (its database is migrated to the newest schema first)."""
    folder = ProjectFolder.open(root)
    db = folder.connect(db_url)
    with db.read() as session:
        project = get_project(session, name=folder.project_name)
    return OpenProject(folder, db, project.id)


def _file_labels(
    stream: TabularStream | None, dataset: Dataset | None, steps: StepProgress | None
) -> dict[str, int] | None:
    """How many rows hold each label of the data's label column (None without one). A stream
    is read once more for it, its label column only (``steps("reading", ...)`` as it is)."""
    if stream is not None and dataset is None:
        if not stream.has_labels:
            return None
        rows = [0]

        def report(done: int, total: int | None) -> None:
            rows[0] = done
            _step(steps, "reading", done, max(done, total or 0) or None)

        counts = stream.label_counts(progress=report)
        _step(steps, "reading", rows[0], rows[0])
        return counts
    if dataset is None or dataset.labels is None:
        return None
    found: dict[str, int] = {}
    for value in dataset.labels.tolist():
        if value is not None:
            found[str(value)] = found.get(str(value), 0) + 1
    return found


def _without(steps: StepProgress | None, step: str) -> StepProgress | None:
    """``steps`` that leaves out ``step`` (one that is over already)."""
    if steps is None:
        return None
    return lambda name, done, total: None if name == step else steps(name, done, total)


def first_admin_name(session: Session, project: Project) -> str:
    """:data:`FIRST_ADMIN`, or when the project has someone of that name already (an exported
    ``admin`` restored by ``init --with-labels``), the first free ``admin-N`` from 2: the new
    admin is a person of their own (see :mod:`labelwise.services.restore`)."""
    taken = set(
        session.scalars(
            select(Annotator.name).where(
                Annotator.project_id == project.id, Annotator.name.startswith(FIRST_ADMIN)
            )
        )
    )
    name, n = FIRST_ADMIN, 1
    while name in taken:
        n += 1
        name = f"{FIRST_ADMIN}-{n}"
    return name


def _without_added(names: tuple[str, ...], extras: tuple[str, ...]) -> list[str] | None:
    """The tabular fields ``names`` less the columns an export added (its predictions), when
    the reader took any of those for fields; else None."""
    if not set(names) & set(extras):
        return None
    return [n for n in names if n not in extras]


def init_project(
    root: str | Path,
    data: str | Path,
    *,
    name: str | None = None,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    labels: list[str] | None = None,
    with_labels: bool = False,
    db_url: str | None = None,
    settings: ProjectSettings | None = None,
    progress: Progress | None = None,
    id_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    steps: StepProgress | None = None,
) -> tuple[OpenProject, str]:
    """Create a project folder from a data file; returns it and the first admin token.

    The label set is ``labels`` or, when not given, the names of the classes (``label_names``,
    or an ``.npz`` file's own, in their order) or else the distinct values of the file's label
    column, sorted. A multi-label project (``settings.multi_label``) reads the label column as
    label lists (see :func:`~labelwise.io.load.load_dataset`) and its label set is every label
    the lists name, sorted as well. If anything fails, a folder this call created is removed
    again. Tabular data is read a chunk at a time where the format allows (see
    :func:`~labelwise.services.transfer.import_tabular`). Texts and images are embedded when the
    project's features include an embedding (``progress(done, total)`` as they are).

    A Labelwise export comes back with its answers (``with_labels``,
    :mod:`labelwise.services.restore`); the columns it adds after them (a predictions export's)
    are never taken for fields. The first admin is named by :func:`first_admin_name`: an
    exported ``admin`` keeps that name, and their answers, and the new one is ``admin-2``.

    Columns, ids (numbered rows without an id column) and label names are read as
    :func:`~labelwise.services.transfer.import_file` reads them, and what looks wrong comes as
    :class:`~labelwise.exceptions.DataWarning` warnings: a label column like ids (checked when
    the label set comes from it, or with ``with_labels``), texts repeated within the file, an
    ``.npz`` file's splits in one pool, a guessed encoding. ``steps`` follows the reading,
    inserting and embedding (:data:`~labelwise.services.transfer.StepProgress`).
    """
    data_name = Path(data).name
    _step(steps, "reading", 0, None)
    multi = settings is not None and settings.multi_label
    keywords: dict[str, Any] = {"label_column": label_column, "id_column": id_column}
    keywords.update(label_names=label_names, multi_label=multi)

    def open_stream(**given: Any) -> TabularStream | None:
        return open_tabular_stream(data, **keywords, **given)

    def read(**given: Any) -> Dataset:
        return read_data(data, **keywords, **given)

    stream = open_stream(
        text_column=text_column, image_column=image_column, feature_columns=feature_columns
    )
    extras = added_columns(data)
    fields = _without_added(stream.feature_names, extras) if stream is not None else None
    if fields is not None:
        stream = open_stream(feature_columns=fields)
    dataset = None
    if stream is None:
        dataset = read(
            text_column=text_column, image_column=image_column, feature_columns=feature_columns
        )
        fields = _without_added(dataset.feature_names, extras)
        if dataset.kind == "tabular" and fields is not None:
            dataset = read(feature_columns=fields)
        _step(steps, "reading", len(dataset), len(dataset))
        if dataset.kind == "tabular":
            stream = dataset_stream(dataset)
    # A Labelwise export brings its answers back as they were (labelwise.services.restore).
    answers = read_answers(data) if with_labels else None
    found = None
    if labels is None or (with_labels and answers is None):  # the file's labels are used
        found = _file_labels(stream, dataset, steps)
        if found is not None:
            source = dataset if dataset is not None else stream
            _warn_label_values(
                data_name, getattr(source, "label_column", None), found, multi_label=multi
            )
    if labels is None:
        if found is None:
            raise InvalidDataError(
                f"{data_name} has no label column: give the label set with labels=[...]"
            )
        source = dataset if dataset is not None else stream
        classes: tuple[str, ...] = getattr(source, "classes", ())
        named = _per_label(found) if multi else found
        extra = (set(named) | answer_labels(answers or {}, multi_label=multi)) - set(classes)
        labels = [*classes, *sorted(extra)]
    if dataset is not None:
        _warn_repeated_texts(None, None, dataset, [str(i) for i in dataset.ids])
        if dataset.kind != "tabular":  # import_tabular says it for tabular data
            _warn_splits(data_name, dataset.splits)
    root_path = Path(root)
    existed = root_path.exists()
    folder = ProjectFolder.create(root_path, name or root_path.resolve().name, db_url)
    try:
        db = folder.connect(db_url)
        with db.write() as session:
            project = create_project(
                session,
                name=folder.project_name,
                kind="tabular" if stream is not None or dataset is None else dataset.kind,
                labels=labels,
                settings=settings,
            )
            if stream is not None:
                # A file read whole, or a stream whose labels were counted, is read already.
                was_read = dataset is not None or found is not None
                import_tabular(
                    session,
                    project,
                    folder,
                    stream,
                    with_labels=with_labels,
                    answers=answers,
                    steps=_without(steps, "reading") if was_read else steps,
                )
            else:
                assert dataset is not None
                saving = None if steps is None else lambda d, t: steps("saving images", d, t)
                records, _ = dataset_records(
                    dataset,
                    folder,
                    with_labels=with_labels and answers is None,
                    progress=saving,
                    project=project,
                )
                add_records(
                    session, project, folder, records, dataset, progress=progress, steps=steps
                )
                if answers is not None:
                    restore_answers(session, project, answers, Path(data).name)
            # Made after the restore: an exported "admin" keeps that name and their answers.
            admin = first_admin_name(session, project)
            _, token = create_annotator(session, project, name=admin, role="admin")
            project_id = project.id
        db.analyze()
    except BaseException:
        if existed:
            (root_path / "labelwise.json").unlink(missing_ok=True)
        else:
            shutil.rmtree(root_path, ignore_errors=True)
        raise
    return OpenProject(folder, db, project_id), token
