"""A candidate strategy against the best published one and the baseline, dataset by dataset:
the comparison table of the Lu, Li & Lin (2023) benchmark's reports
(:mod:`labelwise.benchmark.lu2023` runs the protocol and pairs the seeds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelwise.benchmark.lu2023 import paired_difference

__all__ = ["comparison_table"]


def _in_se(mean: float, se: float) -> float:
    return mean / se if se > 0 else 0.0


def comparison_table(
    results: dict[str, dict[str, dict[str, Any]]],
    *,
    candidate: str = "default",
    best: str = "us-c",
    baseline: str = "uniform",
) -> str:
    """``candidate`` against the best published strategy and the baseline, dataset by dataset.

    Differences are paired by seed (see :func:`paired_difference`) and given with their size in
    standard errors. The last row averages each strategy's mean AUBC over datasets; below the
    table, how often the candidate is ahead of or behind each by more than one standard error.
    """
    head = (
        f"| dataset | seeds | {candidate} | {best} | {baseline} | {candidate} − {best} (in SE) "
        f"| {candidate} − {baseline} (in SE) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    means: dict[str, list[float]] = {candidate: [], best: [], baseline: []}
    ahead: dict[str, list[str]] = {best: [], baseline: []}
    behind: dict[str, list[str]] = {best: [], baseline: []}
    for dataset, per in results.items():
        if not all(per.get(s, {}).get("aubc") for s in (candidate, best, baseline)):
            continue
        cells = []
        n = 0
        for other in (best, baseline):
            n, mean, se = paired_difference(per[candidate], per[other])
            z = _in_se(mean, se)
            if z > 1.0:
                ahead[other].append(dataset)
            elif z < -1.0:
                behind[other].append(dataset)
            cells.append(f"{mean:+.4f} ({z:+.1f})")
        for s in means:
            means[s].append(float(np.mean(per[s]["aubc"])))
        lines.append(
            f"| {dataset} | {n} | {np.mean(per[candidate]['aubc']):.4f} "
            f"| {np.mean(per[best]['aubc']):.4f} | {np.mean(per[baseline]['aubc']):.4f} "
            f"| {cells[0]} | {cells[1]} |"
        )
    if not means[candidate]:
        return "\n".join(lines)
    lines.append(
        f"| **mean over {len(means[candidate])} datasets** | | "
        f"**{np.mean(means[candidate]):.4f}** | **{np.mean(means[best]):.4f}** "
        f"| **{np.mean(means[baseline]):.4f}** "
        f"| {np.mean(means[candidate]) - np.mean(means[best]):+.4f} "
        f"| {np.mean(means[candidate]) - np.mean(means[baseline]):+.4f} |"
    )
    lines.append("")
    for other in (best, baseline):
        a, b = ahead[other], behind[other]
        lines.append(
            f"- against {other}: ahead by more than one SE on {len(a)} datasets"
            + (f" ({', '.join(a)})" if a else "")
            + f", behind by more than one SE on {len(b)}"
            + (f" ({', '.join(b)})" if b else "")
            + f", within one SE on {len(means[candidate]) - len(a) - len(b)}."
        )
    verdict = (
        f"{candidate} is below {baseline} by more than one SE on: {', '.join(behind[baseline])}"
        if behind[baseline]
        else f"{candidate} is never below {baseline} by more than one SE"
    )
    lines += ["", verdict + "."]
    return "\n".join(lines)
