"""The shared datasets beside the repository (``../shared/data``), for tests that read real data.

Resolved from this file's place, never from a machine path: ``<repo>/../shared/data``, or the
folder named by ``LABELWISE_SHARED_DATA``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LABELWISE_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_file(*parts: str) -> Path:
    """``SHARED / parts``; the test is skipped when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (set LABELWISE_SHARED_DATA)")
    return path
