"""Query speed and memory: Labelwise against a numpy floor, modAL and scikit-activeml.

    python benchmarks/speed.py [--sizes 10000,100000,1000000] [--features 50,300]
                               [--classes 2,10] [--batch 100] [--repeats 3] [--no-peers]
                               [--out benchmarks/results/speed.md]

One run, side by side, on the same pools: float32 features (Gaussian classes), 1,000 labeled
rows, a logistic regression fitted on them (not timed), and a batch of 100 from the rest. For
each query: the median seconds over ``--repeats`` and the peak memory allocated during the call
(``tracemalloc``; the pool itself is not counted). Baselines:

- **numpy floor** for uncertainty: chunks of ``X @ W + b``, softmax, entropy or margin, then
  ``argpartition`` (what the fastest hand-written code does);
- **stacked-GEMM floor** for QBC with five members: the members' weights in one matrix, one
  product per chunk, argmax votes, vote entropy;
- **modAL** and **scikit-activeml**, installed by this script into their own environment
  (``benchmarks/.peers-venv``) and run there in a subprocess on the same pool file. A peer
  method whose time, grown linearly to the next pool size, would exceed ``--budget`` seconds is
  not run at that size (scikit-activeml's TypiClust takes over ten minutes at 1M rows).

Ratios (ours / floor) and the growth per 10x rows are computed from this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from labelwise import Pool
from labelwise.strategies.committee import Committee
from labelwise.strategies.query import query
from labelwise.strategies.selectors import top_k

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".peers-venv"
PEER_PACKAGES = ["modAL-python==0.4.2.1", "scikit-activeml==1.0.1"]
OURS = [
    "entropy",
    "margin",
    "margin+kmeans",
    "margin+clusters",
    "margin+kcenter",
    "margin+density",
    "default",
    "coreset",
    "badge",
]
PEERS = [
    "modal entropy",
    "modal margin",
    "modal ranked batch",
    "skactiveml entropy",
    "skactiveml margin",
    "skactiveml qbc",
    "skactiveml coreset",
    "skactiveml badge",
    "skactiveml clue",
    "skactiveml typiclust",
]
CHUNK = 65_536


def measure(call: Callable[[], Any], repeats: int, slow: float) -> tuple[float, float]:
    """Median seconds and peak MiB allocated during ``call``."""
    times, peak = [], 0
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        if times[-1] > slow:
            break
    return float(np.median(times)), peak / 2**20


def pool_data(n: int, d: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.0 / np.sqrt(d) * 4, size=(c, d)).astype(np.float32)
    y = rng.integers(0, c, size=n)
    X = rng.standard_normal(size=(n, d), dtype=np.float32)
    for start in range(0, n, CHUNK):
        X[start : start + CHUNK] += centers[y[start : start + CHUNK]]
    labeled = np.sort(rng.choice(n, size=1000, replace=False))
    return X, y, labeled


def floor_uncertainty(X, W, b, unlabeled_mask, batch, kind):
    """The hand-written numpy pipeline: chunked GEMM, softmax, utility, argpartition."""
    utility = np.empty(len(X), dtype=np.float32)
    for start in range(0, len(X), CHUNK):
        z = X[start : start + CHUNK] @ W
        z += b
        if z.shape[1] == 1:  # binary logistic regression: one score, the logistic function
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            z = np.column_stack([1.0 - p1, p1])
        else:
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
        if kind == "entropy":
            utility[start : start + CHUNK] = -(z * np.log(np.maximum(z, 1e-12))).sum(axis=1)
        else:
            top2 = np.partition(z, z.shape[1] - 2, axis=1)[:, -2:]
            utility[start : start + CHUNK] = top2[:, 0] - top2[:, 1]
    utility[~unlabeled_mask] = -np.inf
    return np.argpartition(-utility, batch)[:batch]


def floor_qbc(X, Ws, bs, unlabeled_mask, batch, n_classes):
    """Five members' weights stacked: one product per chunk, argmax votes, vote entropy."""
    W, b = np.concatenate(Ws, axis=1), np.concatenate(bs)
    m = len(Ws)
    utility = np.empty(len(X), dtype=np.float64)
    for start in range(0, len(X), CHUNK):
        z = X[start : start + CHUNK] @ W
        z += b
        if n_classes == 2:
            votes = (z > 0).astype(np.intp).T
        else:
            votes = z.reshape(len(z), m, n_classes).argmax(axis=2).T
        counts = np.stack([(votes == k).sum(axis=0) for k in range(n_classes)], axis=1) / m
        utility[start : start + CHUNK] = -(counts * np.log(np.maximum(counts, 1e-12))).sum(axis=1)
    utility[~unlabeled_mask] = -np.inf
    return np.argpartition(-utility, batch)[:batch]


def _weights(model):
    W = model.coef_.T.astype(np.float32)
    return W, model.intercept_.astype(np.float32)


def ensure_peers() -> Path | None:
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        print("installing modAL and scikit-activeml into", PEERS_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    done = subprocess.run(
        [str(python), "-c", "import modAL, skactiveml"], capture_output=True
    ).returncode
    if done != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return python


def run_peers(python, pool_file, labeled, y_lab, batch, repeats, methods, slow):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(
            {
                "pool": str(pool_file),
                "labeled": labeled.tolist(),
                "y": y_lab.tolist(),
                "batch": batch,
                "repeats": repeats,
                "methods": methods,
                "slow": slow,
            },
            fh,
        )
        spec = fh.name
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", ""))
    out = subprocess.run(
        [str(python), str(HERE / "_speed_peers.py"), spec],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if v},
    )
    os.unlink(spec)
    results = {}
    for line in out.stdout.splitlines():
        rec = json.loads(line)
        results[rec["method"]] = rec
    if out.returncode != 0:
        for m in methods:
            results.setdefault(m, {"method": m, "error": out.stderr.strip().splitlines()[-1]})
    return results


def run_config(
    n: int,
    d: int,
    c: int,
    args: argparse.Namespace,
    python: Path | None,
    skip: set[str],
    work: Path,
    rows: list[dict[str, Any]],
) -> None:
    """Time every method on one pool; append a row per method to ``rows``."""
    X, y, labeled = pool_data(n, d, c)
    model = LogisticRegression(max_iter=200).fit(X[labeled], y[labeled])
    pool = Pool(X, validate=False)
    pool.label(labeled, y[labeled])
    mask = np.ones(n, dtype=bool)
    mask[labeled] = False
    W, b = _weights(model)
    key = {"rows": n, "features": d, "classes": c}

    def record(who, method, seconds, peak, **extra):
        rows.append(
            {
                **key,
                "who": who,
                "method": method,
                "seconds": seconds,
                "peak_mb": peak,
                **extra,
            }
        )
        print(
            f"{n:>9,} x {d:<3} {c:>2} cls  {who:<11} {method:<22} {seconds:8.3f} s {peak:8.1f} MiB",
            flush=True,
        )

    for kind in ("entropy", "margin"):
        t, p = measure(
            lambda kind=kind: floor_uncertainty(X, W, b, mask, args.batch, kind),
            args.repeats,
            args.slow,
        )
        record("numpy floor", kind, t, p)
    rng = np.random.default_rng(0)
    committee = Committee.bagged(
        LogisticRegression(max_iter=200), X[labeled], y[labeled], n_members=5, rng=rng
    )
    Ws = [_weights(m)[0] for m in committee.members]
    bs = [_weights(m)[1] for m in committee.members]
    t, p = measure(lambda: floor_qbc(X, Ws, bs, mask, args.batch, c), args.repeats, args.slow)
    record("numpy floor", "qbc(5)", t, p)
    candidates = np.flatnonzero(mask)

    def our_qbc():
        u, _ = committee.disagreement(X, candidates, kind="vote")
        return candidates[top_k(u, args.batch, np.random.default_rng(0))]

    t, p = measure(our_qbc, args.repeats, args.slow)
    record("labelwise", "qbc(5)", t, p)
    for name in OURS:
        t, p = measure(
            lambda name=name: query(
                pool, model, strategy=name, batch_size=args.batch, random_state=0
            ),
            args.repeats,
            args.slow,
        )
        record("labelwise", name, t, p)
    if python is not None:
        pool_file = work / "pool.npy"
        np.save(pool_file, X)
        wanted = [m for m in PEERS if m not in skip]
        found = run_peers(
            python,
            pool_file,
            labeled,
            y[labeled],
            args.batch,
            args.repeats,
            wanted,
            args.slow,
        )
        for m in PEERS:
            if m in skip:
                record(
                    m.split()[0],
                    m.split(" ", 1)[1],
                    float("nan"),
                    float("nan"),
                    note=f"not run: over {args.budget:g} s expected from a smaller pool",
                )
                continue
            rec = found.get(m, {"error": "no result"})
            if "error" in rec:
                record(
                    m.split()[0],
                    m.split(" ", 1)[1],
                    float("nan"),
                    float("nan"),
                    note=rec["error"],
                )
                continue
            record(m.split()[0], m.split(" ", 1)[1], rec["seconds"], rec["peak_mb"])
            if rec["seconds"] * 10 > args.budget:  # the next size is 10x the rows
                skip.add(m)
        pool_file.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--features", default="50,300")
    parser.add_argument("--classes", default="2,10")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", type=float, default=30.0, help="one repeat above this")
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "speed.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    python = None if args.no_peers else ensure_peers()

    rows: list[dict[str, Any]] = []
    too_slow: dict[tuple[int, int], set[str]] = {}
    work = Path(tempfile.mkdtemp())
    for d in (int(v) for v in args.features.split(",")):
        for c in (int(v) for v in args.classes.split(",")):
            for n in sizes:
                run_config(n, d, c, args, python, too_slow.setdefault((d, c), set()), work, rows)
    (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=1))
    write_report(rows, args, sizes)


def write_report(rows, args, sizes) -> None:
    def get(n, d, c, who, method):
        for r in rows:
            if (r["rows"], r["features"], r["classes"], r["who"], r["method"]) == (
                n,
                d,
                c,
                who,
                method,
            ):
                return r
        return None

    def cell(r):
        if r is None:
            return "—"
        if np.isnan(r["seconds"]):
            return "not run" if "not run" in r.get("note", "") else "error"
        return f"{r['seconds']:.3f} s / {r['peak_mb']:.0f} MiB"

    configs = sorted({(r["features"], r["classes"]) for r in rows})
    methods = []
    for r in rows:
        if (r["who"], r["method"]) not in methods:
            methods.append((r["who"], r["method"]))
    lines = [
        "# Query speed and memory",
        "",
        "Generated by `python benchmarks/speed.py` in one run. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}.",
        "",
        f"Batch of {args.batch} from float32 pools; 1,000 labeled rows; logistic regression. "
        "Each cell: median seconds / peak MiB allocated during the call (the pool itself not "
        "counted).",
        "",
    ]
    for d, c in configs:
        lines += [f"## {d} features, {c} classes", ""]
        lines.append(
            "| who | method | "
            + " | ".join(f"{n:,} rows" for n in sizes)
            + " | growth per 10x rows |"
        )
        lines.append("|---|---|" + "---|" * (len(sizes) + 1))
        for who, method in methods:
            cells = [get(n, d, c, who, method) for n in sizes]
            growth = "—"
            if (
                len(sizes) >= 2
                and cells[-1]
                and cells[-2]
                and not np.isnan(cells[-1]["seconds"])
                and not np.isnan(cells[-2]["seconds"])
            ):
                growth = f"{cells[-1]['seconds'] / cells[-2]['seconds']:.1f}x"
            lines.append(
                f"| {who} | {method} | " + " | ".join(cell(x) for x in cells) + f" | {growth} |"
            )
        n = sizes[-1]
        lines.append("")
        for ours, floor in (("entropy", "entropy"), ("margin", "margin"), ("qbc(5)", "qbc(5)")):
            a, f = get(n, d, c, "labelwise", ours), get(n, d, c, "numpy floor", floor)
            if a and f:
                lines.append(
                    f"- {ours} at {n:,} rows: {a['seconds'] / f['seconds']:.2f}x the floor's time, "
                    f"{a['peak_mb']:.0f} MiB peak."
                )
        lines.append("")
    notes = [r for r in rows if r.get("note") and "not run" not in r["note"]]
    if notes:
        lines += ["Errors:", ""]
        lines += [
            f"- {r['who']} {r['method']} at {r['rows']:,} x {r['features']}, "
            f"{r['classes']} classes: {r['note']}"
            for r in notes
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
