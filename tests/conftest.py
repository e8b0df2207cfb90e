"""Shared fixtures: a fresh database per test, on SQLite and on a real PostgreSQL server.

PostgreSQL comes from ``LABELWISE_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``). Each test gets a database of its own, dropped afterwards.
Where no server answers the PostgreSQL cases are skipped -- except under ``CI=true``, where a
missing server is a failure: CI installs and starts one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--heavy",
        action="store_true",
        default=False,
        help="run the heavier variants of the reliability suite (minutes, not seconds)",
    )


POSTGRES_URL = os.environ.get(
    "LABELWISE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_admin() -> object | None:
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError:
        return None
    url = make_url(POSTGRES_URL)
    try:
        return psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username or "postgres",
            password=url.password,
            dbname=url.database or "postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError:
        return None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    admin = _postgres_admin()
    if admin is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no PostgreSQL server answers at {POSTGRES_URL}")
        pytest.skip("no PostgreSQL server")
    from sqlalchemy.engine import make_url

    name = f"lw_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(  # type: ignore[attr-defined]
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture
def db(db_url: str):
    """A migrated, empty :class:`labelwise.store.db.Database`."""
    from labelwise.store.db import Database
    from labelwise.store.migrate import upgrade

    database = Database(db_url)
    upgrade(database)
    yield database
    database.dispose()
