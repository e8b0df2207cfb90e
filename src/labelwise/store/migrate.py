"""Schema migrations (Alembic), run in-process: ``upgrade(db)`` brings a database to the newest
schema. Every command that opens a project calls it, so a database made by an earlier release is
upgraded on first use."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from labelwise.exceptions import StorageError
from labelwise.store.db import Database

__all__ = ["current_revision", "head_revision", "upgrade"]


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(resources.files("labelwise.store").joinpath("migrations"))
    )
    return cfg


def head_revision() -> str | None:
    """The newest revision this release knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(db: Database) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate ``db`` to ``revision`` (the newest by default)."""
    cfg = _config()
    with db._write_engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        # SQLite alters a column by copying its table and dropping the old one, which foreign
        # keys would refuse (or cascade); they are off for the migration (a pragma that only
        # takes effect outside a transaction) and checked before it commits.
        raw = conn.connection.dbapi_connection if sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StorageError(
                            f"the migration to {revision} would break {len(broken)} references "
                            f"(first: table {broken[0][0]}, row {broken[0][1]}); nothing was "
                            "changed"
                        )
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")
