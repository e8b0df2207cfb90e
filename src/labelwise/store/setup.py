"""Creating a project folder from a data file, and opening an existing one."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from labelwise._stream import dataset_stream
from labelwise.data import Dataset, TabularStream, open_tabular_stream
from labelwise.exceptions import InvalidDataError
from labelwise.store.annotators import create_annotator
from labelwise.store.db import Database
from labelwise.store.embeddings import Progress
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Project
from labelwise.store.projects import ProjectSettings, create_project, get_project
from labelwise.store.restore import answer_labels, read_answers, restore_answers
from labelwise.store.transfer import add_records, dataset_records, import_tabular, read_data

__all__ = ["OpenProject", "init_project", "open_project"]


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


def _file_labels(stream: TabularStream | None, dataset: Dataset | None) -> set[str] | None:
    """The distinct labels of the data's label column (None without one)."""
    if stream is not None:
        return set(stream.label_values()) if stream.has_labels else None
    if dataset is None or dataset.labels is None:
        return None
    return {str(v) for v in dataset.labels if v is not None}


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
) -> tuple[OpenProject, str]:
    """Create a project folder from a data file; returns it and the first admin token.

    The label set is ``labels`` or, when not given, the distinct values of the file's label
    column. If anything fails, a folder this call created is removed again. Tabular data is
    read a chunk at a time where the format allows (see
    :func:`~labelwise.store.transfer.import_tabular`). Texts and images are embedded when the
    project's features include an embedding (``progress(done, total)`` as they are).
    """
    stream = open_tabular_stream(
        data,
        text_column=text_column,
        image_column=image_column,
        label_column=label_column,
    )
    dataset = None
    if stream is None:
        dataset = read_data(
            data, text_column=text_column, image_column=image_column, label_column=label_column
        )
        if dataset.kind == "tabular":
            stream = dataset_stream(dataset)
    # A Labelwise export brings its answers back as they were (labelwise.store.restore).
    answers = read_answers(data) if with_labels else None
    if labels is None:
        found = _file_labels(stream, dataset)
        if found is None:
            raise InvalidDataError(
                f"{Path(data).name} has no label column: give the label set with --labels a,b,…"
            )
        labels = sorted(found | answer_labels(answers or {}))
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
                import_tabular(
                    session, project, folder, stream, with_labels=with_labels, answers=answers
                )
            else:
                assert dataset is not None
                records, _ = dataset_records(
                    dataset, folder, with_labels=with_labels and answers is None
                )
                add_records(session, project, folder, records, dataset, progress=progress)
                if answers is not None:
                    restore_answers(session, project, answers, Path(data).name)
            _, token = create_annotator(session, project, name="admin", role="admin")
            project_id = project.id
        db.analyze()
    except BaseException:
        if existed:
            (root_path / "labelwise.json").unlink(missing_ok=True)
        else:
            shutil.rmtree(root_path, ignore_errors=True)
        raise
    return OpenProject(folder, db, project_id), token
