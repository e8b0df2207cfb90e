"""A pool larger than memory: import 10 million tabular rows and query them, time and peak memory.

    python benchmarks/large_pool.py [--rows 10000000] [--features 50] [--labeled 1000]
        [--workdir DIR] [--keep] [--out benchmarks/results/large_pool.md]

One run, every step in its own subprocess, measured from outside (wall seconds; peak resident
memory from ``wait4``, and the peak of its anonymous part sampled from ``/proc`` on Linux: the
rest is the page cache of memory-mapped files, which the kernel reclaims at will):

1. **generate** a seeded synthetic pool on disk: ``--rows`` x ``--features`` float32 Gaussian
   features of two classes, written as Parquet a million rows at a time, and a labeled seed
   file of ``--labeled`` rows from the same distribution;
2. ``labelwise init`` a project from the seed file (its labels imported);
3. ``labelwise import`` the pool into it: items inserted in bulk, features written once into
   the project's memory-mapped feature file;
4. **query**: one worker cycle (:func:`labelwise.services.worker.train_once`, what ``labelwise
   worker`` runs): fit the project's model on the labeled seed, score every open row in chunks, pick
   the batch (margin, k-means among the top, exploration and routine items, near-duplicates,
   explanations) and write the queue and the model version.

Baselines, measured in the same run, on the same files:

- **import floor**: the Parquet file read batch by batch into float32 and written to an
  ``.npy`` file, numpy and pyarrow only (what any importer must at least do);
- **query floor**: a logistic regression fitted on the seed, then the margin of every row of
  the memory-mapped features, a chunk at a time, and the 100 smallest by ``argpartition``.

The report goes to ``--out`` with the machine's description; the work folder is removed unless
``--keep``. Mind the disk: 10M x 50 needs about 2 GB of Parquet, 2 GB of features, 1.2 GB of
database and 2 GB for the floor's copy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
GENERATE_CHUNK = 1_000_000
SEED = 0


# ------------------------------------------------------------------------------ measuring


def _anon_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_measured(name: str, argv: list[str], log: Path) -> dict[str, Any]:
    """Run ``argv``; wall seconds, peak RSS (MiB) and peak anonymous RSS (MiB, sampled)."""
    print(f"== {name}: {' '.join(argv[:3])} ...", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        peak_anon = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_anon
            while not done.is_set():
                value = _anon_kib(proc.pid)
                if value is not None:
                    peak_anon = max(peak_anon, value)
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{name} failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    result = {
        "step": name,
        "seconds": seconds,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "peak_anon_mib": peak_anon / 1024 if peak_anon else None,
    }
    print(
        f"   {seconds:.1f} s, peak RSS {result['peak_rss_mib']:.0f} MiB"
        + (f" (anonymous {result['peak_anon_mib']:.0f} MiB)" if peak_anon else ""),
        flush=True,
    )
    return result


# ------------------------------------------------------------------------------ child steps


def generate(work: Path, rows: int, features: int, labeled: int) -> None:
    """Two Gaussian classes, float32, seeded; the pool without labels, the seed with them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    shift = np.zeros(features, dtype=np.float32)
    shift[: max(1, features // 5)] = 1.0  # a fifth of the features tell the classes apart
    names = [f"f{j}" for j in range(features)]

    def block(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        X = rng.standard_normal((n, features), dtype=np.float32)
        X += np.where(y[:, None] == 1, shift, -shift)
        return X, y

    def table(X: np.ndarray, extra: dict[str, Any]) -> Any:
        columns = {n: X[:, j] for j, n in enumerate(names)}
        return pa.table({**extra, **columns})

    X, y = block(labeled)
    ids = np.char.add("seed-", np.arange(labeled).astype(str))
    pq.write_table(table(X, {"id": ids, "label": y.astype(str)}), work / "seed.parquet")
    schema = table(block(1)[0], {}).schema
    with pq.ParquetWriter(work / "pool.parquet", schema) as writer:
        for start in range(0, rows, GENERATE_CHUNK):
            X, _ = block(min(GENERATE_CHUNK, rows - start))
            writer.write_table(table(X, {}), row_group_size=GENERATE_CHUNK)


def import_floor(work: Path) -> None:
    """Read the pool's Parquet batch by batch and write its features to an .npy file."""
    import pyarrow.parquet as pq
    from numpy.lib import format as npy

    # Bounded reading, as Labelwise reads: buffered columns, no pre-buffering of the file.
    parquet = pq.ParquetFile(work / "pool.parquet", buffer_size=2**20, pre_buffer=False)
    n, d = parquet.metadata.num_rows, parquet.metadata.num_columns
    out = npy.open_memmap(work / "floor.npy", mode="w+", dtype=np.float32, shape=(n, d))
    start = 0
    for batch in parquet.iter_batches(batch_size=65_536):
        block = np.column_stack([c.to_numpy() for c in batch.columns]).astype(np.float32)
        out[start : start + len(block)] = block
        start += len(block)
    out.flush()


def query_floor(work: Path, labeled: int) -> None:
    """Fit on the seed, margin of every pooled row by chunks, the 100 smallest."""
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression

    seed = pq.read_table(work / "seed.parquet").to_pandas()
    X_seed = seed.drop(columns=["id", "label"]).to_numpy(np.float32)
    model = LogisticRegression(max_iter=2000).fit(X_seed, seed["label"])
    w = model.coef_[0].astype(np.float32)
    b = np.float32(model.intercept_[0])
    X = np.load(work / "floor.npy", mmap_mode="r")
    margins = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), 65_536):
        z = X[start : start + 65_536] @ w + b
        p = 1.0 / (1.0 + np.exp(-z))
        margins[start : start + 65_536] = np.abs(2 * p - 1)
    top = np.argpartition(margins, 100)[:100]
    print(json.dumps({"picked": len(top), "labeled": labeled}))


def query(project: Path) -> None:
    """One worker cycle, forced (the seed is labeled; no new labels are needed)."""
    from labelwise.services.worker import train_once
    from labelwise.store.folder import ProjectFolder

    folder = ProjectFolder.open(project)
    db = folder.connect()
    outcome = train_once(folder, db, force=True)
    print(json.dumps(outcome.__dict__))
    if outcome.status != "trained":
        sys.exit(f"the worker did not train: {outcome}")


# ------------------------------------------------------------------------------ the report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        import pyarrow

        arrow = f", pyarrow {pyarrow.__version__}"
    except ImportError:
        arrow = ""
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, numpy {np.__version__}"
        f"{arrow}, SQLite {sqlite3.sqlite_version}"
    )


def sizes(work: Path) -> dict[str, float]:
    project = work / "project"
    database = sum(p.stat().st_size for p in project.glob("labelwise.sqlite3*") if p.is_file())
    features = (project / "features" / "tabular.npy").stat().st_size
    return {
        "parquet_mib": (work / "pool.parquet").stat().st_size / 2**20,
        "database_mib": database / 2**20,
        "features_mib": features / 2**20,
    }


def section(args: argparse.Namespace, rows: int, run: dict[str, Any]) -> list[str]:
    by = {s["step"]: s for s in run["steps"]}
    size = run["sizes"]
    n = rows + args.labeled

    def line(step: str, what: str) -> str:
        s = by[step]
        anon = "—" if s["peak_anon_mib"] is None else f"{s['peak_anon_mib']:,.0f}"
        return f"| {what} | {s['seconds']:,.1f} | {s['peak_rss_mib']:,.0f} | {anon} |"

    imported = by["import"]["seconds"]
    queried = by["query"]["seconds"]
    return [
        f"## {rows:,} rows",
        "",
        f"Load average when this size started: {run['load']}.",
        "",
        "| step | seconds | peak RSS (MiB) | peak anonymous (MiB) |",
        "|---|---:|---:|---:|",
        line("generate", "generate the Parquet pool (not Labelwise)"),
        line("init", f"`labelwise init` from the {args.labeled:,}-row labeled seed"),
        line("import", f"`labelwise import` of the {rows:,}-row pool"),
        line("import floor", "import floor: Parquet batches to an .npy file"),
        line("query", "query: one worker cycle (fit, score every row, queue of 100)"),
        line("query floor", "query floor: fit, margin of every row by chunks, argpartition"),
        "",
        f"- Import: {imported:,.1f} s, {1e6 * imported / rows:.1f} µs an item, "
        f"{imported / by['import floor']['seconds']:.1f}x the floor's time.",
        f"- Query: {queried:,.1f} s, {queried / by['query floor']['seconds']:.1f}x the floor's "
        "time (the cycle also standardises the pool for neighbours, searches near-duplicates "
        "among all open rows, explains the picks and writes the queue).",
        f"- On disk for {n:,} items: database {size['database_mib']:,.0f} MiB "
        f"({size['database_mib'] * 2**20 / n:.0f} bytes an item), feature file "
        f"{size['features_mib']:,.0f} MiB; the Parquet source was {size['parquet_mib']:,.0f} MiB.",
        "",
    ]


def report(args: argparse.Namespace, runs: dict[int, dict[str, Any]]) -> str:
    sizes_given = ",".join(str(r) for r in runs)
    lines = [
        "# A pool larger than memory: import and query",
        "",
        f"Generated by `python benchmarks/large_pool.py --rows {sizes_given}` in one run. "
        f"Machine: {machine()}.",
        "",
        f"Float32 pools of {args.features} features (Parquet, two Gaussian classes, seed "
        f"{SEED}) imported into a project started from {args.labeled:,} labeled rows; SQLite "
        "database. Each step is its own process. Peak RSS counts the pages of memory-mapped "
        "files the process touched (page cache, which the kernel reclaims at will); the "
        "anonymous part is what the process itself allocated (sampled every 50 ms). The "
        "machine is shared: the load average says how busy it was.",
        "",
    ]
    for rows, run in runs.items():
        lines += section(args, rows, run)
    return "\n".join(lines)


def measure_size(args: argparse.Namespace, rows: int, work: Path) -> dict[str, Any]:
    """Every step at one pool size, in ``work`` (left empty afterwards unless ``--keep``)."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())  # other work on the machine
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--workdir", str(work), "--rows", str(rows)]
    common += ["--features", str(args.features), "--labeled", str(args.labeled)]
    cli = [sys.executable, "-m", "labelwise.cli"]
    seed = ["--label-column", "label", "--with-labels"]
    project = str(work / "project")
    steps = []
    try:
        steps.append(run_measured("generate", [*me, *common, "--step", "generate"], work / "g.log"))
        steps.append(
            run_measured(
                "init",
                [*cli, "init", project, "--data", str(work / "seed.parquet"), *seed],
                work / "init.log",
            )
        )
        steps.append(
            run_measured(
                "import",
                [*cli, "import", project, str(work / "pool.parquet")],
                work / "import.log",
            )
        )
        steps.append(run_measured("query", [*me, *common, "--step", "query"], work / "q.log"))
        steps.append(
            run_measured("import floor", [*me, *common, "--step", "import-floor"], work / "if.log")
        )
        steps.append(
            run_measured("query floor", [*me, *common, "--step", "query-floor"], work / "qf.log")
        )
        return {"load": load, "steps": steps, "sizes": sizes(work)}
    finally:
        if not args.keep:
            for name in ("project", "pool.parquet", "seed.parquet", "floor.npy"):
                target = work / name
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="pool sizes, comma-separated")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--labeled", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "large_pool.md")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # the children
    args = parser.parse_args()

    if args.step:
        work, rows = args.workdir, int(args.rows)
        if args.step == "generate":
            generate(work, rows, args.features, args.labeled)
        elif args.step == "import-floor":
            import_floor(work)
        elif args.step == "query-floor":
            query_floor(work, args.labeled)
        elif args.step == "query":
            query(work / "project")
        return

    sizes_wanted = [int(v) for v in args.rows.split(",")]
    if min(sizes_wanted) < 1000 or args.labeled < 20:
        parser.error("every --rows must be at least 1000, and --labeled at least 20")
    made = args.workdir is None
    root = Path(tempfile.mkdtemp(prefix="labelwise-large-")) if made else args.workdir
    runs: dict[int, dict[str, Any]] = {}
    try:
        for rows in sizes_wanted:
            work = root / f"rows-{rows}"
            if work.exists() and any(work.iterdir()):
                parser.error(f"{work} is not empty")
            work.mkdir(parents=True, exist_ok=True)
            runs[rows] = measure_size(args, rows, work)
        text = report(args, runs)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        payload = {"machine": machine(), "runs": {str(k): v for k, v in runs.items()}}
        args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
        print()
        print(text)
    finally:
        if made and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
