"""The worker on a multi-label project: it fits one model per label on the label sets, queues
items with per-label probabilities, scores its versions with multi-label metrics and keeps its
predictions as sets."""

from __future__ import annotations

import csv
from pathlib import Path

import joblib
import numpy as np
import pytest
from sqlalchemy import select

from labelwise import label_sets
from labelwise.models.registry import decision_margins
from labelwise.services import worker
from labelwise.services.setup import init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.browse import ItemFilter, browse_items
from labelwise.store.models import Annotator, Item, ModelVersion, QueueEntry
from labelwise.store.prediction_cache import served_predictions
from labelwise.store.projects import ProjectSettings, get_project
from labelwise.store.served import served_model

pytestmark = pytest.mark.slow

LABELS = ["insult", "threat", "spam"]
WORDS = {
    "insult": ["idiot", "moron", "loser", "clown"],
    "threat": ["hurt", "destroy", "regret", "punish"],
    "spam": ["prize", "click", "winner", "offer"],
}
FILLER = ["the", "today", "weather", "meeting", "lunch", "train", "book", "music", "garden"]


def _posts(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """``n`` posts (id, text, true set): each label present with probability 0.35, its words
    then in the text among filler words."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        chosen = [label for label in LABELS if rng.random() < 0.35]
        words = list(rng.choice(FILLER, size=5))
        for label in chosen:
            words += list(rng.choice(WORDS[label], size=2))
        rng.shuffle(words)
        out.append((f"p{i:03d}", " ".join(words), label_sets.encode(chosen, LABELS)))
    return out


def _write(path: Path, posts: list[tuple[str, str, str]]) -> Path:
    """The posts' ids and texts as a CSV to import (their sets are the truth, kept apart)."""
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text"])
        out.writerows((i, t) for i, t, _ in posts)
    return path


@pytest.fixture
def multi(tmp_path: Path, db_url: str):
    posts = _posts(160)
    data = _write(tmp_path / "posts.csv", posts)
    settings = ProjectSettings(
        multi_label=True, retrain_every=5, queue_size=20, overlap=0.0, features="tfidf"
    )
    op, _ = init_project(tmp_path / "proj", data, labels=LABELS, db_url=db_url, settings=settings)
    yield op, {i: truth for i, _, truth in posts}
    op.db.dispose()


def _label(op, truth: dict[str, str], n: int) -> None:
    with op.db.write() as s:
        project = get_project(s, project_id=op.project_id)
        who = create_annotator(s, project, name="ann", role="annotator")[0]
        ids = {i.external_id: i.id for i in s.scalars(select(Item)).all()}
    for ext in sorted(truth)[:n]:
        with op.db.write() as s:
            submit_label(
                s,
                get_project(s, project_id=op.project_id),
                s.get_one(Annotator, who.id),
                item_id=ids[ext],
                value=truth[ext],
            )


def test_a_multi_label_cycle_fits_sets_and_queues_per_label_probabilities(multi):
    op, truth = multi
    _label(op, truth, 60)
    outcome = worker.train_once(op.folder, op.db)
    assert outcome.status == "trained"
    with op.db.read() as s:
        project = get_project(s, project_id=op.project_id)
        version = s.get_one(ModelVersion, project.current_version_id)
        queue = s.scalars(
            select(QueueEntry)
            .where(QueueEntry.model_version_id == version.id)
            .order_by(QueueEntry.rank)
        ).all()
        # Counts per label: an item counts once for every label of its set.
        labeled = [truth[e] for e in sorted(truth)[:60]]
        assert version.label_counts == {
            label: sum(label in label_sets.decode(v) for v in labeled) for label in LABELS
        }
        cv = version.metrics["cv"]
        assert cv["multi_label"] is True
        assert set(cv["per_label"]) == set(LABELS)
        assert 0.5 < cv["macro_f1"] <= 1.0 and 0.0 <= cv["hamming_loss"] < 0.3
        assert len(queue) == 20
        with_drivers = 0
        for entry in queue:
            assert entry.predicted is not None
            assert set(label_sets.decode(entry.predicted)) <= set(LABELS)
            if entry.kind in ("strategy", "exploration", "routine"):
                split = entry.reason["class_split"]
                assert [name for name, _ in split] == LABELS
                assert all(0.0 <= p <= 1.0 for _, p in split)
                thresholds = entry.reason["details"]["thresholds"]
                assert set(thresholds) == set(LABELS)
                # The words explain the label the model is least sure of, toward or away.
                drivers = entry.reason.get("drivers")
                if drivers is not None:
                    margins = decision_margins(
                        np.asarray([[p for _, p in split]]), [thresholds[n] for n, _ in split]
                    )[0]
                    assert margins[LABELS.index(drivers["toward"])] <= margins.min() + 1e-6
                    assert drivers["against"] is None
                    # TF-IDF and one logistic regression per label: exact weights, marked words.
                    assert drivers["method"] == "linear" and drivers["spans"]
                    with_drivers += 1
        assert with_drivers >= 10
        stored = joblib.load(op.folder.root / version.artefact)
        assert list(stored["classes"]) == LABELS

        # The served model predicts sets with per-label probabilities ...
        served = served_model(s, project, op.folder)
        rows = np.arange(10)
        got = served.predict(rows)
        assert got.probabilities is not None and got.probabilities.shape == (10, 3)
        assert got.confidence is not None and np.all((got.confidence >= 0) & (got.confidence <= 1))
        # ... and the predictions file keeps them as sets the data browser filters on.
        cached = served_predictions(s, op.folder, project)
        assert cached is not None and "labels" in cached.dtype.names
        page = browse_items(s, project, ItemFilter(predicted="spam"), limit=200, predictions=cached)
        assert page.predictions and page.items
        assert all("spam" in label_sets.decode(item.predicted) for item in page.items)
        everything = browse_items(s, project, ItemFilter(), limit=200, predictions=cached)
        assert any("spam" not in label_sets.decode(i.predicted) for i in everything.items)
        by_answer = browse_items(s, project, ItemFilter(label="threat"), limit=200)
        answered_threat = {e for e in sorted(truth)[:60] if "threat" in truth[e]}
        assert {item.external_id for item in by_answer.items} == answered_threat


def test_triage_refuses_a_multi_label_project(multi):
    from labelwise.exceptions import InvalidParameterError
    from labelwise.services.triage import triage_items

    op, truth = multi
    with pytest.raises(InvalidParameterError, match="multi-label"):
        triage_items(op.db, op.folder, op.project_id, [1], target=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["self-training", "label-spreading"])
def test_a_semi_supervised_multi_label_model_learns_from_the_unlabeled_items(
    tmp_path: Path, db_url: str, model: str
):
    posts = _posts(120, seed=1)
    data = _write(tmp_path / "posts.csv", posts)
    settings = ProjectSettings(
        multi_label=True, retrain_every=5, queue_size=20, overlap=0.0, features="tfidf", model=model
    )
    op, _ = init_project(tmp_path / "semi", data, labels=LABELS, db_url=db_url, settings=settings)
    try:
        _label(op, {i: truth for i, _, truth in posts}, 60)
        assert worker.train_once(op.folder, op.db).status == "trained"
        with op.db.read() as s:
            version = s.scalars(select(ModelVersion)).one()
            open_ids = {i.id for i in s.scalars(select(Item).where(Item.n_labels == 0))}
        pseudo = version.metrics["pseudo_labels"]
        assert pseudo["from"] == 60  # every unlabeled item of this small project
        assert pseudo["count"] <= pseudo["from"]
        # Each label decided apart: present ("threat") or absent ("not threat"). Label
        # spreading reaches every item; self-training may be sure of nothing this early.
        named = {name.removeprefix("not ") for name in pseudo["by_class"]}
        assert named <= set(LABELS)
        if model == "label-spreading":
            assert pseudo["count"] == 60 and named == set(LABELS)
        assert all(e["item_id"] in open_ids for e in pseudo["examples"])
    finally:
        op.db.dispose()
