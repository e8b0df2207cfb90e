"""A project's media folder: the images an import copies in, and the batches a killed import
left behind.

An image import writes its images as PNG files into a batch folder of its own,
``media/<12 hex digits>/``, before its items are committed (:func:`save_images`); the items
name their files relative to ``media/``. :func:`sweep_media` removes the batch folders no item
names once they are old enough not to belong to an import still running.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelwise.store.embeddings import Progress
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Item, Project

__all__ = ["MEDIA_SWEEP_AGE_S", "save_images", "sweep_media"]

#: The name of a batch folder under ``media/`` (one per image import), and how old a batch
#: folder no item names must be before it counts as left by a killed import: an import running
#: now keeps writing into its folder, which keeps the folder's time fresh.
_BATCH = re.compile(r"[0-9a-f]{12}")
MEDIA_SWEEP_AGE_S = 3600.0


def save_images(
    images: np.ndarray, folder: ProjectFolder, progress: Progress | None = None
) -> tuple[Path, list[str]]:
    """Write each image as PNG into a new batch folder under ``media/``; (folder, names relative
    to ``media/``). A failure part way removes the batch folder again. ``progress(done, n)``
    every 100 images and at the end."""
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
            if progress is not None and ((i + 1) % 100 == 0 or i + 1 == len(images)):
                progress(i + 1, len(images))
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
