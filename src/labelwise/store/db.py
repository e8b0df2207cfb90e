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

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from labelwise.exceptions import InvalidParameterError

__all__ = ["Database", "sqlite_url"]


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
        with maker() as session, session.begin():
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

    def dispose(self) -> None:
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()
