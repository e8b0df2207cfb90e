"""Text representations compared: TF-IDF, embeddings, both, and `auto`, under active learning.

    python benchmarks/text_representation.py [--data-dir ../shared/data] [--seeds 0-4] [--jobs 2]

Every single-label text set of the shared data (SMS spam, SST-2, TREC, Subj, CR, the Davidson
hate-speech tweets, the Amazon, IMDb and Yelp sentences) is replayed with `labelwise simulate`'s
protocol -- a 70/30 stratified split per seed, the same random 20 initial labels for every
strategy of a seed, batches of 10 up to 500 labels, the `logreg` model -- for each
representation (`tfidf`, `embedding` = wordllama, `tfidf+embedding`, `auto`) and strategy
(`random`, `margin`, `default`). It reports AUBC of macro-F1 and of accuracy (mean ± standard
error over seeds), the labels needed to reach 95 % of the best full-pool macro-F1 of any
representation, the embedder's throughput and the seconds per round (fit and query).

Each (dataset, representation) is written under benchmarks/results/text-representation/ as
`labelwise simulate` writes it, so an interrupted run resumes; the summary goes to
benchmarks/results/text_representation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from common import TEXT_SETS, commit
from labelwise.cli.common import parse_list, parse_seeds
from labelwise.features import make_embedder
from labelwise.io.load import load_dataset
from labelwise.learning.evaluate import aubc
from labelwise.learning.report import write_simulation
from labelwise.learning.simulate import SimulationConfig, simulate_dataset

DATASETS = TEXT_SETS
REPRESENTATIONS = ("tfidf", "embedding", "tfidf+embedding", "auto")
STRATEGIES = ("random", "margin", "default")


def _mean_se(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    se = float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else 0.0
    return float(arr.mean()), se


def _throughput(texts: list[str]) -> float:
    """Texts per second of the bundled embedder on these texts (after loading it)."""
    embedder = make_embedder("wordllama")
    embedder.embed(texts[:100])  # warm
    start = time.perf_counter()
    for i in range(0, len(texts), 1024):
        embedder.embed(texts[i : i + 1024])
    return len(texts) / (time.perf_counter() - start)


def _run(args: argparse.Namespace, name: str, representation: str) -> Path:
    relative, text_column, label_column = DATASETS[name]
    out = args.results / "text-representation" / name / representation.replace("+", "-")
    if (out / "results.json").exists():
        return out
    dataset = load_dataset(
        args.data_dir / relative, text_column=text_column, label_column=label_column
    )
    config = SimulationConfig(
        strategies=STRATEGIES,
        seeds=args.seeds,
        initial=20,
        batch_size=10,
        budget=500,
        model="logreg",
        n_jobs=args.jobs,
        features=representation,
    )
    start = time.perf_counter()
    result = simulate_dataset(dataset, config)
    result.extra["wall_seconds"] = time.perf_counter() - start
    result.extra["seconds_per_round"] = {
        strategy: float(np.mean([run.seconds / max(1, len(run.labels)) for run in runs]))
        for strategy, runs in result.runs.items()
    }
    write_simulation(result, out)
    print(f"{name} {representation}: {result.extra['wall_seconds']:.0f} s", flush=True)
    return out


def _table(
    args: argparse.Namespace, name: str, throughput: float, summary: dict[tuple[str, str], list]
) -> list[str]:
    runs = {
        rep: (
            json.loads((folder / "results.json").read_text()),
            json.loads((folder / "run.json").read_text()),
        )
        for rep in REPRESENTATIONS
        if (folder := args.results / "text-representation" / name / rep.replace("+", "-"))
        and (folder / "results.json").exists()
    }
    full = {
        rep: float(np.mean([v["macro_f1"] for v in run["full_pool"].values()]))
        for rep, (_, run) in runs.items()
    }
    best_full = max(full.values())
    target = 0.95 * best_full
    some_run = next(iter(runs.values()))[1]
    lines = [
        f"### {name}",
        "",
        f"{some_run['n_items']:,} items ({', '.join(some_run['classes'])}), pool "
        f"{some_run['n_pool']:,}; embedder {throughput:,.0f} texts/s; best full-pool "
        f"macro-F1 {best_full:.3f}, target (95 %) {target:.3f}.",
        "",
        "| representation | strategy | AUBC macro-F1 | AUBC accuracy | labels to 95 % of best "
        "| full-pool macro-F1 | s/round |",
        "|---|---|---|---|---|---|---|",
    ]
    for rep, (results, run) in runs.items():
        for strategy in STRATEGIES:
            entry = results[strategy]
            f1, f1_se = _mean_se(entry["aubc"])
            curves = entry["curves"]
            acc, acc_se = _mean_se(
                [aubc([p["accuracy"] for p in c], [p["labels"] for p in c]) for c in curves]
            )
            reached = [
                next((p["labels"] for p in c if p["macro_f1"] >= target), None) for c in curves
            ]
            hit = [r for r in reached if r is not None]
            reach = (
                f"{np.mean(hit):.0f} ({len(hit)}/{len(reached)})"
                if hit
                else f"> 500 (0/{len(reached)})"
            )
            summary.setdefault((rep, strategy), []).append((name, f1, f1_se))
            per_round = run.get("seconds_per_round", {}).get(strategy, float("nan"))
            lines.append(
                f"| {rep} | {strategy} | {f1:.3f} ± {f1_se:.3f} | {acc:.3f} ± {acc_se:.3f} "
                f"| {reach} | {full[rep]:.3f} | {per_round:.2f} |"
            )
    return [*lines, ""]


def _across(summary: dict[tuple[str, str], list]) -> list[str]:
    """Mean AUBC macro-F1 over the data sets, and where each representation falls below
    `tfidf` (same strategy) by more than one standard error of the difference."""
    lines = [
        "## Across the data sets",
        "",
        "| representation | strategy | mean AUBC macro-F1 | vs tfidf | below tfidf by > 1 SE on "
        "| above random (same representation) on |",
        "|---|---|---|---|---|---|",
    ]
    for (rep, strategy), rows in summary.items():
        mean = float(np.mean([f1 for _, f1, _ in rows]))
        base = {n: (f1, se) for n, f1, se in summary.get(("tfidf", strategy), [])}
        rand = {n: (f1, se) for n, f1, se in summary.get((rep, "random"), [])}
        below = [
            n for n, f1, se in rows if n in base and base[n][0] - f1 > np.hypot(se, base[n][1])
        ]
        above = [n for n, f1, _ in rows if n in rand and f1 > rand[n][0]]
        delta = mean - float(np.mean([base[n][0] for n, _, _ in rows if n in base] or [np.nan]))
        lines.append(
            f"| {rep} | {strategy} | {mean:.3f} | {delta:+.3f} | "
            f"{', '.join(below) or 'none'} | "
            f"{len(above)}/{len(rows)}{'' if strategy != 'random' else ' (itself)'} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-4"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument("--representations", default=",".join(REPRESENTATIONS))
    args = parser.parse_args()
    names = parse_list(args.only, "--only")
    summary: dict[tuple[str, str], list] = {}
    made_at = commit()
    report = [
        "# Text representations under active learning",
        "",
        "Generated by `python benchmarks/text_representation.py` at commit "
        f"{made_at} on {os.cpu_count()} CPU cores ({platform.machine()}), shared.",
        "70/30 stratified split per seed; the same random 20 initial labels for every "
        "representation and strategy of a seed; batches of 10 up to 500 labels; `logreg`; "
        f"seeds {','.join(map(str, args.seeds))}. AUBC: area under the learning curve from 20 "
        "to 500 labels, divided by its width; ± one standard error over seeds. `auto` chooses "
        "among TF-IDF, the embedding and both at every fit by cross-validation.",
        "",
    ]
    for name in names:
        for representation in parse_list(args.representations, "--representations"):
            _run(args, name, representation)
        relative, text_column, label_column = DATASETS[name]
        texts = [
            str(t)
            for t in load_dataset(
                args.data_dir / relative, text_column=text_column, label_column=label_column
            ).items
        ]
        report += _table(args, name, _throughput(texts), summary)
    report += _across(summary)
    path = args.results / "text_representation.md"
    path.write_text("\n".join(report))
    print("\n".join(report))


if __name__ == "__main__":
    main()
