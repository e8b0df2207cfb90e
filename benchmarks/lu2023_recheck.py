"""The Lu et al. (2023) results still hold: rerun a subset and compare it, run by run, with the
stored ones.

    python benchmarks/lu2023_recheck.py [--datasets appendicitis,sonar,heart,wdbc,haberman]
        [--strategies uniform,us-c,default,bandit] [--seeds 0-19] [--jobs 2]

Runs `labelwise benchmark lu2023` in batch mode (10 per round) into a temporary folder and
compares every (dataset, strategy, seed) AUBC with `results/lu2023-batch10/runs.jsonl`: after a
change to models, strategies or features, identical figures show that the published-protocol
results did not move. Writes `results/lu2023-recheck.md`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import commit

HERE = Path(__file__).resolve().parent


def _runs(path: Path) -> dict[tuple[str, str, int], float | None]:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out[(r["dataset"], r["strategy"], int(r["seed"]))] = r["aubc"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/benchmark-tabular"))
    parser.add_argument("--datasets", default="appendicitis,sonar,heart,wdbc,haberman")
    parser.add_argument("--strategies", default="uniform,us-c,default,bandit")
    parser.add_argument("--seeds", default="0-19")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    stored = _runs(HERE / "results" / "lu2023-batch10" / "runs.jsonl")
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable, "-m", "labelwise.cli", "benchmark", "lu2023",
            "--data-dir", str(args.data_dir), "--datasets", args.datasets,
            "--strategies", args.strategies, "--batch-size", "10", "--seeds", args.seeds,
            "--out", out, "-j", str(args.jobs),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        fresh = _runs(Path(out) / "runs.jsonl")
    made_at = commit()
    lines = [
        "# Lu et al. (2023), batch mode: a subset rerun against the stored runs",
        "",
        f"`python benchmarks/lu2023_recheck.py --datasets {args.datasets} --strategies "
        f"{args.strategies} --seeds {args.seeds}` at commit {made_at}.",
        "",
        "| dataset | strategy | runs | identical | largest difference |",
        "|---|---|---|---|---|",
    ]
    for dataset in args.datasets.split(","):
        for strategy in args.strategies.split(","):
            keys = [k for k in fresh if k[0] == dataset and k[1] == strategy]
            diffs = [abs((fresh[k] or 0.0) - (stored.get(k) or 0.0)) for k in keys]
            same = sum(d == 0.0 and k in stored for d, k in zip(diffs, keys, strict=True))
            lines.append(
                f"| {dataset} | {strategy} | {len(keys)} | {same} | {max(diffs, default=0):.2g} |"
            )
    text = "\n".join(lines) + "\n"
    (HERE / "results" / "lu2023-recheck.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
