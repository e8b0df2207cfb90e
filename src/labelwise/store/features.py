"""The project's feature matrix: built from the stored items once, kept as files, reused.

``features/matrix.npy`` (dense, opened as a memory map) or ``features/matrix.npz`` (sparse), the
fitted featurizer, and ``features/meta.json`` saying how many items they cover. Items are only
ever added, with consecutive rows, so the cache is current exactly when it covers every item;
after an import the next fit rebuilds it (TF-IDF's vocabulary and weights change with the pool).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import scipy.sparse as sp
from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise.data import Dataset
from labelwise.exceptions import InvalidDataError
from labelwise.features import featurize
from labelwise.pool import Matrix, open_features
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import count_items
from labelwise.store.models import Item, Project

__all__ = ["item_dataset", "load_features", "tabular_fields"]


def tabular_fields(content: str) -> dict[str, float]:
    """The numeric fields of a tabular item (its content is a JSON object)."""
    fields = json.loads(content)
    if not isinstance(fields, dict):
        raise InvalidDataError("tabular item content must be a JSON object of fields")
    return {str(k): float(v) for k, v in fields.items()}


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(
            image.convert("L") if image.mode in ("L", "1", "P") else image.convert("RGB")
        )


def item_dataset(session: Session, project: Project, folder: ProjectFolder) -> Dataset:
    """Every item of the project, in feature-row order, as a :class:`Dataset`."""
    rows = session.execute(
        select(Item.row, Item.external_id, Item.content)
        .where(Item.project_id == project.id)
        .order_by(Item.row)
    ).all()
    if [r.row for r in rows] != list(range(len(rows))):
        raise InvalidDataError("item rows are not consecutive; the project database is damaged")
    ids = np.asarray([r.external_id for r in rows], dtype=object)
    source = str(folder.root)
    if project.kind == "text":
        items: Any = np.asarray([r.content for r in rows], dtype=object)
        return Dataset("text", items, None, ids, ("text",), source)
    if project.kind == "tabular":
        parsed = [tabular_fields(r.content) for r in rows]
        names = tuple(parsed[0]) if parsed else ()
        matrix = np.asarray([[p.get(n, np.nan) for n in names] for p in parsed], dtype=np.float64)
        return Dataset("tabular", matrix, None, ids, names, source)
    images = np.stack([_load_image(folder.inside(r.content, folder.media_dir)) for r in rows])
    return Dataset("image", images, None, ids, (), source)


def _atomic_save(path: Path, save: Any) -> None:
    """Write through a temporary file and rename: readers see the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:  # a file object: numpy and scipy add no suffix of their own
        save(fh)
    os.replace(tmp, path)


def load_features(session: Session, project: Project, folder: ProjectFolder) -> Matrix:
    """The feature matrix of every item (rebuilt first if items were added)."""
    meta_path = folder.features_dir / "meta.json"
    n_items = count_items(session, project)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("n_items") == n_items:
            return open_features(folder.features_dir / meta["file"])
    dataset = item_dataset(session, project, folder)
    X, featurizer = featurize(dataset)
    if sp.issparse(X):
        name = "matrix.npz"
        _atomic_save(folder.features_dir / name, lambda fh: sp.save_npz(fh, sp.csr_matrix(X)))
    else:
        name = "matrix.npy"
        _atomic_save(folder.features_dir / name, lambda fh: np.save(fh, np.ascontiguousarray(X)))
    _atomic_save(folder.features_dir / "featurizer.joblib", lambda fh: joblib.dump(featurizer, fh))
    meta_path.write_text(json.dumps({"n_items": n_items, "file": name}))
    return open_features(folder.features_dir / name)
