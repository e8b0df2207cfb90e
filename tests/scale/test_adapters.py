"""The adapters over :mod:`labelwise.scale`: ``labelwise partition`` and ``labelwise score``, and
the worker scoring a project's pool on a cluster -- each giving what one machine gives."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from labelwise import BatchMix, Pool
from labelwise.cli import app
from labelwise.datasets import bundled_path
from labelwise.io.load import load_dataset
from labelwise.models.registry import make_model
from labelwise.strategies.query import query

pytestmark = pytest.mark.slow
runner = CliRunner()


def _run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pool_files(tmp_path_factory) -> dict[str, Any]:
    """Features, ids, a labels file (as `labelwise export` writes it) and a saved model."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=1500)
    X = (rng.normal(scale=2.0, size=(3, 5))[y] + rng.normal(size=(1500, 5))).astype(np.float32)
    np.save(root / "features.npy", X)
    ids = [f"item-{i:04d}" for i in range(1500)]
    (root / "ids.txt").write_text("\n".join(ids) + "\n")
    labeled = np.sort(rng.choice(1500, size=50, replace=False))
    names = np.asarray(["cat", "dog", "eel"], dtype=object)
    with (root / "labels.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "label", "status"])
        out.writerows([ids[r], "", names[y[r]], "labeled"] for r in labeled)
        out.writerow([ids[labeled[-1] + 1], "", "", "unlabeled"])  # no label: not labeled
    model = make_model("logreg", random_state=0).fit(X[labeled], names[y[labeled]])
    joblib.dump({"model": model, "classes": list(model.classes_)}, root / "v1.joblib")
    result = _run(
        "partition", root / "features.npy", root / "pool",
        "--rows-per-partition", 400, "--ids", root / "ids.txt",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1500 rows x 5 features in 4 npy partitions" in result.output
    return {"root": root, "X": X, "labeled": labeled, "y": names[y[labeled]], "model": model}


def _single_machine(files: dict[str, Any], **kw: Any) -> Any:
    pool = Pool(files["X"])
    pool.label(files["labeled"], files["y"])
    return query(pool, files["model"], **kw)


def test_score_prints_the_single_machine_batch(pool_files, client):
    root = pool_files["root"]
    result = _run(
        "score", root / "pool", "--model", root / "v1.joblib", "--labels", root / "labels.csv",
        "--scheduler", client.scheduler.address, "--strategy", "default", "--batch-size", 12,
        "--routine", 0.25, "--seed", 3, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    expected = _single_machine(
        pool_files, strategy="default", batch_size=12, mix=BatchMix(routine=0.25), random_state=3
    )
    assert [r["row"] for r in records] == expected.indices.tolist()
    assert [r["id"] for r in records] == [f"item-{i:04d}" for i in expected.indices]
    assert [r["reason"] for r in records] == [
        json.loads(json.dumps(reason.to_dict())) for reason in expected.reasons
    ]
    assert {r["kind"] for r in records} >= {"strategy", "routine"}


def test_score_in_plain_text(pool_files, client):
    root = pool_files["root"]
    result = _run(
        "score", root / "pool", "--model", root / "v1.joblib", "--labels", root / "labels.csv",
        "--scheduler", client.scheduler.address, "--strategy", "margin", "--batch-size", 3,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = _single_machine(pool_files, strategy="margin", batch_size=3, random_state=0)
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [int(line[1]) for line in lines] == expected.indices.tolist()
    assert [line[0] for line in lines] == ["1", "2", "3"]
    assert lines[0][5] == expected.reasons[0].summary


def test_local_scheduler_starts_workers_here_and_stops_them():
    from labelwise.scale import connect

    with connect("local:1") as local:
        assert len(local.scheduler_info()["workers"]) == 1
        assert local.submit(sum, [1, 2]).result() == 3
    assert local.status == "closed"


def test_score_errors_are_one_line(pool_files, tmp_path):
    root = pool_files["root"]
    model, labels = root / "v1.joblib", root / "labels.csv"
    base = ["score", root / "pool", "--model", model]
    result = _run(*base, "--labels", labels, "--scheduler", "somewhere:8786")
    assert result.exit_code == 2
    assert "error: --scheduler must be local, local:N or a scheduler address" in result.output
    result = _run(*base[:2], "--model", tmp_path / "none.joblib", "--labels", labels,
                  "--scheduler", "local")  # fmt: skip
    assert result.exit_code == 2 and "no such model file" in result.output
    bad = tmp_path / "labels.csv"
    bad.write_text("id,label\nitem-0001,cat\nnope,dog\n")
    result = _run(*base, "--labels", bad, "--scheduler", "local")
    assert result.exit_code == 2 and "error: id 'nope' is not in the pool" in result.output
    result = _run("score", tmp_path, "--model", model, "--labels", labels, "--scheduler", "local")
    assert result.exit_code == 2 and "is not a partitioned pool" in result.output
    result = _run(*base, "--scheduler", "local")
    assert result.exit_code == 2 and "--labels" in result.output
    result = _run("partition", root / "features.npy", root / "pool")
    assert result.exit_code == 2 and "--overwrite" in result.output


# --- the worker ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sms_csv(tmp_path_factory) -> Path:
    data = load_dataset(bundled_path("sms-spam"))
    picked, seen = [], set()
    counts = {"ham": 0, "spam": 0}
    for text, label in zip(data.items, data.labels, strict=True):
        if counts[label] < {"ham": 240, "spam": 120}[label] and text not in seen:
            counts[label] += 1
            seen.add(text)
            picked.append((f"{label}-{counts[label]}", text, label))
    path = tmp_path_factory.mktemp("sms") / "sms.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "label"])
        out.writerows(picked)
    return path


@pytest.fixture(scope="module")
def tabular_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("tabular") / "points.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "x1", "x2", "x3", "label"])
        for kind, n, centre in (("ham", 240, 0.0), ("spam", 120, 1.5)):
            for i, row in enumerate(rng.normal(centre, 1.0, size=(n, 3)), start=1):
                out.writerow([f"{kind}-{i}", *np.round(row, 4), kind])
    return path


def _trained_queue(
    root: Path, data: Path, client: Any, strategy: str = "default"
) -> list[tuple[Any, ...]]:
    from labelwise.services import worker
    from labelwise.services.setup import init_project
    from labelwise.store.annotators import create_annotator
    from labelwise.store.answers import submit_label
    from labelwise.store.models import Annotator, Item, QueueEntry
    from labelwise.store.projects import ProjectSettings, get_project

    settings = ProjectSettings(
        retrain_every=5, queue_size=25, overlap=0.0, routine=0.1, strategy=strategy
    )
    opened, _ = init_project(root, data, settings=settings)
    try:
        with opened.db.write() as s:
            project = get_project(s, project_id=opened.project_id)
            annotator = create_annotator(s, project, name="ann", role="annotator")[0].id
            ids = {i.external_id: i.id for i in s.scalars(select(Item)).all()}
        for ext in [f"ham-{i}" for i in range(1, 21)] + [f"spam-{i}" for i in range(1, 11)]:
            with opened.db.write() as s:
                submit_label(
                    s,
                    get_project(s, project_id=opened.project_id),
                    s.get_one(Annotator, annotator),
                    item_id=ids[ext],
                    value=ext.split("-")[0],
                )
        outcome = worker.train_once(opened.folder, opened.db, client=client)
        assert outcome.status == "trained", outcome.detail
        with opened.db.read() as s:
            entries = s.scalars(select(QueueEntry).order_by(QueueEntry.rank)).all()
            return [(e.item_id, e.kind, e.utility, e.predicted, e.reason) for e in entries]
    finally:
        opened.db.dispose()


def test_worker_on_a_cluster_queues_what_it_queues_alone(sms_csv, tmp_path, client):
    alone = _trained_queue(tmp_path / "alone", sms_csv, None)
    spread = _trained_queue(tmp_path / "spread", sms_csv, client)
    assert len(spread) == 25
    assert {kind for _, kind, *_ in spread} >= {"strategy", "exploration", "routine"}
    assert spread == alone
    manifest = json.loads((tmp_path / "spread/features/partitions/manifest.json").read_text())
    assert manifest["storage"] == "npz" and manifest["rows"] == 360
    # the partitions follow every file the matrix is made of: the embedding and the TF-IDF
    files = [f["file"] for f in manifest["source"]["files"]]
    assert manifest["source"]["features"] == "tfidf+embedding:wordllama"
    assert files[0].startswith("embedding-wordllama") and files[1] == "matrix.npz"
    assert not (tmp_path / "alone/features/partitions").exists()


def test_a_bandit_worker_on_a_cluster_queues_what_it_queues_alone(sms_csv, tmp_path, client):
    alone = _trained_queue(tmp_path / "alone", sms_csv, None, strategy="bandit")
    spread = _trained_queue(tmp_path / "spread", sms_csv, client, strategy="bandit")
    assert len(spread) == 25
    assert spread == alone
    assert (tmp_path / "spread/features/partitions/manifest.json").is_file()  # it ran there


def test_a_tabular_worker_on_a_cluster_queues_what_it_queues_alone(tabular_csv, tmp_path, client):
    # Tabular pools live in the project's feature file from the import on (no meta.json).
    alone = _trained_queue(tmp_path / "alone", tabular_csv, None)
    spread = _trained_queue(tmp_path / "spread", tabular_csv, client)
    assert len(spread) == 25
    # The same items, kinds, utilities and predictions; the class split shown to the annotator
    # is recomputed for the picked rows alone and may differ in the last bit.
    assert [entry[:4] for entry in spread] == [entry[:4] for entry in alone]
    for (*_, reason_spread), (*_, reason_alone) in zip(spread, alone, strict=True):
        split_spread = reason_spread.pop("class_split", [])
        split_alone = reason_alone.pop("class_split", [])
        assert [c for c, _ in split_spread] == [c for c, _ in split_alone]
        assert [p for _, p in split_spread] == pytest.approx([p for _, p in split_alone], rel=1e-12)
        assert reason_spread == reason_alone
    manifest = json.loads((tmp_path / "spread/features/partitions/manifest.json").read_text())
    assert manifest["rows"] == 360
    assert [f["file"] for f in manifest["source"]["files"]] == ["tabular.npy"]
