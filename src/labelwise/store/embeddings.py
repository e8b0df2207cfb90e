"""A project's embeddings: computed once per item, kept in a memory-mapped row file.

When a project's features include an embedding (``embedding``, ``tfidf+embedding``, ``auto``,
see :mod:`labelwise.features.spec`), every item is embedded once and its row kept in
``features/embedding-<embedder>.npy`` (:func:`labelwise.store.row_file.embedding_file`):

* an import embeds its new items a chunk at a time, inside its transaction
  (:func:`embed_import`): the rows are appended when the items commit and cut off if they roll
  back, so a failed import leaves neither items nor rows behind;
* the worker fills in whatever the file lacks before it reads it (:func:`embedding_rows`):
  items imported before the project used embeddings, or before it changed embedder, are
  embedded from their stored text or image, a chunk at a time.

Every consumer -- the model, nearest neighbours, diversity, near-duplicates, the cold start --
reads the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError
from labelwise.features.embedders import Embedder, make_embedder
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import count_items
from labelwise.store.models import Item, Project
from labelwise.store.row_file import (
    RowAppender,
    RowFile,
    active_append,
    append_rows,
    create_store,
    embedding_file,
    lock_store,
)

__all__ = ["EMBED_CHUNK", "embed_import", "embedding_rows", "load_image"]

log = logging.getLogger("labelwise.embeddings")

#: Items embedded per step (and read from the database per step when filling in).
EMBED_CHUNK = 4096

#: Called as rows are embedded: (rows done, rows to do).
Progress = Callable[[int, int], None]


def load_image(path: Path) -> np.ndarray:
    """An image file as an array: (h, w) for grayscale, (h, w, 3) otherwise."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(
            image.convert("L") if image.mode in ("L", "1", "P") else image.convert("RGB")
        )


def _columns(dim: int) -> tuple[str, ...]:
    return tuple(f"e{i}" for i in range(dim))


def _open(store: RowFile, embedder: Embedder) -> None:
    """Create the file if it is missing, or check it holds this embedder's rows."""
    if not store.exists():
        create_store(
            store, _columns(embedder.dim), np.dtype(np.float32), {"embedder": embedder.name}
        )
        return
    recorded = store.info().get("embedder")
    if recorded != embedder.name or len(store.columns()) != embedder.dim:
        raise InvalidDataError(
            f"{store.path} holds embeddings of {recorded!r} ({len(store.columns())} columns), "
            f"not of {embedder.name!r} ({embedder.dim}); the project folder is damaged"
        )


def _write(
    appender: RowAppender,
    embedder: Embedder,
    batches: Sequence[Any] | Any,
    progress: Progress | None,
    total: int,
) -> None:
    done = 0
    for batch in batches:
        appender.write(embedder.embed(batch))
        done += len(batch)
        if progress is not None:
            progress(done, total)


def embed_import(
    session: Session,
    project: Project,
    folder: ProjectFolder,
    embedder_name: str,
    first_row: int,
    items: Any,
    *,
    progress: Progress | None = None,
) -> None:
    """Embed the items an import adds (a list of texts, or an array of images), rows
    ``first_row`` onwards,
    inside ``session``'s transaction: the rows stand or fall with it.

    Rows the file lacks before ``first_row`` (items imported before the project used this
    embedder) are filled in first from the stored items.
    """
    embedder = make_embedder(embedder_name)
    store = embedding_file(folder.features_dir, embedder.name)
    appender = active_append(session, store)
    if appender is None:
        lock = lock_store(store)
        try:
            _open(store, embedder)
            _fill(session, project, folder, store, embedder, first_row, progress=None)
            appender = append_rows(session, store, lock, first_row)
        except BaseException:
            lock.close()
            raise
    if appender.next_row != first_row:
        raise InvalidDataError(
            f"the import's items start at row {first_row} but {store.path} at "
            f"{appender.next_row}; the project folder is damaged"
        )
    chunks = (items[i : i + EMBED_CHUNK] for i in range(0, len(items), EMBED_CHUNK))
    _write(appender, embedder, chunks, progress, len(items))


def embedding_rows(
    session: Session,
    project: Project,
    folder: ProjectFolder,
    embedder_name: str,
    *,
    progress: Progress | None = None,
) -> NDArray[np.float32]:
    """Every item's embedding, memory-mapped: shape (n_items, dim), row ``i`` the item whose
    ``row`` is ``i``. Rows the file lacks are computed first, from the stored items."""
    embedder = make_embedder(embedder_name)
    store = embedding_file(folder.features_dir, embedder.name)
    n_items = count_items(session, project)
    if not _covers(store, n_items):
        lock = lock_store(store)
        try:
            try:
                _open(store, embedder)
                store.rows_on_disk()  # reads the header: raises if it is damaged
            except InvalidDataError as exc:
                # Embeddings are derived from the items: a damaged file is made again.
                log.warning("embedding every item again: %s", exc)
                for path in (store.path, store.columns_path):
                    path.unlink(missing_ok=True)
                _open(store, embedder)
            _fill(session, project, folder, store, embedder, n_items, progress=progress)
        finally:
            lock.close()
    return store.matrix(n_items)


def _covers(store: RowFile, n_items: int) -> bool:
    """Whether the file is readable and holds every item's row."""
    try:
        return store.exists() and store.rows_on_disk() >= n_items
    except InvalidDataError:
        return False


def _fill(
    session: Session,
    project: Project,
    folder: ProjectFolder,
    store: RowFile,
    embedder: Embedder,
    n_items: int,
    *,
    progress: Progress | None,
) -> None:
    """Embed the stored items of rows ``rows_on_disk`` to ``n_items`` (under the lock)."""
    start = min(store.rows_on_disk(), n_items)
    if start >= n_items:
        return
    appender = RowAppender(store, None, start, store.columns(), np.dtype(np.float32))
    first = start
    try:
        while start < n_items:
            rows = session.execute(
                select(Item.row, Item.content)
                .where(Item.project_id == project.id, Item.row >= start, Item.row < n_items)
                .order_by(Item.row)
                .limit(EMBED_CHUNK)
            ).all()
            if not rows or rows[0].row != start:
                raise InvalidDataError(
                    "item rows are not consecutive; the project database is damaged"
                )
            if project.kind == "image":
                batch: Any = [load_image(folder.inside(r.content, folder.media_dir)) for r in rows]
                batch = np.stack(batch)
            else:
                batch = [r.content for r in rows]
            appender.write(embedder.embed(batch))
            start += len(rows)
            if progress is not None:
                progress(start - first, n_items - first)
        appender.flush()
    except BaseException:
        appender.abort()
        raise
    appender.close()
