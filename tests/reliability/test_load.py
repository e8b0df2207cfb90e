"""Invariants under load: simulated annotators over HTTP against real ``labelwise`` processes.

Each test starts ``labelwise serve`` as a process of its own (and, for the multi-process run, a
second server and a ``labelwise worker`` beside them) over SQLite or PostgreSQL, and lets
simulated annotators work through a project as fast as they can, with these faults mixed in:

- *disconnects*: a share of requests is cut off mid-way (a timeout of a few milliseconds closes
  the connection, before or after the server acted on it) and then sent again unchanged, with
  the same ``request_id``;
- *doubles*: an acknowledged answer sent once more (a double click);
- skips, releases (the page closed) and undos, so items go back to the pool while others work.

What must hold, checked with SQL once the processes have stopped:

- every item has at most its target (1, or 2 for overlap items) of standing labels, and the
  stored count (``items.n_labels``, ``done``) agrees with the labels table; every item is done
  unless every annotator passed on it (nothing is lost from the pool);
- every label the clients saw acknowledged is stored exactly once: the label rows are exactly
  the acknowledged label ids, a retry returns the first answer's id, an answer taken back by an
  undo is superseded and every other one stands, and no annotator has two standing answers for
  one item;
- no item is promised to more annotators than it has free slots, i.e. no lease held by two
  people on a single-label item. Sampled in the database while the run goes on (one statement:
  one consistent snapshot, every 100 ms), and checked afterwards against the clients' own
  history of what they held when (the store keeps no lease history: a lease row is deleted when
  its item is answered);
- no 5xx, no traceback in any process's log, and no answer refused as "someone else has it"
  (leases last ten minutes here, so none expires during a run).

The "held key" test is the Prodigy race: one annotator answers and asks for the next item as
fast as the server allows, with several requests in flight at once, on a 60-item project:
exactly 60 labels result.

``pytest --heavy`` runs more annotators on more items; the multi-process run then takes its
size from ``LABELWISE_LOAD_ANNOTATORS``, ``LABELWISE_LOAD_MINUTES`` and
``LABELWISE_LOAD_THINK_MS`` (default 64 annotators for 2 minutes, 500-2,500 ms per answer).
``benchmarks/reliability.py`` sets them and reports what the ``record`` lines say.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import DateTime, bindparam, select, text

from labelwise.datasets import bundled_path
from labelwise.services.setup import init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.db import Database
from labelwise.store.models import Item, utcnow
from labelwise.store.projects import ProjectSettings, get_project
from labelwise.store.versions import QueuedItem, record_version

pytestmark = pytest.mark.slow

LABELS = ("ham", "spam")
LABELWISE = [sys.executable, "-m", "labelwise.cli"]
#: Leases outlive every run here: an answer refused as "taken by someone else" is a bug.
LEASE_SECONDS = 600


# --------------------------------------------------------------------------------------------
# The project and the processes


def write_items(path: Path, n: int) -> dict[str, str]:
    """``n`` messages from the bundled SMS collection (numbered copies past its 5,574) as a
    CSV with ``id,text``; returns each id's true label."""
    rows: list[tuple[str, str]] = []
    with bundled_path("sms-spam").open(encoding="utf-8") as fh:
        for line in fh:
            label, _, message = line.rstrip("\n").partition("\t")
            if label in LABELS and message.strip():
                rows.append((label, message.strip()))
    truth: dict[str, str] = {}
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("id", "text"))
        for i in range(n):
            label, message = rows[i % len(rows)]
            copy = i // len(rows)
            writer.writerow((f"m{i:06d}", f"{message} (copy {copy})" if copy else message))
            truth[f"m{i:06d}"] = label
    return truth


@dataclass
class Project:
    root: Path
    db_url: str
    project_id: int
    tokens: list[str]
    annotator_ids: list[int]
    truth: dict[str, str]


def make_project(
    tmp_path: Path,
    db_url: str,
    *,
    items: int,
    annotators: int,
    overlap: float,
    retrain_every: int = 20,
) -> Project:
    data = tmp_path / "items.csv"
    truth = write_items(data, items)
    opened, _ = init_project(
        tmp_path / "project",
        data,
        name=f"load-{uuid.uuid4().hex[:8]}",
        labels=list(LABELS),
        db_url=db_url,
        # No near-duplicate groups: the simulated annotators never confirm one, and finding
        # them costs the worker time on a pool made of copies.
        settings=ProjectSettings(
            overlap=overlap,
            retrain_every=retrain_every,
            lease_seconds=LEASE_SECONDS,
            max_group=0,
        ),
    )
    tokens, ids = [], []
    with opened.db.write() as session:
        project = get_project(session, project_id=opened.project_id)
        for i in range(annotators):
            annotator, token = create_annotator(
                session, project, name=f"annotator-{i:02d}", role="annotator"
            )
            session.flush()
            tokens.append(token)
            ids.append(annotator.id)
    opened.db.dispose()
    return Project(opened.folder.root, db_url, opened.project_id, tokens, ids, truth)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """A ``labelwise`` command in a process group of its own, its output in a log file."""

    def __init__(self, args: list[str], log_path: Path):
        self.args = args
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*LABELWISE, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGKILL to the whole group (a server and its worker child): every acknowledged
        answer is committed, so nothing here needs a graceful stop, and it takes no time."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def serve(
    project: Project, tmp_path: Path, name: str, *, worker: bool, copies: int = 1
) -> list[tuple[Process, str]]:
    """``copies`` ``labelwise serve`` processes on free ports, started together, once they all
    answer; each process and its base URL."""
    started = [
        _start_server(project, tmp_path, f"{name}-{i}", worker=worker) for i in range(copies)
    ]
    ready = []
    for i, (process, base_url) in enumerate(started):
        try:
            ready.append(_wait_ready(process, base_url))
        except _PortTakenError:
            again = _start_server(project, tmp_path, f"{name}-{i}-again", worker=worker)
            ready.append(_wait_ready(*again))
    return ready


class _PortTakenError(Exception):
    pass


def _start_server(
    project: Project, tmp_path: Path, name: str, *, worker: bool
) -> tuple[Process, str]:
    port = free_port()
    args = ["serve", str(project.root), "--port", str(port), "--db", project.db_url]
    process = Process([*args, "--worker" if worker else "--no-worker"], tmp_path / f"{name}.log")
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(process: Process, base_url: str) -> tuple[Process, str]:
    deadline = time.monotonic() + 90
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline and process.proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{base_url}/api/health").status_code == 200:
                    return process, base_url
            time.sleep(0.1)
    process.stop()
    if "address already in use" in process.log():  # another test took the port meanwhile
        raise _PortTakenError
    pytest.fail(f"labelwise serve did not start (exit {process.proc.returncode}):\n{process.log()}")


@contextlib.contextmanager
def running(processes: list[Process]) -> Iterator[list[Process]]:
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


def tracebacks(processes: list[Process]) -> list[str]:
    """The last line of every traceback in the processes' logs, and SQLAlchemy's warnings (a
    row deleted twice, say: the sign of a race)."""
    found = []
    for process in processes:
        lines = process.log().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Traceback"):
                tail = next((x for x in lines[i + 1 :] if not x.startswith((" ", "\t"))), "")
                found.append(f"{process.args[0]}: {tail}")
            elif "SAWarning" in line:
                found.append(f"{process.args[0]}: {line.strip()}")
    return found


# --------------------------------------------------------------------------------------------
# The simulated annotators


@dataclass
class Answer:
    """An answer (label or skip) the server acknowledged."""

    annotator: int
    item: int
    action: str
    label_id: int
    value: str | None
    request_id: str
    acked: float
    undone: float = math.inf  # when the undo that took it back was sent
    replayed: bool = False  # the server answered with an answer stored before


@dataclass
class Grant:
    """An item the client certainly held: from the moment the answer that handed it over
    arrived until ``released`` (the moment the request giving it up was sent)."""

    annotator: int
    item: int
    via: str  # "next" or "undo"
    asked: float  # the request that handed it over was sent ...
    got: float  # ... and answered
    released: float = math.inf
    answer: Answer | None = None  # the acknowledged label it became (still holding a slot)
    lease: str | None = None  # the grant's token, which a release names

    def occupied_until(self) -> float:
        """Until when the item's slot was certainly this annotator's: a label keeps it until
        it is undone."""
        if self.answer is not None and self.answer.action == "label":
            return self.answer.undone
        return self.released


@dataclass
class Tally:
    """Everything the clients of one run saw."""

    grants: list[Grant] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    disconnects: int = 0
    doubles: int = 0
    undos: int = 0
    problems: list[str] = field(default_factory=list)

    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)

    def percentile(self, op: str, q: float) -> float | None:
        values = self.latencies.get(op)
        return round(float(np.percentile(values, q)), 1) if values else None


@dataclass(frozen=True)
class Behaviour:
    """How the simulated annotators act; the shares are per request or per item."""

    think: tuple[float, float] = (0.0, 0.02)  # seconds between an item arriving and its answer
    disconnect: float = 0.1
    skip: float = 0.03
    release: float = 0.03
    undo: float = 0.05
    double: float = 0.05


class Annotator:
    """One annotator at a browser: next item, think, answer; now and then skip, close the page
    or undo. Every request cut off is sent again, unchanged, until an answer arrives."""

    def __init__(
        self,
        index: int,
        annotator_id: int,
        client: httpx.AsyncClient,
        project_id: int,
        truth: dict[str, str],
        behaviour: Behaviour,
        tally: Tally,
        seed: int,
        server: str = "",
    ):
        self.index = index
        self.server = server
        self.id = annotator_id
        self.client = client
        self.api = f"/api/projects/{project_id}"
        self.truth = truth
        self.behaviour = behaviour
        self.tally = tally
        self.rng = random.Random(seed * 7919 + index)
        self.held: list[tuple[Grant, str]] = []  # items on this page: (grant, external id)
        self.standing: list[Answer] = []  # answers undo would take back, latest last

    async def send(self, op: str, path: str, body: dict[str, Any]) -> httpx.Response:
        while True:
            cut = self.rng.random() < self.behaviour.disconnect
            timeout = httpx.Timeout(self.rng.uniform(0.001, 0.03)) if cut else httpx.Timeout(60)
            start = time.perf_counter()
            try:
                response = await self.client.post(self.api + path, json=body, timeout=timeout)
            except httpx.TimeoutException:
                if not cut:
                    raise
                self.tally.disconnects += 1
                continue
            ms = (time.perf_counter() - start) * 1000
            self.tally.latencies[op].append(ms)
            if self.server:
                self.tally.latencies[f"{op} via {self.server}"].append(ms)
            self.tally.statuses[op, response.status_code] += 1
            if response.status_code >= 500:
                self.tally.problems.append(
                    f"{op} answered {response.status_code}: {response.text[:200]}"
                )
            return response

    def problem(self, message: str) -> None:
        self.tally.problems.append(f"annotator {self.id}: {message}")

    async def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if not self.held:
                asked = time.monotonic()
                response = await self.send("next", "/next", {"exclude": []})
                if response.status_code == 204:
                    await asyncio.sleep(0.05)  # the rest is leased to others, or done
                    continue
                if response.status_code != 200:
                    self.problem(f"next answered {response.status_code}: {response.text[:200]}")
                    await asyncio.sleep(0.1)
                    continue
                data = response.json()
                item = data["item"]
                grant = Grant(
                    self.id, item["id"], "next", asked, time.monotonic(), lease=data["lease"]
                )
                self.tally.grants.append(grant)
                self.held.append((grant, item["external_id"]))
            await asyncio.sleep(self.rng.uniform(*self.behaviour.think))
            await self.answer()
        # An undo sent just before the run stopped can hand back an item the watcher had
        # already seen answered: label what is still on the page, so "nothing left open"
        # speaks of the server, not of a run cut off between an undo and its answer.
        while self.held:
            await self.answer(finish=True)

    async def answer(self, *, finish: bool = False) -> None:
        grant, external_id = self.held.pop()
        b = self.behaviour
        if finish:
            b = replace(b, release=0.0, skip=0.0, undo=0.0, double=0.0)
        roll = self.rng.random()
        if roll < b.release:
            grant.released = time.monotonic()
            response = await self.send("release", "/release", {"leases": [grant.lease]})
            if response.status_code != 200:
                self.problem(f"release answered {response.status_code}")
            return
        request_id = uuid.uuid4().hex
        if roll < b.release + b.skip:
            action, path, body = "skip", f"/items/{grant.item}/skip", {"request_id": request_id}
        else:
            value = self.truth[external_id] if self.rng.random() < 0.9 else self.rng.choice(LABELS)
            action, path = "label", f"/items/{grant.item}/label"
            body = {"value": value, "request_id": request_id, "duration_ms": 1000}
        grant.released = time.monotonic()
        response = await self.send(action, path, body)
        if response.status_code != 200:
            self.problem(f"{action} of item {grant.item} answered {response.status_code}")
            return
        data = response.json()
        answer = Answer(
            self.id,
            grant.item,
            action,
            int(data["label_id"]),
            data["value"],
            request_id,
            time.monotonic(),
            replayed=bool(data["replayed"]),
        )
        if data["item_id"] != grant.item or data["action"] != action:
            self.problem(f"{action} of item {grant.item} acknowledged as {data}")
        grant.answer = answer
        self.tally.answers.append(answer)
        self.standing.append(answer)
        if self.rng.random() < b.double:
            self.tally.doubles += 1
            again = await self.send(action, path, body)
            if again.status_code != 200 or again.json()["label_id"] != answer.label_id:
                self.problem(f"{action} sent twice: {again.status_code} {again.text[:200]}")
            elif not again.json()["replayed"]:
                self.problem(f"{action} sent twice was stored twice")
        if self.rng.random() < b.undo:
            await self.undo()

    async def undo(self) -> None:
        sent = time.monotonic()
        response = await self.send("undo", "/undo", {"request_id": uuid.uuid4().hex})
        if response.status_code == 409:  # a skip others have finished meanwhile
            return
        if response.status_code != 200:
            self.problem(f"undo answered {response.status_code}: {response.text[:200]}")
            return
        self.tally.undos += 1
        data = response.json()
        item = data["item"]
        expected = self.standing.pop() if self.standing else None
        if expected is None or expected.item != item["id"]:
            self.problem(
                f"undo took back item {item['id']}, not the latest answer "
                f"({expected.item if expected else 'none'})"
            )
            return
        expected.undone = sent
        grant = Grant(self.id, item["id"], "undo", sent, time.monotonic(), lease=data["lease"])
        self.tally.grants.append(grant)
        self.held.append((grant, item["external_id"]))


async def _annotate(
    base_urls: list[str],
    project: Project,
    behaviour: Behaviour,
    tally: Tally,
    stop: threading.Event,
    *,
    seed: int,
) -> None:
    clients = [
        httpx.AsyncClient(
            base_url=base_urls[i % len(base_urls)],
            headers={"Authorization": f"Bearer {token}"},
            limits=httpx.Limits(max_connections=4),
            trust_env=False,
        )
        for i, token in enumerate(project.tokens)
    ]
    try:
        names = "abcdefghijklmnopqrstuvwxyz"
        annotators = [
            Annotator(
                i,
                project.annotator_ids[i],
                c,
                project.project_id,
                project.truth,
                behaviour,
                tally,
                seed,
                server=names[i % len(base_urls)] if len(base_urls) > 1 else "",
            )
            for i, c in enumerate(clients)
        ]
        tasks = [asyncio.create_task(a.run(stop)) for a in annotators]
        try:
            await asyncio.gather(*tasks)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for c in clients:
            await c.aclose()


# --------------------------------------------------------------------------------------------
# Watching the database while the run goes on

#: Items promised to more annotators than they have slots, in one consistent snapshot: standing
#: labels plus unexpired leases above the target, or a lease held by someone who already
#: answered the item.
SNAPSHOT = text(
    """
    WITH held AS (
        SELECT item_id, annotator_id FROM leases
        WHERE project_id = :pid AND expires_at > :now
    ), answered AS (
        SELECT item_id, annotator_id, action FROM labels
        WHERE project_id = :pid AND is_current AND action IN ('label', 'skip')
    )
    SELECT i.id, i.target,
        (SELECT count(*) FROM answered a WHERE a.item_id = i.id AND a.action = 'label'),
        (SELECT count(*) FROM held h WHERE h.item_id = i.id),
        (SELECT count(*) FROM held h JOIN answered a
            ON a.item_id = h.item_id AND a.annotator_id = h.annotator_id
         WHERE h.item_id = i.id)
    FROM items i
    WHERE i.project_id = :pid
      AND (i.id IN (SELECT item_id FROM held)
           OR i.id IN (SELECT item_id FROM answered WHERE action = 'label'
                       GROUP BY item_id HAVING count(*) > 1))
    """
).bindparams(bindparam("now", type_=DateTime()))

#: Items someone may still be handed: not done, and not answered by every annotator.
OPEN_ITEMS = text(
    """
    SELECT count(*) FROM items i
    WHERE i.project_id = :pid AND NOT i.done
      AND (SELECT count(*) FROM labels b WHERE b.item_id = i.id AND b.is_current
           AND b.action IN ('label', 'skip')) < :annotators
    """
)


class Watcher(threading.Thread):
    """Samples :data:`SNAPSHOT` every ``period`` seconds; sets ``stop`` when nothing is open
    (``until_done``) or at ``deadline``."""

    def __init__(
        self,
        db: Database,
        project: Project,
        stop: threading.Event,
        *,
        deadline: float,
        until_done: bool,
        period: float = 0.1,
    ):
        super().__init__(daemon=True)
        self.db, self.project, self.stop = db, project, stop
        self.deadline, self.until_done, self.period = deadline, until_done, period
        self.samples = 0
        self.violations: list[str] = []
        self.finished = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.sample()
                if time.monotonic() >= self.deadline:
                    break
                if self.until_done and self.samples % 5 == 0 and self.open_items() == 0:
                    self.finished = True
                    break
                time.sleep(self.period)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.stop.set()

    def sample(self) -> None:
        with self.db.read() as session:
            rows = session.execute(SNAPSHOT, {"pid": self.project.project_id, "now": utcnow()})
            for item_id, target, labeled, leased, leased_to_answerer in rows:
                if labeled + leased > target or leased_to_answerer or labeled > target:
                    self.violations.append(
                        f"item {item_id} (target {target}): {labeled} labels, {leased} leases "
                        f"({leased_to_answerer} to someone who already answered it)"
                    )
        self.samples += 1

    def open_items(self) -> int:
        with self.db.read() as session:
            params = {"pid": self.project.project_id, "annotators": len(self.project.tokens)}
            return int(session.execute(OPEN_ITEMS, params).scalar_one())


@contextlib.contextmanager
def watching(
    project: Project, *, seconds: float, until_done: bool, period: float = 0.1
) -> Iterator[tuple[Watcher, threading.Event]]:
    """A :class:`Watcher` over the project's database for the block; the block's work stops
    when the event is set."""
    stop = threading.Event()
    db = Database(project.db_url)
    watcher = Watcher(
        db,
        project,
        stop,
        deadline=time.monotonic() + seconds,
        until_done=until_done,
        period=period,
    )
    watcher.start()
    try:
        yield watcher, stop
    finally:
        stop.set()
        watcher.join()
        db.dispose()
    if watcher.error is not None:
        raise watcher.error


def run_load(
    base_urls: list[str],
    project: Project,
    behaviour: Behaviour,
    *,
    seconds: float,
    until_done: bool,
    seed: int = 0,
    period: float = 0.1,
) -> tuple[Tally, Watcher, float]:
    """The annotators against ``base_urls`` (spread evenly) until every item is closed
    (``until_done``; failing after ``seconds``) or for ``seconds``; the tally, the watcher and
    the seconds it took."""
    tally = Tally()
    start = time.monotonic()
    with watching(project, seconds=seconds, until_done=until_done, period=period) as (w, stop):
        asyncio.run(_annotate(base_urls, project, behaviour, tally, stop, seed=seed))
    if until_done and not w.finished:
        pytest.fail(f"items still open after {seconds:.0f} s; problems: {tally.problems[:5]}")
    return tally, w, time.monotonic() - start


# --------------------------------------------------------------------------------------------
# The checks afterwards


def history_violations(tally: Tally, targets: dict[int, int]) -> list[str]:
    """Items the clients' own history shows promised past their slots.

    A "next" that handed annotator B an item was decided somewhere between sending and
    answering. At that moment every other annotator who certainly held a slot of the item
    throughout B's request (their item arrived before B asked, and they gave it up, or their
    label on it was undone, only after B's answer arrived) was counted against the target. If
    those alone fill the target, B got an item that was not free; likewise if B's own answer
    to it certainly stood throughout.
    """
    by_item: dict[int, list[Grant]] = defaultdict(list)
    for grant in tally.grants:
        by_item[grant.item].append(grant)
    answers_by_item: dict[int, list[Answer]] = defaultdict(list)
    for answer in tally.answers:
        answers_by_item[answer.item].append(answer)
    found = []
    for item, grants in by_item.items():
        for g in grants:
            if g.via != "next":  # an undo gives back the annotator's own slot
                continue
            others = {
                o.annotator
                for o in grants
                if o.annotator != g.annotator and o.got < g.asked and o.occupied_until() > g.got
            }
            if len(others) >= targets[item]:
                found.append(
                    f"item {item} (target {targets[item]}) handed to annotator {g.annotator} "
                    f"while annotators {sorted(others)} held it"
                )
            mine = [
                a
                for a in answers_by_item[item]
                if a.annotator == g.annotator and a.acked < g.asked and a.undone > g.got
            ]
            if mine:
                found.append(
                    f"item {item} handed again to annotator {g.annotator}, who answered it"
                )
    return found


def store_violations(db: Database, project: Project, tally: Tally) -> tuple[list[str], int]:
    """What the stored labels and items say against what the clients were told; and the number
    of acknowledged answers not found standing (labels lost)."""
    found: list[str] = []
    pid = project.project_id
    with db.read() as session:
        labels = session.execute(
            text(
                "SELECT id, item_id, annotator_id, action, value, request_id, is_current, "
                "supersedes_id FROM labels WHERE project_id = :pid"
            ),
            {"pid": pid},
        ).all()
        items = session.execute(
            select(Item.id, Item.target, Item.n_labels, Item.done).where(Item.project_id == pid)
        ).all()
    rows = {r.id: r for r in labels}
    undone = {r.supersedes_id for r in labels if r.action == "undo"}
    lost = 0
    for a in tally.answers:
        row = rows.get(a.label_id)
        if row is None:
            lost += 1
            found.append(f"acknowledged {a.action} {a.label_id} (item {a.item}) is not stored")
            continue
        stored = (row.item_id, row.annotator_id, row.action, row.value)
        if stored != (a.item, a.annotator, a.action, a.value) or (
            not a.replayed and row.request_id != a.request_id
        ):
            found.append(f"acknowledged {a.action} {a.label_id} is stored as {stored}")
        if a.undone == math.inf and not row.is_current:
            lost += 1
            found.append(f"acknowledged {a.action} {a.label_id} (item {a.item}) no longer stands")
        if a.undone != math.inf and (row.is_current or row.id not in undone):
            found.append(f"{a.action} {a.label_id} was undone, but stands or has no undo row")
    acked = Counter(a.label_id for a in tally.answers if not a.replayed)
    twice = [i for i, n in acked.items() if n > 1]
    if twice:
        found.append(f"label ids acknowledged for two different requests: {twice[:10]}")
    answers = {r.id for r in labels if r.action in ("label", "skip")}
    unacknowledged = answers - {a.label_id for a in tally.answers}
    if unacknowledged:
        found.append(
            f"{len(unacknowledged)} answers stored that no client saw acknowledged (a retry "
            f"stored twice?): {sorted(unacknowledged)[:10]}"
        )
    standing = Counter(
        (r.item_id, r.annotator_id) for r in labels if r.is_current and r.action != "undo"
    )
    doubled = [k for k, n in standing.items() if n > 1]
    if doubled:
        found.append(f"(item, annotator) with two standing answers: {doubled[:10]}")
    labeled = Counter(r.item_id for r in labels if r.is_current and r.action == "label")
    for item_id, target, n_labels, done in items:
        if labeled[item_id] > target:
            found.append(f"item {item_id} has {labeled[item_id]} labels, target {target}")
        if n_labels != labeled[item_id] or bool(done) != (labeled[item_id] >= target):
            found.append(
                f"item {item_id} says {n_labels} labels (done={done}), the labels table "
                f"{labeled[item_id]} (target {target})"
            )
    return found, lost


def finished_violations(db: Database, project: Project) -> list[str]:
    """After a run to the end: every item done, unless every annotator passed on it."""
    with db.read() as session:
        params = {"pid": project.project_id, "annotators": len(project.tokens)}
        left = int(session.execute(OPEN_ITEMS, params).scalar_one())
    return [f"{left} items neither done nor answered by everyone"] if left else []


def targets_of(db: Database, project: Project) -> dict[int, int]:
    with db.read() as session:
        rows = session.execute(
            select(Item.id, Item.target).where(Item.project_id == project.project_id)
        ).all()
    return {int(i): int(t) for i, t in rows}


def model_versions(project: Project) -> dict[str, int]:
    """Model versions the worker recorded, by status (ready, failed)."""
    db = Database(project.db_url)
    try:
        with db.read() as session:
            rows = session.execute(
                text(
                    "SELECT status, count(*) FROM model_versions WHERE project_id = :pid "
                    "GROUP BY status"
                ),
                {"pid": project.project_id},
            ).all()
    finally:
        db.dispose()
    return {str(status): int(n) for status, n in rows}


def summary(tally: Tally) -> dict[str, Any]:
    labels = [a for a in tally.answers if a.action == "label"]
    return {
        "labels_acknowledged": len(labels),
        "requests": sum(tally.statuses.values()),
        "disconnects": tally.disconnects,
        "doubles": tally.doubles,
        "undos": tally.undos,
        "server_errors": tally.server_errors(),
        "next_p50_ms": tally.percentile("next", 50),
        "next_p95_ms": tally.percentile("next", 95),
        "label_p50_ms": tally.percentile("label", 50),
        "label_p95_ms": tally.percentile("label", 95),
        "p95_ms": tally.percentile("label", 95),
    }


def check_run(
    project: Project, tally: Tally, watcher: Watcher, processes: list[Process], *, finished: bool
) -> tuple[dict[str, Any], str]:
    """Every invariant of the module's docstring; the figures for ``record``."""
    db = Database(project.db_url)
    try:
        targets = targets_of(db, project)
        history = history_violations(tally, targets)
        stored, lost = store_violations(db, project, tally)
        left = finished_violations(db, project) if finished else []
    finally:
        db.dispose()
    conflicts = sum(
        n for (op, status), n in tally.statuses.items() if status == 409 and op != "undo"
    )
    figures = {
        **summary(tally),
        "overlap_items": sum(1 for t in targets.values() if t > 1),
        "items": len(targets),
        "samples": watcher.samples,
        "double_leases": len(watcher.violations) + len(history),
        "labels_lost": lost,
        "conflicts": conflicts,
    }
    problems = {
        "client": tally.problems,
        "sampled in the database": watcher.violations,
        "client history": history,
        "stored": stored,
        "left open": left,
        "tracebacks": tracebacks(processes),
        "answers refused (409)": [f"{conflicts} label/skip requests"] if conflicts else [],
    }
    report = "\n".join(f"{k}: {v[:8]}" for k, v in problems.items() if v)
    figures["invariants"] = "held" if not report else f"broken: {report.splitlines()[0][:200]}"
    return figures, report


# --------------------------------------------------------------------------------------------
# The tests


def test_annotators_with_disconnects_and_retries(
    tmp_path: Path, db_url: str, heavy: bool, record: Callable[..., None]
) -> None:
    """N annotators work through M items (some needing two labels) with the worker retraining,
    requests cut off and retried, doubles, skips, releases and undos, until nothing is open."""
    n_annotators, n_items = (32, 1500) if heavy else (8, 150)
    project = make_project(
        tmp_path, db_url, items=n_items, annotators=n_annotators, overlap=0.3, retrain_every=15
    )
    [(process, base_url)] = serve(project, tmp_path, "serve", worker=True)
    with running([process]):
        tally, watcher, seconds = run_load(
            [base_url], project, Behaviour(), seconds=600 if heavy else 120, until_done=True
        )
    figures, broken = check_run(project, tally, watcher, [process], finished=True)
    assert figures["labels_acknowledged"] >= n_items  # the run did label the whole pool
    assert tally.disconnects > 0 and tally.undos > 0  # the faults did happen
    versions = model_versions(project)
    assert not versions.get("failed"), f"the worker recorded failed fits:\n{process.log()}"
    record(
        "load",
        scenario="disconnects, retries, doubles, undo, overlap",
        database=db_url.split(":")[0].split("+")[0],
        processes="1 serve (+ worker child)",
        annotators=n_annotators,
        minutes=round(seconds / 60, 2),
        model_versions=versions.get("ready", 0),
        **figures,
    )
    assert not broken, f"invariants broken ({figures}):\n{broken}"


def _publish_queue(project: Project, share: float) -> None:
    """A ranked queue over the first ``share`` of the items, as if a model had landed: the
    rest comes from the random fallback."""
    db = Database(project.db_url)
    try:
        with db.write() as session:
            p = get_project(session, project_id=project.project_id)
            ids = session.scalars(
                select(Item.id).where(Item.project_id == p.id).order_by(Item.row)
            ).all()
            queued = ids[: int(len(ids) * share)]
            record_version(
                session,
                p,
                n_labels=0,
                label_counts={},
                metrics={},
                strategy="default",
                model_name="logreg",
                artefact="models/v00001.joblib",
                fit_seconds=0.0,
                queue=[
                    QueuedItem(
                        item_id=item_id,
                        rank=rank,
                        kind="strategy",
                        utility=1.0 - rank / len(queued),
                        predicted="ham",
                        reason={"kind": "strategy"},
                    )
                    for rank, item_id in enumerate(queued)
                ],
            )
    finally:
        db.dispose()


async def _hold_key(base_url: str, project: Project, in_flight: int) -> Tally:
    """``in_flight`` loops of one annotator, each asking for the next item and answering it at
    once, excluding what the other loops hold (as the page does)."""
    tally = Tally()
    holding: set[int] = set()
    api = f"/api/projects/{project.project_id}"

    async def loop(client: httpx.AsyncClient) -> None:
        while True:
            start = time.perf_counter()
            response = await client.post(f"{api}/next", json={"exclude": sorted(holding)[:20]})
            tally.latencies["next"].append((time.perf_counter() - start) * 1000)
            tally.statuses["next", response.status_code] += 1
            if response.status_code == 204:
                return
            if response.status_code != 200:
                tally.problems.append(f"next answered {response.status_code}: {response.text}")
                return
            item = response.json()["item"]
            holding.add(item["id"])
            body = {"value": project.truth[item["external_id"]], "request_id": uuid.uuid4().hex}
            start = time.perf_counter()
            response = await client.post(f"{api}/items/{item['id']}/label", json=body)
            tally.latencies["label"].append((time.perf_counter() - start) * 1000)
            tally.statuses["label", response.status_code] += 1
            holding.discard(item["id"])
            if response.status_code != 200:
                tally.problems.append(f"label answered {response.status_code}: {response.text}")
                continue
            data = response.json()
            tally.answers.append(
                Answer(
                    project.annotator_ids[0],
                    item["id"],
                    "label",
                    int(data["label_id"]),
                    data["value"],
                    body["request_id"],
                    time.monotonic(),
                    replayed=bool(data["replayed"]),
                )
            )
            if data["replayed"]:
                tally.doubles += 1

    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {project.tokens[0]}"},
        limits=httpx.Limits(max_connections=in_flight),
        timeout=60,
        trust_env=False,
    ) as client:
        await asyncio.gather(*(loop(client) for _ in range(in_flight)))
    return tally


@pytest.mark.parametrize("in_flight", [1, 6])
def test_held_key(
    tmp_path: Path, db_url: str, in_flight: int, heavy: bool, record: Callable[..., None]
) -> None:
    """One annotator answers and asks for the next item as fast as the server allows, with
    ``in_flight`` requests at once, on a 60-item project: exactly 60 labels, one per item."""
    rounds = 3 if heavy else 1
    for r in range(rounds):
        base = tmp_path / f"round-{r}"
        base.mkdir()
        project = make_project(base, db_url, items=60, annotators=1, overlap=0.0)
        _publish_queue(project, share=0.5)
        [(process, base_url)] = serve(project, base, "serve", worker=False)
        with (
            running([process]),
            watching(project, seconds=300, until_done=False, period=0.05) as (watcher, _),
        ):
            start = time.monotonic()
            tally = asyncio.run(_hold_key(base_url, project, in_flight))
            seconds = time.monotonic() - start
        db = Database(project.db_url)
        try:
            stored, lost = store_violations(db, project, tally)
            with db.read() as session:
                rows = session.execute(
                    text(
                        "SELECT count(*), count(DISTINCT item_id) FROM labels "
                        "WHERE project_id = :pid AND action = 'label' AND is_current"
                    ),
                    {"pid": project.project_id},
                ).one()
                all_rows = session.execute(
                    text("SELECT count(*) FROM labels WHERE project_id = :pid"),
                    {"pid": project.project_id},
                ).scalar_one()
                done = session.execute(
                    select(Item.id).where(Item.project_id == project.project_id, Item.done)
                ).all()
        finally:
            db.dispose()
        assert not tally.problems, tally.problems[:5]
        assert not stored, stored[:5]
        assert not watcher.violations, watcher.violations[:5]
        assert not tracebacks([process])
        assert tuple(rows) == (60, 60), f"{rows[0]} labels on {rows[1]} items, expected 60 on 60"
        assert all_rows == 60, f"{all_rows} label rows: a retry or a race stored one twice"
        assert len(done) == 60
        record(
            "load",
            scenario=f"held key: 1 annotator, {in_flight} requests in flight, 60 items",
            database=db_url.split(":")[0].split("+")[0],
            processes="1 serve",
            annotators=1,
            minutes=round(seconds / 60, 3),
            labels_acknowledged=len({a.label_id for a in tally.answers}),
            labels_stored=rows[0],
            labels_lost=lost,
            double_leases=len(watcher.violations),
            samples=watcher.samples,
            answers_sent=len(tally.answers),
            replayed=tally.doubles,
            server_errors=tally.server_errors(),
            next_p95_ms=tally.percentile("next", 95),
            label_p95_ms=tally.percentile("label", 95),
            p95_ms=tally.percentile("label", 95),
        )


def _multi_process_size(heavy: bool) -> tuple[int, float, tuple[float, float]]:
    """Annotators, seconds and think time (s) of the multi-process run."""
    if not heavy:
        return 8, 15.0, (0.0, 0.1)
    annotators = int(os.environ.get("LABELWISE_LOAD_ANNOTATORS", "64"))
    minutes = float(os.environ.get("LABELWISE_LOAD_MINUTES", "2"))
    lo, hi = (
        float(x) / 1000 for x in os.environ.get("LABELWISE_LOAD_THINK_MS", "500,2500").split(",")
    )
    return annotators, minutes * 60, (lo, hi)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_servers_and_a_worker_over_postgresql(
    tmp_path: Path, db_url: str, heavy: bool, record: Callable[..., None]
) -> None:
    """Two ``labelwise serve --no-worker`` processes and one ``labelwise worker`` over one
    PostgreSQL database; the annotators split between the servers, with disconnects and retries.
    No item leased twice, no label lost, no 5xx; the worker publishes models meanwhile."""
    n_annotators, seconds, think = _multi_process_size(heavy)
    # Enough items that the pool never runs dry: an answer takes at least the think time.
    per_second = n_annotators / max(sum(think) / 2, 0.05)
    n_items = int(min(per_second * seconds * 1.2, 50_000)) if heavy else 600
    project = make_project(
        tmp_path,
        db_url,
        items=n_items,
        annotators=n_annotators,
        overlap=0.1,
        retrain_every=50 if heavy else 20,
    )
    servers = serve(project, tmp_path, "serve", worker=False, copies=2)
    worker = Process(["worker", str(project.root), "--db", project.db_url], tmp_path / "worker.log")
    processes = [*(p for p, _ in servers), worker]
    with running(processes):
        tally, watcher, elapsed = run_load(
            [url for _, url in servers],
            project,
            Behaviour(think=think),
            seconds=seconds,
            until_done=False,
            period=0.25,
        )
        assert worker.proc.poll() is None, f"the worker died:\n{worker.log()}"
    figures, broken = check_run(project, tally, watcher, processes, finished=False)
    by_status = model_versions(project)
    assert not by_status.get("failed"), f"the worker recorded failed fits: {worker.log()[-2000:]}"
    assert figures["labels_acknowledged"] > 0
    record(
        "load",
        scenario="2 serve + 1 worker processes, disconnects and retries",
        database="postgresql",
        processes="2 serve + 1 worker",
        annotators=n_annotators,
        minutes=round(elapsed / 60, 2),
        think_ms=f"{think[0] * 1000:.0f}-{think[1] * 1000:.0f}",
        model_versions=by_status.get("ready", 0),
        **figures,
        **{
            f"{op}_p95_ms_{server}": tally.percentile(f"{op} via {server}", 95)
            for op in ("next", "label")
            for server in ("a", "b")
        },
    )
    assert not broken, f"invariants broken ({figures}):\n{broken}"
