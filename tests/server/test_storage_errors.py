"""A damaged database or a full disk is said so: health answers 503, routes 503/507 with one
clear message, the CLI one line -- never a bare 500 or a traceback."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from labelwise.exceptions import DiskFullError, StorageError
from labelwise.server import ServerConfig, create_app
from labelwise.store.db import as_storage_error
from server.conftest import make_served


def _damage(path: Path, at: int) -> None:
    """64 KiB of garbage written into the file at byte ``at``."""
    with path.open("r+b") as fh:
        fh.seek(at)
        fh.write(bytes(range(256)) * 256)


@pytest.mark.parametrize("at", [0, 8192], ids=["header", "pages"])
def test_a_damaged_sqlite_database_is_said_so(tmp_path, at):
    served = make_served(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}")
    served.client.close()
    served.project.db.dispose()
    _damage(tmp_path / "db.sqlite3", at)
    client = TestClient(create_app(ServerConfig(served.project)), raise_server_exceptions=False)
    health = client.get("/api/health")
    assert health.status_code == 503 and health.json()["status"] == "error"
    assert "damaged" in health.json()["error"] and "db.sqlite3" in health.json()["error"]
    for path in ("/stats", "/export", ""):
        r = client.get(served.api(path), headers=served.h(served.admin))
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert "damaged" in r.json()["error"]
    # the command line: one line, exit 2
    done = subprocess.run(
        [sys.executable, "-m", "labelwise.cli", "status", str(tmp_path / "project"), "--db",
         f"sqlite:///{tmp_path / 'db.sqlite3'}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "damaged" in lines[0]
    assert "Traceback" not in done.stderr


def test_storage_errors_are_told_apart_from_bugs():
    def failing(message: str) -> OperationalError:
        return OperationalError("SELECT 1", {}, Exception(message))

    assert isinstance(as_storage_error(failing("database or disk is full")), DiskFullError)
    assert isinstance(as_storage_error(OSError(errno.ENOSPC, "No space left")), DiskFullError)
    damaged = as_storage_error(failing("database disk image is malformed"))
    assert isinstance(damaged, StorageError) and "damaged" in str(damaged)
    assert "cannot be reached" in str(as_storage_error(failing("connection refused")))
    assert as_storage_error(OSError(errno.EACCES, "denied")) is None
    assert as_storage_error(ValueError("a bug")) is None
