"""Crashes: ``kill -9`` the server mid-batch, the worker mid-fit, an import and an export mid-way.

Real processes, as a deployment runs them: ``labelwise serve`` and ``labelwise worker`` (and
``labelwise import`` / ``export``) are started as subprocesses over a project folder in
``tmp_path``, on SQLite and on PostgreSQL, and killed with SIGKILL -- no clean-up code runs.
After each kill the test restarts what it killed and checks the invariants:

- every label the server acknowledged (a 2xx answer on the client) is stored exactly once;
  requests left unanswered and retried with their ``request_id`` are stored at most once;
- no item ever has more labels and unexpired leases than its target; the leases of annotators
  who never came back expire (``lease_seconds=5``) and their items go to others;
- the worker child of a server killed outright stops by itself (it would otherwise hold the
  folder's lock forever, and the restarted server's worker would never run);
- the worker killed mid-fit leaves the served version, its artefact file and its queue exactly
  as they were (no half-written version, artefact or queue), the server keeps serving that
  queue, and the next fit completes once a worker runs again;
- an import killed mid-way leaves the project as it was (or fully imported, never half); an
  export killed mid-way leaves the previous output file untouched.

CI runs one fault of each kind per database (retrying, at most three times, a kill that came
after the work was done); ``pytest --heavy`` repeats each several times at random moments,
bigger, with more annotators (the seed is in every failure message and every record).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
from sqlalchemy import func, select

from labelwise.datasets import bundled_path
from labelwise.services.export import export_project
from labelwise.services.setup import OpenProject, init_project
from labelwise.services.transfer import import_file
from labelwise.services.worker import run_worker
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.db import Database
from labelwise.store.leasing import next_item
from labelwise.store.models import Annotator as AnnotatorRow
from labelwise.store.models import Item, Label, Lease, ModelVersion, QueueEntry, utcnow
from labelwise.store.projects import ProjectSettings, get_project
from labelwise.store.versions import record_version

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

LABELS = ("ham", "spam")
LEASE_SECONDS = 5  # the shortest lease a project accepts: expired leases show up quickly
FITTING = re.compile(r"labelwise\.services\.worker fitting ")
VERSION = re.compile(r"model version (\d+) on (\d+) labels")


# ------------------------------------------------------------------------------------ helpers


def _messages(n: int, seed: int) -> list[str]:
    """``n`` distinct short texts made from the bundled SMS collection."""
    with bundled_path("sms-spam").open(encoding="utf-8") as fh:
        texts = [line.rstrip("\n").partition("\t")[2] for line in fh]
    texts = [t for t in texts if t.strip()]
    rng = random.Random(seed)
    return [f"{rng.choice(texts)} {rng.choice(texts).split()[0]} #{i}" for i in range(n)]


def _write_csv(path: Path, n: int, *, seed: int, prefix: str = "m") -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("id", "text"))
        writer.writerows((f"{prefix}{i:06d}", t) for i, t in enumerate(_messages(n, seed)))
    return path


def _log_time(line: str) -> float:
    """The time stamp of a log line (``logging``'s default ``asctime``), in seconds."""
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie -- dead, not yet reaped by its parent -- does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode()
    except OSError:
        return False
    return data[data.rindex(")") + 2] != "Z"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(p) for p in fh.read().split())
    except OSError:
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_worker_child(pid: int) -> bool:
    """Whether ``pid`` is a server's worker child (a spawned process, not its resource
    tracker)."""
    line = _cmdline(pid)
    return "spawn_main" in line and "resource_tracker" not in line


def _wait(condition: Callable[[], Any], timeout: float, what: str, period: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Proc:
    """A ``labelwise`` subprocess in its own session, its output in a log file."""

    def __init__(self, args: list[str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labelwise.cli", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def wait_line(self, pattern: re.Pattern[str], *, skip: int = 0, timeout: float) -> int:
        """Wait for a line matching ``pattern`` after the first ``skip`` lines; its index."""

        def found() -> int | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"labelwise {self.args[0]} exited:\n{self.text()[-3000:]}")
            for i, line in enumerate(self.lines()[skip:], start=skip):
                if pattern.search(line):
                    return i + 1  # 1-based, so that 0 means "not yet"
            return None

        return int(_wait(found, timeout, f"{pattern.pattern!r} in {self.log_path.name}")) - 1

    def kill9(self) -> None:
        """SIGKILL to this process alone (its children live on, as after a real crash)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """Kill whatever is left of the process group, then close the log."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        finally:
            self._log.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process a test starts, killed (with its group) at the end."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.close()


class Server:
    """``labelwise serve`` on a free port."""

    def __init__(self, procs: list[Proc], project: Path, db_url: str, log: Path, *, worker: bool):
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        args = ["serve", str(project), "--db", db_url, "--port", str(self.port)]
        self.proc = Proc([*args, "--worker" if worker else "--no-worker"], log)
        procs.append(self.proc)
        self.with_worker = worker

    def wait_ready(self, timeout: float = 60) -> None:
        def up() -> bool:
            if self.proc.proc.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.proc.text()[-3000:]}")
            try:
                return httpx.get(f"{self.base_url}/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(up, timeout, "the server to answer", period=0.1)

    def worker_pid(self, timeout: float = 30) -> int:
        def find() -> int | None:
            return next((p for p in _children(self.proc.pid) if _is_worker_child(p)), None)

        return int(_wait(find, timeout, "the server's worker process"))


@pytest.fixture
def make_project(tmp_path: Path, db_url: str) -> Iterator[Callable[..., tuple[OpenProject, str]]]:
    """``make_project(n_items, seed=..., **settings)``: a text project of ``n_items`` in
    ``tmp_path/project`` on the test's database (short leases); its connections are closed at
    the end. Returns it with its admin token."""
    made: list[OpenProject] = []

    def make(n_items: int, *, seed: int, **settings: Any) -> tuple[OpenProject, str]:
        data = _write_csv(tmp_path / "items.csv", n_items, seed=seed)
        opened, admin = init_project(
            tmp_path / "project",
            data,
            name="crash",
            labels=list(LABELS),
            db_url=db_url,
            settings=ProjectSettings(lease_seconds=LEASE_SECONDS, **settings),
        )
        made.append(opened)
        return opened, admin

    yield make
    for opened in made:
        opened.db.dispose()


def _tokens(opened: OpenProject, n: int, prefix: str = "annotator") -> list[str]:
    with opened.db.write() as session:
        project = get_project(session, project_id=opened.project_id)
        return [
            create_annotator(session, project, name=f"{prefix}-{i:02d}", role="annotator")[1]
            for i in range(n)
        ]


def _dialect(db_url: str) -> str:
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


# ------------------------------------------------------------- the server killed mid-batch


@dataclass
class Sent:
    request_id: str
    item_id: int
    value: str


@dataclass
class Cluster:
    """Where the server is now (``generation`` counts restarts), and how many submits are on
    their way."""

    base_url: str
    generation: int = 0
    finished: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def restarted(self, base_url: str) -> None:
        with self.lock:
            self.base_url = base_url
            self.generation += 1


class Annotator(threading.Thread):
    """Labels as fast as it can: ``next`` (keeping one item prefetched, as the page does), then
    ``label`` with a fresh ``request_id``. When the server dies it waits for the restart and
    sends its unanswered submits again with the same ``request_id`` -- unless it is ``gone``
    (a closed laptop): then it never comes back, and its leases must expire."""

    def __init__(self, name: str, token: str, pid: int, cluster: Cluster, seed: int):
        super().__init__(name=name, daemon=True)
        self.pid = pid
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {token}"}, timeout=60, trust_env=False
        )
        self.acked: dict[str, Sent] = {}
        self.unanswered: dict[str, Sent] = {}
        self.retried: list[tuple[Sent, bool]] = []  # answered after a retry: (sent, replayed)
        self.conflicts = 0
        self.held: list[int] = []
        self.gone = threading.Event()
        self.error: BaseException | None = None

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        url = f"{self.cluster.base_url}/api/projects/{self.pid}{path}"
        return self.client.post(url, json=body)

    def _submit(self, sent: Sent) -> httpx.Response:
        body = {"value": sent.value, "request_id": sent.request_id, "duration_ms": 1}
        with self.cluster.lock:
            self.cluster.in_flight += 1
        try:
            return self._post(f"/items/{sent.item_id}/label", body)
        finally:
            with self.cluster.lock:
                self.cluster.in_flight -= 1

    def _outcome(self, sent: Sent, response: httpx.Response, *, retry: bool) -> None:
        self.unanswered.pop(sent.request_id, None)
        if response.status_code == 409:  # the lease expired and the item went to others
            self.conflicts += 1
        else:
            assert response.status_code == 200, (response.status_code, response.text)
            self.acked[sent.request_id] = sent
            if retry:
                self.retried.append((sent, bool(response.json()["replayed"])))
        if sent.item_id in self.held:
            self.held.remove(sent.item_id)

    def _step(self) -> None:
        for sent in list(self.unanswered.values()):  # after a restart: the same request again
            self._outcome(sent, self._submit(sent), retry=True)
        while len(self.held) < 2:
            response = self._post("/next", {"exclude": self.held})
            if response.status_code == 204:
                break
            assert response.status_code == 200, (response.status_code, response.text)
            self.held.append(int(response.json()["item"]["id"]))
        if not self.held:
            time.sleep(0.2)  # nothing open for me now (others' leases): wait for expiry
            return
        sent = Sent(uuid.uuid4().hex, self.held[0], self.rng.choice(LABELS))
        self.unanswered[sent.request_id] = sent
        self._outcome(sent, self._submit(sent), retry=False)

    def run(self) -> None:
        try:
            while not self.cluster.finished.is_set():
                generation = self.cluster.generation
                try:
                    self._step()
                except httpx.TransportError:
                    # The server is gone: wait for the next one (or leave for good).
                    self.held.clear()  # the page would ask "next" again; the leases come back
                    while self.cluster.generation == generation and not self.gone.is_set():
                        if self.cluster.finished.is_set():
                            return
                        time.sleep(0.05)
                    if self.gone.is_set():
                        return
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.client.close()


def _stored(db: Database, pid: int) -> dict[str, Any]:
    """What the database holds now, read from one snapshot."""
    with db.read() as session:
        if db.dialect == "postgresql":  # SQLite's read transaction is one snapshot already
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        items = {
            i.id: (i.target, i.n_labels, i.done)
            for i in session.scalars(select(Item).where(Item.project_id == pid))
        }
        labels = list(
            session.execute(
                select(
                    Label.id,
                    Label.item_id,
                    Label.annotator_id,
                    Label.action,
                    Label.value,
                    Label.request_id,
                    Label.is_current,
                ).where(Label.project_id == pid)
            )
        )
        now = utcnow()
        leases = list(
            session.execute(
                select(Lease.item_id, Lease.annotator_id).where(
                    Lease.project_id == pid, Lease.expires_at > now
                )
            )
        )
    return {"items": items, "labels": labels, "leases": leases}


def _check_never_overbooked(state: dict[str, Any], context: str) -> None:
    held = Counter(item_id for item_id, _ in state["leases"])
    current: dict[int, list[int]] = {}
    for row in state["labels"]:
        if row.is_current and row.action == "label":
            current.setdefault(row.item_id, []).append(row.annotator_id)
    for item_id, (target, n_labels, _) in state["items"].items():
        by = current.get(item_id, [])
        assert n_labels == len(by), f"{context}: item {item_id} counts {n_labels}, has {by}"
        assert len(set(by)) == len(by), f"{context}: item {item_id} labeled twice by one person"
        assert n_labels + held[item_id] <= target, (
            f"{context}: item {item_id} has {n_labels} labels and {held[item_id]} leases "
            f"for a target of {target}"
        )


def test_server_killed_mid_batch(
    db_url: str,
    tmp_path: Path,
    procs: list[Proc],
    make_project: Callable[..., tuple[OpenProject, str]],
    record: Callable[..., None],
    heavy: bool,
) -> None:
    """``kill -9`` the server (not its worker) while annotators have answers in flight and
    items leased; restart it. Acknowledged labels stay, exactly once; retried requests are
    stored at most once; the orphaned worker stops by itself; the leases of annotators who do
    not come back expire and their items are labeled by others; no item is ever overbooked."""
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    crashes = 4 if heavy else 1
    n_annotators = 4 * crashes + 4 if heavy else 6
    n_items = 100 * crashes + 40 if heavy else 60
    ctx = f"seed {seed}"
    opened, _ = make_project(n_items, seed=seed, overlap=0.2, retrain_every=20)
    tokens = _tokens(opened, n_annotators)
    pid = opened.project_id
    started = time.monotonic()

    server = Server(procs, opened.folder.root, db_url, tmp_path / "serve-0.log", worker=True)
    server.wait_ready()
    cluster = Cluster(server.base_url)
    team = [
        Annotator(f"annotator-{i:02d}", t, pid, cluster, seed + i) for i, t in enumerate(tokens)
    ]
    for a in team:
        a.start()

    def acked() -> int:
        return sum(len(a.acked) for a in team)

    # (item, annotator) leases held at a kill by annotators who never came back
    abandoned: set[tuple[int, int]] = set()
    faults: list[dict[str, Any]] = []
    at_risk: list[set[str]] = []  # per kill: the request ids acknowledged before it
    try:
        for crash in range(crashes):
            goal = acked() + rng.randint(10, max(11, n_items // (crashes + 2)))
            _wait(
                lambda: acked() >= goal and cluster.in_flight >= 1,  # noqa: B023
                60,
                f"{goal} acknowledged labels with answers in flight ({ctx})",
                period=0.005,
            )
            worker = server.worker_pid(timeout=5) if server.with_worker else None
            in_flight = cluster.in_flight
            server.proc.kill9()
            at_risk.append({r for a in team for r in a.acked})
            # Every client notices at once (the connection closes); then the unanswered
            # requests are known.
            _wait(lambda: cluster.in_flight == 0, 30, f"the clients to notice ({ctx})")
            state = _stored(opened.db, pid)
            _check_never_overbooked(state, f"right after kill {crash + 1} ({ctx})")
            leases_held = len(state["leases"])
            assert leases_held > 0, f"no lease was held at the kill ({ctx})"
            if worker is not None:
                # The worker child outlives a SIGKILLed server unless it watches for its death.
                _wait(
                    lambda: not _alive(worker),  # noqa: B023
                    30,
                    f"the orphaned worker {worker} to exit ({ctx})",
                )

            # Half of those still at work never come back; at least two stay, and one of
            # those with an unanswered request (if any), who sends it again.
            active = [a for a in team if not a.gone.is_set()]
            retrying = [a for a in active if a.unanswered][:1]
            candidates = [a for a in active if a not in retrying]
            leaving = rng.sample(candidates, k=max(0, min(len(active) // 2, len(active) - 2)))
            gone_ids = set(_annotator_ids(opened.db, pid, {a.name for a in leaving}).values())
            abandoned |= {(i, who) for i, who in state["leases"] if who in gone_ids}
            for a in leaving:
                a.gone.set()

            # CI restarts it without a worker (one Python start less); --heavy with one.
            log = tmp_path / f"serve-{crash + 1}.log"
            server = Server(procs, opened.folder.root, db_url, log, worker=heavy)
            server.wait_ready()
            cluster.restarted(server.base_url)
            faults.append(
                {
                    "labels_in_flight": in_flight,
                    "leases_held": leases_held,
                    "annotators_gone": len(leaving),
                }
            )

        # The rest label until every item has all its labels: the abandoned leases must expire
        # (LEASE_SECONDS) and their items go to the annotators still at work.
        def finished() -> bool:
            with opened.db.read() as session:
                left = session.scalar(
                    select(func.count(Item.id)).where(Item.project_id == pid, Item.done.is_(False))
                )
            return left == 0

        _wait(finished, 60 + LEASE_SECONDS, f"every item to be labeled ({ctx})", period=0.3)
    finally:
        cluster.finished.set()
        for a in team:
            a.join(timeout=30)
    for a in team:
        assert a.error is None, f"{a.name} failed ({ctx}): {a.error!r}"

    state = _stored(opened.db, pid)
    _check_never_overbooked(state, f"at the end ({ctx})")
    by_request: dict[tuple[int, str], list[Any]] = {}
    for row in state["labels"]:
        if row.request_id is not None:
            by_request.setdefault((row.annotator_id, row.request_id), []).append(row)
    ids = _annotator_ids(opened.db, pid, {a.name for a in team})
    lost: set[str] = set()
    for a in team:
        me = ids[a.name]
        for sent in a.acked.values():
            rows = by_request.get((me, sent.request_id), [])
            if not (len(rows) == 1 and rows[0].item_id == sent.item_id):
                lost.add(sent.request_id)
                continue
            row = rows[0]
            assert row.value == sent.value and row.action == "label" and row.is_current, (
                f"acknowledged {sent} stored as {row} ({ctx})"
            )
        for sent in a.unanswered.values():  # the gone annotators' last requests: at most once
            assert len(by_request.get((me, sent.request_id), [])) <= 1, (sent, ctx)
    # Leases of annotators who never came back: their items were labeled by someone else.
    current = {(r.item_id, r.annotator_id) for r in state["labels"] if r.is_current}
    reassigned = {item for item, who in abandoned if (item, who) not in current}
    retried = [r for a in team for r in a.retried]
    # Each kill is charged with the labels acknowledged since the one before (so that sums over
    # kills count every label once); all acknowledged before it were at risk.
    earlier: set[str] = set()
    for fault, risked in zip(faults, at_risk, strict=True):
        new = risked - earlier
        earlier = risked
        record(
            "fault",
            fault="kill -9 server mid-batch",
            database=_dialect(db_url),
            survived=not lost,
            labels_acknowledged=len(new),
            labels_at_risk=len(risked),
            labels_lost=len(lost & new),
            items=n_items,
            annotators=n_annotators,
            retried_requests=len(retried),
            retried_already_stored=sum(1 for _, replayed in retried if replayed),
            abandoned_leases_reassigned=len(reassigned),
            seconds=round(time.monotonic() - started, 1),
            seed=seed,
            **fault,
        )
    n_acked = acked()
    assert not lost, f"{len(lost)} of {n_acked} acknowledged labels are missing ({ctx})"
    assert sum(1 for r in state["labels"] if r.action == "label") == sum(
        target for target, _, _ in state["items"].values()
    ), f"more label rows than the items' targets ({ctx})"
    for item, who in abandoned:
        if (item, who) not in current:  # its holder left without answering: others did
            assert {w for i, w in current if i == item} - {who}, (
                f"item {item} stayed with annotator {who}, who left ({ctx})"
            )


def _annotator_ids(db: Database, pid: int, names: set[str]) -> dict[str, int]:
    with db.read() as session:
        rows = session.execute(
            select(AnnotatorRow.name, AnnotatorRow.id).where(
                AnnotatorRow.project_id == pid, AnnotatorRow.name.in_(sorted(names))
            )
        )
        return {name: int(i) for name, i in rows}


# ------------------------------------------------------------------ the worker killed mid-fit


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Published:
    """What the worker has published: versions, the served one, the queue, the model files."""

    versions: tuple[tuple[int, str, str | None], ...]  # (number, status, artefact)
    current: int | None  # the served version's number
    queue: tuple[tuple[int, int, int, str], ...]  # (version number, item, rank, kind)
    files: dict[str, str]  # models/ file name -> sha256

    @classmethod
    def read(cls, opened: OpenProject) -> Published:
        with opened.db.read() as session:
            project = get_project(session, project_id=opened.project_id)
            rows = session.scalars(
                select(ModelVersion)
                .where(ModelVersion.project_id == project.id)
                .order_by(ModelVersion.version)
            ).all()
            number = {v.id: v.version for v in rows}
            queue = session.scalars(
                select(QueueEntry).where(QueueEntry.project_id == project.id)
            ).all()
            return cls(
                versions=tuple((v.version, v.status, v.artefact) for v in rows),
                current=number.get(project.current_version_id or -1),
                queue=tuple(
                    sorted((number[q.model_version_id], q.item_id, q.rank, q.kind) for q in queue)
                ),
                files={p.name: _sha256(p) for p in opened.folder.models_dir.iterdir()},
            )


def _check_published(opened: OpenProject, now: Published, ctx: str) -> None:
    """Whatever is published is whole: ready versions have their artefact file, which loads; the
    queue belongs to the served version only."""
    for number, status, artefact in now.versions:
        if status != "ready":
            continue
        assert artefact is not None, f"ready version {number} without an artefact ({ctx})"
        path = opened.folder.root / artefact
        assert path.is_file(), f"version {number}'s artefact {artefact} is missing ({ctx})"
        loaded = joblib.load(path)
        assert hasattr(loaded["model"], "predict"), f"{artefact} holds no model ({ctx})"
    assert {q[0] for q in now.queue} <= {now.current}, f"queue of an older version ({ctx})"
    assert now.current is None or now.queue, f"the served version has no queue ({ctx})"


def _check_untouched(before: Published, after: Published, ctx: str) -> list[str]:
    """A killed fit changed nothing published; returns the files it left in models/."""
    assert after.versions == before.versions, f"a version row appeared or changed ({ctx})"
    assert after.current == before.current, f"the served version changed ({ctx})"
    assert after.queue == before.queue, f"the served queue changed ({ctx})"
    for name, digest in before.files.items():
        assert after.files.get(name) == digest, f"model file {name} changed or vanished ({ctx})"
    referenced = {Path(a).name for _, _, a in after.versions if a}
    left = sorted(set(after.files) - set(before.files))
    assert not set(left) & referenced, f"a leftover file is referenced by a version ({ctx})"
    return left


class Labeler:
    """One annotator over HTTP, labeling one item at a time (alternating the two labels, so
    the first fit has both classes)."""

    def __init__(self, server: Server, token: str, pid: int):
        self.client = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            trust_env=False,
        )
        self.pid = pid
        self.n = 0

    def next(self) -> dict[str, Any]:
        response = self.client.post(f"/api/projects/{self.pid}/next", json={})
        assert response.status_code == 200, (response.status_code, response.text)
        return dict(response.json())

    def label(self, n: int) -> None:
        for _ in range(n):
            item = self.next()["item"]["id"]
            body = {"value": LABELS[self.n % 2], "request_id": uuid.uuid4().hex}
            response = self.client.post(f"/api/projects/{self.pid}/items/{item}/label", json=body)
            assert response.status_code == 200, (response.status_code, response.text)
            self.n += 1

    def close(self) -> None:
        self.client.close()


def test_worker_killed_mid_fit(
    db_url: str,
    tmp_path: Path,
    procs: list[Proc],
    make_project: Callable[..., tuple[OpenProject, str]],
    record: Callable[..., None],
    heavy: bool,
) -> None:
    """``kill -9`` the worker during a fit that would replace the served version (and, under
    ``--heavy``, during the first fit, featurising the pool). Nothing published changes --
    versions, queue, model files -- and the server keeps serving the last good queue; the
    restarted worker removes what the dead one left in ``models/`` and its fit completes."""
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    ctx = f"seed {seed}"
    n_items = 20_000 if heavy else 4_000  # a pool big enough that a fit takes a while
    later_kills = 4 if heavy else 3  # CI: until one lands mid-fit
    opened, _ = make_project(n_items, seed=seed, overlap=0.0, retrain_every=10)
    (token,) = _tokens(opened, 1)
    root, dialect = opened.folder.root, _dialect(db_url)
    server = Server(procs, root, db_url, tmp_path / "serve.log", worker=False)
    server.wait_ready()
    labeler = Labeler(server, token, opened.project_id)
    workers = 0

    def start_worker() -> Proc:
        nonlocal workers
        proc = Proc(["worker", str(root), "--db", db_url], tmp_path / f"worker-{workers}.log")
        procs.append(proc)
        workers += 1
        return proc

    def kill_during_fit(worker: Proc, delay: float, *, skip: int = 0) -> float:
        """Wait for a fit to start (logged after the first ``skip`` lines), kill the worker
        ``delay`` s later; how long it had been fitting."""
        worker.wait_line(FITTING, skip=skip, timeout=120)
        began = time.monotonic()
        time.sleep(delay)
        worker.kill9()
        return time.monotonic() - began

    def fit_completes(worker: Proc) -> float:
        """Wait for a new worker's first fit to be published; how long it took (by its log)."""
        done = worker.wait_line(VERSION, timeout=180)
        lines = worker.lines()
        began = max(i for i in range(done) if FITTING.search(lines[i]))
        return _log_time(lines[done]) - _log_time(lines[began])

    try:
        labeler.label(12)  # cold start: enough for the first fit
        # 1. The first fit, featurising the pool, killed early (--heavy only: CI spends its
        # time on the later fit, the one with a served version to protect).
        if heavy:
            before = Published.read(opened)
            spent = kill_during_fit(start_worker(), rng.uniform(0.02, 0.1))
            after = Published.read(opened)
            assert not after.versions, f"the first fit finished within {spent:.2f} s ({ctx})"
            left = _check_untouched(before, after, f"first fit killed ({ctx})")
            assert labeler.next()["why"]["kind"] == "cold-start"  # still serving, without a model
            record(
                "fault",
                fault="kill -9 worker mid-fit (first fit, featurising)",
                database=dialect,
                survived=True,
                killed_after_s=round(spent, 2),
                files_left=len(left),
                labels_lost=0,
                seed=seed,
            )

        worker = start_worker()
        first_fit = fit_completes(worker)
        fit_time = first_fit / 2  # a later fit reuses the features; measured below
        published = Published.read(opened)
        _check_published(opened, published, f"after the first fit ({ctx})")
        # The version and its items' predictions (written before the version is logged).
        served_files = {"v00001.joblib", "v00001.predictions.npy"}
        assert published.current == 1 and set(published.files) == served_files, (
            f"the restarted worker left {sorted(published.files)} ({ctx})"
        )

        # 2. Later fits, killed at a random moment (CI: early; --heavy: anywhere, the
        # publishing step included).
        mid_fit = 0
        for kill in range(later_kills):
            before = Published.read(opened)
            skip = len(worker.lines())  # before the labels: the fit may start at once
            labeler.label(10)  # retrain_every: the worker starts its next fit
            # --heavy: anywhere in the fit, sometimes after its commit; CI: early, and earlier
            # on each try.
            span = (0.0, 1.1 * fit_time) if heavy else (0.02 / (kill + 1), 0.2 / (kill + 1))
            delay = rng.uniform(*span)
            spent = kill_during_fit(worker, delay, skip=skip)
            after = Published.read(opened)
            _check_published(opened, after, f"after kill {kill + 1} ({ctx})")
            # Mid-fit unless the kill came after the commit (possible under --heavy).
            landed = len(after.versions) == len(before.versions)
            if landed:
                mid_fit += 1
                left = _check_untouched(before, after, f"kill {kill + 1} ({ctx})")
                # The last good version keeps serving: its queue hands out the next item.
                served = {(q[1], q[3]) for q in after.queue}
                handed = labeler.next()
                assert (handed["item"]["id"], handed["why"]["kind"]) in served, (
                    f"after kill {kill + 1} the server handed out {handed['why']} ({ctx})"
                )
            else:
                left = []
                assert after.current == (before.current or 0) + 1, (
                    f"the fit was reported but not published ({ctx})"
                )
            record(
                "fault",
                fault="kill -9 worker mid-fit",
                database=dialect,
                survived=True,
                killed_after_s=round(spent, 2),
                fit_seconds=round(fit_time, 2),
                landed_mid_fit=landed,
                files_left=len(left),
                labels_lost=0,
                seed=seed,
            )
            # 3. A new worker tidies models/ and completes the fit that was killed.
            worker = start_worker()
            if landed:
                fit_time = fit_completes(worker)
            published = Published.read(opened)
            _check_published(opened, published, f"after restart {kill + 1} ({ctx})")
            assert published.current == max(n for n, *_ in published.versions)
            ready = {Path(a).name for _, s, a in published.versions if s == "ready" and a}
            ready.add(f"v{published.current:05d}.predictions.npy")  # the served one's only
            assert set(published.files) == ready, (
                f"models/ holds {sorted(published.files)}, versions name {sorted(ready)} ({ctx})"
            )
            if mid_fit and not heavy:
                break
        assert mid_fit, f"no kill landed mid-fit ({ctx})"
    finally:
        labeler.close()


def test_the_servers_worker_killed_is_started_again(
    db_url: str,
    tmp_path: Path,
    procs: list[Proc],
    make_project: Callable[..., tuple[OpenProject, str]],
    record: Callable[..., None],
) -> None:
    """``kill -9`` the worker child of ``labelwise serve``, idle and then mid-fit: the server
    keeps answering, starts a new worker by itself (no one restarts anything), and that
    worker's fit completes and is served."""
    seed = random.SystemRandom().randrange(2**32)
    ctx = f"seed {seed}"
    opened, _ = make_project(2_000, seed=seed, overlap=0.0, retrain_every=10)
    (token,) = _tokens(opened, 1)
    server = Server(procs, opened.folder.root, db_url, tmp_path / "serve.log", worker=True)
    server.wait_ready()
    labeler = Labeler(server, token, opened.project_id)
    killed: list[int] = []

    def kill_worker() -> float:
        """SIGKILL the current worker child; seconds until the server has a new one."""
        pid = server.worker_pid()
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        began = time.monotonic()
        _wait(
            lambda: [
                p for p in _children(server.proc.pid) if p not in killed and _is_worker_child(p)
            ],
            30,
            f"a new worker child after killing {pid} ({ctx})",
        )
        return time.monotonic() - began

    try:
        idle = kill_worker()
        labeler.label(12)  # the first fit starts at once
        fitting = server.proc.wait_line(FITTING, timeout=120)
        mid_fit = kill_worker()
        landed = not any(VERSION.search(line) for line in server.proc.lines()[fitting:])
        handed = labeler.next()  # still answering: without a model, unless the fit had landed
        assert handed["why"]["kind"] == "cold-start" or not landed, handed["why"]
        server.proc.wait_line(VERSION, skip=fitting, timeout=180)
        assert server.proc.proc.poll() is None, "the server died"
        assert Published.read(opened).current == 1, f"no version served ({ctx})"
        labeler.label(1)  # the item held since before the model
        assert labeler.next()["why"]["kind"] != "cold-start"
        restarts = server.proc.text().count("starting a new one")
        assert restarts == 2, f"{restarts} restarts logged ({ctx}):\n{server.proc.text()[-2000:]}"
    finally:
        labeler.close()
    record(
        "fault",
        fault="kill -9 the server's worker child (idle, then mid-fit); the server restarts it",
        database=_dialect(db_url),
        survived=True,
        restarted_after_s=f"{idle:.1f}, {mid_fit:.1f}",
        landed_mid_fit=landed,
        labels_lost=0,
        seed=seed,
    )


def test_worker_start_removes_what_an_interrupted_publish_left(
    db_url: str, make_project: Callable[..., tuple[OpenProject, str]], record: Callable[..., None]
) -> None:
    """The narrow windows a random kill rarely hits, set up exactly: a worker killed while
    writing its artefact (a ``pending-*`` file) or between renaming it and committing the
    version (a version file no row names). The next worker removes both before its first
    cycle and leaves the served artefact and anything else in ``models/`` alone."""
    opened, _ = make_project(40, seed=0, overlap=0.0)
    models = opened.folder.models_dir
    with opened.db.write() as session:
        project = get_project(session, project_id=opened.project_id)
        record_version(
            session,
            project,
            n_labels=12,
            label_counts={"ham": 6, "spam": 6},
            metrics={},
            strategy="default",
            model_name="logreg",
            artefact="models/v00001.joblib",
            fit_seconds=0.1,
            queue=[],
        )
    served = models / "v00001.joblib"
    joblib.dump({"model": "served"}, served)
    half = models / f"pending-{uuid.uuid4().hex}.joblib"
    half.write_bytes(b"\x80\x04 truncated by a kill")
    unnamed = models / "v00002.joblib"
    joblib.dump({"model": "renamed, never committed"}, unnamed)
    notes = models / "README.txt"
    notes.write_text("not ours")

    run_worker(opened.folder, opened.db, poll_seconds=0.01, max_cycles=1)

    assert sorted(p.name for p in models.iterdir()) == ["README.txt", "v00001.joblib"]
    assert joblib.load(served) == {"model": "served"}
    record(
        "fault",
        fault="worker killed mid-publish (simulated: its files planted), restarted",
        database=_dialect(db_url),
        survived=True,
        files_left=2,
        files_removed=2,
        labels_lost=0,
    )


# ----------------------------------------------------------- import and export killed mid-way


def _contents(opened: OpenProject) -> tuple[tuple[Any, ...], ...]:
    """Every item and label row of the project, in a comparable form."""
    with opened.db.read() as session:
        items = session.execute(
            select(Item.row, Item.external_id, Item.content, Item.target, Item.n_labels)
            .where(Item.project_id == opened.project_id)
            .order_by(Item.row)
        ).all()
        labels = session.execute(
            select(Label.id, Label.item_id, Label.value, Label.is_current)
            .where(Label.project_id == opened.project_id)
            .order_by(Label.id)
        ).all()
    return tuple(tuple(r) for r in items), tuple(tuple(r) for r in labels)


def _writing(opened: OpenProject, db_url: str, wal_start: int) -> bool:
    """Whether some other connection is inside a transaction that has written rows."""
    if _dialect(db_url) == "postgresql":
        with opened.db.engine.connect() as conn:
            busy = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
            ).scalar()
        return bool(busy)
    # SQLite: the import's transaction spills its pages into the write-ahead log before it
    # commits; the log growing while the writer lock is taken means rows are being written.
    path = Path(opened.db.engine.url.database or "")
    wal = path.with_name(path.name + "-wal")
    if not wal.exists() or wal.stat().st_size <= wal_start:
        return False
    probe = sqlite3.connect(path, timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.rollback()
        return False
    except sqlite3.OperationalError:  # "database is locked": the importer holds the lock
        return True
    finally:
        probe.close()


def _ended_or_writing(proc: Proc, opened: OpenProject, db_url: str, wal_start: int) -> bool:
    return proc.proc.poll() is not None or _writing(opened, db_url, wal_start)


def _wal_size(opened: OpenProject, db_url: str) -> int:
    if _dialect(db_url) == "postgresql":
        return 0
    path = Path(opened.db.engine.url.database or "")
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_import_and_export_killed_midway(
    db_url: str,
    tmp_path: Path,
    procs: list[Proc],
    make_project: Callable[..., tuple[OpenProject, str]],
    record: Callable[..., None],
    heavy: bool,
) -> None:
    """``kill -9`` a ``labelwise import`` while its rows are being written: the project is as
    before (or, if the kill came after the commit, fully imported), never half; the same file
    then imports completely. ``kill -9`` an export while it writes: the previous output file
    is untouched; the next export is complete."""
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    ctx = f"seed {seed}"
    attempts = 4 if heavy else 3
    # Enough rows that SQLite spills them to its log before the commit (--heavy: a longer
    # window to kill in, at random moments).
    n_new = 20_000 if heavy else 10_000
    opened, _ = make_project(40, seed=seed, overlap=0.0)
    dialect, root = _dialect(db_url), opened.folder.root
    with opened.db.write() as session:  # some labels, which must stay as they are too
        project = get_project(session, project_id=opened.project_id)
        annotator, _ = create_annotator(session, project, name="ana", role="annotator")
        for i in range(5):
            assignment = next_item(session, project, annotator)
            assert assignment is not None
            submit_label(
                session, project, annotator, item_id=assignment.item.id, value=LABELS[i % 2]
            )
    before = _contents(opened)
    # CI: until one kill lands mid-way (at most three tries); --heavy: every try.
    kills = 0
    for attempt in range(attempts):
        data = _write_csv(
            tmp_path / f"new-{attempt}.csv",
            n_new,
            seed=seed + attempt + 1,
            prefix=f"n{attempt}-",
        )
        wal_start = _wal_size(opened, db_url)
        proc = Proc(
            ["import", str(root), str(data), "--db", db_url], tmp_path / f"import-{attempt}.log"
        )
        procs.append(proc)
        ended_or_writing = partial(_ended_or_writing, proc, opened, db_url, wal_start)
        _wait(ended_or_writing, 120, f"the import to write ({ctx})", period=0.01)
        time.sleep(rng.uniform(0, 0.2) if heavy else 0)
        exited = proc.proc.poll()
        if exited is None:
            proc.kill9()
        after = _contents(opened)
        landed = after == before
        if not landed:  # the kill came after the commit: all of it, then
            assert after[0][: len(before[0])] == before[0] and after[1] == before[1], (
                f"an import killed mid-way changed stored rows ({ctx})"
            )
            assert len(after[0]) == len(before[0]) + n_new, (
                f"an import killed mid-way stored {len(after[0]) - len(before[0])} of "
                f"{n_new} items ({ctx})"
            )
        record(
            "fault",
            fault="kill -9 labelwise import mid-way",
            database=dialect,
            survived=True,
            outcome="as before" if landed else "fully imported (killed after the commit)",
            labels_lost=0,
            seed=seed,
        )
        if landed:
            kills += 1
            # The same file imports completely afterwards.
            with opened.db.write() as session:
                project = get_project(session, project_id=opened.project_id)
                import_file(session, project, opened.folder, data)
            after = _contents(opened)
            assert after[0][: len(before[0])] == before[0] and after[1] == before[1]
            assert len(after[0]) == len(before[0]) + n_new
        assert [r[0] for r in after[0]] == list(range(len(after[0]))), "rows not consecutive"
        before = after
        if kills and not heavy:
            break
    assert kills, f"no kill landed while the import was writing ({ctx})"

    # Export: the previous output stays until the new one is complete.
    out = tmp_path / "export.jsonl"
    part = out.with_name(out.name + ".part")
    previous = "the previous export\n"
    out.write_text(previous)
    kills = 0
    for attempt in range(attempts):
        proc = Proc(
            ["export", str(root), "--format", "jsonl", "--out", str(out), "--db", db_url],
            tmp_path / f"export-{attempt}.log",
        )
        procs.append(proc)
        _wait(
            lambda: proc.proc.poll() is not None or part.exists(),  # noqa: B023
            120,
            f"the export to start writing ({ctx})",
            period=0.005,
        )
        time.sleep(rng.uniform(0, 0.3) if heavy else 0.02 / (attempt + 1))
        if proc.proc.poll() is None:
            proc.kill9()
        text = out.read_text()
        landed = text == previous
        if not landed:
            assert len(text.splitlines()) == len(before[0]), f"half an export ({ctx})"
            previous = text
        record(
            "fault",
            fault="kill -9 labelwise export mid-way",
            database=dialect,
            survived=True,
            outcome="previous file untouched" if landed else "complete (after the rename)",
            labels_lost=0,
            seed=seed,
        )
        kills += landed
        if kills and not heavy:
            break
    assert kills, f"no kill landed while the export was writing ({ctx})"
    # The next export replaces the leftover partial file and completes.
    with opened.db.read() as session:
        project = get_project(session, project_id=opened.project_id)
        export_project(session, project, "jsonl", out)
    assert len(out.read_text().splitlines()) == len(before[0])
    assert not part.exists()
