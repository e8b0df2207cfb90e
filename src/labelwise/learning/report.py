"""Writing a simulation's results: JSON, learning curves as CSV, a PNG plot and a summary table.

Files written into the output folder:

- ``results.json``: per strategy, ``aubc`` (one per seed) and ``curves`` (per seed, a list of
  ``{labels, accuracy, macro_f1, balanced_accuracy}``; for a multi-label run
  ``{labels, macro_f1, micro_f1, subset_accuracy}``), plus ``labels_to_95``/``labels_to_99``;
- ``run.json``: the configuration, dataset sizes and full-pool reference scores;
- ``curves.csv``: one row per (strategy, seed, round);
- ``learning_curves.png``: mean ± std of the metric against labels, one band per strategy;
- ``summary.md``: the table :func:`summary_table` prints (for a multi-label run, AUBC of
  macro-F1 and micro-F1 and the mean curves of both at a few label counts).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from labelwise.learning.simulate import SimulationResult

__all__ = ["summary_rows", "summary_table", "write_simulation"]


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _reach(values: list[int | None]) -> str:
    hit = [v for v in values if v is not None]
    if not hit:
        return f"not reached (0/{len(values)})"
    text = f"{np.mean(hit):.0f}"
    return text if len(hit) == len(values) else f"{text} ({len(hit)}/{len(values)} seeds)"


def summary_rows(result: SimulationResult) -> list[dict[str, Any]]:
    """One dict per strategy: AUBC mean and std, and labels needed to reach 95 %/99 %; for a
    multi-label run also AUBC of micro-F1 (``aubc_micro_f1_mean``/``_std``)."""
    rows = []
    for name in result.runs:
        mean, std = _mean_std(result.aubc(name))
        row = {
            "strategy": name,
            "aubc_mean": mean,
            "aubc_std": std,
            "labels_to_95": _reach(result.labels_to_reach(name, 0.95)),
            "labels_to_99": _reach(result.labels_to_reach(name, 0.99)),
        }
        if result.config.multi_label:
            for metric in ("macro_f1", "micro_f1"):
                row[f"aubc_{metric}_mean"], row[f"aubc_{metric}_std"] = _mean_std(
                    result.aubc(name, metric)
                )
        rows.append(row)
    return rows


#: Label counts the multi-label summary shows its mean curves at (at most this many).
_CURVE_POINTS = 6


def _curve_table(result: SimulationResult) -> list[str]:
    """Mean macro-F1 / micro-F1 of each strategy at a few label counts every seed reached."""
    common = sorted(
        set.intersection(*(set(run.labels) for runs in result.runs.values() for run in runs))
    )
    if not common:
        return []
    picks = [common[int(i)] for i in np.linspace(0, len(common) - 1, _CURVE_POINTS)]
    shown = list(dict.fromkeys(picks))
    lines = [
        "",
        "mean macro-F1 / micro-F1 by labels:",
        "",
        "| strategy | " + " | ".join(str(n) for n in shown) + " |",
        "|---|" + "---|" * len(shown),
    ]
    for name, runs in result.runs.items():
        cells = []
        for n in shown:
            at = [run.labels.index(n) for run in runs]
            macro = np.mean([run.scores["macro_f1"][i] for run, i in zip(runs, at, strict=True)])
            micro = np.mean([run.scores["micro_f1"][i] for run, i in zip(runs, at, strict=True)])
            cells.append(f"{macro:.3f} / {micro:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def summary_table(result: SimulationResult) -> str:
    """A markdown table of AUBC mean ± std and labels needed to reach 95 % and 99 % of the
    full-pool model's score, one row per strategy."""
    metric = result.config.metric
    full = [m.get(metric) for m in result.full_pool.values()]
    full_mean, full_std = _mean_std(full)
    lines = [
        f"metric: {metric}; full-pool model: {full_mean:.4f} ± {full_std:.4f} "
        f"({result.n_pool} pool items, {len(result.config.seeds)} seeds)",
        "",
    ]
    if result.config.multi_label:
        micro = _mean_std([m.get("micro_f1") for m in result.full_pool.values()])
        lines[-1:] = [
            f"multi-label over {', '.join(result.classes)}; full-pool micro-F1 "
            f"{micro[0]:.4f} ± {micro[1]:.4f}",
            "",
            f"| strategy | AUBC macro-F1 mean ± std | AUBC micro-F1 mean ± std "
            f"| labels to 95 % ({metric}) | labels to 99 % ({metric}) |",
            "|---|---|---|---|---|",
        ]
        for row in summary_rows(result):
            lines.append(
                f"| {row['strategy']} "
                f"| {row['aubc_macro_f1_mean']:.4f} ± {row['aubc_macro_f1_std']:.4f} "
                f"| {row['aubc_micro_f1_mean']:.4f} ± {row['aubc_micro_f1_std']:.4f} "
                f"| {row['labels_to_95']} | {row['labels_to_99']} |"
            )
        return "\n".join(lines + _curve_table(result))
    lines += [
        f"| strategy | AUBC ({metric}) mean ± std | labels to 95 % | labels to 99 % |",
        "|---|---|---|---|",
    ]
    for row in summary_rows(result):
        lines.append(
            f"| {row['strategy']} | {row['aubc_mean']:.4f} ± {row['aubc_std']:.4f} "
            f"| {row['labels_to_95']} | {row['labels_to_99']} |"
        )
    return "\n".join(lines)


def _write_curves_csv(result: SimulationResult, path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        metrics = result.config.curve_metrics
        writer.writerow(["strategy", "seed", "round", "labels", *metrics])
        for name, runs in result.runs.items():
            for run in runs:
                for i, n in enumerate(run.labels):
                    writer.writerow(
                        [name, run.seed, i, n, *(f"{run.scores[m][i]:.6f}" for m in metrics)]
                    )


def _plot(result: SimulationResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = result.config.metric
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for name, runs in result.runs.items():
        # Seeds can stop at different label counts (a budget larger than a split): align on the
        # label counts every seed reached.
        common = sorted(set.intersection(*(set(run.labels) for run in runs)))
        if not common:
            continue
        table = np.asarray(
            [
                [dict(zip(run.labels, run.scores[metric], strict=True))[n] for n in common]
                for run in runs
            ]
        )
        mean, std = table.mean(axis=0), table.std(axis=0)
        ax.plot(common, mean, label=name, linewidth=1.6)
        ax.fill_between(common, mean - std, mean + std, alpha=0.18)
    full = float(np.mean([m.get(metric) for m in result.full_pool.values()]))
    ax.axhline(full, color="0.3", linestyle="--", linewidth=1, label="full pool")
    ax.set_xlabel("labels")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"Learning curves (mean ± std over {len(result.config.seeds)} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_simulation(result: SimulationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write every output file into ``out_dir`` (created if needed); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": out / "results.json",
        "run": out / "run.json",
        "curves": out / "curves.csv",
        "plot": out / "learning_curves.png",
        "summary": out / "summary.md",
    }
    paths["results"].write_text(json.dumps(_json_safe(result.to_json()), indent=1))
    paths["run"].write_text(json.dumps(_json_safe(result.run_info()), indent=2))
    _write_curves_csv(result, paths["curves"])
    _plot(result, paths["plot"])
    paths["summary"].write_text(summary_table(result) + "\n")
    return paths
