"""Serving latency under load: simulated annotators over HTTP while the worker retrains.

One command builds a synthetic 100,000-item text project (short messages recombined from the
bundled SMS collection, with a fixed seed), makes annotator tokens with ``labelwise token``,
starts ``labelwise serve`` (the worker runs in its own child process) and lets 4, 16 and 64
simulated annotators label at once, each for a fixed time, on SQLite and on PostgreSQL::

    python benchmarks/serve_latency.py                 # the full run (about 20 minutes)
    python benchmarks/serve_latency.py --quick         # 5,000 items, 5 s per level

Every annotator is one ``httpx.AsyncClient`` with its own Bearer token, looping: ``POST
/api/projects/{id}/next`` → think → ``POST /items/{id}/label`` with a ``request_id``. The
think time is drawn uniformly from ``--think-ms`` (default 500–2,500 ms: a fast expert answering a
short message by keyboard; the page prefetches, so a human never waits on "next" anyway). With
``--think-ms 0,50`` the annotators hammer the server instead: a throughput test, where latency is
mostly time spent queueing behind the other annotators on two cores. Each call's latency is
measured on the client, from sending the request to reading the whole response.

"While the worker retrains": ``retrain_every`` is set low (50) through the admin API, so fits
keep landing throughout. Fit windows are found from the worker's own activity: its CPU time is
sampled every 100 ms from ``/proc``, and a busy stretch of the worker that ends with a "model
version N" log line is a fit (featurising on the first one, fitting, scoring, publishing the
queue). A request is "during a fit" if it overlaps such a window. Before the measured levels, a
cold-start phase (the smallest level) runs until the first model has landed: that fit includes
TF-IDF featurisation of the whole pool, the heaviest the worker does; it is reported on its own
row.

Writes ``serve_latency.md`` (the table, the machine, the command) and, when under 2 MB,
``serve_latency_raw.csv.gz`` (one row per request) to ``--out``; ``--quick`` writes
``serve_latency_quick.md`` and ``serve_latency_quick_raw.csv.gz`` instead, so a trial never
overwrites the committed results. Temporary project folders, the servers and the PostgreSQL
database it creates (``lw_bench_*``) are removed at the end, also on Ctrl+C.

The load generator runs on the same machine as the server and the database, and takes CPU from
them: on a small machine its share is reported beside the results (``client CPU``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import gzip
import io
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

LABELS = ("ham", "spam")
#: Share of spam in the bundled collection (747 of 5,574), kept in the synthetic pool.
SPAM_SHARE = 747 / 5574
MAX_RAW_BYTES = 2 * 1024 * 1024
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
VERSION_LINE = re.compile(r"model version (\d+) on (\d+) labels")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The synthetic project


def synthesize(n: int, seed: int) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """``n`` short messages made of the bundled collection's sentences, and their true labels.

    Each message takes 1–3 sentences of one class (ham or spam, in the collection's
    proportions); a third of them get one word swapped for another word of the same class, so
    the pool has many near-duplicates but few exact ones, like real message streams.
    """
    from labelwise.datasets import bundled_path

    sentences: dict[str, list[str]] = defaultdict(list)
    words: dict[str, list[str]] = defaultdict(list)
    with bundled_path("sms-spam").open(encoding="utf-8") as fh:
        for line in fh:
            label, _, text = line.rstrip("\n").partition("\t")
            if label not in LABELS or not text.strip():
                continue
            parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+", text) if p.strip()]
            sentences[label].extend(parts)
            words[label].extend(text.split())
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    truth: dict[str, str] = {}
    for i in range(n):
        label = "spam" if rng.random() < SPAM_SHARE else "ham"
        k = rng.choices((1, 2, 3), weights=(0.55, 0.35, 0.10))[0]
        text = " ".join(rng.choice(sentences[label]) for _ in range(k))
        if rng.random() < 0.33:
            tokens = text.split()
            tokens[rng.randrange(len(tokens))] = rng.choice(words[label])
            text = " ".join(tokens)
        ext = f"m{i:07d}"
        rows.append((ext, text))
        truth[ext] = label
    return rows, truth


def write_csv(rows: list[tuple[str, str]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("id", "text"))
        writer.writerows(rows)


# --------------------------------------------------------------------------------------------
# Commands, databases, the server process


def labelwise_cmd() -> list[str]:
    exe = shutil.which("labelwise")
    return [exe] if exe else [sys.executable, "-m", "labelwise.cli"]


def run_labelwise(args: list[str], *, timeout: float = 1800) -> str:
    proc = subprocess.run(
        [*labelwise_cmd(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"labelwise {' '.join(args[:2])} failed:\n{proc.stderr.strip()}")
    return proc.stdout.strip()


def pg_admin_connect(base_url: str) -> Any:
    import psycopg

    return psycopg.connect(f"{base_url.rstrip('/')}/postgres", autocommit=True)


def pg_create(base_url: str, name: str) -> None:
    with pg_admin_connect(base_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def pg_drop(base_url: str, name: str) -> None:
    with pg_admin_connect(base_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_version(base_url: str) -> str:
    """The server's version and the settings that matter here (autovacuum decides whether a
    freshly imported table ever gets planner statistics)."""
    try:
        with pg_admin_connect(base_url) as conn:
            values = {
                name: str(conn.execute(f"SHOW {name}").fetchone()[0])
                for name in (
                    "server_version",
                    "autovacuum",
                    "fsync",
                    "synchronous_commit",
                    "shared_buffers",
                    "max_connections",
                )
            }
        version = values.pop("server_version")
        settings = ", ".join(f"{k}={v}" for k, v in values.items())
        return f"PostgreSQL {version} on 127.0.0.1 ({settings})"
    except Exception as exc:  # reported, not fatal: the run may not use PostgreSQL
        return f"PostgreSQL unavailable ({type(exc).__name__})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter (R running or runnable, S sleeping, ...) and its user +
    system CPU ticks, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[11]) + int(fields[12])  # state; utime + stime


def proc_ticks(pid: int) -> int | None:
    stat = proc_stat(pid)
    return None if stat is None else stat[1]


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(p) for p in fh.read().split())
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Server:
    """``labelwise serve`` in its own process group, its log in a file."""

    def __init__(self, project_dir: Path, db_url: str | None, log_path: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("w")
        args = ["serve", str(project_dir), "--port", str(self.port)]
        if db_url:
            args += ["--db", db_url]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [*labelwise_cmd(), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.worker_pid: int | None = None

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.base_url}/api/health").status_code == 200:
                        break
                time.sleep(0.3)
            else:
                raise RuntimeError(f"the server did not answer in {timeout:.0f} s")
        while time.monotonic() < deadline:
            workers = [
                p
                for p in children_of(self.proc.pid)
                if "spawn_main" in cmdline(p) and "resource_tracker" not in cmdline(p)
            ]
            if workers:
                self.worker_pid = workers[0]
                return
            time.sleep(0.2)
        raise RuntimeError("found no worker process under the server")

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_lines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)  # uvicorn shuts down, then the worker
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.worker_pid is not None and proc_ticks(self.worker_pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.worker_pid, signal.SIGKILL)
        self._log.close()


class Sampler(threading.Thread):
    """CPU time of the server, the worker, this process and the machine, every ``period`` s."""

    def __init__(
        self, server_pid: int, worker_pid: int, pg_database: str | None, period: float = 0.1
    ):
        super().__init__(daemon=True)
        self.pids = (server_pid, worker_pid, os.getpid())
        self.period = period
        # (time, server, worker, client, machine busy, machine total, worker state, database)
        self.samples: list[tuple[float, int, int, int, int, int, str, int]] = []
        self._halt = threading.Event()
        # PostgreSQL: the backends serving the bench database (found by their process title).
        self.pg_tag = f" {pg_database} " if pg_database else None
        self._pg_last: dict[int, int] = {}
        self._pg_ticks = 0
        self._n = 0

    def _postgres_ticks(self) -> int:
        if self.pg_tag is None:
            return 0
        if self._n % 10 == 0:  # look for new backends once a second
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) not in self._pg_last:
                    title = cmdline(int(entry))
                    if title.startswith("postgres:") and self.pg_tag in title:
                        # Born during the run (the bench database is new): count all its time.
                        self._pg_last[int(entry)] = 0
        for pid, last in list(self._pg_last.items()):
            ticks = proc_ticks(pid)
            if ticks is None:
                del self._pg_last[pid]
                continue
            self._pg_ticks += max(ticks - last, 0)
            self._pg_last[pid] = ticks
        return self._pg_ticks

    def sample(self) -> None:
        stats = [proc_stat(p) for p in self.pids]
        server, worker, me = (s[1] if s else 0 for s in stats)
        database = self._postgres_ticks()
        busy, total = machine_ticks()
        state = stats[1][0] if stats[1] else "X"
        self.samples.append((time.time(), server, worker, me, busy, total, state, database))
        self._n += 1

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def usage(self, start: float, end: float) -> dict[str, float]:
        """Cores used by each process, and the machine's busy share, between two times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {}
        a, b = inside[0], inside[-1]
        span = b[0] - a[0]
        cores = os.cpu_count() or 1
        machine = (b[4] - a[4]) / max(b[5] - a[5], 1)
        server, worker, client, database = ((b[i] - a[i]) / CLK_TCK / span for i in (1, 2, 3, 7))
        return {
            "server": server,
            "worker": worker,
            "client": client,
            "database": database,
            "machine": machine * cores,
            "other": max(machine * cores - server - worker - client - database, 0.0),
        }

    def worker_busy(self, threshold: float = 0.1, gap: float = 0.6) -> list[list[float]]:
        """Stretches where the worker was running or waiting for a core (state R or D), or
        used at least ``threshold`` of a core, joined across pauses shorter than ``gap`` (its
        idle wait between polls is 2 s)."""
        spans: list[list[float]] = []
        for prev, cur in zip(self.samples, self.samples[1:], strict=False):
            dt_ = cur[0] - prev[0]
            if dt_ <= 0:
                continue
            if cur[6] in "RD" or (cur[2] - prev[2]) / CLK_TCK / dt_ >= threshold:
                if spans and prev[0] - spans[-1][1] <= gap:
                    spans[-1][1] = cur[0]
                else:
                    spans.append([prev[0], cur[0]])
        return spans


#: ``retrain_every`` while retraining is paused: more labels than any run gives.
PAUSED_RETRAIN_EVERY = 1_000_000  # the largest the settings take


def wait_worker_idle(sampler: Sampler, *, timeout: float, quiet: float = 0.8) -> float:
    """Wait until the worker sleeps (state S, no CPU) for ``quiet`` seconds: its idle wait
    between polls, which it only reaches once the cycle in progress has ended."""
    start = time.time()
    n = max(int(quiet / sampler.period), 2)
    while time.time() - start < timeout:
        time.sleep(sampler.period)
        recent = sampler.samples[-n:]
        if (
            len(recent) == n
            and recent[0][0] >= start
            and all(s[6] == "S" for s in recent)
            and recent[-1][2] == recent[0][2]
        ):
            return time.time() - start
    return time.time() - start


def log_time(line: str) -> float | None:
    m = LOG_TIME.match(line)
    if not m:
        return None
    return dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def fit_completions(lines: list[str]) -> list[tuple[float, int]]:
    out = []
    for line in lines:
        m = VERSION_LINE.search(line)
        t = log_time(line)
        if m and t is not None:
            out.append((t, int(m.group(1))))
    return out


def fit_windows(
    busy: list[list[float]], completions: list[tuple[float, int]], fallback: float = 1.0
) -> list[tuple[float, float]]:
    """A fit runs from the start of the worker's busy stretch that ends in a "model version"
    line (or from the previous completion, when the worker never paused) to that line."""
    windows: list[tuple[float, float]] = []
    previous = 0.0
    for t, _ in sorted(completions):
        # The log line's clock has millisecond resolution; the sampler's stretches 100 ms.
        span = next((s for s in busy if s[0] - 0.2 <= t <= s[1] + 0.5), None)
        start = span[0] if span is not None else t - fallback
        windows.append((max(start, previous), t))
        previous = t
    return windows


# --------------------------------------------------------------------------------------------
# The simulated annotators


@dataclass
class Record:
    phase: str
    level: int
    annotator: int
    op: str
    start: float  # epoch seconds
    latency_ms: float
    status: int  # HTTP status; 0 = transport error, -1 = timeout
    kind: str = ""  # why the item was handed out (strategy, fallback, cold-start, ...)
    state: str = ""  # fit / busy / idle, filled in afterwards


@dataclass
class LevelResult:
    database: str
    phase: str
    level: int
    start: float
    end: float
    records: list[Record] = field(default_factory=list)
    usage: dict[str, float] = field(default_factory=dict)
    fits: int = 0
    loadavg: tuple[float, float] = (0.0, 0.0)


async def annotator_loop(
    i: int,
    client: httpx.AsyncClient,
    project_id: int,
    truth: dict[str, str],
    *,
    phase_of: Any,
    level: int,
    end: float,
    think: tuple[float, float],
    seed: int,
    records: list[Record],
) -> None:
    rng = random.Random(seed * 100_003 + i)
    next_url = f"/api/projects/{project_id}/next"

    async def call(op: str, url: str, body: dict[str, Any]) -> tuple[httpx.Response | None, Record]:
        start = time.time()
        t0 = time.perf_counter()
        response: httpx.Response | None = None
        try:
            response = await client.post(url, json=body)
            status = response.status_code
        except httpx.TimeoutException:
            status = -1
        except httpx.HTTPError:
            status = 0
        latency = (time.perf_counter() - t0) * 1000
        record = Record(phase_of(start), level, i, op, start, latency, status)
        records.append(record)
        return response, record

    while time.time() < end:
        response, record = await call("next", next_url, {})
        if response is None or response.status_code != 200:
            await asyncio.sleep(0.2)  # nothing open (204) or an error: back off a little
            continue
        payload = response.json()
        record.kind = str((payload.get("why") or {}).get("kind") or "")
        item = payload["item"]
        value = truth.get(str(item.get("external_id"))) or rng.choice(LABELS)
        pause = rng.uniform(*think) / 1000
        await asyncio.sleep(pause)
        body = {"value": value, "duration_ms": int(pause * 1000), "request_id": uuid.uuid4().hex}
        submitted, _ = await call(
            "submit", f"/api/projects/{project_id}/items/{item['id']}/label", body
        )
        if submitted is None or not submitted.is_success:
            # Give the item back so the next "next" does not return the same lease again.
            with contextlib.suppress(httpx.HTTPError):
                await client.post(
                    f"/api/projects/{project_id}/release", json={"items": [item["id"]]}
                )


async def run_level(
    base_url: str,
    tokens: list[str],
    project_id: int,
    truth: dict[str, str],
    *,
    level: int,
    phase: str,
    warmup: float,
    seconds: float | None,
    think: tuple[float, float],
    seed: int,
    until: Any = None,
    max_seconds: float = 900,
) -> tuple[list[Record], float, float]:
    """``level`` annotators for ``warmup`` + ``seconds`` (or until ``until()`` is true); returns
    the records and the measured window."""
    start = time.time()
    measure_from = start + warmup
    phase_of = lambda t: phase if t >= measure_from else "warmup"  # noqa: E731
    records: list[Record] = []
    clients = [
        httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
            trust_env=False,
        )
        for token in tokens[:level]
    ]
    end = measure_from + seconds if seconds is not None else start + max_seconds
    try:
        tasks = [
            asyncio.create_task(
                annotator_loop(
                    i,
                    c,
                    project_id,
                    truth,
                    phase_of=phase_of,
                    level=level,
                    end=end,
                    think=think,
                    seed=seed,
                    records=records,
                )
            )
            for i, c in enumerate(clients)
        ]
        if seconds is None:
            # Run until the condition holds; the loops stop at their next turn.
            while time.time() < end:
                await asyncio.sleep(0.5)
                if until is not None and await asyncio.to_thread(until):
                    break
            end = time.time()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        else:
            await asyncio.gather(*tasks)
    finally:
        for c in clients:
            await c.aclose()
    return records, measure_from, max(end, measure_from)


# --------------------------------------------------------------------------------------------
# One database


def admin_client(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
        trust_env=False,
    )


def project_id_of(base_url: str, token: str) -> int:
    with admin_client(base_url, token) as client:
        response = client.get("/", follow_redirects=False)
    m = re.search(r"/p/(\d+)/", response.headers.get("location", ""))
    if not m:
        raise RuntimeError(f"cannot find the project id (GET / answered {response.status_code})")
    return int(m.group(1))


def make_tokens(project_dir: Path, db_args: list[str], n: int) -> list[str]:
    def one(i: int) -> str:
        return run_labelwise(
            ["token", str(project_dir), "--name", f"annotator-{i:02d}", "--api", *db_args]
        ).splitlines()[-1]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, range(n)))


def run_database(
    database: str, args: argparse.Namespace, csv_path: Path, truth: dict[str, str], work: Path
) -> tuple[list[LevelResult], dict[str, Any]]:
    levels: list[int] = args.level_list
    project_dir = work / f"project-{database}"
    db_args: list[str] = []
    pg_name = None
    results: list[LevelResult] = []
    info: dict[str, Any] = {}
    server: Server | None = None
    sampler: Sampler | None = None
    try:
        if database == "postgresql":
            pg_name = f"lw_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            pg_create(args.pg_url, pg_name)
            db_args = ["--db", f"{args.pg_url.rstrip('/')}/{pg_name}"]
        t = time.perf_counter()
        say(f"{database}: labelwise init ({args.items:,} items)")
        admin = run_labelwise(
            [
                "init",
                str(project_dir),
                "--data",
                str(csv_path),
                "--labels",
                ",".join(LABELS),
                "--name",
                "serve-latency",
                *db_args,
            ]
        ).splitlines()[-1]
        info["init_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        n_cli = max(levels) if args.tokens == "cli" else 1
        say(f"{database}: {n_cli} annotator token(s) with labelwise token")
        tokens = make_tokens(project_dir, db_args, n_cli)
        info["token_seconds"] = time.perf_counter() - t

        say(f"{database}: labelwise serve")
        server = Server(
            project_dir, db_args[1] if db_args else None, work / f"serve-{database}.log"
        )
        server.wait_ready()
        assert server.worker_pid is not None
        pid = project_id_of(server.base_url, admin)
        if len(tokens) < max(levels):
            say(f"{database}: {max(levels) - len(tokens)} more tokens through the admin API")
            with admin_client(server.base_url, admin) as client:
                for i in range(len(tokens), max(levels)):
                    r = client.post(
                        f"/api/projects/{pid}/annotators", json={"name": f"annotator-{i:02d}"}
                    )
                    r.raise_for_status()
                    tokens.append(r.json()["token"])
        with admin_client(server.base_url, admin) as client:
            r = client.patch(
                f"/api/projects/{pid}/settings",
                json={"changes": {"retrain_every": args.retrain_every}},
            )
            r.raise_for_status()
        sampler = Sampler(server.proc.pid, server.worker_pid, pg_name)
        sampler.start()

        def first_model() -> bool:
            return bool(fit_completions(server.log_lines()))

        def set_retrain_every(value: int) -> None:
            with admin_client(server.base_url, admin) as client:
                r = client.patch(
                    f"/api/projects/{pid}/settings", json={"changes": {"retrain_every": value}}
                )
                r.raise_for_status()

        # Each level runs twice: with retraining on (the condition), then with
        # retraining paused (retrain_every set out of reach: the worker only polls), so the
        # same load is seen with and without fits. On a 100k pool the fits otherwise run back
        # to back, and a split by "fit running" alone would have next to nothing on one side.
        plan: list[tuple[str, int, float | None]] = [("cold-start", min(levels), None)]
        for n in levels:
            plan.append(("retraining", n, args.seconds))
            if not args.no_pause:
                plan.append(("paused", n, args.seconds))
        for phase, level, seconds in plan:
            if phase == "paused":
                set_retrain_every(PAUSED_RETRAIN_EVERY)
                waited = wait_worker_idle(sampler, timeout=args.first_fit_timeout)
                say(
                    f"{database}: retraining paused; the fit in progress ended after {waited:.1f} s"
                )
            what = "until the first model lands" if seconds is None else f"{seconds:g} s"
            say(f"{database}: {level} annotators, {phase}, {what}")
            load_before = os.getloadavg()[0]
            records, start, end = asyncio.run(
                run_level(
                    server.base_url,
                    tokens,
                    pid,
                    truth,
                    level=level,
                    phase=phase,
                    warmup=0.0 if seconds is None else args.warmup,
                    seconds=seconds,
                    think=args.think,
                    seed=args.seed,
                    until=first_model,
                    max_seconds=args.first_fit_timeout,
                )
            )
            if phase == "paused":
                set_retrain_every(args.retrain_every)
            if server.proc.poll() is not None:
                raise RuntimeError(f"the server died:\n{server.log_tail()}")
            result = LevelResult(database, phase, level, start, end, records)
            result.loadavg = (load_before, os.getloadavg()[0])
            results.append(result)
            n_ok = sum(1 for r in records if r.phase == phase and 200 <= r.status < 300)
            say(f"{database}: {level} annotators: {n_ok} requests in {end - start:.1f} s")
        time.sleep(0.3)
        sampler.stop()
        lines = server.log_lines()
        completions = fit_completions(lines)
        windows = fit_windows(sampler.worker_busy(), completions)
        busy = sampler.worker_busy()
        for result in results:
            result.usage = sampler.usage(result.start, result.end)
            result.fits = sum(1 for t, _ in completions if result.start <= t <= result.end)
            for rec in result.records:
                a, b = rec.start, rec.start + rec.latency_ms / 1000
                if any(s < b and a < e for s, e in windows):
                    rec.state = "fit"
                elif any(s < b and a < e for s, e in busy):
                    rec.state = "busy"
                else:
                    rec.state = "idle"
        with admin_client(server.base_url, admin) as client:
            r = client.get(f"/api/projects/{pid}/stats")
            if r.is_success:
                versions = r.json().get("versions", [])
                info["versions"] = len(versions)
                info["failed_versions"] = sum(1 for v in versions if v["status"] != "ready")
                info["fit_seconds"] = [v["fit_seconds"] for v in versions]
                info["labels"] = r.json().get("progress", {}).get("labels")
        info["fit_windows"] = windows
        info["errors_in_log"] = [ln for ln in lines if "Traceback" in ln or "ERROR" in ln][:5]
        info["worker_pid"] = server.worker_pid
    finally:
        # Each step on its own: a failing one must not leave a server or a database behind.
        if sampler is not None and sampler.is_alive():
            with contextlib.suppress(Exception):
                sampler.stop()
        if server is not None:
            try:
                server.stop()
            except Exception as exc:
                say(f"{database}: could not stop the server (pid {server.proc.pid}): {exc}")
        if pg_name is not None:
            try:
                pg_drop(args.pg_url, pg_name)
                say(f"{database}: dropped database {pg_name}")
            except Exception as exc:
                say(f"{database}: could not drop database {pg_name}: {exc}")
    return results, info


# --------------------------------------------------------------------------------------------
# Report


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_rows(results: list[LevelResult]) -> list[dict[str, Any]]:
    rows = []
    for res in results:
        measured = [r for r in res.records if r.phase == res.phase]
        span = max(res.end - res.start, 1e-9)
        ok = [r for r in measured if 200 <= r.status < 300]
        nxt = [r.latency_ms for r in ok if r.op == "next"]
        sub = [r.latency_ms for r in ok if r.op == "submit"]
        nxt_fit = [r.latency_ms for r in ok if r.op == "next" and r.state == "fit"]
        nxt_nofit = [r.latency_ms for r in ok if r.op == "next" and r.state != "fit"]
        rows.append(
            {
                "database": res.database,
                "annotators": res.level,
                "phase": res.phase,
                "seconds": span,
                "rps": len(measured) / span,
                "labels_per_s": sum(1 for r in ok if r.op == "submit") / span,
                "next": [pct(nxt, q) for q in (50, 95, 99)],
                "submit": [pct(sub, q) for q in (50, 95, 99)],
                "next_fit_p95": pct(nxt_fit, 95),
                "next_nofit_p95": pct(nxt_nofit, 95),
                "n_next": len(nxt),
                "n_next_fit": len(nxt_fit),
                "by_state": {
                    st: [r.latency_ms for r in ok if r.op == "next" and r.state == st]
                    for st in ("idle", "busy", "fit")
                },
                "fallback": sum(
                    1 for r in ok if r.op == "next" and r.kind in ("fallback", "cold-start")
                ),
                "no_item": sum(1 for r in measured if r.status == 204),
                "errors": sum(1 for r in measured if not (200 <= r.status < 300)),
                "fits": res.fits,
                "usage": res.usage,
                "loadavg": res.loadavg,
            }
        )
    return rows


def level_label(row: dict[str, Any], *, long: bool = False) -> str:
    n = str(row["annotators"])
    if row["phase"] == "cold-start":
        return n + (" (cold start: first fit, featurising the pool)" if long else " (cold start)")
    if row["phase"] == "paused":
        return n + ", retraining paused"
    return n


def markdown(
    rows: list[dict[str, Any]],
    infos: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    header: dict[str, str],
    raw_note: str,
) -> str:
    out = ["# Serving latency under load", ""]
    out.append(
        f"Simulated annotators over HTTP on a {args.items:,}-item text project; think time "
        f"{args.think[0]:g}–{args.think[1]:g} ms between an item arriving and its label being "
        f"sent. Each level runs {args.warmup:g} s of warm-up, then {args.seconds:g} s measured "
        f"while the worker retrains (`retrain_every={args.retrain_every}`)"
        + (
            ", then the same again with retraining paused (`retrain_every` out of reach: the "
            "worker only polls)."
            if not args.no_pause
            else "."
        )
        + " Before the levels, a cold-start phase labels until the first model lands (that fit "
        "also featurises the whole pool). Latency is measured on the client, from sending a "
        "request to reading its whole response. Produced by:"
    )
    out += ["", "```", header["command"], "```", ""]
    out.append("Machine and software:")
    out.append("")
    for key in (
        "date",
        "machine",
        "cpu",
        "memory",
        "os",
        "python",
        "sqlite",
        "postgresql",
        "packages",
        "git",
    ):
        out.append(f"- **{key}**: {header[key]}")
    out.append("")
    out.append(
        "The load generator, the server, the worker and the database share the machine; other "
        "processes also ran during the measurement (their CPU share is the column *other* of "
        "the second table). Treat absolute numbers as indicative, and compare rows of one run."
    )
    out.append("")
    out.append(
        "| database | annotators | requests/s | next p50 | next p95 | next p99 | submit p50 | "
        "submit p95 | submit p99 | next p95 during fits | errors |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        out.append(
            f"| {r['database']} | {level_label(r, long=True)} | {r['rps']:.1f} | "
            + " | ".join(fmt(v) for v in r["next"])
            + " | "
            + " | ".join(fmt(v) for v in r["submit"])
            + f" | {fmt(r['next_fit_p95'])} | {r['errors']} |"
        )
    out.append("")
    out.append(
        "Latencies in milliseconds. *next p95 during fits*: over the next-item calls that "
        "overlapped a fit (see below). *errors*: responses other than 2xx (204, nothing left "
        "to label, is not an error), plus timeouts and refused connections."
    )
    out.append("")
    out.append("Details per level:")
    out.append("")
    out.append(
        "| database | annotators | seconds | labels/s | next calls | random picks | during fits | "
        "fits landed | next p95 no fit | server CPU | worker CPU | PostgreSQL CPU | client CPU | "
        "other CPU | load avg |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        u = r["usage"] or {}
        share = r["n_next_fit"] / r["n_next"] if r["n_next"] else 0.0
        random_share = r["fallback"] / r["n_next"] if r["n_next"] else 0.0
        out.append(
            f"| {r['database']} | {level_label(r)} | {r['seconds']:.0f} | "
            f"{r['labels_per_s']:.1f} | {r['n_next']} | {random_share:.0%} | {share:.0%} | "
            f"{r['fits']} | {fmt(r['next_nofit_p95'])} | "
            f"{fmt(u.get('server'), 2)} | {fmt(u.get('worker'), 2)} | "
            f"{fmt(u.get('database'), 2) if r['database'] == 'postgresql' else '–'} | "
            f"{fmt(u.get('client'), 2)} | "
            f"{fmt(u.get('other'), 2)} | {r['loadavg'][0]:.1f}→{r['loadavg'][1]:.1f} |"
        )
    out.append("")
    out.append(
        "*CPU* columns are cores used on average (of "
        f"{os.cpu_count()}): the server process (uvicorn), the worker process, the PostgreSQL "
        "backends serving the bench database, this load generator, and everything else on the "
        "machine. *random picks*: share of next-item calls answered with a random open item "
        "(no model yet, or the ranked queue of the current model used up). *during fits*: "
        "share of next-item calls that overlapped a fit: the worker's busy stretch (sampled "
        'every 100 ms from /proc) that ended with a "model version" line in its log.'
    )
    out.append("")
    out.append(
        "Next-item latency by what the worker was doing (p50 / p95 ms, and the number of calls): "
        "*idle* sleeping between polls; *polling* busy without publishing a model (reading the "
        "labels and items to decide whether to fit); *fitting* a busy stretch that ended with a "
        "new model version."
    )
    out.append("")
    out.append("| database | annotators | worker idle | worker polling | worker fitting |")
    out.append("|---|---|---:|---:|---:|")
    for r in rows:
        cells = []
        for st in ("idle", "busy", "fit"):
            v = r["by_state"][st]
            cells.append(f"{fmt(pct(v, 50))} / {fmt(pct(v, 95))} ({len(v)})" if v else "–")
        out.append(f"| {r['database']} | {level_label(r)} | " + " | ".join(cells) + " |")
    out.append("")
    for db_name, info in infos.items():
        fits = info.get("fit_seconds") or []
        windows = info.get("fit_windows") or []
        lengths = [e - s for s, e in windows]
        out.append(
            f"- {db_name}: `labelwise init` took {info.get('init_seconds', 0):.0f} s, "
            f"`labelwise token` {info.get('token_seconds', 0):.0f} s; "
            f"{info.get('versions', '?')} model versions ({info.get('failed_versions', 0)} "
            f"failed), {info.get('labels', '?')} labels in all; fit windows median "
            f"{fmt(pct(lengths, 50))} s, longest {fmt(max(lengths) if lengths else None)} s "
            f"(model fit alone: median {fmt(pct(fits, 50), 2)} s)."
        )
        for line in info.get("errors_in_log") or []:
            out.append(f"  - server log: `{line[:200]}`")
    out.append("")
    out.append(raw_note)
    out.append("")
    return "\n".join(out)


def machine_header(args: argparse.Namespace) -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        kb = int(fh.readline().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    from importlib.metadata import version

    packages = ", ".join(
        f"{p} {version(p)}"
        for p in (
            "labelwise",
            "fastapi",
            "uvicorn",
            "sqlalchemy",
            "psycopg",
            "httpx",
            "scikit-learn",
        )
    )
    git = "unknown"
    with contextlib.suppress(Exception):
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        git = commit + (" (with uncommitted changes under src/)" if dirty else "")
    return {
        "command": "python benchmarks/serve_latency.py " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start",
        "cpu": cpu,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=FULL)",
        "postgresql": pg_version(args.pg_url) if "postgresql" in args.database_list else "not run",
        "packages": packages,
        "git": git,
    }


def raw_csv(results: list[LevelResult], t0: float) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        (
            "database",
            "phase",
            "annotators",
            "annotator",
            "op",
            "t_s",
            "latency_ms",
            "status",
            "kind",
            "worker",
        )
    )
    for res in results:
        for r in res.records:
            writer.writerow(
                (
                    res.database,
                    r.phase,
                    r.level,
                    r.annotator,
                    r.op,
                    f"{r.start - t0:.3f}",
                    f"{r.latency_ms:.2f}",
                    r.status,
                    r.kind,
                    r.state,
                )
            )
    return gzip.compress(buf.getvalue().encode(), compresslevel=9, mtime=0)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=None, help="Items in the project (100000).")
    parser.add_argument("--levels", default=None, help="Annotators at once, e.g. 4,16,64.")
    parser.add_argument(
        "--seconds", type=float, default=None, help="Measured seconds per level (60)."
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="Unmeasured seconds before each level (5)."
    )
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="sqlite and/or postgresql."
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--think-ms", default="500,2500", help="Think time range in ms (500,2500).")
    parser.add_argument("--retrain-every", type=int, default=50, help="Labels per retrain (50).")
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server; a database lw_bench_* is made and dropped there.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--first-fit-timeout", type=float, default=900, help="Longest cold-start phase, in seconds."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="A trial: 5,000 items, 5 s per level, 2 s warm-up; writes *_quick*.",
    )
    parser.add_argument(
        "--tokens",
        choices=("cli", "api"),
        default=None,
        help="Make annotator tokens with `labelwise token` (cli: about 2 s each "
        "here) or, all but the first, with the admin API (api, the default).",
    )
    parser.add_argument(
        "--no-pause",
        action="store_true",
        help="Skip the second run of each level with retraining paused.",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder.")
    args = parser.parse_args(argv)
    quick = args.quick
    args.items = args.items if args.items is not None else (5000 if quick else 100_000)
    args.seconds = args.seconds if args.seconds is not None else (5.0 if quick else 60.0)
    args.warmup = args.warmup if args.warmup is not None else (2.0 if quick else 5.0)
    args.levels = args.levels or "4,16,64"
    args.tokens = args.tokens or "api"
    try:
        args.level_list = sorted({int(x) for x in args.levels.split(",") if x.strip()})
        lo, hi = (float(x) for x in args.think_ms.split(","))
    except ValueError:
        parser.error("--levels takes integers like 4,16,64 and --think-ms a range like 0,50")
    if not args.level_list or min(args.level_list) < 1 or not 0 <= lo <= hi:
        parser.error("--levels must be positive and --think-ms a range lo,hi with 0 ≤ lo ≤ hi")
    args.think = (lo, hi)
    args.database_list = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = set(args.database_list) - {"sqlite", "postgresql"}
    if unknown or not args.database_list:
        parser.error(f"--databases takes sqlite and/or postgresql, not {sorted(unknown)}")
    if args.items < 100 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--items must be ≥ 100, --seconds > 0 and --warmup ≥ 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    header = machine_header(args)
    suffix = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lw-serve-latency-"))
    t0 = time.time()
    results: list[LevelResult] = []
    infos: dict[str, dict[str, Any]] = {}
    failed = False
    try:
        say(f"synthesising {args.items:,} messages (seed {args.seed})")
        rows, truth = synthesize(args.items, args.seed)
        csv_path = work / "items.csv"
        write_csv(rows, csv_path)
        del rows
        for database in args.database_list:
            res, info = run_database(database, args, csv_path, truth, work)
            results += res
            infos[database] = info
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        failed = True
    except Exception as exc:
        say(f"failed: {exc}")
        failed = True
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not results:
        return 1
    rows_ = summary_rows(results)
    raw = raw_csv(results, t0)
    raw_path = args.out / f"serve_latency{suffix}_raw.csv.gz"
    if len(raw) < MAX_RAW_BYTES:
        raw_path.write_bytes(raw)
        note = (
            f"Every request: `{raw_path.name}` (database, phase, annotators, annotator, op, "
            "start in seconds from the run's start, latency, status, why the item was chosen, "
            "worker state: fit / busy / idle)."
        )
    else:
        note = f"The per-request table ({len(raw) / 1e6:.1f} MB compressed) was too large to keep."
    text = markdown(rows_, infos, args, header, note)
    if failed:
        text += "\n**The run did not finish: the table holds the levels that completed.**\n"
    (args.out / f"serve_latency{suffix}.md").write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
