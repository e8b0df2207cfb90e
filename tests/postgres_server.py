"""The PostgreSQL server the tests use, and throwaway databases on it.

The server comes from ``LABELWISE_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``). Without one, a test that needs it is skipped -- except under
``CI=true``, where a missing server is a failure: CI installs and starts one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from needs import missing

POSTGRES_URL = os.environ.get(
    "LABELWISE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def admin_connection() -> Any:
    """An autocommit psycopg connection to the test server (skips or fails without one)."""
    try:
        import psycopg
    except ImportError:
        psycopg = None
    if psycopg is not None:
        from sqlalchemy.engine import make_url

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
            pass
    return missing(
        f"a PostgreSQL server answering at {POSTGRES_URL}",
        "start one on 127.0.0.1:5432 (database 'test'), or name one with "
        "LABELWISE_TEST_POSTGRES_URL",
    )


@contextmanager
def new_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty database named ``prefix_<random>``, dropped afterwards (its
    connections ended first)."""
    from sqlalchemy.engine import make_url

    admin = admin_connection()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
