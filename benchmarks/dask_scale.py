"""Scoring throughput on a Dask cluster against the number of workers, and against one machine.

    python benchmarks/dask_scale.py [--rows 2000000] [--features 50] [--classes 2]
                                    [--workers 1,2,4] [--strategies entropy,default]
                                    [--partitions 16] [--batch 100] [--repeats 3]
                                    [--out benchmarks/results/dask_scale.md]

One run, on one pool: float32 features (``speed.py``'s Gaussian classes, 1,000 labeled rows), a
logistic regression fitted on the labeled rows (not timed), the pool saved once as a single
``.npy`` file and once as a partitioned pool of ``--partitions`` files (the time to write it is
reported). For each strategy:

- **one machine**: :func:`labelwise.strategies.query.query` on the memory-mapped ``.npy``
  file, as the labeling worker runs it;
- **Dask, N workers**: :func:`labelwise.scale.score_partitioned` on a ``LocalCluster`` of N
  worker processes with one thread each, started before timing and warmed up with one untimed
  query (the workers import Labelwise and read the files once).

Each cell: the median seconds over ``--repeats`` (the client's peak memory from
``speed.measure``), rows per second (pool rows / seconds) and the ratio to one machine's time,
all from this one run. Every cluster batch is checked equal to the single-machine batch.

Local workers share this machine's cores: with more workers than cores they time-share them,
and the table measures the overhead of the distributed path as much as its parallelism. The
scaling a cluster of machines gives needs a machine with more cores, or several.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from labelwise import Pool
from labelwise.scale import open_partitioned, score_partitioned, write_partitioned
from labelwise.strategies.query import query
from speed import measure, pool_data

HERE = Path(__file__).resolve().parent


def machine() -> str:
    """The machine in words: CPU model and cores, memory, load, library versions."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        memory = f", {kib / 2**20:.0f} GiB memory"
    load = f", load average {os.getloadavg()[0]:.1f} at the start"
    import dask
    import distributed

    return (
        f"{cpu}, {os.cpu_count()} cores{memory}{load}; {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}"
    )


def same(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a.indices, b.indices) and a.reasons == b.reasons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--strategies", default="entropy,default")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dask_scale.md")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    described = machine()

    import distributed

    work = Path(tempfile.mkdtemp(prefix="dask-scale-"))
    try:
        X, y, labeled = pool_data(args.rows, args.features, args.classes, args.seed)
        np.save(work / "pool.npy", X)
        start = time.perf_counter()
        rows_per_partition = -(-args.rows // args.partitions)
        write_partitioned(X, work / "parts", rows_per_partition=rows_per_partition)
        write_seconds = time.perf_counter() - start
        del X
        X_map = np.load(work / "pool.npy", mmap_mode="r")
        parts = open_partitioned(work / "parts")
        model = LogisticRegression(max_iter=1000).fit(X_map[labeled], y[labeled])
        pool = Pool(X_map, validate=False)
        pool.label(labeled, y[labeled])
        print(
            f"{args.rows:,} rows x {args.features} features, {args.classes} classes; "
            f"{len(parts.partitions)} partitions written in {write_seconds:.2f} s",
            flush=True,
        )

        results: list[dict[str, Any]] = []
        reference: dict[str, Any] = {}
        for strategy in strategies:

            def single(s: str = strategy) -> Any:
                return query(pool, model, strategy=s, batch_size=args.batch, random_state=0)

            reference[strategy] = single()
            seconds, peak = measure(single, args.repeats, slow=600)
            results.append(
                {
                    "strategy": strategy,
                    "path": "one machine",
                    "workers": "",
                    "seconds": seconds,
                    "peak": peak,
                    "same": "reference",
                }
            )
            print(f"{strategy:12s} one machine  {seconds:7.3f} s", flush=True)

        for n in workers:
            with (
                distributed.LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                ) as cluster,
                distributed.Client(cluster) as client,
            ):
                for strategy in strategies:

                    def spread(s: str = strategy) -> Any:
                        return score_partitioned(
                            parts,
                            model,
                            client=client,
                            labeled=pool.labeled,
                            y_labeled=pool.y_labeled,
                            strategy=s,
                            batch_size=args.batch,
                            random_state=0,
                        )

                    equal = same(spread(), reference[strategy])  # also the warm-up
                    seconds, peak = measure(spread, args.repeats, slow=600)
                    results.append(
                        {
                            "strategy": strategy,
                            "path": "Dask",
                            "workers": n,
                            "seconds": seconds,
                            "peak": peak,
                            "same": "yes" if equal else "NO",
                        }
                    )
                    print(
                        f"{strategy:12s} {n} workers    {seconds:7.3f} s  same batch: {equal}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(results, args, described, write_seconds)


def write_report(
    results: list[dict[str, Any]], args: argparse.Namespace, described: str, write_seconds: float
) -> None:
    lines = [
        "# Scoring on a Dask cluster: throughput against the number of workers",
        "",
        "Generated by `python benchmarks/dask_scale.py "
        f"--rows {args.rows} --features {args.features} --classes {args.classes} "
        f"--workers {args.workers} --strategies {args.strategies} "
        f"--partitions {args.partitions} --batch {args.batch} --repeats {args.repeats}` "
        "in one run.",
        "",
        f"Machine: {described}.",
        "",
        f"A batch of {args.batch} from {args.rows:,} float32 rows x {args.features} features, "
        f"{args.classes} classes, 1,000 labeled; logistic regression. One machine: `query` on "
        f"the memory-mapped `.npy` file. Dask: `score_partitioned` on {args.partitions} `.npy` "
        f"partitions (written in {write_seconds:.2f} s), a `LocalCluster` of process workers "
        "with one thread each, warmed up by one untimed query. Seconds: median of "
        f"{args.repeats}; rows/s: pool rows / seconds; ratio: one machine's seconds / these "
        "seconds (above 1: faster than one machine); peak: the client's memory allocated during "
        "the call (`tracemalloc`; workers not counted).",
        "",
        "| strategy | path | workers | seconds | rows/s | vs one machine | client peak | "
        "same batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = {r["strategy"]: r["seconds"] for r in results if r["path"] == "one machine"}
    for r in sorted(results, key=lambda r: (r["strategy"], r["path"] != "one machine")):
        ratio = base[r["strategy"]] / r["seconds"]
        lines.append(
            f"| {r['strategy']} | {r['path']} | {r['workers']} | {r['seconds']:.3f} | "
            f"{args.rows / r['seconds'] / 1e6:.2f} M | {ratio:.2f}x | {r['peak']:.0f} MiB | "
            f"{r['same']} |"
        )
    lines += [
        "",
        f"This machine has {os.cpu_count()} cores, shared with other jobs while it ran (see the "
        "load average above): local workers beyond the core count time-share them, so these "
        "figures show the distributed path's overhead more than its parallelism. Run the same "
        "command on a machine with more cores (`--workers 1,2,4,8,16`) or against a real "
        "cluster for the scaling.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
