"""Database connections: SQLite (WAL) by default, PostgreSQL by URL.

:class:`Database` hands out sessions for reading and for writing. On SQLite a write session
starts with ``BEGIN IMMEDIATE``, taking the single writer lock up front, so a check-then-insert
(is this item free? then lease it) cannot interleave with another writer; readers keep working
from the write-ahead log meanwhile. On PostgreSQL, writers lock the rows they decide on
(``SELECT … FOR UPDATE SKIP LOCKED``) instead.

A label acknowledged to the browser is committed with ``synchronous=FULL`` on SQLite: it is on
disk before the answer leaves the server. Writes that can be lost in a power cut without harm
(a lease: its item simply returns to the pool) ask for ``write(durable=False)`` and skip the
flush (``synchronous=NORMAL`` on SQLite, ``synchronous_commit=off`` on PostgreSQL). They are
still atomic and never reorder: the next durable commit flushes them too, and an application
crash (as opposed to the machine's) loses nothing.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DatabaseError,
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.orm import Session, sessionmaker

from labelwise.exceptions import DiskFullError, InvalidParameterError, StorageError

__all__ = ["Database", "as_storage_error", "sqlite_url"]


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


_DURABLE = "labelwise_durable"


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if immediate:
            durable = conn.get_execution_options().get(_DURABLE, True)
            conn.exec_driver_sql(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """One database: SQLite file or PostgreSQL server.

    Parameters
    ----------
    url : str
        A SQLAlchemy URL: ``sqlite:////path/to/file.sqlite3`` or
        ``postgresql+psycopg://user@host:5432/db``.
    """

    def __init__(self, url: str):
        try:
            parsed = make_url(url)
        except Exception as exc:  # SQLAlchemy raises ArgumentError with its own wording
            raise InvalidParameterError(f"not a database URL: {url!r} ({exc})") from None
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(url, immediate=False)
            self._write_engine = _sqlite_engine(url, immediate=True)
        elif self.dialect == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            self.engine = create_engine(parsed, pool_size=10, max_overflow=20, pool_pre_ping=True)
            self._write_engine = self.engine
        else:
            raise InvalidParameterError(
                f"unsupported database {self.dialect!r}: use sqlite or postgresql"
            )
        # SQLite has one writer at a time. Writers of this process queue on a lock of its own
        # rather than on SQLite's busy handler, which polls with sleeps of up to 100 ms: under
        # many annotators a waiting answer slept long after the lock was free (p95 of seconds
        # at 200 clients). Other processes on the same file still meet the busy handler.
        self._writer: Any = threading.RLock() if self.dialect == "sqlite" else nullcontext()
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)
        self._write_lazy = sessionmaker(
            self._write_engine.execution_options(**{_DURABLE: False}), expire_on_commit=False
        )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing it does is committed. Objects it loaded stay usable
        (detached, with the values read) after the block."""
        with self._read() as session:
            yield session

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises.

        ``durable=False`` for writes a power cut may take back without harm (leases): the
        commit does not wait for the disk. See the module's docstring.
        """
        maker = self._write if durable else self._write_lazy
        with self._writer, maker() as session, session.begin():
            if not durable and not self.is_sqlite:
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            yield session

    def analyze(self) -> None:
        """Refresh the query planner's statistics; run after a bulk import.

        Without them a planner facing a freshly filled table (PostgreSQL before autovacuum
        comes round, SQLite always) can pick a scan over an index, and the next-item query
        becomes many times slower.
        """
        with self._write_engine.connect() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("ANALYZE")
            else:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
            conn.commit()

    def check(self) -> None:
        """Read from the database, or raise :class:`StorageError` saying why it cannot be read
        (what the health check answers)."""
        try:
            with self.read() as session:
                session.execute(text("SELECT count(*) FROM projects")).scalar()
        except (DBAPIError, OSError) as exc:
            raise as_storage_error(exc, self) or StorageError(
                f"the database cannot be read: {exc}"
            ) from None

    def where(self) -> str:
        """The database, for messages: its file, or its server and name (no password)."""
        parsed = make_url(self.url)
        if self.is_sqlite:
            return str(parsed.database)
        return parsed.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()


#: Words of database drivers' messages that mean the disk is full.
_FULL = ("database or disk is full", "no space left on device", "disk full")
#: ... that the database file is damaged or is no database.
_DAMAGED = ("file is not a database", "malformed", "disk i/o error", "not a database")
#: ... that the server cannot be reached.
_UNREACHABLE = ("connection refused", "could not connect", "server closed the connection")


def as_storage_error(exc: BaseException, db: Database | None = None) -> StorageError | None:
    """What a database driver's (or the disk's) error means for the user, as a
    :class:`StorageError` naming the database -- or None for any other error (a bug, a
    constraint: those are not the storage's fault)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFullError(f"the disk is full: {exc.filename or 'the project folder'}")
    if not isinstance(exc, (OperationalError, DatabaseError)) or isinstance(
        exc, (IntegrityError, DataError, ProgrammingError)
    ):
        return None
    message = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else ""
    where = f" ({db.where()})" if db is not None else ""
    lowered = message.lower()
    if any(w in lowered for w in _FULL):
        return DiskFullError(f"the disk of the database is full{where}: {message}")
    if any(w in lowered for w in _DAMAGED):
        return StorageError(
            f"the database{where} is damaged or is not a Labelwise database: {message}; "
            "restore it from a backup (labelwise backup)"
        )
    if any(w in lowered for w in _UNREACHABLE):
        return StorageError(f"the database server cannot be reached{where}: {message}")
    return StorageError(f"the database cannot be used{where}: {message}")
