"""The worker: one cycle fits on the resolved labels and publishes a version with its queue."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sqlalchemy import select

from labelwise.datasets import bundled_path
from labelwise.io.load import load_dataset
from labelwise.services import worker
from labelwise.services.dashboard import dashboard
from labelwise.services.setup import init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.folder import ProjectFolder
from labelwise.store.leasing import next_item
from labelwise.store.models import Annotator, Item, Label, ModelVersion, QueueEntry
from labelwise.store.projects import ProjectSettings, get_project
from labelwise.store.undo import undo_last

pytestmark = pytest.mark.slow

N_HAM, N_SPAM = 60, 30


@pytest.fixture(scope="module")
def sms_csv(tmp_path_factory) -> Path:
    """A small slice of the bundled SMS data: 60 ham and 30 spam messages, with ids."""
    data = load_dataset(bundled_path("sms-spam"))
    picked: dict[str, list[str]] = {"ham": [], "spam": []}
    wanted = {"ham": N_HAM, "spam": N_SPAM}
    seen: set[str] = set()
    for text, label in zip(data.items, data.labels, strict=True):
        if len(picked[label]) < wanted[label] and text not in seen:
            picked[label].append(text)
            seen.add(text)
    path = tmp_path_factory.mktemp("data") / "sms.csv"
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "label"])
        for label, texts in picked.items():
            out.writerows([f"{label}-{i}", text, label] for i, text in enumerate(texts))
    return path


class Project:
    """An initialised project folder, its ground truth and one annotator."""

    def __init__(
        self,
        root: Path,
        data: Path,
        db_url: str,
        overlap: float = 0.0,
        features: str | None = None,
    ):
        settings = ProjectSettings(
            retrain_every=5, queue_size=20, overlap=overlap, features=features
        )
        self.op, _ = init_project(root, data, db_url=db_url, settings=settings)
        self.db = self.op.db
        with self.db.write() as s:
            project = get_project(s, project_id=self.op.project_id)
            self.annotator_id = create_annotator(s, project, name="ann", role="annotator")[0].id
            items = s.scalars(select(Item).where(Item.project_id == project.id)).all()
            self.ids = {item.external_id: item.id for item in items}

    def label(self, external_ids: list[str]) -> None:
        for ext in external_ids:
            with self.db.write() as s:
                submit_label(
                    s,
                    get_project(s, project_id=self.op.project_id),
                    s.get_one(Annotator, self.annotator_id),
                    item_id=self.ids[ext],
                    value=ext.split("-")[0],
                )

    def train(self, **kwargs):
        return worker.train_once(self.op.folder, self.db, **kwargs)

    def current(self) -> tuple[ModelVersion | None, list[QueueEntry]]:
        with self.db.read() as s:
            project = get_project(s, project_id=self.op.project_id)
            version = (
                s.get(ModelVersion, project.current_version_id)
                if project.current_version_id
                else None
            )
            queue = s.scalars(
                select(QueueEntry)
                .where(QueueEntry.project_id == project.id)
                .order_by(QueueEntry.rank)
            ).all()
            return version, list(queue)


@pytest.fixture
def project(tmp_path, sms_csv, db_url):
    proj = Project(tmp_path / "proj", sms_csv, db_url)
    yield proj
    proj.db.dispose()


FIRST_30 = [f"ham-{i}" for i in range(15)] + [f"spam-{i}" for i in range(15)]


def test_a_cycle_publishes_a_version_its_artefact_and_a_queue(project):
    project.label(FIRST_30)
    outcome = project.train()
    assert (outcome.status, outcome.version) == ("trained", 1)
    version, queue = project.current()
    assert version is not None
    assert (version.version, version.status, version.n_labels) == (1, "ready", 30)
    assert version.label_counts == {"ham": 15, "spam": 15}
    assert version.metrics["cv"] is not None and version.metrics["conflicts"] == 0
    artefact = project.op.folder.root / version.artefact
    assert artefact.parent == project.op.folder.models_dir and artefact.is_file()
    stored = joblib.load(artefact)
    assert sorted(stored["classes"]) == ["ham", "spam"]

    labeled = {project.ids[ext] for ext in FIRST_30}
    assert len(queue) == 20
    assert [q.rank for q in queue] == list(range(20))
    assert len({q.item_id for q in queue}) == 20
    assert not {q.item_id for q in queue} & labeled
    for entry in queue:
        assert entry.kind in ("strategy", "exploration", "routine")
        assert entry.model_version_id == version.id
        assert entry.reason["kind"] == entry.kind
        assert entry.reason["summary"]
        assert isinstance(entry.reason["far_from_labeled"], bool)
        # Only close neighbours are shown: at or above the floor, at most three, closest first.
        neighbors = entry.reason["neighbors"]
        floor = entry.reason["neighbors_floor"]
        assert 0 < floor < 1
        assert len(neighbors) <= 3
        assert all(n["similarity"] >= floor for n in neighbors)
        assert [n["similarity"] for n in neighbors] == sorted(
            (n["similarity"] for n in neighbors), reverse=True
        )
        assert {n["item_id"] for n in neighbors} <= labeled
        assert all(n["label"] in ("ham", "spam") and n["preview"] for n in neighbors)
        if not neighbors:
            assert entry.reason["far_from_labeled"]
    assert any(entry.reason["neighbors"] for entry in queue)

    with project.db.write() as s:
        got = next_item(
            s,
            get_project(s, project_id=project.op.project_id),
            s.get_one(Annotator, project.annotator_id),
        )
    assert got is not None
    assert got.item.id == queue[0].item_id
    assert got.model_version_id == version.id and got.kind == queue[0].kind


@pytest.fixture
def tfidf_project(tmp_path, sms_csv, db_url):
    proj = Project(tmp_path / "proj", sms_csv, db_url, features="tfidf")
    yield proj
    proj.db.dispose()


def test_queued_text_items_carry_the_words_that_drive_the_prediction(tfidf_project):
    project = tfidf_project
    project.label(FIRST_30)
    project.train()
    _, queue = project.current()
    with project.db.read() as s:
        texts = {i.id: i.content for i in s.scalars(select(Item))}
    with_drivers = [q for q in queue if q.reason.get("drivers")]
    assert len(with_drivers) >= len(queue) - 2  # an item with no known word has none
    for entry in with_drivers:
        drivers = entry.reason["drivers"]
        text = texts[entry.item_id]
        assert (drivers["toward"], drivers["against"]) == ("spam", "ham")
        weights = [w for _, w in drivers["terms"]]
        assert weights == sorted(weights, key=abs, reverse=True)
        # the words are the item's own, and every span marks one of them
        words = {w for term, _ in drivers["terms"] for w in term.split(" ")}
        for start, end, _ in drivers["spans"]:
            assert 0 <= start < end <= len(text)
            assert text[start:end].lower() in words


def test_successive_versions_compare_predictions_on_a_fixed_stop_set(project):
    project.label(FIRST_30)
    project.train()
    first, _ = project.current()
    assert first.metrics["agreement_with_previous"] is None  # nothing to compare with yet
    assert first.artefact.endswith("v00001.joblib")
    project.label([f"ham-{i}" for i in range(15, 25)])
    assert project.train().status == "trained"
    second, _ = project.current()
    kappa = second.metrics["agreement_with_previous"]
    assert kappa is not None and -1.0 <= kappa <= 1.0
    assert second.artefact.endswith("v00002.joblib")
    old, new = (joblib.load(project.op.folder.root / v.artefact) for v in (first, second))
    assert (old["stop_rows"] == new["stop_rows"]).all()
    assert not list(project.op.folder.models_dir.glob("pending-*"))


def test_too_few_new_labels_leave_the_worker_idle(project):
    project.label(FIRST_30)
    assert project.train().status == "trained"
    project.label(["ham-20", "spam-20"])
    outcome = project.train()
    assert outcome.status == "idle"
    assert outcome.detail == "2 new labels of 5 needed"
    project.label(["ham-21", "ham-22", "spam-21"])
    outcome = project.train()
    assert (outcome.status, outcome.version) == ("trained", 2)
    version, queue = project.current()
    assert version.n_labels == 35
    assert {q.model_version_id for q in queue} == {version.id}  # the old queue is gone


def test_one_class_is_not_enough_to_train(project):
    project.label(["ham-0", "ham-1", "ham-2"])
    assert project.train().status == "cold-start"  # the first cycle queues typical items
    outcome = project.train()
    assert (outcome.status, outcome.detail) == ("idle", "fewer than two classes labeled")
    version, _ = project.current()
    assert version.status == "cold-start" and version.artefact is None


def test_before_the_first_model_the_queue_holds_the_pools_typical_items(project):
    # TypiClust: one item per k-means region of the pool, the most typical of its region, in
    # the embedding space; published without a model, and again when the pool grows.
    from labelwise.services.why import neighbour_space
    from labelwise.store.features import project_features
    from labelwise.strategies.selectors import typical_points

    outcome = project.train()
    assert (outcome.status, outcome.detail) == ("cold-start", "20 typical items queued")
    version, queue = project.current()
    assert (version.status, version.artefact, version.n_labels) == ("cold-start", None, 0)
    assert [q.kind for q in queue] == ["typical"] * 20
    assert all(q.reason["kind"] == "typical" and q.predicted is None for q in queue)
    assert len({q.item_id for q in queue}) == 20
    with project.db.read() as s:
        p = get_project(s, project_id=project.op.project_id)
        space = neighbour_space(project_features(s, p, project.op.folder))
        rows = {i.id: i.row for i in s.scalars(select(Item))}
    n_items = N_HAM + N_SPAM
    expected = typical_points(space[np.arange(n_items)], 20, np.random.default_rng([0, n_items, 3]))
    assert [rows[q.item_id] for q in queue] == expected.tolist()
    # served to annotators as such, and their answers are no random sample
    with project.db.write() as s:
        got = next_item(
            s,
            get_project(s, project_id=project.op.project_id),
            s.get_one(Annotator, project.annotator_id),
        )
    assert (got.item.id, got.kind, got.reason.kind) == (queue[0].item_id, "typical", "typical")
    # nothing new: the queue stands; the first fit replaces it
    assert project.train().status == "idle"
    project.label(FIRST_30)
    assert project.train().status == "trained"
    assert project.current()[0].status == "ready"


class _Broken(ClassifierMixin, BaseEstimator):
    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        raise RuntimeError("the model fell over")

    def predict(self, X):  # a classifier's interface (cross-validation checks for it)
        raise RuntimeError("never fitted")


def test_a_failed_fit_is_recorded_and_changes_nothing_served(project, monkeypatch):
    project.label(FIRST_30)
    assert project.train().status == "trained"
    before_version, before_queue = project.current()
    project.label([f"ham-{i}" for i in range(20, 25)])
    from labelwise.store import features as store_features

    monkeypatch.setattr(store_features, "make_model", lambda name, random_state=None: _Broken())
    outcome = project.train()
    assert (outcome.status, outcome.version) == ("failed", 2)
    assert "the model fell over" in outcome.detail
    version, queue = project.current()
    assert version.id == before_version.id
    assert [(q.item_id, q.rank) for q in queue] == [(q.item_id, q.rank) for q in before_queue]
    with project.db.read() as s:
        failed = s.scalars(select(ModelVersion).where(ModelVersion.version == 2)).one()
    assert failed.status == "failed" and failed.artefact is None
    assert "RuntimeError: the model fell over" in failed.error
    assert not project.op.folder.artefact_path(2).exists()
    monkeypatch.undo()
    outcome = project.train()  # the next cycle tries again, and succeeds
    assert (outcome.status, outcome.version) == ("trained", 3)


def test_overlap_items_come_back_as_second_opinions_for_someone_else(tmp_path, sms_csv, db_url):
    project = Project(tmp_path / "proj", sms_csv, db_url, overlap=1.0)
    try:
        project.label(FIRST_30)
        assert project.train().status == "trained"
        _, queue = project.current()
        labeled = {project.ids[ext] for ext in FIRST_30}
        second = [q for q in queue if q.kind == "overlap"]
        assert second and {q.item_id for q in second} <= labeled
        assert all(q.reason["kind"] == "overlap" for q in second)
        assert {q.item_id for q in queue if q.kind != "overlap"}.isdisjoint(labeled)
        assert [q.rank for q in queue] == list(range(len(queue)))
        with project.db.write() as s:
            p = get_project(s, project_id=project.op.project_id)
            other = create_annotator(s, p, name="bob", role="annotator")[0]
            ann = s.get_one(Annotator, project.annotator_id)
            for_ann = next_item(s, p, ann)
            for_bob = next_item(s, p, other)
        assert for_ann is not None and for_ann.item.id not in labeled
        assert for_bob is not None and for_bob.item.id == queue[0].item_id
    finally:
        project.db.dispose()


def test_a_failure_before_the_fit_is_recorded_too(project, monkeypatch):
    # Building the features is part of the cycle: a broken pool must not kill the worker.
    project.label(FIRST_30)

    def broken_features(*args, **kwargs):
        raise OSError("features/matrix.npz: disk full")

    monkeypatch.setattr(worker, "project_features", broken_features)
    outcome = project.train()
    assert (outcome.status, outcome.version) == ("failed", 1)
    assert "disk full" in outcome.detail
    assert project.current() == (None, [])
    with project.db.read() as s:
        failed = s.scalars(select(ModelVersion)).one()
    assert failed.status == "failed" and "OSError: features/matrix.npz: disk full" in failed.error


def test_an_answer_undone_while_the_worker_fits_is_not_queued(project, monkeypatch):
    # Found under load: the labels are read before the fit and the open items after it, so an
    # undo in between reopened an item the model trained on, and ranking it failed the cycle.
    project.label(FIRST_30)
    project_features = worker.project_features

    def undo_meanwhile(*args, **kwargs):
        with project.db.write() as s:
            undo_last(
                s,
                get_project(s, project_id=project.op.project_id),
                s.get_one(Annotator, project.annotator_id),
            )
        return project_features(*args, **kwargs)

    monkeypatch.setattr(worker, "project_features", undo_meanwhile)
    outcome = project.train()
    assert (outcome.status, outcome.version) == ("trained", 1)
    version, queue = project.current()
    assert version.n_labels == 30  # fitted on what was read
    assert project.ids[FIRST_30[-1]] not in {q.item_id for q in queue}  # queued next cycle


def _label_everything_known(op, truth: dict[str, str], n: int) -> None:
    with op.db.write() as s:
        project = get_project(s, project_id=op.project_id)
        annotator = s.get_one(Annotator, 1)
        items = s.scalars(select(Item).where(Item.project_id == project.id)).all()
        for item in items[:n]:
            submit_label(s, project, annotator, item_id=item.id, value=truth[item.external_id])


def test_queued_images_carry_an_occlusion_map_that_finds_the_planted_square(tmp_path, db_url):
    rng = np.random.default_rng(0)
    n = 120
    images = (rng.uniform(0, 120, size=(n, 28, 28))).astype(np.uint8)
    y = np.asarray(["clear", "marked"] * (n // 2))
    images[y == "marked", 4:10, 18:24] += 120
    data = tmp_path / "planted.npz"
    np.savez(data, images=images, labels=y)
    settings = ProjectSettings(retrain_every=5, queue_size=10)
    op, _ = init_project(tmp_path / "img", data, db_url=db_url, settings=settings)
    try:
        with op.db.read() as s:
            ids = [i.external_id for i in s.scalars(select(Item).order_by(Item.row))]
        _label_everything_known(op, dict(zip(ids, y.tolist(), strict=True)), 60)
        assert worker.train_once(op.folder, op.db).status == "trained"
        with op.db.read() as s:
            queue = s.scalars(select(QueueEntry).order_by(QueueEntry.rank)).all()
            rows = {i.id: i.row for i in s.scalars(select(Item))}
        hits = 0
        for entry in (q for q in queue if q.kind != "overlap"):  # second opinions have none
            occ = entry.reason["occlusion"]
            assert (occ["height"], occ["width"]) == (28, 28)
            drop = np.asarray(occ["drop"])
            assert drop.shape == (-(-28 // occ["patch"]),) * 2
            if y[rows[entry.item_id]] == "marked" and occ["target"] == "marked":
                top, left = np.unravel_index(np.argmax(drop), drop.shape)
                p = occ["patch"]
                # the peak patch overlaps the planted square (rows 4-9, columns 18-23)
                hits += top * p < 10 and (top + 1) * p > 4 and left * p < 24 and (left + 1) * p > 18
        assert hits >= 1
    finally:
        op.db.dispose()


@pytest.mark.parametrize("model", ["logreg", "forest"])
def test_queued_tabular_items_carry_their_fields_contributions(tmp_path, db_url, model):
    if model == "forest":
        pytest.importorskip("shap")
    rng = np.random.default_rng(1)
    n = 80
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["age", "dose", "noise"])
    frame["label"] = np.where(frame["dose"] > 0, "high", "low")
    frame["id"] = [f"r{i}" for i in range(n)]
    data = tmp_path / "table.csv"
    frame.to_csv(data, index=False)
    settings = ProjectSettings(retrain_every=5, queue_size=10, model=model)
    op, _ = init_project(tmp_path / "tab", data, db_url=db_url, settings=settings)
    try:
        _label_everything_known(op, dict(zip(frame["id"], frame["label"], strict=True)), 40)
        assert worker.train_once(op.folder, op.db).status == "trained"
        with op.db.read() as s:
            queue = s.scalars(select(QueueEntry).where(QueueEntry.kind != "overlap")).all()
            external = {i.id: i.external_id for i in s.scalars(select(Item))}
        dose = dict(zip(frame["id"], frame["dose"], strict=True))
        assert queue
        for entry in queue:
            drivers = entry.reason["drivers"]
            assert (drivers["toward"], drivers["against"]) == ("low", "high")
            weights = dict(drivers["terms"])
            assert set(weights) <= {"age", "dose", "noise"}
            # fields are named right: a dose above the pool's average (logreg centres columns
            # on it) pushes toward "high", so away from "low"; the trees split near 0
            if "dose" in weights:
                centre = frame["dose"].mean() if model == "logreg" else 0.0
                offset = dose[external[entry.item_id]] - centre
                assert np.sign(weights["dose"]) == -np.sign(offset)
    finally:
        op.db.dispose()


def test_tabular_neighbours_carry_their_fields_drivers_first(tmp_path, db_url, monkeypatch):
    monkeypatch.setattr("labelwise.services.why.FIELDS_SHOWN", 4)
    rng = np.random.default_rng(2)
    n = 80
    columns = ["age", "dose", "noise", "weight", "height", "pulse"]
    frame = pd.DataFrame(rng.normal(size=(n, 6)) / 3, columns=columns)  # 16-digit floats
    frame["label"] = np.where(frame["dose"] > 0, "high", "low")
    frame["id"] = [f"r{i}" for i in range(n)]
    data = tmp_path / "table.csv"
    frame.to_csv(data, index=False)
    settings = ProjectSettings(retrain_every=5, queue_size=10, overlap=0.0)
    op, _ = init_project(tmp_path / "tab", data, db_url=db_url, settings=settings)
    try:
        _label_everything_known(op, dict(zip(frame["id"], frame["label"], strict=True)), 40)
        assert worker.train_once(op.folder, op.db).status == "trained"
        with op.db.read() as s:
            queue = s.scalars(select(QueueEntry)).all()
            external = {i.id: i.external_id for i in s.scalars(select(Item))}
        by_id = frame.set_index("id")
        shown = [(q, nb) for q in queue for nb in q.reason["neighbors"]]
        assert shown
        for entry, neighbour in shown:
            fields = neighbour["fields"]  # [name, value] pairs, never a cut-off JSON line
            assert len(fields) == 4 and neighbour["fields_left_out"] == 2
            names = [name for name, _ in fields]
            assert set(names) <= set(columns) and len(set(names)) == 4
            row = by_id.loc[external[neighbour["item_id"]]]
            for name, value in fields:
                assert value == pytest.approx(row[name], rel=1e-6)
            # the fields behind the prediction come first
            drivers = [t for t, _ in entry.reason["drivers"]["terms"]]
            assert names[: min(4, len(drivers))] == drivers[:4]
    finally:
        op.db.dispose()


def test_queued_items_offer_their_open_near_duplicates(tmp_path, sms_csv, db_url):
    import pandas as pd

    frame = pd.read_csv(sms_csv)
    # three exact copies of every spam message, under new ids
    copies = pd.concat(
        [
            frame[frame.label == "spam"].assign(id=lambda f, k=k: f.id + f"-copy{k}")
            for k in range(3)
        ]
    )
    data = tmp_path / "with-copies.csv"
    pd.concat([frame, copies]).to_csv(data, index=False)
    proj = Project(tmp_path / "dup", data, db_url)
    try:
        proj.label(FIRST_30)
        proj.train()
        _, queue = proj.current()
        with proj.db.read() as s:
            text_of = {i.id: i.content for i in s.scalars(select(Item))}
        offered = [q for q in queue if q.reason.get("duplicates")]
        assert offered
        for entry in offered:
            for dup in entry.reason["duplicates"]:
                assert dup["item_id"] != entry.item_id
                assert dup["similarity"] >= 0.9
                if dup["similarity"] > 0.9999:
                    assert text_of[dup["item_id"]] == text_of[entry.item_id]
        # every queued item with identical open copies is offered all of them
        labeled = {proj.ids[ext] for ext in FIRST_30}
        queued = {q.item_id for q in queue}
        for entry in queue:
            copies = {
                i
                for i, t in text_of.items()
                if t == text_of[entry.item_id] and i != entry.item_id and i not in labeled
            }
            offered_ids = {d["item_id"] for d in entry.reason.get("duplicates", [])}
            if entry.kind != "overlap":
                assert copies <= offered_ids, (entry.item_id, copies, offered_ids)
        assert queued
    finally:
        proj.db.dispose()


@pytest.mark.parametrize("model", ["self-training", "label-spreading"])
def test_a_semi_supervised_model_reports_its_pseudo_labels_and_stores_none(
    tmp_path, sms_csv, db_url, model
):
    settings = ProjectSettings(retrain_every=5, queue_size=20, overlap=0.0, model=model)
    op, _ = init_project(tmp_path / "semi", sms_csv, db_url=db_url, settings=settings)
    try:
        with op.db.write() as s:
            project = get_project(s, project_id=op.project_id)
            admin = s.get_one(Annotator, 1)
            for item in s.scalars(select(Item).where(Item.external_id.in_(FIRST_30))):
                submit_label(
                    s, project, admin, item_id=item.id, value=item.external_id.split("-")[0]
                )
        with op.db.read() as s:
            answers_before = len(s.scalars(select(Label)).all())
        assert worker.train_once(op.folder, op.db).status == "trained"
        with op.db.read() as s:
            version = s.scalars(select(ModelVersion)).one()
            answers_after = len(s.scalars(select(Label)).all())
            open_ids = {i.id for i in s.scalars(select(Item).where(Item.n_labels == 0))}
        pseudo = version.metrics["pseudo_labels"]
        assert pseudo["from"] == 60  # every unlabeled item of this small project
        assert pseudo["count"] <= pseudo["from"]
        if model == "label-spreading":
            assert pseudo["count"] == 60  # every unlabeled item takes part
        # self-training may find nothing it is sure of this early: then it says so, 0
        assert sum(pseudo["by_class"].values()) == pseudo["count"]
        assert set(pseudo["by_class"]) <= {"ham", "spam"}
        assert all(e["item_id"] in open_ids for e in pseudo["examples"])
        assert answers_after == answers_before  # pseudo-labels are nobody's answer
    finally:
        op.db.dispose()


def test_a_bandit_project_learns_across_versions_from_its_random_items(
    tmp_path, sms_csv, db_url, monkeypatch
):
    from labelwise.store import leasing

    # The random picks before any model, seeded: every fold of them then holds both classes.
    monkeypatch.setattr(leasing, "_FALLBACK_RNG", np.random.default_rng(7))
    settings = ProjectSettings(retrain_every=5, queue_size=20, overlap=0.0, strategy="bandit")
    op, _ = init_project(tmp_path / "bandit", sms_csv, db_url=db_url, settings=settings)

    def label_next(n: int) -> list[str]:
        kinds = []
        for _ in range(n):
            with op.db.write() as s:
                project = get_project(s, project_id=op.project_id)
                admin = s.get_one(Annotator, 1)
                got = next_item(s, project, admin)
                assert got is not None
                kinds.append(got.kind)
                truth = got.item.external_id.split("-")[0]
                submit_label(s, project, admin, item_id=got.item.id, value=truth)
        return kinds

    try:
        assert set(label_next(30)) == {"cold-start"}  # no model yet: uniform random picks
        assert worker.train_once(op.folder, op.db).status == "trained"
        label_next(12)
        assert worker.train_once(op.folder, op.db).status == "trained"
        with op.db.read() as s:
            first, second = s.scalars(select(ModelVersion).order_by(ModelVersion.version)).all()
            queued = s.scalars(
                select(QueueEntry).where(QueueEntry.model_version_id == second.id)
            ).all()
            stats = dashboard(s, get_project(s, project_id=op.project_id))
        state1, state2 = first.metrics["bandit"]["state"], second.metrics["bandit"]["state"]
        # Version 1 measured its random items (the 30 cold-start answers) and played an arm;
        # version 2 continued from that state and rewarded the arm that built version 1's queue.
        assert len(state1["last_correct"]) == 30 and state1["last_arm"] in state1["arms"]
        assert len(state2["rewards"][state1["last_arm"]]) == 1
        assert sum(len(r) for r in state2["rewards"].values()) == 1
        assert set(state2["last_correct"]) >= set(state1["last_correct"])
        arms = {a["arm"] for a in second.metrics["bandit"]["arms"]}
        assert arms == set(state2["arms"])
        assert stats["bandit"] == second.metrics["bandit"]["arms"]
        strategy_picks = [q for q in queued if q.kind == "strategy"]
        assert all(q.reason["details"]["arm"] == state2["last_arm"] for q in strategy_picks)
    finally:
        op.db.dispose()


def test_words_that_drive_an_embedding_model_are_found_by_leaving_each_out(project):
    # The default features (auto: TF-IDF and wordllama side by side) are no linear model on
    # words: each word is left out in turn and the text scored again.
    from labelwise.services.drivers import text_scorer
    from labelwise.store.features import project_features

    project.label(FIRST_30)
    project.train()
    version, queue = project.current()
    with project.db.read() as s:
        texts = {i.id: i.content for i in s.scalars(select(Item))}
        features = project_features(
            s, get_project(s, project_id=project.op.project_id), project.op.folder
        )
    model = joblib.load(project.op.folder.root / version.artefact)["model"]
    score = text_scorer(features, project.op.folder, model)
    with_drivers = [q for q in queue if q.reason.get("drivers")]
    assert len(with_drivers) >= len(queue) - 2
    for entry in with_drivers:
        drivers = entry.reason["drivers"]
        text = texts[entry.item_id]
        assert drivers["method"] == "leave-one-word-out"
        assert drivers["toward"] == entry.predicted  # the predicted class
        assert drivers["against"] == ({"ham", "spam"} - {entry.predicted}).pop()
        weights = [w for _, w in drivers["terms"]]
        assert weights == sorted(weights, key=abs, reverse=True)
        words = {term for term, _ in drivers["terms"]}
        assert words <= {m.lower() for m in re.findall(r"(?u)\b\w\w+\b", text)}
        for start, end, w in drivers["spans"]:
            assert text[start:end].lower() in words
            assert w == dict(drivers["terms"])[text[start:end].lower()]
    # The weight is what leaving the word out does to the probability of the predicted class.
    entry = with_drivers[0]
    word, weight = entry.reason["drivers"]["terms"][0]
    text = texts[entry.item_id]
    without = " ".join(
        part.strip() for part in re.split(rf"(?i)\b{re.escape(word)}\b", text) if part.strip()
    )
    out = score([text, without])
    column = list(out.classes).index(entry.predicted)
    assert weight == pytest.approx(out.values[0, column] - out.values[1, column], abs=1e-3)


def test_an_auto_version_records_the_representation_it_chose(tmp_path, sms_csv, db_url):
    project = Project(tmp_path / "proj", sms_csv, db_url, features="auto")
    project.label(FIRST_30)
    project.train()
    version, _ = project.current()
    record = version.metrics["representation"]
    assert record["features"] == "auto:wordllama"
    assert set(record["cv_macro_f1"]) == {"all", "embedding", "tfidf"}
    assert record["choice"] in record["cv_macro_f1"]
    assert all(0.0 <= v <= 1.0 for v in record["cv_macro_f1"].values())
    project.db.dispose()


def test_a_queued_item_shows_the_labeled_copy_of_itself_as_its_nearest_neighbour(
    tmp_path, sms_csv, db_url
):
    # Every open spam message has a labeled twin (the same text with one word changed): the
    # twin is shown, as the closest neighbour; unrelated labeled items stay hidden.
    frame = pd.read_csv(sms_csv)
    spam = frame[frame["label"] == "spam"]
    twins = spam.assign(id=[f"twin-{i}" for i in range(len(spam))], text=spam["text"] + " thanks")
    data = tmp_path / "with-twins.csv"
    pd.concat([frame, twins]).to_csv(data, index=False)
    proj = Project(tmp_path / "proj", data, db_url)
    try:
        labeled = [f"ham-{i}" for i in range(30)] + [f"twin-{i}" for i in range(len(spam))]
        for ext in labeled:
            with proj.db.write() as s:
                submit_label(
                    s,
                    get_project(s, project_id=proj.op.project_id),
                    s.get_one(Annotator, proj.annotator_id),
                    item_id=proj.ids[ext],
                    value="spam" if ext.startswith("twin") else "ham",
                )
        assert proj.train().status == "trained"
        _, queue = proj.current()
        with proj.db.read() as s:
            external = {i.id: i.external_id for i in s.scalars(select(Item))}
        spam_entries = [q for q in queue if external[q.item_id].startswith("spam-")]
        assert spam_entries
        for entry in spam_entries:
            twin = f"twin-{external[entry.item_id].split('-')[1]}"
            nearest = entry.reason["neighbors"][0]
            assert external[nearest["item_id"]] == twin
            assert nearest["similarity"] > 0.9
            assert not entry.reason["far_from_labeled"]
    finally:
        proj.db.dispose()


def test_texts_that_mean_the_same_but_read_differently_are_never_grouped(tmp_path, sms_csv, db_url):
    # Near-duplicates take one answer together, so they must be the same text in practice. In
    # a bag-of-token embedding a reordered sentence is the same point (cosine 1.0), so the
    # embedding alone would group texts that say the opposite: the texts are compared too.
    from labelwise.services.why import near_identical

    assert near_identical("Call me now, it's urgent!!", "call me now   its urgent")
    assert not near_identical("the patient has pneumonia", "the patient has no pneumonia")
    assert not near_identical("win a £100 prize today", "win a £200 prize today")

    frame = pd.read_csv(sms_csv)
    base = "the driver did not hit the cyclist, the cyclist hit the parked car"
    variants = pd.DataFrame(
        {
            "id": ["base", "base-copy", "roles-swapped"],
            "text": [
                base,
                "The driver did not hit the cyclist; the cyclist hit the parked car.",
                "the cyclist did not hit the parked car, the driver hit the cyclist",
            ],
            "label": ["ham"] * 3,
        }
    )
    data = tmp_path / "variants.csv"
    pd.concat([frame, variants]).to_csv(data, index=False)
    proj = Project(tmp_path / "proj", data, db_url, features="embedding")
    try:
        proj.label(FIRST_30)
        proj.train()
        _, queue = proj.current()
        with proj.db.read() as s:
            external = {i.id: i.external_id for i in s.scalars(select(Item))}
        groups = {
            external[q.item_id]: {external[d["item_id"]] for d in q.reason.get("duplicates", [])}
            for q in queue
        }
        for name in ("base", "base-copy"):
            if name in groups:  # queued: its copy is offered, the swapped sentence is not
                assert groups[name] == {"base", "base-copy"} - {name}
        assert "roles-swapped" not in set().union(*groups.values())
        assert groups.get("roles-swapped", set()) == set()
        assert {"base", "base-copy", "roles-swapped"} & set(groups)  # the test saw them
    finally:
        proj.db.dispose()


def test_a_full_disk_while_saving_the_model_leaves_no_file_behind(project, monkeypatch):
    import errno

    project.label(FIRST_30)

    def full(value, fh, *args, **kwargs):
        fh.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(worker.joblib, "dump", full)
    outcome = project.train()
    assert outcome.status == "failed" and "No space left" in outcome.detail
    assert not list(project.op.folder.models_dir.iterdir())  # no pending-*.joblib left
    assert project.current()[0] is None or project.current()[0].status != "ready"


def _cut(path: Path, keep: int = 100) -> None:
    """What a full disk or a crash without fsync leaves: the file cut short."""
    data = path.read_bytes()
    path.write_bytes(data[: min(keep, len(data) // 2)])


def test_a_damaged_feature_cache_is_rebuilt_and_a_damaged_served_model_is_passed_over(
    tfidf_project,
):
    project = tfidf_project
    project.label(FIRST_30)
    assert project.train().status == "trained"
    version, _ = project.current()
    features = project.op.folder.features_dir
    _cut(features / "matrix.npz")
    _cut(features / "featurizer.joblib")
    _cut(project.op.folder.root / version.artefact)  # the served model: only compared with
    project.label([f"ham-{i}" for i in range(15, 20)])
    outcome = project.train()
    assert outcome.status == "trained", outcome.detail
    second, queue = project.current()
    assert second.metrics["agreement_with_previous"] is None  # nothing sound to compare with
    assert queue and all(q.reason.get("drivers") for q in queue[:5])  # explanations are back
    import scipy.sparse as sp

    assert sp.load_npz(features / "matrix.npz").shape[0] == N_HAM + N_SPAM


def test_a_damaged_embedding_file_is_made_again_from_the_items(project):
    from labelwise.features import make_embedder
    from labelwise.store.row_file import embedding_file

    project.label(FIRST_30)
    rows = embedding_file(project.op.folder.features_dir, "wordllama")
    rows.path.write_bytes(b"garbage, not an npy header" * 10)
    assert project.train().status == "trained"
    matrix = np.load(rows.path, mmap_mode="r")
    with project.db.read() as s:
        texts = [i.content for i in s.scalars(select(Item).order_by(Item.row))]
    np.testing.assert_allclose(matrix, make_embedder("wordllama").embed(texts), atol=1e-6)


def test_a_damaged_pool_fails_the_fit_naming_the_file_and_status_says_so(tmp_path, db_url):
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    frame["label"] = np.where(frame["a"] > 0, "yes", "no")
    frame["id"] = [f"r{i}" for i in range(60)]
    frame.to_csv(tmp_path / "t.csv", index=False)
    op, _ = init_project(tmp_path / "tab", tmp_path / "t.csv", db_url=db_url)
    try:
        _label_everything_known(op, dict(zip(frame["id"], frame["label"], strict=True)), 30)
        pool = op.folder.features_dir / "tabular.npy"
        pool.write_bytes(b"\x93NUMPY garbage" + bytes(200))  # the pool itself: not derived
        outcome = worker.train_once(op.folder, op.db)
        assert outcome.status == "failed" and "tabular.npy" in outcome.detail
        # a process of its own, as the command runs (its connections end with it)
        result = subprocess.run(
            [sys.executable, "-m", "labelwise.cli", "status", str(op.folder.root), "--db", db_url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "last fit failed (v" in result.stdout and "tabular.npy" in result.stdout
    finally:
        op.db.dispose()


def test_a_fit_that_keeps_failing_is_retried_ever_less_often(tmp_path, monkeypatch):
    import threading

    waits: list[float] = []

    class Stop(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            return False

    monkeypatch.setattr(worker, "train_once", lambda *a, **k: worker.TrainingOutcome("failed", "x"))
    monkeypatch.setattr(worker, "sweep_artefacts", lambda *a: [])
    monkeypatch.setattr(worker, "sweep_leftover_media", lambda *a: [])
    folder = ProjectFolder.create(tmp_path / "p", "p")
    worker.run_worker(folder, None, poll_seconds=2.0, stop=Stop(), max_cycles=12)
    assert waits[:4] == [4.0, 8.0, 16.0, 32.0]
    assert max(waits) == worker.FAILURE_BACKOFF_MAX


def _groups_of(op) -> list[tuple[str, list[str]]]:
    """Every queued item's offered near-duplicates, by external id."""
    with op.db.read() as s:
        external = {i.id: i.external_id for i in s.scalars(select(Item))}
        queue = s.scalars(select(QueueEntry)).all()
        return [
            (external[q.item_id], [external[d["item_id"]] for d in q.reason.get("duplicates", [])])
            for q in queue
        ]


def test_pneumonia_x_rays_are_grouped_only_with_their_own_copies(tmp_path, db_url):
    # Raw pixels of two chest X-rays have a cosine similarity of 0.98 for almost any pair: one
    # key press labeled twenty different X-rays, 14 % of them of the other class. Only copies
    # of the same image (PneumoniaMNIST holds 27 sets of them) may be grouped.
    from shared_data import shared_file

    data = np.load(shared_file("image", "pneumoniamnist", "pneumoniamnist_reconstructed.npz"))
    images = np.concatenate([data["train_images"], data["val_images"], data["test_images"]])
    labels = np.concatenate([data["train_labels"], data["val_labels"], data["test_labels"]])
    flat = images.reshape(len(images), -1)
    seen: dict[bytes, list[int]] = {}
    for i, row in enumerate(flat):
        seen.setdefault(row.tobytes(), []).append(i)
    copies = [i for group in seen.values() if len(group) > 1 for i in group]
    rng = np.random.default_rng(0)
    others = rng.choice(np.setdiff1d(np.arange(len(images)), copies), 250, replace=False)
    picked = np.concatenate([copies, others])
    rng.shuffle(picked)
    path = tmp_path / "xrays.npz"
    np.savez(path, train_images=images[picked], train_labels=labels[picked])
    truth = {str(k): str(int(labels[i][0])) for k, i in enumerate(picked)}
    settings = ProjectSettings(retrain_every=5, queue_size=100, overlap=0.0, max_group=20)
    op, _ = init_project(tmp_path / "xrays", path, db_url=db_url, settings=settings)
    try:
        _label_everything_known(op, truth, 40)
        assert worker.train_once(op.folder, op.db).status == "trained"
        groups = _groups_of(op)
        assert any(members for _, members in groups)  # the copies are found
        for item, members in groups:
            for other in members:
                same = np.abs(
                    images[picked[int(item)]].astype(float) - images[picked[int(other)]]
                ).mean()
                assert same <= 2, (item, other, same)  # copies, never another X-ray
                assert truth[other] == truth[item]
    finally:
        op.db.dispose()


def test_table_rows_are_grouped_only_with_rows_of_the_same_values(tmp_path, db_url):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=150, n_features=6, random_state=0)
    X = np.vstack([X, X[:5], X[:5] * (1 + 1e-9)])  # exact copies, and copies a rounding away
    y = np.concatenate([y, y[:5], y[:5]])
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)])
    frame["label"] = np.where(y == 1, "yes", "no")
    frame["id"] = [f"r{i}" for i in range(len(frame))]
    frame.to_csv(tmp_path / "t.csv", index=False)
    settings = ProjectSettings(retrain_every=5, queue_size=100, overlap=0.0, max_group=20)
    op, _ = init_project(tmp_path / "tab", tmp_path / "t.csv", db_url=db_url, settings=settings)
    try:
        truth = dict(zip(frame["id"], frame["label"], strict=True))
        _label_everything_known(op, truth, 40)  # r0..r39: the five originals among them
        assert worker.train_once(op.folder, op.db).status == "trained"
        groups = dict(_groups_of(op))
        row = {f"r{i}": i for i in range(len(frame))}
        for item, members in groups.items():
            for other in members:
                assert np.allclose(X[row[item]], X[row[other]], rtol=1e-6)
                assert truth[other] == truth[item]
        # the open copies of each original are grouped with each other, whatever is queued
        queued = [f"r{150 + i}" for i in range(5) if f"r{150 + i}" in groups] + [
            f"r{155 + i}" for i in range(5) if f"r{155 + i}" in groups
        ]
        assert queued, "no copy was queued: the test would prove nothing"
        for name in queued:
            i = (int(name[1:]) - 150) % 5
            assert set(groups[name]) == {f"r{150 + i}", f"r{155 + i}"} - {name}
    finally:
        op.db.dispose()


def test_a_restarted_worker_sweeps_what_a_killed_one_left_and_keeps_the_served_files(project):
    project.label(FIRST_30)
    assert project.train().status == "trained"
    models = project.op.folder.models_dir
    assert sorted(p.name for p in models.iterdir()) == ["v00001.joblib", "v00001.predictions.npy"]
    # What a worker killed mid-fit leaves: pending files, a version whose row never committed.
    leftovers = [
        "pending-1.joblib",
        "pending-2.predictions.npy",
        "v00002.joblib",
        "v00002.predictions.npy",
    ]
    for name in leftovers:
        (models / name).write_bytes(b"partial")
    removed = worker.sweep_artefacts(project.op.folder, project.op.db)
    assert sorted(p.name for p in removed) == sorted(leftovers)
    assert sorted(p.name for p in models.iterdir()) == ["v00001.joblib", "v00001.predictions.npy"]


def test_a_model_file_of_the_earlier_layout_is_still_read(project):
    """Model files pickle their classes by module; those written before the restructuring name
    labelwise.semi, labelwise.features.auto, ...: they load through the moved modules."""
    import pickle
    import sys

    from labelwise.models.semi import SemiSupervised
    from labelwise.store.versions import load_artefact

    project.label(FIRST_30)
    assert project.train().status == "trained"
    version, _ = project.current()
    path = project.op.folder.root / version.artefact
    record = joblib.load(path)
    record["model"] = SemiSupervised(record["model"])  # a class whose module moved
    data = pickle.dumps(record, protocol=2)
    assert b"labelwise.models.semi" in data
    path.write_bytes(data.replace(b"labelwise.models.semi", b"labelwise.semi"))
    sys.modules.pop("labelwise.semi", None)  # as in a new process
    loaded = load_artefact(project.op.folder, version)
    assert type(loaded["model"]) is SemiSupervised
