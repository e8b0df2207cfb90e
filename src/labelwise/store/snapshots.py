"""One project's database, copied as of one moment, while the server and the worker write.

A database may hold several projects (PostgreSQL for a team; SQLite when folders share a file):
a backup of one project holds that project's rows only -- never another project's items or its
annotators' token hashes.

* **SQLite** (:func:`sqlite_snapshot`): Python's :meth:`sqlite3.Connection.backup` in a single
  step holds one read transaction, which in WAL mode blocks no writer. In the copy, every other
  project is deleted (its rows go with it: every table's rows hang on ``projects`` with
  ``ON DELETE CASCADE``), so are the browser sessions, and the file is vacuumed, so no page of
  theirs is left; it is switched to a rollback journal (one self-contained file) and must pass
  ``PRAGMA integrity_check`` and ``foreign_key_check``.
* **PostgreSQL** (:func:`postgres_snapshot`): in a repeatable-read transaction whose snapshot
  is exported, ``pg_dump`` writes the schema (``--section=pre-data``), then this project's rows
  of every table but the browser sessions are copied out (``COPY (SELECT …) TO STDOUT``) as
  ``COPY … FROM stdin`` blocks, then its sequences' positions, then
  ``pg_dump --section=post-data`` (indexes, constraints): ``psql -f`` loads it into an empty
  database. The PostgreSQL client tools must be on ``PATH``.

Either way the copy holds every transaction committed before the snapshot and none after, and
the counts and file references the backup checks (:class:`Facts`) are read in the same
snapshot.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from labelwise.exceptions import InvalidDataError, InvalidParameterError, NotFoundError
from labelwise.store.db import Database

__all__ = ["Facts", "facts", "postgres_snapshot", "sqlite_path", "sqlite_snapshot"]

#: pg_dump's last line when a dump is complete.
_DUMP_COMPLETE = "-- PostgreSQL database dump complete"
#: The tables, in an order that loads before any foreign key is checked, and which of their
#: rows are the project's.
_TABLES = (
    ("projects", "id = :pid"),
    ("annotators", "project_id = :pid"),
    ("items", "project_id = :pid"),
    ("model_versions", "project_id = :pid"),
    ("queue", "project_id = :pid"),
    ("labels", "project_id = :pid"),
    ("leases", "project_id = :pid"),
    ("triage_decisions", "project_id = :pid"),
    ("alembic_version", "true"),
)


@dataclass(frozen=True)
class Facts:
    """What the snapshot says about the project (read in the snapshot itself)."""

    revision: str | None
    kind: str
    items: int
    labels: int
    model_versions: int
    artefacts: list[str]
    images: list[str]


# ---------------------------------------------------------------------------------- SQLite


def sqlite_path(url: str) -> Path:
    """The file of a SQLite URL; NotFoundError when it is missing."""
    name = make_url(url).database
    if not name or name == ":memory:":
        raise InvalidParameterError(f"cannot back up the SQLite database {url!r}: not a file")
    path = Path(name)
    if not path.is_file():
        raise NotFoundError(f"no SQLite database file at {path}")
    return path


def sqlite_snapshot(source: Path, target: Path, project_name: str) -> Facts:
    """Copy ``source`` into the new file ``target`` as one snapshot, keep ``project_name``'s
    rows only, check the copy, and return its facts."""
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            # One step (pages=-1): a single read transaction, so the copy is one moment even
            # while others write (in WAL mode they are not blocked meanwhile).
            src.backup(dst, pages=-1)
        finally:
            dst.close()
    finally:
        src.close()
    check = sqlite3.connect(target, isolation_level=None)
    try:
        check.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside
        check.execute("PRAGMA foreign_keys=ON")
        others = check.execute("DELETE FROM projects WHERE name <> ?", (project_name,)).rowcount
        # Browser sessions and sign-in links are no part of a backup (a restored project
        # signs in afresh).
        has_sign_ins = check.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sign_ins'"
        ).fetchone()
        if has_sign_ins and check.execute("DELETE FROM sign_ins").rowcount:
            others += 1
        if others:
            check.execute("VACUUM")  # their rows' pages, token hashes included, go too
        integrity = [row[0] for row in check.execute("PRAGMA integrity_check")]
        broken_keys = check.execute("PRAGMA foreign_key_check").fetchall()
    finally:
        check.close()
    if integrity != ["ok"]:
        raise InvalidDataError(f"the copy of {source} fails its integrity check: {integrity[:3]}")
    if broken_keys:
        raise InvalidDataError(
            f"the copy of {source} has {len(broken_keys)} rows whose references are broken"
        )
    from sqlalchemy import create_engine

    from labelwise.store.db import sqlite_url

    engine = create_engine(sqlite_url(target))
    try:
        with engine.connect() as conn:
            return facts(conn, project_name)
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ PostgreSQL


def postgres_snapshot(db: Database, out: Path, project_name: str) -> Facts:
    """``project_name``'s schema and rows as of one exported snapshot, as a plain SQL file that
    ``psql -f`` loads into an empty database; the facts read in that same snapshot."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise InvalidParameterError(
            "backing up a PostgreSQL database needs pg_dump (the PostgreSQL client tools) on "
            "PATH, e.g. `apt install postgresql-client`; without it, `labelwise export` writes "
            "the labels"
        )
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            found = facts(conn, project_name)
            pid = conn.execute(
                text("SELECT id FROM projects WHERE name = :name"), {"name": project_name}
            ).scalar_one()
            # The exported snapshot lives as long as this transaction: pg_dump runs inside it.
            schema = _pg_dump(pg_dump, db.url, snapshot, "pre-data")
            constraints = _pg_dump(pg_dump, db.url, snapshot, "post-data")
            with out.open("w", encoding="utf-8") as fh:
                fh.write(schema)
                _copy_rows(conn, pid, fh)
                fh.write(constraints)
                fh.flush()
                os.fsync(fh.fileno())
    if _DUMP_COMPLETE not in constraints:
        raise InvalidDataError(f"pg_dump's output for {out.name} is incomplete")
    return found


def _copy_rows(conn: Connection, pid: int, fh: TextIO) -> None:
    """The project's rows of every table as ``COPY … FROM stdin`` blocks, then the sequences'
    positions (ids keep their values: a restored project is the same project)."""
    raw: Any = conn.connection.driver_connection  # psycopg's own, for COPY
    with raw.cursor() as cursor:
        for table, where in _TABLES:
            columns = [
                row[0]
                for row in conn.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = "
                        ":t AND table_schema = current_schema() ORDER BY ordinal_position"
                    ),
                    {"t": table},
                )
            ]
            names = ", ".join(f'"{c}"' for c in columns)
            fh.write(f"\nCOPY public.{table} ({names}) FROM stdin;\n")
            rows = where.replace(":pid", str(int(pid)))
            query = f"COPY (SELECT {names} FROM {table} WHERE {rows}) TO STDOUT"
            with cursor.copy(query) as copy:
                for block in copy:
                    fh.write(bytes(block).decode("utf-8"))
            fh.write("\\.\n")
        sequences = conn.execute(
            text(
                "SELECT sequencename, last_value FROM pg_sequences "
                "WHERE schemaname = current_schema()"
            )
        ).all()
        for name, last in sequences:
            if last is not None:
                fh.write(f"SELECT pg_catalog.setval('public.{name}', {int(last)}, true);\n")


def _pg_dump(pg_dump: str, url: str, snapshot: str, section: str) -> str:
    """pg_dump's plain SQL of one section of the schema, in ``snapshot``. The password travels
    in the environment, never on the command line (where other users could read it)."""
    from psycopg.conninfo import make_conninfo

    parsed = make_url(url)
    params: dict[str, Any] = {
        key: value
        for key, value in {
            "host": parsed.host,
            "port": parsed.port,
            "user": parsed.username,
            "dbname": parsed.database,
        }.items()
        if value is not None
    }
    params.update({k: v for k, v in parsed.query.items() if isinstance(v, str)})
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    command = [
        pg_dump,
        "--format=plain",
        "--no-owner",
        "--no-privileges",
        f"--section={section}",
        f"--snapshot={snapshot}",
        f"--dbname={make_conninfo(**params)}",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise InvalidParameterError(f"pg_dump failed (exit {done.returncode}): {reason}")
    return done.stdout


# ----------------------------------------------------------------------------------- facts


def facts(conn: Connection, project_name: str) -> Facts:
    """Counts and file references of the project, read through ``conn`` (the snapshot)."""

    def scalar(sql: str, **params: Any) -> Any:
        return conn.execute(text(sql), params).scalar()

    revision = scalar("SELECT version_num FROM alembic_version")
    project = conn.execute(
        text("SELECT id, kind FROM projects WHERE name = :name"), {"name": project_name}
    ).first()
    if project is None:
        raise NotFoundError(f"no project {project_name!r} in the database")
    pid = project.id
    artefacts = conn.execute(
        text(
            "SELECT artefact FROM model_versions WHERE project_id = :pid AND artefact IS NOT NULL"
        ),
        {"pid": pid},
    ).scalars()
    images = (
        list(
            conn.execute(
                text("SELECT content FROM items WHERE project_id = :pid"), {"pid": pid}
            ).scalars()
        )
        if project.kind == "image"
        else []
    )
    return Facts(
        revision=revision,
        kind=str(project.kind),
        items=int(scalar("SELECT count(*) FROM items WHERE project_id = :pid", pid=pid)),
        labels=int(scalar("SELECT count(*) FROM labels WHERE project_id = :pid", pid=pid)),
        model_versions=int(
            scalar("SELECT count(*) FROM model_versions WHERE project_id = :pid", pid=pid)
        ),
        artefacts=[str(a) for a in artefacts],
        images=[str(i) for i in images],
    )
