"""The published protocol of Lu, Li & Lin (2023), "Re-Benchmarking Pool-Based Active Learning for
Binary Classification" (arXiv:2306.08954, TMLR 2025), run on the LIBSVM files of Zhan et al.

For seed ``s`` on a dataset of ``n`` rows:

1. shuffle ``arange(n)`` with ``np.random.default_rng(s)``; the first ``int(0.6 n)`` rows are the
   training pool, the rest the test set;
2. a fresh ``np.random.default_rng(s)`` shuffles the pool; its first 20 rows are the initial
   labeled set (a seed whose initial set holds one class is skipped);
3. ``StandardScaler`` fitted on the whole pool, applied to every row;
4. one query per round (``batch_size`` in batch mode) until the pool is exhausted;
5. the task model ``SVC(kernel="rbf", gamma="auto", C=1)`` is refitted from scratch after every
   round and scored on the test set;
6. ``AUBC = trapz(a_1 … a_R, dx=1) / R`` over the test accuracies after each round (the initial
   model's excluded).

In batch mode (``batch_size > 1``, not part of the paper) the same definition would shrink with
the number of rounds (``R - 1`` intervals over ``R`` points), so AUBC there is the mean accuracy
over the label budget: the trapezoid area of ``a_0 … a_R`` over the label counts, divided by the
labels spent.

``uniform`` (random) and ``us-c`` (margin on that SVM: smallest ``|decision_function|``, ties in
pool order) follow the paper. Any Labelwise strategy can run beside them: it queries with the same
SVM by default, or with another model named after an ``@`` (``"badge@logreg"``); the model that is
evaluated is always the SVM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import NDArray
from sklearn.base import clone
from sklearn.datasets import load_svmlight_file
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.learning.evaluate import aubc
from labelwise.models.registry import make_model
from labelwise.strategies.base import QueryContext
from labelwise.strategies.factory import make_strategy

__all__ = [
    "PAPER_STRATEGIES",
    "FastRBFSVC",
    "SeedResult",
    "load_dataset",
    "markdown_table",
    "paired_difference",
    "published",
    "run_benchmark",
    "run_seed",
    "table_datasets",
]

#: Strategies whose definition is the paper's own.
PAPER_STRATEGIES = {"uniform": "Uniform", "us-c": "US-C"}
INITIAL = 20
TEST_RATIO = 0.4
#: Datasets with at least this many rows run 10 seeds in the paper (100 below).
LARGE_N = 2000
#: Present in the published table but not comparable: the shipped file differs from theirs.
NOT_COMPARABLE = {"tic"}


class FastRBFSVC(SVC):
    """``SVC(kernel="rbf")`` whose binary ``decision_function`` and ``predict`` use one matrix
    product over the support vectors instead of libsvm's pairwise loop.

    Same model, same numbers (to ~1e-12), about three times faster on the benchmark's pools.
    Multi-class models fall back to libsvm.
    """

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        if len(self.classes_) != 2 or self.kernel != "rbf":
            return super().decision_function(X)
        K = rbf_kernel(np.asarray(X, dtype=np.float64), self.support_vectors_, gamma=self._gamma)
        return K @ self.dual_coef_[0] + self.intercept_[0]

    def predict(self, X: Any) -> NDArray[Any]:
        if len(self.classes_) != 2 or self.kernel != "rbf":
            return super().predict(X)
        return self.classes_[(self.decision_function(X) > 0).astype(np.intp)]


def task_model() -> FastRBFSVC:
    """The paper's task model: ``SVC(kernel="rbf", gamma="auto", C=1.0)``."""
    return FastRBFSVC(kernel="rbf", gamma="auto", C=1.0)


def load_dataset(data_dir: str | Path, name: str) -> tuple[NDArray[np.float64], NDArray[Any]]:
    """``<data_dir>/<name>-svmstyle.txt`` as a dense matrix and its labels."""
    path = Path(data_dir) / f"{name}-svmstyle.txt"
    if not path.is_file():
        raise InvalidDataError(f"no such dataset file: {path}")
    X, y = load_svmlight_file(str(path))
    return np.asarray(X.toarray(), dtype=np.float64), np.asarray(y)


def published() -> dict[str, dict[str, tuple[float, float] | None]]:
    """The published mean ± std AUBC: ``{dataset: {column: (mean, std) or None}}``."""
    text = resources.files("labelwise.benchmark").joinpath("lu2023_published.csv").read_text()
    table: dict[str, dict[str, tuple[float, float] | None]] = {}
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in rows[1:]:
        dataset, column, mean, std = line.split(",")
        table.setdefault(dataset, {})[column] = (float(mean), float(std)) if mean else None
    return table


def table_datasets(data_dir: str | Path) -> list[str]:
    """Datasets of the published table that have a file in ``data_dir`` (``tic`` excluded)."""
    return [
        name
        for name in published()
        if name not in NOT_COMPARABLE and (Path(data_dir) / f"{name}-svmstyle.txt").is_file()
    ]


def default_seeds(n_rows: int) -> range:
    """The paper's seeds: 0-99, or 0-9 for datasets of 2,000 rows or more."""
    return range(10) if n_rows >= LARGE_N else range(100)


def protocol_split(n: int, seed: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(pool rows in the paper's order, test rows): steps 1 and 2 of the protocol."""
    idx = np.arange(n)
    np.random.default_rng(seed).shuffle(idx)
    n_train = int(n * (1 - TEST_RATIO))
    train, test = idx[:n_train].copy(), idx[n_train:]
    np.random.default_rng(seed).shuffle(train)
    return train.astype(np.intp), test.astype(np.intp)


@dataclass(frozen=True)
class SeedResult:
    """One (dataset, strategy, seed) run: AUBC, or None for a seed the protocol skips."""

    dataset: str
    strategy: str
    batch_size: int
    seed: int
    aubc: float | None
    n_queries: int
    seconds: float
    curve: tuple[tuple[int, float], ...] = ()


def _parse_strategy(name: str) -> tuple[str, str | None]:
    base, _, model = name.partition("@")
    return base, (model or None)


def check_strategy(name: str) -> None:
    """Raise InvalidParameterError for a name the benchmark cannot run."""
    base, model = _parse_strategy(name)
    if base in PAPER_STRATEGIES:
        if model is not None:
            raise InvalidParameterError(f"{base!r} is the paper's own strategy; it takes no @model")
        return
    make_strategy(base)
    if model is not None:
        make_model(model)


def run_seed(
    X: NDArray[np.float64],
    y: NDArray[Any],
    seed: int,
    strategy: str,
    *,
    batch_size: int = 1,
    dataset: str = "",
    curve_points: int = 60,
) -> SeedResult:
    """Run one seed of the protocol with ``strategy``; returns its AUBC.

    The initial model's accuracy and ``curve_points`` more, evenly spaced over the rounds, are
    kept as ``(labels, accuracy)`` pairs for plotting.
    """
    start = time.perf_counter()
    train, test = protocol_split(len(y), seed)
    initial, unlabeled = train[:INITIAL], train[INITIAL:]
    if len(np.unique(y[initial])) < 2:
        return SeedResult(dataset, strategy, batch_size, seed, None, 0, 0.0)
    scaler = StandardScaler().fit(X[train])
    Xp, Xt, yp, yt = scaler.transform(X[train]), scaler.transform(X[test]), y[train], y[test]

    base, query_model_name = _parse_strategy(strategy)
    rng = np.random.default_rng(seed)
    query_template = make_model(query_model_name) if query_model_name else task_model()
    strat = None if base in PAPER_STRATEGIES else make_strategy(base)

    labeled = np.zeros(len(train), dtype=bool)
    labeled[:INITIAL] = True
    random_sample = list(range(INITIAL))  # the seed set is a uniform sample
    accuracies: list[float] = []
    labels_after: list[int] = []
    with threadpool_limits(limits=1):
        model = task_model().fit(Xp[labeled], yp[labeled])
        initial_accuracy = float(np.mean(model.predict(Xt) == yt))
        while not labeled.all():
            candidates = np.flatnonzero(~labeled)
            k = min(batch_size, len(candidates))
            if base == "uniform":
                picks = rng.choice(candidates, size=k, replace=False)
            elif base == "us-c":
                margin = np.abs(model.decision_function(Xp[candidates]))
                picks = candidates[np.argsort(margin, kind="stable")[:k]]
            else:
                assert strat is not None
                query_model = (
                    model
                    if query_model_name is None
                    else clone(query_template).fit(Xp[labeled], yp[labeled])
                )
                ctx = QueryContext(
                    X=Xp,
                    candidates=candidates,
                    labeled=np.flatnonzero(labeled),
                    y_labeled=yp[labeled],
                    model=query_model,
                    estimator=query_template,
                    random_sample=np.asarray(random_sample, dtype=np.intp),
                )
                selection = strat.select(ctx, k, rng)
                picks = selection.indices
                random_sample += [
                    int(i)
                    for i, d in zip(picks, selection.details, strict=False)
                    if d.get("exploration")
                ]
            labeled[picks] = True
            model = task_model().fit(Xp[labeled], yp[labeled])
            accuracies.append(float(np.mean(model.predict(Xt) == yt)))
            labels_after.append(int(labeled.sum()))
    step = max(1, len(accuracies) // curve_points)
    keep = sorted(set(range(0, len(accuracies), step)) | {len(accuracies) - 1})
    return SeedResult(
        dataset=dataset,
        strategy=strategy,
        batch_size=batch_size,
        seed=seed,
        aubc=round(_aubc(initial_accuracy, accuracies, labels_after, batch_size), 5),
        n_queries=len(unlabeled),
        seconds=time.perf_counter() - start,
        curve=((INITIAL, initial_accuracy), *((labels_after[i], accuracies[i]) for i in keep)),
    )


def _aubc(a0: float, accuracies: list[float], labels: list[int], batch_size: int) -> float:
    if batch_size == 1:
        return aubc(accuracies)  # the paper's definition, initial model excluded
    return aubc([a0, *accuracies], [INITIAL, *labels])


def _load_log(path: Path) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    done: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[(rec["dataset"], rec["strategy"], rec["batch_size"], rec["seed"])] = rec
    return done


def run_benchmark(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    datasets: Sequence[str] | None = None,
    strategies: Sequence[str] = ("uniform", "us-c", "default"),
    seeds: Iterable[int] | None = None,
    batch_size: int = 1,
    n_jobs: int = 1,
    on_progress: Callable[[int, int, SeedResult], None] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run every (dataset, strategy, seed) not already in ``out_dir/runs.jsonl``.

    Each finished run is appended to ``runs.jsonl`` at once, so an interrupted benchmark resumes
    where it stopped. Returns ``{dataset: {strategy: {"aubc": [per seed], "seeds": [...]}}}``
    over every finished run of this batch size (also written to ``results.json``).
    """
    data_dir, out = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise InvalidDataError(f"no such data directory: {data_dir}")
    names = list(datasets) if datasets else table_datasets(data_dir)
    if not names:
        raise InvalidDataError(f"no dataset of the published table found in {data_dir}")
    for name in strategies:
        check_strategy(name)
    if batch_size < 1:
        raise InvalidParameterError(f"batch_size must be at least 1, got {batch_size}")
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.jsonl"
    done = _load_log(log)

    data = {name: load_dataset(data_dir, name) for name in names}
    seed_list = list(seeds) if seeds is not None else None
    jobs = []
    # Largest datasets first, so the long runs start early and the short ones fill the gaps.
    for name in sorted(names, key=lambda n: -len(data[n][1])):
        X, y = data[name]
        for seed in seed_list if seed_list is not None else default_seeds(len(y)):
            for strategy in strategies:
                if (name, strategy, batch_size, seed) not in done:
                    jobs.append(
                        delayed(run_seed)(X, y, seed, strategy, batch_size=batch_size, dataset=name)
                    )
    total, finished = len(jobs), 0
    if jobs:
        with log.open("a") as fh:
            for res in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
                record = {
                    "dataset": res.dataset,
                    "strategy": res.strategy,
                    "batch_size": res.batch_size,
                    "seed": res.seed,
                    "aubc": res.aubc,
                    "n_queries": res.n_queries,
                    "seconds": round(res.seconds, 2),
                    "curve": [list(p) for p in res.curve],
                }
                fh.write(json.dumps(record) + "\n")
                fh.flush()
                done[(res.dataset, res.strategy, res.batch_size, res.seed)] = record
                finished += 1
                if on_progress is not None:
                    on_progress(finished, total, res)
    results = collect(done.values(), batch_size=batch_size, datasets=names, strategies=strategies)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def collect(
    records: Iterable[dict[str, Any]],
    *,
    batch_size: int,
    datasets: Sequence[str],
    strategies: Sequence[str],
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{dataset: {strategy: {"aubc": [...], "seeds": [...], "skipped": [...]}}}``."""
    results: dict[str, dict[str, dict[str, Any]]] = {
        d: {s: {"aubc": [], "seeds": [], "skipped": []} for s in strategies} for d in datasets
    }
    for rec in sorted(records, key=lambda r: r["seed"]):
        if rec["batch_size"] != batch_size or rec["dataset"] not in results:
            continue
        entry = results[rec["dataset"]].get(rec["strategy"])
        if entry is None:
            continue
        if rec["aubc"] is None:
            entry["skipped"].append(rec["seed"])
        else:
            entry["aubc"].append(rec["aubc"])
            entry["seeds"].append(rec["seed"])
    return results


def _ms(values: Sequence[float]) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return float(arr.mean()), std, std / np.sqrt(len(arr)) if len(arr) else float("nan")


def markdown_table(results: dict[str, dict[str, dict[str, Any]]], *, batch_size: int = 1) -> str:
    """Our mean ± std AUBC per dataset and strategy, beside the published Uniform and US-C.

    For the paper's own strategies a column says how many standard errors of the difference
    (both stds over our seed count) our mean lies from theirs.
    """
    pub = published()
    strategies = list(next(iter(results.values())).keys()) if results else []
    head = ["dataset", "seeds"]
    for s in strategies:
        head.append(f"{s} (ours)")
        if s in PAPER_STRATEGIES and batch_size == 1:
            head += [f"{PAPER_STRATEGIES[s]} (published)", "Δ / SE"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dataset, per in results.items():
        n_seeds = max((len(v["aubc"]) for v in per.values()), default=0)
        cells = [dataset, str(n_seeds)]
        for s in strategies:
            values = per[s]["aubc"]
            if values:
                mean, std, _ = _ms(values)
                cells.append(f"{mean:.4f} ± {std:.4f}")
            else:
                cells.append("—")
            if s in PAPER_STRATEGIES and batch_size == 1:
                ref = pub.get(dataset, {}).get(PAPER_STRATEGIES[s])
                if ref is None or not values:
                    cells += ["—", "—"]
                else:
                    # Standard error of the difference of two means over the same number of seeds.
                    se = np.sqrt((std**2 + ref[1] ** 2) / len(values))
                    cells += [f"{ref[0]:.4f} ± {ref[1]:.4f}", f"{(mean - ref[0]) / se:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paired(
    a: dict[str, Any], b: dict[str, Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """AUBC of two strategies on the seeds both finished, aligned by seed."""
    common = sorted(set(a["seeds"]) & set(b["seeds"]))
    pa = dict(zip(a["seeds"], a["aubc"], strict=True))
    pb = dict(zip(b["seeds"], b["aubc"], strict=True))
    return np.asarray([pa[s] for s in common]), np.asarray([pb[s] for s in common])


def paired_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, float, float]:
    """``(seeds, mean of a − b, standard error)`` over the seeds both strategies finished.

    Paired by seed (same split, same initial labels), so the split's luck cancels out; the
    standard error is 0 with fewer than two common seeds.
    """
    pa, pb = _paired(a, b)
    diff = pa - pb
    if len(diff) == 0:
        return 0, float("nan"), 0.0
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return len(diff), float(diff.mean()), se
