"""The reliability suite: invariants under load, crashes, hostile input, security, data safety.

Every test runs in CI at a small size. ``pytest tests/reliability --heavy`` runs the heavier
variants (more annotators, longer, more faults); ``benchmarks/reliability.py`` does that and writes
the table of ``benchmarks/results/reliability.md``.

Tests report what they did through the ``record`` fixture: each call appends one JSON line to the
file named by ``LABELWISE_RELIABILITY_LOG`` (nothing is written when it is unset), e.g.
``record("load", annotators=64, minutes=2, labels_acknowledged=..., labels_lost=0)``. The benchmark
sums these lines into its table, so the figures come from the runs themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def heavy(request: pytest.FixtureRequest) -> bool:
    """Whether the heavier variants were asked for (``--heavy``, declared in tests/conftest.py)."""
    return bool(request.config.getoption("--heavy"))


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Append one JSON line describing what this test did to ``$LABELWISE_RELIABILITY_LOG``."""
    path = os.environ.get("LABELWISE_RELIABILITY_LOG")

    def write(kind: str, **fields: Any) -> None:
        if not path:
            return
        line = {"kind": kind, "test": request.node.nodeid, **fields}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")

    return write
