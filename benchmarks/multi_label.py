"""Multi-label active learning: which strategy earns the macro-F1 of a label-set model soonest.

    python benchmarks/multi_label.py [--data-dir ../shared/data] [--seeds 0-4] [--jobs 2]

Two multi-label text sets of the shared data:

- ``goemotions``: GoEmotions with the Ekman taxonomy (Demszky et al., ACL 2020; the Ekman
  mapping of the train split from monologg/GoEmotions-pytorch; Apache 2.0): Reddit comments,
  each with a set of the 7 labels anger, disgust, fear, joy, neutral, sadness, surprise (the
  file's ``labels`` column, names joined by ``;``).
- ``davidson_votes``: the Davidson et al. hate-speech tweets (ICWSM 2017; MIT licence), at
  least three CrowdFlower annotators per tweet. An item carries each category (hate_speech,
  offensive, neither) that at least one of its annotators chose, read from the file's vote
  counts (``votes_hate_speech``, ``votes_offensive``, ``votes_neither`` > 0): the set of
  readings the annotators saw in it. The texts are offensive.

Protocol, per data set: a fixed random subsample of ``--subsample`` items (seed 0), TF-IDF on
it (``--features``: any representation of ``labelwise simulate``, e.g. its default
``tfidf+embedding``), then ``labelwise simulate``'s multi-label protocol: per seed a random
75/25 split into pool and test set (the same for every strategy of a seed), the same random
``--initial`` labels for every strategy of a seed, batches of ``--batch-size`` up to
``--budget`` labels, a :class:`~labelwise.models.multilabel.LabelSetClassifier` over ``logreg``
(one-vs-rest, per-label thresholds chosen by 3-fold cross-validation at every fit). Reported:
AUBC (area under the learning curve over labels, divided by its width) of macro-F1 and of
micro-F1, mean ± standard error over seeds; the paired difference from ``random`` (mean ±
standard error of the per-seed differences, the same split and initial set on both sides); the
scores at the budget; the full-pool model's scores; seconds per run.

Each (data set, strategy) is written under benchmarks/results/multi-label/ as ``labelwise
simulate`` writes it, so an interrupted run resumes and strategies can be added; the summary
goes to benchmarks/results/multi_label.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from common import commit
from labelwise.cli.common import parse_list, parse_seeds
from labelwise.io.dataset import Dataset
from labelwise.io.load import load_dataset
from labelwise.learning.evaluate import aubc
from labelwise.learning.report import write_simulation
from labelwise.learning.simulate import SimulationConfig, simulate_dataset
from labelwise.strategies.factory import make_strategy

STRATEGIES = ("random", "mean-margin", "min-margin", "mmc", "lci", "qbc", "default")
DATASETS = ("goemotions", "davidson_votes")
DAVIDSON_CATEGORIES = ("hate_speech", "offensive", "neither")
#: The subsample every seed and strategy of a data set shares.
SUBSAMPLE_SEED = 0


def _goemotions(data_dir: Path) -> Dataset:
    return load_dataset(
        data_dir / "text/goemotions_ekman/train.csv", text_column="text", label_column="labels"
    )


def _davidson_votes(data_dir: Path) -> Dataset:
    """The tweets with, as labels, every category at least one annotator chose."""
    path = data_dir / "text/hate_speech_davidson/labeled_data.csv"
    dataset = load_dataset(path, text_column="text", label_column="label")
    votes = pd.read_csv(path, dtype={"id": str}).set_index("id")
    rows = votes.loc[[str(i) for i in dataset.ids]]
    sets = [
        ";".join(c for c in DAVIDSON_CATEGORIES if row[f"votes_{c}"] > 0)
        for _, row in rows.iterrows()
    ]
    return replace(
        dataset,
        labels=np.asarray(sets, dtype=object),
        source=f"{path} (categories with at least one annotator's vote)",
    )


LOADERS = {"goemotions": _goemotions, "davidson_votes": _davidson_votes}


def _subsample(dataset: Dataset, size: int) -> Dataset:
    if size >= len(dataset):
        return dataset
    rng = np.random.default_rng(SUBSAMPLE_SEED)
    return dataset.subset(np.sort(rng.choice(len(dataset), size=size, replace=False)))


def _run(args: argparse.Namespace, name: str, dataset: Dataset, strategy: str) -> Path:
    out = args.results / "multi-label" / name / strategy
    if (out / "results.json").exists():
        done = json.loads((out / "run.json").read_text())
        if tuple(done["config"]["seeds"]) == tuple(args.seeds):
            return out
    config = SimulationConfig(
        strategies=(strategy,),
        seeds=args.seeds,
        initial=args.initial,
        batch_size=args.batch_size,
        budget=args.budget,
        model="logreg",
        test_size=0.25,
        n_jobs=args.jobs,
        features=args.features,
        multi_label=True,
    )
    start = time.perf_counter()
    result = simulate_dataset(dataset, config)
    result.extra["wall_seconds"] = time.perf_counter() - start
    result.extra["seconds_per_run"] = [run.seconds for run in result.runs[strategy]]
    result.extra["resolves_to"] = make_strategy(strategy, multi_label=True).name
    write_simulation(result, out)
    print(f"{name} {strategy}: {result.extra['wall_seconds']:.0f} s", flush=True)
    return out


def _mean_se(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    se = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return float(arr.mean()), se


def _aubcs(entry: dict, metric: str) -> dict[int, float]:
    return {
        seed: aubc([p[metric] for p in curve], [p["labels"] for p in curve])
        for seed, curve in zip(entry["seeds"], entry["curves"], strict=True)
    }


def _table(args: argparse.Namespace, name: str) -> tuple[list[str], dict[str, dict]]:
    folder = args.results / "multi-label" / name
    found = {
        s: (
            json.loads((folder / s / "results.json").read_text())[s],
            json.loads((folder / s / "run.json").read_text()),
        )
        for s in args.strategies
        if (folder / s / "results.json").exists()
    }
    if not found:
        return [f"### {name}", "", "no results yet", ""], {}
    run = next(iter(found.values()))[1]
    full = run["full_pool"].values()
    base = (
        {m: _aubcs(found["random"][0], m) for m in ("macro_f1", "micro_f1")}
        if ("random" in found)
        else None
    )
    lines = [
        f"### {name}",
        "",
        f"{run['n_items']:,} items, labels {', '.join(run['classes'])}; pool {run['n_pool']:,}; "
        f"full-pool macro-F1 {np.mean([f['macro_f1'] for f in full]):.3f}, "
        f"micro-F1 {np.mean([f['micro_f1'] for f in full]):.3f}.",
        "",
        "| strategy | AUBC macro-F1 | vs random | AUBC micro-F1 | vs random "
        f"| macro-F1 at {args.budget} | micro-F1 at {args.budget} | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, dict] = {}
    for strategy, (entry, info) in found.items():
        cells = []
        for metric in ("macro_f1", "micro_f1"):
            per_seed = _aubcs(entry, metric)
            mean, se = _mean_se(list(per_seed.values()))
            cells.append(f"{mean:.4f} ± {se:.4f}")
            if base is None or strategy == "random":
                cells.append("")
                continue
            diffs = [per_seed[s] - base[metric][s] for s in per_seed if s in base[metric]]
            d, d_se = _mean_se(diffs)
            cells.append(f"{d:+.4f} ± {d_se:.4f}")
            summary.setdefault(strategy, {})[metric] = (mean, se, d, d_se)
        last = [curve[-1] for curve in entry["curves"]]
        label = strategy
        resolved = info.get("resolves_to")
        if resolved and resolved != strategy:
            label = f"{strategy} (= {resolved})"
        lines.append(
            f"| {label} | {' | '.join(cells)} "
            f"| {np.mean([p['macro_f1'] for p in last]):.4f} "
            f"| {np.mean([p['micro_f1'] for p in last]):.4f} "
            f"| {np.mean(info.get('seconds_per_run', [np.nan])):.0f} |"
        )
    return [*lines, ""], summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-4"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument(
        "--strategies", type=lambda s: parse_list(s, "--strategies"), default=STRATEGIES
    )
    parser.add_argument("--subsample", type=int, default=12_000)
    parser.add_argument("--features", default="tfidf", help="How items are represented.")
    parser.add_argument("--initial", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--budget", type=int, default=1_000)
    parser.add_argument("--report-only", action="store_true", help="Only rewrite the summary.")
    args = parser.parse_args()
    names = parse_list(args.only, "--only")
    report = [
        "# Multi-label active learning",
        "",
        "Generated by `python benchmarks/multi_label.py` at commit "
        f"{commit()} on {os.cpu_count()} CPU cores ({platform.machine()}), shared.",
        f"A fixed random subsample of {args.subsample:,} items per data set; features "
        f"`{args.features}`; per seed a "
        "random 75/25 pool/test split and the same random "
        f"{args.initial} initial labels for every strategy; batches of {args.batch_size} up to "
        f"{args.budget:,} labels; `logreg` per label with per-label F1 thresholds "
        f"(LabelSetClassifier); seeds {','.join(map(str, args.seeds))}. AUBC: area under the "
        f"learning curve from {args.initial} to {args.budget:,} labels divided by its width, "
        "mean ± one standard error over seeds; 'vs random': mean ± standard error of the "
        "per-seed paired differences (same split and initial labels).",
        "",
    ]
    for name in names:
        dataset = _subsample(LOADERS[name](args.data_dir), args.subsample)
        if not args.report_only:
            for strategy in args.strategies:
                _run(args, name, dataset, strategy)
        lines, _ = _table(args, name)
        report += lines
        print("\n".join(lines), flush=True)
    (args.results / "multi_label.md").write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
