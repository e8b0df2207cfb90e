"""A text pool of a million short texts with embedding features: import and query, time and memory.

    python benchmarks/large_text_pool.py [--rows 1000000] [--labeled 1000] [--tfidf]
        [--workdir DIR] [--keep] [--out benchmarks/results/large_text_pool.md]

Every step in its own subprocess, measured from outside as `large_pool.py` measures (wall
seconds, peak resident memory, and the peak of its anonymous part: the rest is the page cache
of memory-mapped files):

1. **generate** ``--rows`` short texts, seeded: each is a sentence of the shared text sets
   (SMS, tweets, film and product reviews, questions) with its words shuffled and one word of
   their vocabulary added, so every text is new; and a seed file of ``--labeled`` texts labeled
   by which collection they came from;
2. ``labelwise init`` a project from the seed file with ``--features embedding`` (wordllama;
   its labels imported);
3. ``labelwise import`` the pool: items inserted in bulk, every text embedded once, a chunk at a
   time, into the project's memory-mapped embedding file;
4. **query**: one worker cycle (fit on the labeled seed, score every open row from the
   memory-mapped embeddings, choose the queue with `default`, neighbours, near-duplicates and
   leave-one-word-out explanations, publish).

Baseline in the same run: the **embedding floor**, the bundled embedder alone over the same
texts (what any import must at least do). With ``--tfidf`` the query is also made with
``--features tfidf`` on the same project, which builds TF-IDF over every text at the first fit:
what TF-IDF costs at this size.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from large_pool import machine, run_measured

HERE = Path(__file__).resolve().parent
SOURCES = {
    # collection: (path under the data dir, text column or None for the SMS file)
    "sms": "text/sms_spam/SMSSpamCollection",
    "tweets": "text/hate_speech_davidson/labeled_data.csv",
    "reviews": "text/sst2/train.csv",
    "products": "text/custrev/custrev.csv",
    "questions": "text/trec/train.csv",
}


def _sentences(data: Path) -> dict[str, list[list[str]]]:
    from labelwise.io.load import load_dataset

    out = {}
    for name, relative in SOURCES.items():
        column = None if name == "sms" else "text"
        items = load_dataset(data / relative, text_column=column).items
        out[name] = [str(t).split() for t in items if str(t).split()]
    return out


def generate(work: Path, rows: int, labeled: int, data: Path) -> None:
    """The pool and the labeled seed as CSV files (id, text[, label])."""
    rng = np.random.default_rng(0)
    corpus = _sentences(data)
    names = sorted(corpus)
    vocabulary = sorted({w for words in corpus.values() for s in words for w in s})

    def text() -> tuple[str, str]:
        name = names[int(rng.integers(len(names)))]
        words = list(corpus[name][int(rng.integers(len(corpus[name])))])
        rng.shuffle(words)
        words.insert(int(rng.integers(len(words) + 1)), vocabulary[rng.integers(len(vocabulary))])
        return " ".join(words), name

    with (work / "seed.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "label"])
        out.writerows([f"seed-{i}", *text()] for i in range(labeled))
    with (work / "pool.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text"])
        out.writerows([f"t{i}", text()[0]] for i in range(rows))


def embedding_floor(work: Path) -> None:
    """The bundled embedder over the pool's texts, a chunk at a time, written to an .npy file."""
    import pandas as pd
    from numpy.lib import format as npy

    from labelwise.features import make_embedder

    embedder = make_embedder("wordllama")
    n = sum(1 for _ in (work / "pool.csv").open()) - 1
    out = npy.open_memmap(work / "floor.npy", mode="w+", dtype=np.float32, shape=(n, 256))
    start = 0
    for chunk in pd.read_csv(work / "pool.csv", chunksize=65_536, keep_default_na=False):
        texts = chunk["text"].astype(str).tolist()
        out[start : start + len(texts)] = embedder.embed(texts)
        start += len(texts)
    out.flush()


def query(project: Path, features: str | None) -> None:
    """One worker cycle, forced, optionally after switching the project's features."""
    from labelwise.services.worker import train_once
    from labelwise.store.folder import ProjectFolder
    from labelwise.store.projects import get_project, update_settings

    folder = ProjectFolder.open(project)
    db = folder.connect()
    if features:
        with db.write() as session:
            update_settings(
                session, get_project(session, name=folder.project_name), {"features": features}
            )
    outcome = train_once(folder, db, force=True)
    print(json.dumps(outcome.__dict__))
    if outcome.status != "trained":
        sys.exit(f"the worker did not train: {outcome}")


def report(args: argparse.Namespace, run: dict[str, Any]) -> str:
    by = {s["step"]: s for s in run["steps"]}
    n = args.rows + args.labeled

    def line(step: str, what: str) -> str:
        s = by[step]
        anon = "—" if s["peak_anon_mib"] is None else f"{s['peak_anon_mib']:,.0f}"
        return f"| {what} | {s['seconds']:,.1f} | {s['peak_rss_mib']:,.0f} | {anon} |"

    lines = [
        "# A million short texts with embedding features",
        "",
        f"Generated by `python benchmarks/large_text_pool.py --rows {args.rows}"
        f"{' --tfidf' if args.tfidf else ''}` at commit {run['commit']} on {machine()}; load "
        f"average before the run {run['load']}. {n:,} items ({args.rows:,} in the pool, "
        f"{args.labeled:,} labeled); CSV {run['csv_mib']:,.0f} MiB, database "
        f"{run['database_mib']:,.0f} MiB, embeddings {run['embedding_mib']:,.0f} MiB.",
        "",
        "| step | seconds | peak RSS (MiB) | peak anonymous (MiB) |",
        "|---|---|---|---|",
        line("init", "`labelwise init` (seed, --features embedding)"),
        line("import", f"`labelwise import` ({args.rows:,} texts embedded)"),
        line("query", "one worker cycle (fit, score all, queue of 100)"),
        line("embedding floor", "floor: the embedder alone over the same texts"),
    ]
    if "query tfidf" in by:
        lines.append(line("query tfidf", "one worker cycle with `--features tfidf`"))
    imported, floor = by["import"]["seconds"], by["embedding floor"]["seconds"]
    lines += [
        "",
        f"Import: {n / imported:,.0f} texts/s, {imported / floor:.1f}x the embedding floor "
        f"({args.rows / floor:,.0f} texts/s).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--labeled", type=int, default=1000)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--tfidf", action="store_true", help="also query with TF-IDF features")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "large_text_pool.md")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # the children
    args = parser.parse_args()

    if args.step:
        if args.step == "generate":
            generate(args.workdir, args.rows, args.labeled, args.data_dir.resolve())
        elif args.step == "embedding-floor":
            embedding_floor(args.workdir)
        elif args.step.startswith("query"):
            query(args.workdir / "project", args.step.partition(":")[2] or None)
        return

    made = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="labelwise-text-")) if made else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--workdir", str(work), "--rows", str(args.rows), "--labeled", str(args.labeled)]
    common += ["--data-dir", str(args.data_dir.resolve())]
    cli = [sys.executable, "-m", "labelwise.cli"]
    project = str(work / "project")
    seed = ["--data", str(work / "seed.csv"), "--text-column", "text", "--label-column", "label"]
    seed += ["--with-labels", "--features", "embedding"]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    try:
        steps = [
            run_measured("generate", [*me, *common, "--step", "generate"], work / "g.log"),
            run_measured("init", [*cli, "init", project, *seed], work / "init.log"),
            run_measured("import", [*cli, "import", project, str(work / "pool.csv")], work / "i"),
            run_measured("query", [*me, *common, "--step", "query"], work / "q.log"),
            run_measured(
                "embedding floor", [*me, *common, "--step", "embedding-floor"], work / "f"
            ),
        ]
        if args.tfidf:
            steps.append(
                run_measured("query tfidf", [*me, *common, "--step", "query:tfidf"], work / "t")
            )
        database = sum(p.stat().st_size for p in Path(project).glob("labelwise.sqlite3*"))
        embedding = sum(p.stat().st_size for p in Path(project, "features").glob("embedding*.npy"))
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        run = {
            "steps": steps,
            "load": load,
            "commit": commit or "unknown",
            "csv_mib": (work / "pool.csv").stat().st_size / 2**20,
            "database_mib": database / 2**20,
            "embedding_mib": embedding / 2**20,
            "when": time.strftime("%Y-%m-%d"),
        }
        text = report(args, run)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(run, indent=1) + "\n")
        print()
        print(text)
    finally:
        if made and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
