"""Bringing items into a project from a data file (all or nothing).

A file is read with :func:`labelwise.data.load_dataset` and becomes :class:`ItemRecord` rows:
texts as they are, tabular rows as JSON objects of their numeric fields, images as PNG files
copied into the project's ``media/`` folder. Labels in the file are imported only when asked
for (``with_labels``): by default a label column just suggests the label set.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from labelwise.data import Dataset, load_dataset
from labelwise.exceptions import InvalidDataError
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import ItemRecord, add_items
from labelwise.store.models import Project

__all__ = ["dataset_records", "import_file", "read_data"]


def read_data(
    path: str | Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> Dataset:
    return load_dataset(
        path, text_column=text_column, image_column=image_column, label_column=label_column
    )


def _save_images(images: np.ndarray, folder: ProjectFolder) -> tuple[Path, list[str]]:
    from PIL import Image

    batch = folder.media_dir / uuid.uuid4().hex[:12]
    batch.mkdir(parents=True)
    names = []
    for i, image in enumerate(images):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
            array = np.clip(array * scale, 0, 255).astype(np.uint8)
        path = batch / f"{i:07d}.png"
        Image.fromarray(array).save(path)
        names.append(str(path.relative_to(folder.media_dir)))
    return batch, names


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


def import_file(
    session: Session,
    project: Project,
    folder: ProjectFolder,
    path: str | Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    with_labels: bool = False,
) -> int:
    """Add every item of a data file to ``project`` inside the caller's transaction.

    Nothing is stored if anything is wrong: the data is checked before the first insert, and
    images copied in for a failed import are removed again.
    """
    dataset = read_data(
        path, text_column=text_column, image_column=image_column, label_column=label_column
    )
    if dataset.kind != project.kind:
        raise InvalidDataError(
            f"{Path(path).name} holds {dataset.kind} items but the project is a {project.kind} "
            "project"
        )
    records, written = dataset_records(dataset, folder, with_labels=with_labels)
    try:
        return add_items(session, project, records)
    except Exception:
        if written is not None:
            shutil.rmtree(written, ignore_errors=True)
        raise
