"""The worker's cycle without a database: a snapshot and features in memory, a queue out."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from labelwise.features import parse_features
from labelwise.services.cycle import cold_start_queue, fit_cycle
from labelwise.services.training import PoolItem, TrainingSnapshot
from labelwise.store.features import ProjectFeatures
from labelwise.store.projects import ProjectSettings
from labelwise.strategies.reasons import WORDING, Kind

N_ROWS = 200
FIELDS = ("a", "b", "c", "d")


class MemoryItems:
    """A pool's items held in memory (what the worker reads from the database on demand)."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = X
        self.project = SimpleNamespace(kind="tabular")
        self.folder = None

    def __getitem__(self, row: int) -> SimpleNamespace:
        return SimpleNamespace(id=1000 + int(row), row=int(row), content="")

    def prefetch(self, rows) -> None:
        list(rows)

    def fields(self, row: int) -> dict[str, float]:
        return dict(zip(FIELDS, map(float, self.X[int(row)]), strict=True))

    def preview(self, row: int, limit: int) -> str:
        return json.dumps(self.fields(row))[:limit]

    def field_names(self) -> tuple[str, ...]:
        return FIELDS


def _pool() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, len(FIELDS)))
    return X, np.where(X[:, 0] + 0.5 * X[:, 1] > 0, "yes", "no")


def _snapshot(y: np.ndarray, **settings) -> TrainingSnapshot:
    labeled = list(range(40))
    labels = {1000 + r: str(y[r]) for r in labeled}
    return TrainingSnapshot(
        project_id=1,
        label_set=("no", "yes"),
        settings=ProjectSettings(queue_size=10, overlap=0.2, **settings),
        plan="fit",
        labels=labels,
        random_ids=frozenset(list(labels)[:10]),
        rows={1000 + r: r for r in labeled},
        n_rows=N_ROWS,
        n_items=N_ROWS,
        answered_rows=tuple(labeled),
        second_opinions=(1003, 1007),  # answered once, waiting for another answer
        audits=(PoolItem(1150, 150),),
        next_version=4,
    )


@pytest.fixture
def pool() -> tuple[ProjectFeatures, MemoryItems, np.ndarray]:
    X, y = _pool()
    spec = parse_features("tabular", "columns")
    return ProjectFeatures(X, spec, {"columns": (0, X.shape[1])}, ()), MemoryItems(X), y


def test_a_cycle_runs_on_a_snapshot_in_memory(pool):
    features, items, y = pool
    snapshot = _snapshot(y)
    result = fit_cycle(snapshot, features, items)

    queue = result.queue
    assert [q.rank for q in queue] == list(range(len(queue)))
    kinds = [q.kind for q in queue]
    assert kinds.count("overlap") == 2 and kinds.count("audit") == 1
    assert len(queue) == 10 + 2 + 1
    ranked = [q for q in queue if q.kind not in ("overlap", "audit")]
    labeled_ids = set(snapshot.labels)
    # Nothing answered, labeled or audited is ranked; second opinions are answered items.
    assert {q.item_id for q in ranked}.isdisjoint(labeled_ids | {1150})
    assert {q.item_id for q in queue if q.kind == "overlap"} == {1003, 1007}
    for entry in ranked:
        reason = entry.reason
        assert reason.type is Kind(entry.kind) and reason.strategy == "default"
        assert entry.predicted == reason.predicted in ("no", "yes")
        assert isinstance(reason.far_from_labeled, bool) and reason.neighbors is not None
        assert all(n["label"] in ("no", "yes") for n in reason.neighbors)
        assert reason.drivers and reason.drivers["method"] == "linear"
        json.dumps(reason.to_dict())  # stored as JSON with the queue
    audit = next(q for q in queue if q.kind == "audit")
    assert audit.predicted is None and audit.reason.summary == WORDING[Kind.AUDIT].summary
    assert audit.reason.to_dict() == {"kind": "audit", "summary": WORDING[Kind.AUDIT].summary}

    metrics = result.metrics
    assert metrics["conflicts"] == 0 and metrics["cv"] is not None
    assert metrics["agreement_with_previous"] is None  # nothing served to compare with
    assert set(result.artefact) == {"model", "classes", "stop_rows", "stop_predictions", "features"}
    assert result.artefact["classes"] == ["no", "yes"]


def test_the_same_snapshot_gives_the_same_queue_and_agrees_with_itself(pool):
    features, items, y = pool
    snapshot = _snapshot(y)
    first = fit_cycle(snapshot, features, items)
    again = fit_cycle(snapshot, features, items, previous=lambda: first.artefact)
    assert [(q.item_id, q.kind) for q in again.queue] == [(q.item_id, q.kind) for q in first.queue]
    assert again.metrics["agreement_with_previous"] == 1.0


def test_a_cold_start_queue_covers_the_open_pool_without_a_model(pool):
    features, items, y = pool
    snapshot = _snapshot(y)
    queue = cold_start_queue(snapshot, features, items)
    assert len(queue) == 10 and [q.rank for q in queue] == list(range(10))
    assert all(q.kind == "typical" and q.predicted is None for q in queue)
    assert {q.item_id for q in queue}.isdisjoint(set(snapshot.labels))
    assert queue[0].reason.to_dict() == {
        "kind": "typical",
        "summary": WORDING[Kind.TYPICAL].summary,
    }
