"""Pool-scoring throughput of the PyTorch MLP (``"mlp-torch"``) on the CPU and on CUDA, one run.

    python benchmarks/gpu_scoring.py [--rows 100000,1000000,10000000] [--features 50,300]
                                     [--classes 10] [--samples 10,20] [--repeats 3]
                                     [--out benchmarks/results]

For each pool (float32 Gaussian classes from ``speed.pool_data``: ``--rows`` x ``--features``,
``--classes`` classes), the model with its default settings (2 x 128 ReLU, dropout 0.25) is
fitted once on the pool's 1,000 labeled rows (on the CPU, not timed); the same fitted weights
then score the whole pool on each device:

- **predict_proba**: ``model.predict_proba(X)``, dropout off;
- **BALD, T passes**: what the ``bald`` strategy computes, ``bald_utilities`` over every row
  with ``T`` Monte Carlo dropout passes (reduced on the device by ``bald_scores``);
- **BALD, T passes, samples to host** (pools up to 1M rows, largest ``T``): the generic path for
  a model that only returns its samples: ``predict_proba_samples`` per 65,536-row chunk, then
  ``labelwise.strategies.scorers.bald`` in NumPy.

Each cell: rows per second from the median of ``--repeats`` timed calls (after one untimed
warm-up call on each device), and the ratio GPU / CPU of the two throughputs measured here, in
this run. CPU threads: torch's default (``torch.get_num_threads()``, printed). A pool size is
skipped when it would not fit in memory; a (method, device) is not run at the next size when its
time, grown linearly, would exceed ``--budget`` seconds.

Before timing, the CUDA outputs are checked against the CPU's (``predict_proba``) and against
``labelwise.strategies.scorers.bald`` of the CUDA samples (``bald_scores``); a mismatch is reported
and makes the script exit with status 1. Writes ``gpu_scoring.md`` and ``gpu_scoring.json`` into
``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelwise.models.torch_model import MLPTorchClassifier
from labelwise.strategies.backends import bald_utilities
from labelwise.strategies.scorers import bald
from speed import measure, pool_data

HOST_CHUNK = 65_536
HOST_REDUCTION_MAX_ROWS = 1_000_000


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU, cores, torch threads, GPU and CUDA."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(_memory_bytes(available=False) / 2**30, 1),
        "system": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "gpu": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def _memory_bytes(*, available: bool) -> int:
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES" if available else "SC_PHYS_PAGES")
        return int(pages * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def methods(samples: list[int], n_rows: int) -> list[tuple[str, Any]]:
    """(name, call(model, X)) for every timed method at this pool size."""

    def proba(model: MLPTorchClassifier, X: np.ndarray) -> Any:
        return model.predict_proba(X)

    def strategy_path(t: int) -> Any:
        def call(model: MLPTorchClassifier, X: np.ndarray) -> Any:
            rows = np.arange(X.shape[0], dtype=np.intp)
            return bald_utilities(model, X, rows, n_samples=t, rng=np.random.default_rng(0))

        return call

    def host_path(t: int) -> Any:
        def call(model: MLPTorchClassifier, X: np.ndarray) -> Any:
            out = np.empty(X.shape[0])
            for start in range(0, X.shape[0], HOST_CHUNK):
                block = X[start : start + HOST_CHUNK]
                out[start : start + len(block)] = bald(
                    model.predict_proba_samples(block, t, random_state=start)
                )
            return out

        return call

    found: list[tuple[str, Any]] = [("predict_proba", proba)]
    found += [(f"BALD, T={t}", strategy_path(t)) for t in samples]
    if n_rows <= HOST_REDUCTION_MAX_ROWS:
        found.append((f"BALD, T={max(samples)}, samples to host", host_path(max(samples))))
    return found


def check_cuda(model: MLPTorchClassifier, X: np.ndarray) -> list[str]:
    """The CUDA path against the CPU path and against the NumPy scorer; problems found."""
    part = X[:50_000]
    problems = []
    cpu = model.set_params(device="cpu").predict_proba(part)
    gpu = model.set_params(device="cuda").predict_proba(part)
    gap = float(np.abs(cpu - gpu).max())
    if gap > 1e-3:
        problems.append(f"predict_proba on CUDA differs from the CPU's by up to {gap:.2e}")
    samples = model.predict_proba_samples(part, 10, random_state=1)
    reduced = model.bald_scores(part, 10, random_state=1)
    gap = float(np.abs(reduced - bald(samples)).max())
    if gap > 1e-4:
        problems.append(f"bald_scores on CUDA differs from scorers.bald by up to {gap:.2e}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000,10000000")
    parser.add_argument("--features", default="50,300")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--samples", default="10,20", help="Monte Carlo passes T")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", type=float, default=10.0, help="one repeat above this")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.rows.split(","))
    samples = [int(t) for t in args.samples.split(",")]
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    info = machine()
    print(json.dumps(info), file=sys.stderr)

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for d in (int(v) for v in args.features.split(",")):
        last: dict[tuple[str, str], float] = {}
        for n in sizes:
            need = n * d * 4 * 1.5
            free = _memory_bytes(available=True)
            if free and need > free:
                rows.append({"rows": n, "features": d, "skipped": "not enough memory"})
                print(f"{n:,} x {d}: skipped, needs {need / 2**30:.0f} GiB", file=sys.stderr)
                continue
            start = time.perf_counter()
            X, y, labeled = pool_data(n, d, args.classes)
            made = time.perf_counter() - start
            model = MLPTorchClassifier(random_state=0, device="cpu").fit(X[labeled], y[labeled])
            if "cuda" in devices and n == sizes[0]:
                problems += [f"{n:,} x {d}: {p}" for p in check_cuda(model, X)]
            for name, call in methods(samples, n):
                record: dict[str, Any] = {"rows": n, "features": d, "method": name}
                for device in devices:
                    model.set_params(device=device)
                    per_row = last.get((name, device))
                    if per_row is not None and per_row * n > args.budget:
                        record[device] = None  # its time, grown linearly, exceeds the budget
                        continue
                    call(model, X[:10_000])  # warm-up: CUDA context, kernels, allocator
                    seconds, peak = measure(partial(call, model, X), args.repeats, args.slow)
                    last[(name, device)] = seconds / n
                    record[device] = {"seconds": seconds, "rows_per_s": n / seconds, "mib": peak}
                rows.append(record)
                print(_line(record), file=sys.stderr)
            print(f"({n:,} x {d} pool made in {made:.1f} s)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_scoring.json").write_text(
        json.dumps({"machine": info, "rows": rows, "problems": problems}, indent=1)
    )
    report = write_report(rows, info, args, problems)
    (args.out / "gpu_scoring.md").write_text(report)
    print(report)
    if problems:
        sys.exit(1)


def _line(record: dict[str, Any]) -> str:
    parts = [f"{record['rows']:,} x {record['features']} {record['method']}:"]
    for device in ("cpu", "cuda"):
        cell = record.get(device)
        if cell:
            parts.append(f"{device} {cell['rows_per_s']:,.0f} rows/s ({cell['seconds']:.3f} s)")
    return " ".join(parts)


def write_report(
    rows: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace, problems: list[str]
) -> str:
    def rate(cell: dict[str, Any] | None) -> str:
        if not cell:
            return "not run"
        value = cell["rows_per_s"]
        return f"{value / 1e6:,.2f} M" if value >= 1e6 else f"{value / 1e3:,.1f} k"

    gpu = info["gpu"]
    lines = [
        "# Pool scoring on the GPU against the CPU",
        "",
        "Generated by `python benchmarks/gpu_scoring.py` in one run "
        f"(`--rows {args.rows} --features {args.features} --classes {args.classes} "
        f"--samples {args.samples} --repeats {args.repeats}`).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads), "
        f"{info['memory_gib']} GiB RAM, {info['system']}; "
        + (
            f"GPU {gpu}, {info['gpu_memory_gib']} GiB, CUDA {info['cuda']}; "
            if gpu
            else "no CUDA device: CPU figures only; "
        )
        + f"Python {info['python']}, numpy {info['numpy']}, torch {info['torch']}.",
        "",
        "The `mlp-torch` model as shipped (2 x 128 ReLU, dropout 0.25), fitted on 1,000 labeled "
        f"rows of float32 pools with {args.classes} classes; every row of the pool scored. "
        "Cells: rows per second, in thousands (k) or millions (M), from the median of the "
        "repeats; GPU / CPU: the ratio of the two throughputs, both measured in this run. "
        "BALD is what the `bald` strategy computes (on-device reduction); *samples to host* "
        "is the generic path (T probability tables per 65,536-row chunk back to NumPy, "
        "`scorers.bald` there).",
        "",
        "| features | rows | method | CPU rows/s | GPU rows/s | GPU / CPU |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['features']} | {r['rows']:,} | — | {r['skipped']} | | |")
            continue
        cpu, cuda = r.get("cpu"), r.get("cuda")
        ratio = f"{cpu['seconds'] / cuda['seconds']:.1f}x" if cpu and cuda else "—"
        lines.append(
            f"| {r['features']} | {r['rows']:,} | {r['method']} | {rate(cpu)} | "
            f"{rate(cuda) if gpu else '—'} | {ratio} |"
        )
    lines.append("")
    if gpu:
        lines.append(
            "Checks (CUDA against the CPU's `predict_proba`, and `bald_scores` against "
            "`scorers.bald` of the same samples): "
            + ("passed." if not problems else "FAILED: " + "; ".join(problems))
        )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
