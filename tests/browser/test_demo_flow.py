"""The demo in a real browser: Playwright driving Chromium against `labelwise demo`.

Keyboard only: label 20 items, undo one, skip one; wait for a retrain and see the dashboard's
learning curve gain a point; restart the server and find every label still there. Watches the
console for Content-Security-Policy violations and for any script a page did not mean to run.

Needs Chromium (Debian's `chromium` package) and the `playwright` Python package; skipped where
they are missing, except under CI=true, where `.ci/run` installs both. Set
LABELWISE_SCREENSHOTS=DIR to keep screenshots of the pages (the README's come from here).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sessions import sign_in_page

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    """`labelwise demo` running in a subprocess."""

    def __init__(self, directory: Path, log: Path):
        self.directory = directory
        self.log = log
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "labelwise.cli",
                    "demo",
                    "--port",
                    str(self.port),
                    "--dir",
                    str(self.directory),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"demo exited early:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base + "/api/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"demo did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    @property
    def link(self) -> str:
        """The one-time sign-in link the latest start printed."""
        links = re.findall(r"Open\s+(http\S+/login/link/\S+)", self.log.read_text())
        assert links, f"no sign-in link in the demo's output:\n{self.log.read_text()[-2000:]}"
        return links[-1]

    @property
    def token(self) -> str:
        return (self.directory / "demo-admin-token.txt").read_text().strip()

    def api(self, path: str) -> dict:
        request = urllib.request.Request(
            self.base + "/api/projects/1" + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    d = Demo(tmp_path / "demo", tmp_path / "demo.log")
    d.start()
    yield d
    d.stop()


def _shot(page, name: str) -> None:
    folder = os.environ.get("LABELWISE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def _current_ref(page) -> str:
    page.wait_for_selector('#annotate[data-state="item"]', timeout=20_000)
    return page.inner_text("#item-ref")


def _answer(page, key: str) -> None:
    """Press a key and wait until the next item is on screen."""
    before = _current_ref(page)
    page.keyboard.press(key)
    page.wait_for_function(
        "ref => document.querySelector('#item-ref').textContent !== ref"
        " && document.querySelector('#annotate').dataset.state !== 'loading'",
        arg=before,
        timeout=20_000,
    )


def _wait_saved(demo: Demo, labels: int, skips: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        progress = demo.api("/stats")["progress"]
        done = (progress["labels"], progress["skips"]) == (labels, skips)
        if done or time.monotonic() > deadline:
            return progress
        time.sleep(0.3)


def _leases(demo: Demo) -> int:
    """Leases held now, read from the demo's database."""
    (path,) = demo.directory.rglob("labelwise.sqlite3")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM leases").fetchone()[0])


def _wait_leases(demo: Demo, n: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while (held := _leases(demo)) != n and time.monotonic() < deadline:
        time.sleep(0.2)
    return held


def _curve_points(page, demo: Demo) -> int:
    page.goto(demo.base + "/p/1/dashboard")
    return page.locator("svg.chart-curve circle.dot").count()


def _wait_for_version(demo: Demo, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = [v for v in demo.api("/stats")["versions"] if v["status"] == "ready"]
        if len(ready) >= n:
            return
        time.sleep(0.5)
    log = demo.log.read_text()[-2000:]
    raise AssertionError(f"no model version {n} within {timeout} s:\n{log}")


def test_label_undo_skip_retrain_restart(chromium: Any, demo: Demo) -> None:
    problems: list[str] = []
    page = chromium.new_page(viewport={"width": 1440, "height": 960})
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))

    sign_in_page(page, demo.link)
    assert page.url.endswith("/p/1/annotate")

    # 20 answers with the keyboard only, alternating so both classes are labeled.
    for i in range(20):
        _answer(page, "1" if i % 3 else "2")
    # Undo the last answer: that item comes back; then skip it.
    undone = _current_ref(page)
    page.keyboard.press("u")
    page.wait_for_function(
        "ref => document.querySelector('#item-ref').textContent !== ref",
        arg=undone,
        timeout=20_000,
    )
    _answer(page, "s")
    progress = _wait_saved(demo, labels=19, skips=1)
    assert (progress["labels"], progress["skips"]) == (19, 1)
    _shot(page, "annotate.png")
    assert _leases(demo) >= 1  # the item on screen (and any prefetched)

    # Leaving the page gives its items back (by lease token) for others at once.
    page.goto(demo.base + "/p/1/dashboard")
    assert _wait_leases(demo, 0) == 0

    # The first model lands; the dashboard's curve shows it.
    _wait_for_version(demo, 1)
    first = _curve_points(page, demo)
    assert first >= 1
    # 20 more answers reach the next fit, and the curve gains a point.
    page.goto(demo.base + "/p/1/annotate")
    for i in range(21):
        _answer(page, "2" if i % 4 == 0 else "1")
    _wait_for_version(demo, 2)
    second = _curve_points(page, demo)
    assert second > first, (first, second)
    _shot(page, "dashboard.png")
    page.goto(demo.base + "/p/1/annotate")
    _current_ref(page)
    if page.locator("#why-panel").is_hidden():
        page.keyboard.press("w")
    page.wait_for_selector("#why-panel", state="visible")
    _shot(page, "annotate-why.png")
    saved = _wait_saved(demo, labels=40, skips=1)

    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert not problems, problems

    # Restart: every acknowledged label is still there.
    demo.stop()
    demo.start()
    after = demo.api("/stats")["progress"]
    assert (after["labels"], after["skips"]) == (saved["labels"], saved["skips"]) == (40, 1)
    # The browser's session outlives the restart; signing out ends it.
    page.goto(demo.base + "/p/1/annotate")
    _current_ref(page)
    page.click("#sign-out")
    page.wait_for_url("**/login")
    page.goto(demo.base + "/p/1/annotate")
    assert page.url.endswith("/login")


def test_fast_answers_on_a_slow_line_are_all_saved(chromium: Any, demo: Demo) -> None:
    """Saving answers is slow (each held back a second on its way to the server), the
    annotator fast (an answer as soon as an item shows): answers queue in the page's outbox
    while it asks for more items, with the items being answered kept apart -- never shown
    again, their leases kept -- and every answer is stored once, none refused or lost."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    held_back: list[tuple[float, Any]] = []  # label requests paused on their way, oldest first
    page.route("**/items/*/label", lambda route: held_back.append((time.monotonic(), route)))

    def let_through(older_than: float) -> None:
        while held_back and time.monotonic() - held_back[0][0] >= older_than:
            held_back.pop(0)[1].continue_()

    sign_in_page(page, demo.link)
    answered: list[str] = []
    most_queued = 0
    for i in range(12):
        answered.append(_current_ref(page))
        page.keyboard.press("2" if i % 3 == 0 else "1")
        page.wait_for_function(
            "ref => document.querySelector('#item-ref').textContent !== ref"
            " && document.querySelector('#annotate').dataset.state === 'item'",
            arg=answered[-1],
            timeout=20_000,
        )
        most_queued = max(most_queued, _leases(demo))
        let_through(older_than=1.0)
    assert len(set(answered)) == 12, answered  # never an item answered already
    assert most_queued >= 5, most_queued  # answers did queue up, their items still leased

    deadline = time.monotonic() + 30
    while demo.api("/stats")["progress"]["labels"] < 12 and time.monotonic() < deadline:
        let_through(older_than=0)
        page.wait_for_timeout(100)
    progress = demo.api("/stats")["progress"]
    assert (progress["labels"], progress["skips"]) == (12, 0)
    assert _wait_leases(demo, 2) <= 2  # what the page shows and has prefetched, no more
    assert not problems, problems
    context.close()
