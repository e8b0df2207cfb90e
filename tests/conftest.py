"""Shared fixtures: a fresh database per test, on SQLite and on a real PostgreSQL server, and
a headless Chromium for the browser tests.

PostgreSQL comes from ``LABELWISE_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``). Each test gets a database of its own, dropped afterwards.
Where no server answers the PostgreSQL cases are skipped -- except under ``CI=true``, where a
missing server is a failure: CI installs and starts one. The same rule holds for everything a
test needs from outside the code (datasets, torch, ``pg_dump``, Chromium): it is written once,
in ``tests/needs.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from needs import need_module, need_program
from postgres_server import new_database


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--heavy",
        action="store_true",
        default=False,
        help="run the heavier variants of the reliability suite (minutes, not seconds)",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    with new_database("lw_test") as url:
        yield url


@pytest.fixture
def db(db_url: str):
    """A migrated, empty :class:`labelwise.store.db.Database`."""
    from labelwise.store.db import Database
    from labelwise.store.migrate import upgrade

    database = Database(db_url)
    upgrade(database)
    yield database
    database.dispose()


BROWSER_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (a ``playwright.sync_api.Browser``). Skipped
    where either is missing, except under ``CI=true``, where ``.ci/run`` installs both. Name
    it before fixtures that start servers, so a skip comes before their work."""
    sync_api = need_module(
        "playwright.sync_api", "install the dev extra: pip install -e '.[dev]' (playwright)"
    )
    path = need_program(
        "chromium", "chromium-browser", how="install Debian's chromium: apt-get install chromium"
    )
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=BROWSER_ARGS)
        try:
            yield browser
        finally:
            browser.close()
