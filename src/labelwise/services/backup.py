"""A consistent copy of a project while it runs: ``labelwise backup PROJECT_DIR DEST``.

The copy is a project folder of its own::

    DEST/
      labelwise.json      the project's config, its database reset to the folder's own
      labelwise.sqlite3   SQLite: the database as of one moment (online backup API)
      database.sql        PostgreSQL: pg_dump's plain SQL of one snapshot
      features/ models/ media/
      backup.json         what was copied: counts, schema revision, anything left out

**The database** is copied first, as one snapshot, while the server and the worker go on
writing, and holds this project's rows only, even where the database holds several projects
(:mod:`labelwise.store.snapshots`). The copy holds every transaction committed before the
snapshot and none after: labels are a prefix of the acknowledged ones, never half of a submit.

**The files** are copied after the snapshot. Model artefacts and images are written before the
rows that name them are committed and are never changed afterwards, so every file the snapshot
names is already there; each is checked, and anything missing is reported. The feature cache is
rebuilt by the next fit whenever it does not cover every item, so it is kept only when it
matches the snapshot: ``meta.json`` is copied first and the matrix last, and the cache is left
out (and said so) unless both describe the snapshot's item count. A tabular project's
``features/`` is no cache but its pool (rows appended at import): it is always copied, and must
hold at least the snapshot's rows. Temporary files of writers in flight (``*.tmp``, ``*.part``,
``pending-*``) and lock files are skipped.

**Restore.** SQLite: the backup folder is a complete project (``labelwise serve DEST``), or
move it into the old folder's place while the server is stopped. PostgreSQL: load
``database.sql`` into an empty database (``psql -v ON_ERROR_STOP=1 -d NEWDB -f
DEST/database.sql``) and give its URL with ``--db`` (or in ``labelwise.json``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.engine import make_url

from labelwise import __version__
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.store.db import Database
from labelwise.store.folder import CONFIG_NAME, DB_NAME, ProjectFolder
from labelwise.store.models import utcnow
from labelwise.store.snapshots import Facts, postgres_snapshot, sqlite_path, sqlite_snapshot

__all__ = ["MANIFEST_NAME", "BackupResult", "backup_project", "sweep_partial_copies"]

MANIFEST_NAME = "backup.json"
DUMP_NAME = "database.sql"
_TEMPORARY_SUFFIXES = (".tmp", ".part", ".lock")


@dataclass(frozen=True)
class BackupResult:
    """What a backup holds.

    Attributes
    ----------
    destination : Path
        The backup folder.
    database : {"sqlite", "postgresql"}
    revision : str or None
        The schema revision of the copied database.
    items, labels, model_versions : int
        Rows of the project in the snapshot (labels: every row, history included).
    files : int
        Files copied from ``features/``, ``models/`` and ``media/``.
    bytes : int
        Their size, plus the database copy's.
    features : bool
        Whether the feature cache was kept (see the module docstring).
    warnings : tuple of str
        Files the snapshot names that were missing from the project folder.
    """

    destination: Path
    database: str
    revision: str | None
    items: int
    labels: int
    model_versions: int
    files: int
    bytes: int
    features: bool
    warnings: tuple[str, ...] = field(default_factory=tuple)


def backup_project(
    project_dir: str | Path, dest: str | Path, *, db_url: str | None = None
) -> BackupResult:
    """Copy the project folder ``project_dir`` and its database into the new folder ``dest``.

    Safe while the server and the worker run (see the module docstring); nothing is written to
    the project. ``dest`` must not exist, or be an empty folder, and must lie outside the
    project's ``features/``, ``models/`` and ``media/``. The copy is assembled beside ``dest``
    and renamed into place when complete: a failed backup leaves nothing behind.

    Raises
    ------
    NotFoundError
        ``project_dir`` is not a project, or its SQLite file is missing.
    InvalidParameterError
        ``dest`` is not usable; PostgreSQL without ``pg_dump`` on ``PATH``, or pg_dump failed.
    InvalidDataError
        The database copy fails its integrity check.
    """
    folder = ProjectFolder.open(project_dir)
    target = _check_destination(folder, Path(dest))
    url = folder.database_url(db_url)
    db = Database(url)  # opened, never migrated: a backup changes nothing
    sweep_partial_copies(target.parent)
    partial = target.parent / f"{_PARTIAL_PREFIX}{target.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True, mode=0o700)  # it holds token hashes: the owner's only
    (partial / _OWNER).write_text(f"{platform.node()} {os.getpid()}\n")
    try:
        if db.is_sqlite:
            db.dispose()
            database_file = partial / DB_NAME
            facts = sqlite_snapshot(sqlite_path(url), database_file, folder.project_name)
        else:
            database_file = partial / DUMP_NAME
            try:
                facts = postgres_snapshot(db, database_file, folder.project_name)
            finally:
                db.dispose()
        config = {"project": folder.project_name, "database": None}
        (partial / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        files, size, features = _copy_files(folder, partial, facts)
        warnings = _missing(partial, facts)
        result = BackupResult(
            destination=target,
            database=db.dialect,
            revision=facts.revision,
            items=facts.items,
            labels=facts.labels,
            model_versions=facts.model_versions,
            files=files,
            bytes=size + database_file.stat().st_size,
            features=features,
            warnings=tuple(warnings),
        )
        _write_manifest(partial, folder, result, url)
        (partial / _OWNER).unlink()
        if target.exists():
            target.rmdir()  # checked empty above
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return result


# ----------------------------------------------------------------------------- destination

_PARTIAL_PREFIX = "."
#: The file in a copy being made that names the process making it: "host pid".
_OWNER = ".owner"


def sweep_partial_copies(parent: Path) -> list[Path]:
    """Remove the copies that backups killed mid-way left in ``parent`` (hidden folders
    ``.NAME.partial-*`` whose owner, a process of this machine, is gone); returns them.

    A copy holds the project's database, token hashes included: it must not outlive the
    backup that made it. One whose owner is alive (a backup running now) or on another
    machine is left alone.
    """
    removed = []
    host = platform.node()
    for path in sorted(parent.glob(f"{_PARTIAL_PREFIX}*.partial-*")):
        if not path.is_dir() or path.is_symlink():
            continue
        try:
            owner_host, pid = (path / _OWNER).read_text().split()
        except (OSError, ValueError):
            continue  # not ours to judge
        if owner_host != host or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _check_destination(folder: ProjectFolder, dest: Path) -> Path:
    target = dest.resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidParameterError(f"backup destination {dest} exists and is not an empty folder")
    for inside in (folder.features_dir, folder.models_dir, folder.media_dir):
        if target.is_relative_to(inside.resolve()):
            raise InvalidParameterError(
                f"backup destination {dest} lies inside the project's {inside.name}/ folder, "
                "which the backup copies; choose a folder outside it"
            )
    if target == folder.root.resolve():
        raise InvalidParameterError("the backup destination is the project folder itself")
    return target


# ------------------------------------------------------------------------------------ files


def _temporary(path: Path) -> bool:
    return path.name.endswith(_TEMPORARY_SUFFIXES) or path.name.startswith("pending-")


def _files(root: Path) -> Iterator[Path]:
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(base) / name
            if path.is_file() and not _temporary(path):
                yield path


def _copy(path: Path, source_root: Path, target_root: Path) -> int:
    to = target_root / path.relative_to(source_root)
    to.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copy2(path, to)
    except FileNotFoundError:
        return -1  # replaced or removed while copying: a temporary file after all
    return to.stat().st_size


def _copy_files(folder: ProjectFolder, dest: Path, facts: Facts) -> tuple[int, int, bool]:
    """Copy features/, models/ and media/; (files, bytes, whether the feature cache was kept)."""
    files = size = 0
    for sub in (folder.models_dir, folder.media_dir):
        (dest / sub.name).mkdir()
        for path in _files(sub):
            copied = _copy(path, folder.root, dest)
            if copied >= 0:
                files, size = files + 1, size + copied
    features = _copy_features(folder, dest, facts)
    if features:
        for path in _files(dest / folder.features_dir.name):
            files, size = files + 1, size + path.stat().st_size
    return files, size, features


def _copy_features(folder: ProjectFolder, dest: Path, facts: Facts) -> bool:
    """Copy the feature cache when it describes the snapshot's items; see the module docstring.

    A tabular project's ``features/`` is no cache: it holds the pool itself, so it is always
    copied (:func:`_copy_tabular_pool`)."""
    source = folder.features_dir
    target = dest / source.name
    target.mkdir()
    if facts.kind == "tabular":
        _copy_tabular_pool(folder, dest, facts)
        return True
    meta_path = source / "meta.json"
    if not meta_path.is_file() or _copy(meta_path, folder.root, dest) < 0:
        return False
    try:
        meta = json.loads((target / "meta.json").read_text())
        matrix_name, n_items = str(meta["file"]), int(meta["n_items"])
    except (ValueError, KeyError, TypeError):
        matrix_name, n_items = "", -1
    if Path(matrix_name).name != matrix_name:
        matrix_name = ""  # not a file of this folder: the cache is left out
    for path in _files(source):
        if path.name not in ("meta.json", matrix_name):
            _copy(path, folder.root, dest)
    matrix = source / matrix_name
    # The matrix last: if it is of the generation meta.json describes, so is all between.
    copied = bool(matrix_name) and matrix.is_file() and _copy(matrix, folder.root, dest) >= 0
    if copied and n_items == facts.items and _rows(target / matrix_name) == n_items:
        return True
    shutil.rmtree(target)
    target.mkdir()
    return False


def _copy_tabular_pool(folder: ProjectFolder, dest: Path, facts: Facts, tries: int = 5) -> None:
    """Copy a tabular project's pool files. Rows are only appended, each flushed before the
    transaction that adds its items commits, so a copy made after the snapshot holds at least
    the snapshot's rows; rows past them belong to later (or failed) imports and are ignored by
    readers, which take the first ``count(items)``. An append racing the copy can leave a torn
    file (header and data from different moments): each matrix is checked and copied again."""
    for path in _files(folder.features_dir):
        for _ in range(tries):
            if _copy(path, folder.root, dest) < 0:
                break
            copied = dest / path.relative_to(folder.root)
            rows = _rows(copied) if path.suffix == ".npy" else facts.items
            if rows is not None and rows >= facts.items:
                break
        else:
            raise InvalidDataError(
                f"{path} held fewer rows than the database's {facts.items} items in "
                f"{tries} tries; the project folder may be damaged"
            )


def _rows(path: Path) -> int | None:
    """Rows of a saved feature matrix, read from its header (None when unreadable)."""
    try:
        if path.suffix == ".npy":
            return int(np.load(path, mmap_mode="r").shape[0])
        if path.suffix == ".npz":
            with np.load(path) as archive:
                return int(archive["shape"][0])
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return None


def _missing(dest: Path, facts: Facts) -> list[str]:
    """Files the snapshot names that the copy lacks."""
    missing = [a for a in facts.artefacts if not (dest / a).is_file()]
    missing += [f"media/{i}" for i in facts.images if not (dest / "media" / i).is_file()]
    if not missing:
        return []
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return [f"{len(missing)} file(s) named in the database were missing from the project: {shown}"]


def _write_manifest(dest: Path, folder: ProjectFolder, result: BackupResult, url: str) -> None:
    manifest = {
        "labelwise": __version__,
        "created_at": utcnow().isoformat(timespec="seconds") + "Z",
        "source": str(folder.root),
        "project": folder.project_name,
        "database": {
            "kind": result.database,
            "file": DB_NAME if result.database == "sqlite" else DUMP_NAME,
            "url": make_url(url).render_as_string(hide_password=True),
            "revision": result.revision,
        },
        "items": result.items,
        "labels": result.labels,
        "model_versions": result.model_versions,
        "files": result.files,
        "bytes": result.bytes,
        "features": "copied" if result.features else "left out: rebuilt at the next fit",
        "warnings": list(result.warnings),
    }
    (dest / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
