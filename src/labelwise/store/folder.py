"""The project folder: its config, its SQLite database, feature files, model artefacts, media.

::

    DIR/
      labelwise.json        {"project": name, "database": url or null}
      labelwise.sqlite3     the database, unless the config or --db names another
      features/             the pool's feature matrix and the fitted featurizer
      models/               one artefact per model version (loaded only from here)
      media/                images copied in by imports
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelwise.exceptions import InvalidDataError, InvalidParameterError, NotFoundError
from labelwise.store.db import Database, sqlite_url
from labelwise.store.migrate import upgrade

__all__ = ["CONFIG_NAME", "ProjectFolder"]

CONFIG_NAME = "labelwise.json"
DB_NAME = "labelwise.sqlite3"


@dataclass(frozen=True)
class ProjectFolder:
    """Paths and configuration of one project folder."""

    root: Path
    project_name: str
    database: str | None = None

    @classmethod
    def create(
        cls, root: str | Path, project_name: str, database: str | None = None
    ) -> ProjectFolder:
        path = Path(root)
        if (path / CONFIG_NAME).exists():
            raise InvalidParameterError(f"{path} is already a Labelwise project")
        if path.exists() and not path.is_dir():
            raise InvalidParameterError(f"{path} exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
        folder = cls(path.resolve(), project_name, database)
        for sub in (folder.features_dir, folder.models_dir, folder.media_dir):
            sub.mkdir(exist_ok=True)
        config = {"project": project_name, "database": database}
        (path / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        return folder

    @classmethod
    def open(cls, root: str | Path) -> ProjectFolder:
        path = Path(root)
        config_path = path / CONFIG_NAME
        if not config_path.is_file():
            raise NotFoundError(
                f"{path} is not a Labelwise project (no {CONFIG_NAME}); create one with "
                "`labelwise init`"
            )
        try:
            config: dict[str, Any] = json.loads(config_path.read_text())
            name = str(config["project"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidDataError(f"{config_path} is damaged: {exc}") from None
        folder = cls(path.resolve(), name, config.get("database"))
        for sub in (folder.features_dir, folder.models_dir, folder.media_dir):
            sub.mkdir(exist_ok=True)
        return folder

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def media_dir(self) -> Path:
        return self.root / "media"

    def database_url(self, override: str | None = None) -> str:
        """``override`` (``--db``), else the config's database, else the folder's SQLite file."""
        return override or self.database or sqlite_url(self.root / DB_NAME)

    def connect(self, override: str | None = None, *, migrate: bool = True) -> Database:
        """Open the database (migrated to the newest schema)."""
        db = Database(self.database_url(override))
        if migrate:
            upgrade(db)
        return db

    def inside(self, relative: str, base: Path) -> Path:
        """``base / relative``, refusing anything that would leave ``base``."""
        target = (base / relative).resolve()
        if not target.is_relative_to(base.resolve()):
            raise InvalidParameterError(f"path {relative!r} leaves the project folder")
        return target

    def artefact_path(self, version: int) -> Path:
        return self.models_dir / f"v{version:05d}.joblib"

    def loadable(self, relative: str, base: Path) -> Path:
        """The file ``relative`` (to the project folder) names, checked before it is unpickled.

        Loading a joblib or pickle file runs whatever code it holds, so a stored reference (a
        ``model_versions.artefact`` row, which anyone with write access to the database can
        change) is followed only to a regular file inside ``base`` (``models/`` or
        ``features/``), every symbolic link resolved first.

        Raises
        ------
        InvalidDataError
            The path is absolute, or leads outside ``base`` (through ``..`` or a symlink).
        NotFoundError
            There is no such file.
        """
        given = Path(relative)
        if given.is_absolute():
            raise InvalidDataError(
                f"refused to load {relative!r}: artefacts are loaded only from inside the "
                f"project folder ({base}), by relative path"
            )
        target = (self.root / given).resolve()
        if not target.is_relative_to(base.resolve()):
            raise InvalidDataError(
                f"refused to load {relative!r}: it resolves to {target}, outside {base}; "
                "artefacts are loaded only from the project's own folder"
            )
        if not target.is_file():
            raise NotFoundError(f"no artefact file {relative!r} in {base}")
        return target
