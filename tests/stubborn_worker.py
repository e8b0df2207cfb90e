"""A worker child that ignores SIGTERM, as one deep in a long fit does (for the supervisor's
test: it must not outlive the server). Lives in an importable module: a spawned process
imports its target by name."""

from __future__ import annotations

import signal
import time
from pathlib import Path


def run(project_dir: str, db_url: str | None, scheduler: str | None = None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(project_dir, "started").write_text("yes")
    while True:
        time.sleep(0.1)
