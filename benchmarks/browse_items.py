"""The data browser on a pool of a million items: how long a page of each kind of search takes.

Builds a text project of ``--items`` synthetic messages (words drawn from a Zipf law over a
5,000-word vocabulary, so some words are everywhere and some nowhere; a rare word is planted in
10 items), with 2 % of them labeled at import, a second annotator who answered 2,000 of those
(a quarter of them differently), and a predictions file for the served model as the worker
writes it (random predictions: the file's layout, not its values, is what is timed). Then it
times :func:`labelwise.store.browse.browse_items`, a page of 50, for each filter: the median of
``--repeats`` runs, on SQLite and PostgreSQL. One command, printing a table::

    python benchmarks/browse_items.py                    # 1,000,000 items (about 6 min here)
    python benchmarks/browse_items.py --items 100000 --databases sqlite
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import commit
from labelwise.store.annotators import create_annotator
from labelwise.store.browse import ItemFilter, browse_items
from labelwise.store.db import Database
from labelwise.store.items import ItemRecord, add_items
from labelwise.store.migrate import upgrade
from labelwise.store.models import Item, Label, ModelVersion, Project
from labelwise.store.prediction_cache import PREDICTION_DTYPE
from labelwise.store.projects import ProjectSettings, create_project, get_project

RARE = "zebra"
LABELS = ["ham", "spam", "other"]


def texts(n: int, rng: np.random.Generator) -> list[str]:
    vocab = np.array([f"w{k}" for k in range(5000)])
    lengths = rng.integers(6, 20, size=n)
    words = vocab[np.minimum(rng.zipf(1.3, size=int(lengths.sum())) - 1, 4999)]
    out, at = [], 0
    for length in lengths:
        out.append(" ".join(words[at : at + length]))
        at += length
    for i in rng.choice(n, size=10, replace=False):
        out[i] = f"{out[i]} {RARE}"
    return out


def build(db: Database, n: int, seed: int) -> tuple[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    upgrade(db)
    labeled = set(rng.choice(n, size=n // 50, replace=False).tolist())
    records = [
        ItemRecord(f"i{i}", t, label=LABELS[i % 3] if i in labeled else None)
        for i, t in enumerate(texts(n, rng))
    ]
    with db.write() as session:
        project = create_project(
            session, name="browse", kind="text", labels=LABELS, settings=ProjectSettings(overlap=0)
        )
        bob, _ = create_annotator(session, project, name="bob", role="annotator")
        add_items(session, project, records)
        pid, bob_id = project.id, bob.id
    with db.write() as session:
        ids = dict(session.execute(select(Item.row, Item.id).where(Item.project_id == pid)).all())
        second = rng.choice(sorted(labeled), size=min(2000, len(labeled)), replace=False)
        session.execute(
            insert(Label),
            [
                {
                    "project_id": pid,
                    "item_id": ids[int(r)],
                    "annotator_id": bob_id,
                    "action": "label",
                    "value": LABELS[(int(r) + (1 if k % 4 == 0 else 0)) % 3],
                    "is_current": True,
                    "request_id": uuid.uuid4().hex,
                }
                for k, r in enumerate(second)
            ],
        )
        version = ModelVersion(
            project_id=pid, version=1, status="ready", n_labels=len(labeled), strategy="margin",
            model_name="logreg", artefact=None,
        )  # fmt: skip
        session.add(version)
        session.flush()
        session.get(Project, pid).current_version_id = version.id
    db.analyze()
    predictions = np.empty(n, dtype=PREDICTION_DTYPE)
    predictions["label"] = rng.integers(0, 3, size=n)
    predictions["confidence"] = rng.uniform(0.34, 1.0, size=n)
    return pid, predictions


CASES: list[tuple[str, ItemFilter, bool]] = [
    ("no filter, first page", ItemFilter(), False),
    ("no filter, last page", ItemFilter(), True),
    ("text: a common word", ItemFilter(text="w3"), False),
    ("text: a rare word (10 items)", ItemFilter(text=RARE), False),
    ("label = spam", ItemFilter(label="spam"), False),
    ("label = spam, last page", ItemFilter(label="spam"), True),
    ("no label", ItemFilter(label="none"), False),
    ("annotator = bob", ItemFilter(annotator="bob"), False),
    ("status = review", ItemFilter(status="review"), False),
    ("status = unlabeled", ItemFilter(status="unlabeled"), False),
    (
        "model predicts spam, confidence < 0.4",
        ItemFilter(predicted="spam", max_confidence=0.4),
        False,
    ),
    ("label ham, model predicts spam", ItemFilter(label="ham", predicted="spam"), False),
    ("text + label + model", ItemFilter(text="w3", label="ham", predicted="spam"), False),
]


def time_cases(
    db: Database, pid: int, n: int, predictions: np.ndarray, repeats: int
) -> list[tuple[str, float, int]]:
    out = []
    for name, f, last in CASES:
        took, found = [], 0
        for _ in range(repeats):
            with db.read() as session:
                project = get_project(session, project_id=pid)
                start = time.perf_counter()
                page = browse_items(
                    session, project, f, after=n - 2000 if last else None, predictions=predictions
                )
                took.append(time.perf_counter() - start)
                found = len(page.items)
        out.append((name, 1000 * statistics.median(took), found))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[str, float, int]]] = {}
    build_seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for database in args.databases.split(","):
            name = None
            if database == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'browse.sqlite3'}"
            else:
                name = f"lw_browse_{os.getpid()}"
                admin = Database(f"{args.pg_url}/postgres")
                with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(text(f"CREATE DATABASE {name}"))
                url = f"{args.pg_url}/{name}"
            db = Database(url)
            try:
                start = time.perf_counter()
                pid, predictions = build(db, args.items, args.seed)
                build_seconds[database] = time.perf_counter() - start
                results[database] = time_cases(db, pid, args.items, predictions, args.repeats)
            finally:
                db.dispose()
                if name is not None:
                    with admin.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT"
                    ) as c:
                        c.execute(text(f"DROP DATABASE {name}"))
                    admin.dispose()
    dbs = list(results)
    print(f"Data browser, {args.items:,} items, a page of 50; median of {args.repeats} runs "
          f"(ms); commit {commit()}; {os.cpu_count()} cores.")  # fmt: skip
    print()
    print("| search | " + " | ".join(f"{d} ms | found" for d in dbs) + " |")
    print("|---|" + "---:|---:|" * len(dbs))
    for i, (name, _, _) in enumerate(CASES):
        cells = " | ".join(f"{results[d][i][1]:,.1f} | {results[d][i][2]}" for d in dbs)
        print(f"| {name} | {cells} |")
    print()
    print("Building the project (import, answers): " + ", ".join(
        f"{d} {s:,.0f} s" for d, s in build_seconds.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
