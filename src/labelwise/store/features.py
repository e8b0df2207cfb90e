"""The project's feature matrix, kept as files beside the database, and the items' fields.

* **Tabular** projects: the pool itself, :mod:`labelwise.store.row_file`'s ``tabular.npy``,
  written once, at import, a chunk at a time (:func:`begin_tabular_import`), and opened as a
  memory map. Items keep no copy of their fields in the database; :func:`item_fields` reads them
  from the file. A project whose items still carry their fields as JSON (made by an earlier
  release) gets the file built from them, in chunks, the first time it is needed.
* **Text and image** projects are represented as their ``features`` setting says
  (:func:`project_features`):

  - an embedding is computed once per item, at import, into a memory-mapped row file
    (:mod:`labelwise.store.embeddings`), and read from there;
  - TF-IDF and pixels are a cache built from every item at the first fit after an import
    (TF-IDF needs the whole vocabulary, and its weights change with the pool), so the items
    are held in memory while it is built: ``features/matrix.npy`` (dense, opened as a memory
    map) or ``features/matrix.npz`` (sparse), the fitted featurizer, and
    ``features/meta.json`` saying how many items they cover and of what representation.
    Items are only ever added, with consecutive rows, so the cache is current exactly when it
    covers every item;
  - both (``tfidf+embedding``, ``auto``) are put side by side at every read
    (:func:`labelwise.features.combine`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import scipy.sparse as sp
from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError, InvalidParameterError, NotFoundError
from labelwise.features import Blocks, FeatureSpec, combine, featurize
from labelwise.features.scaling import PoolStatistics, fit_to_pool
from labelwise.io.load import Dataset
from labelwise.models.auto import model_for_features
from labelwise.models.multilabel import LabelSetClassifier
from labelwise.models.registry import make_model
from labelwise.pool import Matrix, open_features
from labelwise.store.embeddings import embedding_rows, load_image
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import count_items
from labelwise.store.models import Item, Project
from labelwise.store.projects import ProjectSettings, feature_spec
from labelwise.store.row_file import (
    RowAppender,
    TabularStore,
    active_append,
    append_rows,
    create_store,
    embedding_file,
    lock_store,
    shown,
)

__all__ = [
    "ProjectFeatures",
    "begin_tabular_import",
    "feature_source",
    "field_names",
    "item_dataset",
    "item_fields",
    "item_preview",
    "load_features",
    "model_template",
    "project_features",
    "tabular_fields",
]

log = logging.getLogger("labelwise.features")

#: Items read per query when a feature file is built from JSON fields.
_BACKFILL_CHUNK = 20_000


def tabular_fields(content: str) -> dict[str, float]:
    """The numeric fields of a tabular item stored as a JSON object (earlier releases)."""
    fields = json.loads(content)
    if not isinstance(fields, dict):
        raise InvalidDataError("tabular item content must be a JSON object of fields")
    return {str(k): float(v) for k, v in fields.items()}


def item_dataset(session: Session, project: Project, folder: ProjectFolder) -> Dataset:
    """Every item of the project, in feature-row order, as a :class:`Dataset` (in memory)."""
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
        matrix = np.asarray(_tabular_matrix(session, project, folder), dtype=np.float64)
        return Dataset("tabular", matrix, None, ids, field_names(session, project, folder), source)
    images = np.stack([load_image(folder.inside(r.content, folder.media_dir)) for r in rows])
    return Dataset("image", images, None, ids, (), source)


def _atomic_save(path: Path, save: Any) -> None:
    """Write through a temporary file, on disk (fsync) before the rename: readers see the old
    file or the whole new one, even after a power cut."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as fh:  # a file object: numpy and scipy add no suffix of their own
            save(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _sound_cache(
    folder: ProjectFolder, meta_path: Path, n_items: int, base: str
) -> tuple[Matrix, Path] | None:
    """The cached matrix of ``base`` and its path when it is current and can be read, else None
    (the cache is derived from the items: a damaged one is rebuilt, not a dead end). A file
    that leads out of the folder is refused (:class:`InvalidDataError`), never read."""
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        # A cache without "features" was written by an earlier release: the kind's base.
        if meta.get("n_items") != n_items or meta.get("features", base) != base:
            return None
        name = str(meta["file"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("rebuilding the feature cache: %s is damaged (%s)", meta_path, exc)
        return None
    try:
        featurizer = folder.loadable("features/featurizer.joblib", folder.features_dir)
    except NotFoundError:
        return None
    try:
        joblib.load(featurizer)  # a damaged pickle raises anything
        path = folder.features_dir / name
        return open_features(path), path
    except Exception as exc:
        log.warning("rebuilding the feature cache: %s", exc)
        return None


@dataclass(frozen=True)
class ProjectFeatures:
    """A project's feature matrix and what it is made of.

    Attributes
    ----------
    X : matrix of shape (n_items, n_features)
        Row ``i`` is the item whose ``row`` is ``i``.
    spec : FeatureSpec
        The representation (the project's ``features`` setting).
    blocks : dict of name -> (start, stop)
        Where each part's columns are (``"embedding"``, ``"tfidf"``, ``"pixels"``,
        ``"columns"``).
    files : tuple of Path
        The files the matrix was read from (what a copy derived from it must follow).
    """

    X: Matrix
    spec: FeatureSpec
    blocks: Blocks
    files: tuple[Path, ...]

    def part(self, name: str) -> Matrix | None:
        """The columns of part ``name``, or None when the matrix has no such part."""
        if name not in self.blocks:
            return None
        if len(self.blocks) == 1:
            return self.X
        start, stop = self.blocks[name]
        return self.X[:, start:stop]


def load_features(session: Session, project: Project, folder: ProjectFolder) -> Matrix:
    """The feature matrix of every item (:func:`project_features`'s ``X``)."""
    return project_features(session, project, folder).X


def project_features(session: Session, project: Project, folder: ProjectFolder) -> ProjectFeatures:
    """Every item's features in the project's representation: shape (n_items, n_features).

    Tabular: the feature file, memory-mapped. An embedding: its row file, memory-mapped (rows
    the file lacks are computed first). TF-IDF and pixels: the cache, rebuilt first if items
    were added. Both: side by side, rows scaled to unit norm.
    """
    spec = feature_spec(project)
    if project.kind == "tabular":
        matrix = _tabular_matrix(session, project, folder)
        path = TabularStore(folder.features_dir).path
        return ProjectFeatures(matrix, spec, {"columns": (0, matrix.shape[1])}, (path,))
    parts: list[tuple[str, Any]] = []
    files: list[Path] = []
    if spec.embedder is not None:
        parts.append(("embedding", embedding_rows(session, project, folder, spec.embedder)))
        files.append(embedding_file(folder.features_dir, spec.embedder).path)
    if spec.base is not None:
        base, path = _base_matrix(session, project, folder, spec.base)
        parts.append((spec.base, base))
        files.append(path)
    X, blocks = combine(parts)
    return ProjectFeatures(X, spec, blocks, tuple(files))


def _base_matrix(
    session: Session, project: Project, folder: ProjectFolder, base: str
) -> tuple[Matrix, Path]:
    """TF-IDF or pixels of every item, from the cache (rebuilt when items were added)."""
    meta_path = folder.features_dir / "meta.json"
    n_items = count_items(session, project)
    cached = _sound_cache(folder, meta_path, n_items, base)
    if cached is not None:
        return cached
    dataset = item_dataset(session, project, folder)
    X, featurizer = featurize(dataset, features=base)
    if sp.issparse(X):
        name = "matrix.npz"
        _atomic_save(folder.features_dir / name, lambda fh: sp.save_npz(fh, sp.csr_matrix(X)))
    else:
        name = "matrix.npy"
        _atomic_save(folder.features_dir / name, lambda fh: np.save(fh, np.ascontiguousarray(X)))
    _atomic_save(folder.features_dir / "featurizer.joblib", lambda fh: joblib.dump(featurizer, fh))
    # Through a rename too: a worker killed mid-write must not leave an empty meta.json, which
    # would fail every later fit.
    record = json.dumps({"n_items": n_items, "file": name, "features": base}).encode()
    _atomic_save(meta_path, lambda fh: fh.write(record))
    path = folder.features_dir / name
    return open_features(path), path


def model_template(
    settings: ProjectSettings,
    features: ProjectFeatures,
    statistics: PoolStatistics | None = None,
    *,
    labels: Sequence[str] = (),
) -> Any:
    """The project's unfitted model for its features: ``settings.model`` (in a multi-label
    project one per label of ``labels``, a
    :class:`~labelwise.models.multilabel.LabelSetClassifier`), for ``auto`` features wrapped to
    choose its representation at every fit, with its column scaling bound to the pool's
    statistics (``statistics``, else computed from ``features.X``)."""
    model = make_model(settings.model, random_state=settings.seed)
    if settings.multi_label:
        if not labels:
            raise InvalidParameterError("a multi-label model needs the project's labels")
        model = LabelSetClassifier(model, list(labels), random_state=settings.seed)
    template = model_for_features(
        model,
        features.spec,
        features.blocks,
        random_state=settings.seed,
    )
    if statistics is None:
        return fit_to_pool(template, features.X)
    return fit_to_pool(template, statistics=statistics)


def feature_source(features: ProjectFeatures) -> dict[str, Any]:
    """What identifies the current feature matrix: its representation, shape, and its files'
    sizes and modification times. A copy derived from the matrix (such as a partitioned pool
    for a Dask cluster) records it and is rebuilt when it changes."""
    files = []
    for path in features.files:
        stat = path.stat()
        files.append({"file": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return {
        "features": features.spec.name,
        "n_items": int(features.X.shape[0]),
        "n_features": int(features.X.shape[1]),
        "files": files,
    }


# -------------------------------------------------------------------------------- tabular pools


def _covers(store: TabularStore, n_items: int) -> bool:
    return store.exists() and store.rows_on_disk() >= n_items


def _tabular_matrix(session: Session, project: Project, folder: ProjectFolder) -> np.ndarray:
    """The tabular pool, memory-mapped; built from the items' JSON fields first if need be."""
    store = TabularStore(folder.features_dir)
    n_items = count_items(session, project)
    if n_items and not _covers(store, n_items):
        lock = lock_store(store)
        try:
            _backfill(session, project, store, n_items)
        finally:
            lock.close()  # closing the handle releases the lock
    if not store.exists():
        raise InvalidDataError("the project has no tabular items yet")
    return store.matrix(n_items)


def _backfill(session: Session, project: Project, store: TabularStore, n_items: int) -> None:
    """Write the rows the file lacks from the items' JSON fields (under the lock)."""
    if _covers(store, n_items):
        return  # another process built it meanwhile
    if store.exists() and store.rows_on_disk():
        columns = store.columns()  # the file's rows so far came from an import
    else:
        first = session.scalar(
            select(Item.content).where(Item.project_id == project.id, Item.row == 0)
        )
        if not first:
            raise InvalidDataError(
                f"the feature file in {store.directory} is missing, and the items carry no "
                "fields to rebuild it from; the project folder is damaged"
            )
        columns = tuple(tabular_fields(first))
        create_store(store, columns, np.dtype(np.float64))
    start = min(store.rows_on_disk(), n_items)
    # The caller holds the lock (and releases it): the appender only writes.
    appender = RowAppender(store, None, start, columns, store.layout()[0])
    try:
        while start < n_items:
            rows = session.execute(
                select(Item.row, Item.content)
                .where(Item.project_id == project.id, Item.row >= start)
                .order_by(Item.row)
                .limit(_BACKFILL_CHUNK)
            ).all()
            if not rows or rows[0].row != start:
                raise InvalidDataError(
                    "item rows are not consecutive; the project database is damaged"
                )
            block = np.empty((len(rows), len(columns)), dtype=np.float64)
            for i, r in enumerate(rows):
                if not r.content:
                    raise InvalidDataError(
                        f"item row {r.row} carries no fields and the feature file lacks it; "
                        "the project folder is damaged"
                    )
                fields = tabular_fields(r.content)
                block[i] = [fields.get(c, np.nan) for c in columns]
            appender.write(block)
            start += len(rows)
        appender.flush()
    except BaseException:
        appender.abort()
        raise
    appender.close()


def begin_tabular_import(
    session: Session,
    project: Project,
    folder: ProjectFolder,
    columns: Sequence[str],
    dtype: np.dtype[Any],
    *,
    source: str,
) -> RowAppender:
    """Open the feature file for an import inside ``session``'s transaction.

    Waits for any other import of the project to end, then checks ``columns`` against the
    project's fields (the same names, in any order; a first import sets them, and the dtype).
    The returned appender's ``columns`` are the file's order, its ``next_row`` the row of the
    first new item; its rows are kept if the transaction commits and removed if it rolls back.
    A second import in the same transaction continues the first one's append.
    """
    store = TabularStore(folder.features_dir)
    ongoing = active_append(session, store)
    if ongoing is not None:  # a second import in the same transaction
        _check_columns(ongoing.columns, columns, source)
        return ongoing
    lock = lock_store(store)
    try:
        committed = count_items(session, project)  # counted under the lock
        if committed == 0:
            create_store(store, tuple(columns), dtype)
        else:
            if not _covers(store, committed):
                _backfill(session, project, store, committed)
            _check_columns(store.columns(), columns, source)
        return append_rows(session, store, lock, committed)
    except BaseException:
        lock.close()
        raise


def _check_columns(existing: Sequence[str], columns: Sequence[str], source: str) -> None:
    if set(existing) != set(columns):
        raise InvalidDataError(
            f"{source} has the fields {', '.join(columns)} but the project's items have "
            f"{', '.join(existing)}; name them with feature_columns="
        )


def field_names(session: Session, project: Project, folder: ProjectFolder) -> tuple[str, ...]:
    """A tabular project's field names, in column order (empty before the first import)."""
    store = TabularStore(folder.features_dir)
    if store.exists() and count_items(session, project):
        return store.columns()
    first = session.scalar(
        select(Item.content).where(Item.project_id == project.id).order_by(Item.row).limit(1)
    )
    return tuple(tabular_fields(first)) if first else ()


def item_fields(folder: ProjectFolder, items: Sequence[Any]) -> list[dict[str, float]]:
    """The fields of tabular ``items`` (anything with ``row`` and ``content``), in order.

    Read from the feature file, or from the item's JSON where an earlier release stored it.
    """
    out: list[dict[str, float] | None] = [None] * len(items)
    wanted: list[tuple[int, int]] = []
    for i, item in enumerate(items):
        if item.content:
            out[i] = tabular_fields(item.content)
        else:
            wanted.append((i, int(item.row)))
    if wanted:
        store = TabularStore(folder.features_dir)
        rows = [row for _, row in wanted]
        for (i, _), fields in zip(wanted, store.fields(rows, max(rows) + 1), strict=True):
            out[i] = fields
    return [o if o is not None else {} for o in out]


def item_preview(fields: dict[str, float], limit: int) -> str:
    """A tabular item in a line: its fields as JSON, cut at ``limit`` characters."""
    return json.dumps({k: shown(v) for k, v in fields.items()})[:limit]
