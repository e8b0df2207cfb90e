"""The shared datasets beside the repository (``../shared/data``), for tests that read real data.

Resolved from this file's place, never from a machine path: ``<repo>/../shared/data``, or the
folder named by ``LABELWISE_SHARED_DATA``. Every test that reads a shared dataset goes through
:func:`shared_file` (or :func:`require_shared`), so that a missing file is skipped on a
developer's machine and fails under ``CI=true`` (see ``tests/needs.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from needs import missing

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LABELWISE_SHARED_DATA", REPO.parent / "shared" / "data"))
#: What to do when a dataset is missing, for the message.
HOW = (
    "put the shared datasets in <repo>/../shared/data, or set LABELWISE_SHARED_DATA to the "
    "folder that holds them"
)


def require_shared(path: Path) -> Path:
    """``path`` (a file or folder under :data:`SHARED`), when it exists; else the test is
    skipped, or fails in CI."""
    if not path.exists():
        missing(f"the shared dataset {path}", HOW)
    return path


def shared_file(*parts: str) -> Path:
    """``SHARED / parts``, when it exists; else the test is skipped, or fails in CI."""
    return require_shared(SHARED.joinpath(*parts))
