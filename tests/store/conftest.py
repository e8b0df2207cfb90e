"""Fixtures for the store tests: a faster ``db``, and short helpers that run each store call in a
session of its own, the way the server does (one transaction per request).

``db`` and ``db_url`` here override the shared ones (``tests/conftest.py``) for speed, not for
meaning. ``db_url`` is the same: a new, empty database of each kind. ``db`` on PostgreSQL reuses
one migrated database for the whole session and empties it (every row deleted, ids restarted)
before each test, which is what a fresh migrated database looks like to the store: creating and
dropping a database per test costs about a second here (both force a checkpoint), which was most
of the suite's time. On SQLite it is a copy of a file migrated once. A test that asks for both
gets the database ``db_url`` names, migrated. Both hang on one parametrised ``backend`` fixture,
so such a test still runs once per kind.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from labelwise.store import answers, leasing, undo
from labelwise.store.annotators import create_annotator
from labelwise.store.db import Database
from labelwise.store.items import ItemRecord, add_items
from labelwise.store.migrate import upgrade
from labelwise.store.models import Annotator, Base, Item, Label, Lease, Project, utcnow
from labelwise.store.projects import ProjectSettings, create_project, get_project
from labelwise.store.versions import QueuedItem, record_version
from postgres_server import new_database


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path) -> Iterator[str]:
    """The URL of a new, empty database of each kind (as the shared fixture of that name)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    with new_database("lw_test") as url:
        yield url


@pytest.fixture(scope="session")
def _postgres_for_store() -> Iterator[str]:
    """One migrated PostgreSQL database for the session's ``db`` fixtures."""
    with new_database("lw_store") as url:
        database = Database(url)
        upgrade(database)
        database.dispose()
        yield url


@pytest.fixture(scope="session")
def _sqlite_for_store(tmp_path_factory) -> Path:
    """A migrated SQLite file that each SQLite ``db`` starts as a copy of."""
    path = tmp_path_factory.mktemp("store") / "migrated.sqlite3"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()  # the last connection checkpoints the log into the file
    assert not path.with_name(path.name + "-wal").exists()
    return path


def _empty(database: Database) -> None:
    """Delete every row and restart the ids (DELETE: TRUNCATE costs ~0.2 s in fsyncs here)."""
    tables = [t.name for t in Base.metadata.sorted_tables]
    with database.write() as session:
        session.execute(update(Project).values(current_version_id=None))
        for name in reversed(tables):  # children first
            session.execute(text(f'DELETE FROM "{name}"'))
        for name in tables:
            session.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), 1, false)")
            )


@pytest.fixture
def db(request: pytest.FixtureRequest, backend: str, tmp_path) -> Iterator[Database]:
    """A migrated, empty :class:`Database` of each kind (see the module docstring); the one
    ``db_url`` names when a test asks for both."""
    if "db_url" in request.fixturenames:
        database = Database(request.getfixturevalue("db_url"))
        upgrade(database)
    elif backend == "sqlite":
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(request.getfixturevalue("_sqlite_for_store"), path)
        database = Database(f"sqlite:///{path}")
    else:
        database = Database(request.getfixturevalue("_postgres_for_store"))
        _empty(database)
    yield database
    database.dispose()


class Store:
    """One database and the short calls the tests make against it."""

    def __init__(self, db: Database):
        self.db = db

    # -- building -----------------------------------------------------------------------------
    def project(
        self,
        n_items: int = 10,
        *,
        name: str = "demo",
        labels: tuple[str, ...] = ("ham", "spam"),
        **settings: Any,
    ) -> int:
        """A text project with ``n_items`` items (``overlap`` 0 unless given); its id."""
        settings.setdefault("overlap", 0.0)
        with self.db.write() as s:
            project = create_project(
                s, name=name, kind="text", labels=list(labels), settings=ProjectSettings(**settings)
            )
            if n_items:
                add_items(
                    s,
                    project,
                    [ItemRecord(f"{name}-{i}", f"message number {i}") for i in range(n_items)],
                )
            return project.id

    def annotator(self, pid: int, name: str, role: str = "annotator") -> int:
        with self.db.write() as s:
            annotator, _ = create_annotator(s, get_project(s, project_id=pid), name=name, role=role)
            return annotator.id

    def annotators(self, pid: int, n: int) -> list[int]:
        return [self.annotator(pid, f"a{i}") for i in range(n)]

    def item_ids(self, pid: int) -> list[int]:
        """Item ids in row order."""
        with self.db.read() as s:
            return list(s.scalars(select(Item.id).where(Item.project_id == pid).order_by(Item.row)))

    def queue(self, pid: int, item_ids: list[int], **kwargs: Any) -> int:
        """Record a model version whose queue ranks ``item_ids`` in that order; its id.

        ``reasons={item_id: {...}}`` adds to an entry's reason (near-duplicates, say)."""
        entries = [
            QueuedItem(
                item_id=item_id,
                rank=rank,
                kind="strategy",
                utility=1.0 - rank / 100,
                predicted="spam",
                reason={"kind": "strategy", "summary": f"pick {rank}"}
                | kwargs.get("reasons", {}).get(item_id, {}),
            )
            for rank, item_id in enumerate(item_ids)
        ]
        with self.db.write() as s:
            version = record_version(
                s,
                get_project(s, project_id=pid),
                n_labels=kwargs.get("n_labels", 0),
                label_counts={},
                metrics={},
                strategy="default",
                model_name="logreg",
                artefact="models/v.joblib",
                fit_seconds=0.0,
                queue=entries,
            )
            return version.id

    # -- the annotator's loop -----------------------------------------------------------------
    def next(
        self,
        pid: int,
        aid: int,
        exclude: set[int] | None = None,
        answering: frozenset[int] | set[int] = frozenset(),
    ) -> leasing.Assignment | None:
        with self.db.write() as s:
            return leasing.next_item(
                s,
                get_project(s, project_id=pid),
                s.get_one(Annotator, aid),
                exclude=exclude or set(),
                answering=answering,
            )

    def submit(self, pid: int, aid: int, item_id: int, value: str, **kwargs: Any) -> Any:
        with self.db.write() as s:
            return answers.submit_label(
                s,
                get_project(s, project_id=pid),
                s.get_one(Annotator, aid),
                item_id=item_id,
                value=value,
                **kwargs,
            )

    def skip(self, pid: int, aid: int, item_id: int, **kwargs: Any) -> Any:
        with self.db.write() as s:
            return answers.skip_item(
                s,
                get_project(s, project_id=pid),
                s.get_one(Annotator, aid),
                item_id=item_id,
                **kwargs,
            )

    def undo(self, pid: int, aid: int) -> leasing.Assignment:
        with self.db.write() as s:
            return undo.undo_last(s, get_project(s, project_id=pid), s.get_one(Annotator, aid))

    def label_all(self, pid: int, aid: int, value: str = "ham") -> list[int]:
        """Let one annotator take and label everything offered; the item ids in order."""
        done = []
        while (assignment := self.next(pid, aid)) is not None:
            self.submit(pid, aid, assignment.item.id, value)
            done.append(assignment.item.id)
        return done

    # -- reading back -------------------------------------------------------------------------
    def item(self, item_id: int) -> Item:
        with self.db.read() as s:
            return s.get_one(Item, item_id)

    def project_row(self, pid: int) -> Project:
        with self.db.read() as s:
            return get_project(s, project_id=pid)

    def labels(self, **where: Any) -> list[Label]:
        with self.db.read() as s:
            stmt = select(Label).order_by(Label.id)
            for column, value in where.items():
                stmt = stmt.where(getattr(Label, column) == value)
            return list(s.scalars(stmt))

    def count(self, model: Any) -> int:
        with self.db.read() as s:
            return s.scalar(select(func.count()).select_from(model)) or 0

    def leases(self, *, live: bool = True) -> list[Lease]:
        with self.db.read() as s:
            stmt = select(Lease).order_by(Lease.id)
            if live:
                stmt = stmt.where(Lease.expires_at > utcnow())
            return list(s.scalars(stmt))

    def expire_leases(self, **where: Any) -> None:
        """Move matching leases' expiry into the past, as if their time ran out."""
        with self.db.write() as s:
            stmt = update(Lease).values(expires_at=utcnow() - timedelta(seconds=1))
            for column, value in where.items():
                stmt = stmt.where(getattr(Lease, column) == value)
            s.execute(stmt)


@pytest.fixture
def store(db: Database) -> Store:
    return Store(db)
