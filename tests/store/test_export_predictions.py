"""Exporting the served model's predictions (:mod:`labelwise.store.served`, ``predictions=`` of
:func:`labelwise.services.export.export_project`): the same model and features as served, a chunk
at a time, refused with the reason when there is no such model."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sqlalchemy import select

from labelwise.datasets import bundled_path
from labelwise.exceptions import ConflictError, InvalidDataError
from labelwise.io.load import load_dataset
from labelwise.services import export as export_module
from labelwise.services import worker
from labelwise.services.export import export_project
from labelwise.services.setup import init_project
from labelwise.services.transfer import import_file
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.features import project_features
from labelwise.store.models import Annotator, Item, ModelVersion
from labelwise.store.projects import ProjectSettings, get_project
from labelwise.store.served import ServedModel

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _sms(path: Path, n_ham: int, n_spam: int, *, skip: int = 0) -> Path:
    """Distinct SMS messages, ``n_ham`` then ``n_spam`` (after the first ``skip`` of each)."""
    data = load_dataset(bundled_path("sms-spam"))
    picked: dict[str, list[str]] = {"ham": [], "spam": []}
    wanted = {"ham": n_ham + skip, "spam": n_spam + skip}
    seen: set[str] = set()
    for text, label in zip(data.items, data.labels, strict=True):
        if len(picked[label]) < wanted[label] and text not in seen:
            picked[label].append(text)
            seen.add(text)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "label"])
        for label, texts in picked.items():
            out.writerows([f"{label}-{i}", t, label] for i, t in enumerate(texts) if i >= skip)
    return path


class Project:
    """An initialised project folder with one annotator who labels by the ids' prefix."""

    def __init__(self, root: Path, data: Path, db_url: str, **settings: Any):
        settings = {"retrain_every": 5, "overlap": 0.0, "routine": 0.0, **settings}
        self.op, _ = init_project(root, data, db_url=db_url, settings=ProjectSettings(**settings))
        self.db, self.folder, self.pid = self.op.db, self.op.folder, self.op.project_id
        with self.db.write() as s:
            project = get_project(s, project_id=self.pid)
            self.annotator = create_annotator(s, project, name="ann", role="annotator")[0].id

    def ids(self) -> dict[str, int]:
        with self.db.read() as s:
            return dict(s.execute(select(Item.external_id, Item.id)).all())

    def label(self, external_ids: list[str], value: Any = None) -> None:
        ids = self.ids()
        for ext in external_ids:
            with self.db.write() as s:
                submit_label(
                    s,
                    get_project(s, project_id=self.pid),
                    s.get_one(Annotator, self.annotator),
                    item_id=ids[ext],
                    value=value(ext) if value else ext.split("-")[0],
                )

    def train(self) -> int:
        outcome = worker.train_once(self.folder, self.db, force=True)
        assert outcome.status == "trained", outcome.detail
        assert outcome.version is not None
        return outcome.version

    def export(self, fmt: str, **kwargs: Any) -> str:
        buffer = io.StringIO()
        with self.db.read() as s:
            project = get_project(s, project_id=self.pid)
            export_project(s, project, fmt, buffer, folder=self.folder, **kwargs)
        return buffer.getvalue()

    def add(self, path: Path, **kwargs: Any) -> int:
        with self.db.write() as s:
            return import_file(s, get_project(s, project_id=self.pid), self.folder, path, **kwargs)

    def served(self) -> tuple[ModelVersion, dict[str, Any]]:
        """The served version and its artefact record, read directly."""
        with self.db.read() as s:
            project = get_project(s, project_id=self.pid)
            version = s.get_one(ModelVersion, project.current_version_id)
            s.expunge(version)
        return version, joblib.load(self.folder.root / str(version.artefact))

    def expected(self) -> dict[str, dict[str, float]]:
        """external id -> the served model's probabilities per label, from its file and the
        project's features, computed here in one go."""
        _, record = self.served()
        model = record["model"]
        with self.db.read() as s:
            project = get_project(s, project_id=self.pid)
            X = project_features(s, project, self.folder).X
            rows = dict(s.execute(select(Item.external_id, Item.row)).all())
        proba = model.predict_proba(X)
        classes = [str(c) for c in model.classes_]
        return {
            ext: dict(zip(classes, map(float, proba[row]), strict=True))
            for ext, row in rows.items()
        }

    def close(self) -> None:
        self.db.dispose()


HAM_SPAM = [f"ham-{i}" for i in range(10)] + [f"spam-{i}" for i in range(10)]


@pytest.fixture
def sms(tmp_path) -> Path:
    return _sms(tmp_path / "sms.csv", 24, 16)


@pytest.fixture
def trained(tmp_path, sms, db_url):
    project = Project(tmp_path / "proj", sms, db_url, features="tfidf")
    project.label(HAM_SPAM)
    project.version = project.train()
    yield project
    project.close()


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_every_format_carries_the_served_models_prediction(trained):
    expected = trained.expected()
    version = trained.version
    records = _jsonl(trained.export("jsonl", predictions=True))
    assert len(records) == 40
    for r in records:
        assert list(r)[-4:] == ["prediction", "confidence", "probabilities", "model_version"]
        want = expected[r["id"]]
        assert r["probabilities"] == pytest.approx(want, abs=1e-6)
        assert list(r["probabilities"]) == ["ham", "spam"]  # the label set's order
        assert r["prediction"] == max(want, key=want.__getitem__)
        assert r["confidence"] == pytest.approx(max(want.values()), abs=1e-6)
        assert r["model_version"] == version
    # Labeled items are predicted too; the rest of the record is as without predictions.
    plain = _jsonl(trained.export("jsonl"))
    assert [{k: r[k] for k in p} for r, p in zip(records, plain, strict=True)] == plain
    assert "prediction" not in plain[0]

    rows = list(csv.DictReader(io.StringIO(trained.export("csv", predictions=True))))
    assert list(rows[0]) == [
        *("id", "text", "label", "status", "annotations"),
        *("prediction", "confidence", "p_ham", "p_spam", "model_version"),
    ]
    for row, r in zip(rows, records, strict=True):
        assert row["prediction"] == r["prediction"]
        assert float(row["confidence"]) == r["confidence"]
        assert (float(row["p_ham"]), float(row["p_spam"])) == (
            r["probabilities"]["ham"],
            r["probabilities"]["spam"],
        )
        assert row["model_version"] == str(version)

    tasks = json.loads(trained.export("label-studio", predictions=True))
    for task, r in zip(tasks, records, strict=True):
        assert task["predictions"] == [
            {
                "model_version": f"v{version}",
                "score": r["confidence"],
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [r["prediction"]]},
                    }
                ],
            }
        ]
    assert all(t["predictions"] == [] for t in json.loads(trained.export("label-studio")))
    # Only what is exported is predicted.
    labeled = _jsonl(trained.export("jsonl", predictions=True, labeled_only=True))
    assert len(labeled) == 20 and all("prediction" in r for r in labeled)


def test_predictions_are_made_a_chunk_of_items_at_a_time(trained, monkeypatch):
    whole = trained.export("jsonl", predictions=True)
    sizes: list[int] = []
    predict = ServedModel.predict

    def spy(self: ServedModel, rows: Any) -> Any:
        sizes.append(len(rows))
        return predict(self, rows)

    monkeypatch.setattr(ServedModel, "predict", spy)
    monkeypatch.setattr(export_module, "_CHUNK", 7)
    assert trained.export("jsonl", predictions=True) == whole
    assert sizes == [7, 7, 7, 7, 7, 5]


def test_a_project_without_a_model_is_refused_before_anything_is_written(tmp_path, sms, db_url):
    project = Project(tmp_path / "new", sms, db_url, features="tfidf")
    out = tmp_path / "out.csv"
    for step in ("no version", "cold start"):
        with project.db.read() as s, pytest.raises(ConflictError, match="no model to predict"):
            export_project(
                s,
                get_project(s, project_id=project.pid),
                "csv",
                out,
                folder=project.folder,
                predictions=True,
            )
        assert not out.exists() and not list(tmp_path.glob("*.part")), step
        if step == "no version":  # two labels: a cold-start queue is served, no model yet
            project.label(["ham-0", "spam-0"])
            assert worker.train_once(project.folder, project.db).status == "cold-start"
    assert project.export("csv").count("\n") == 41  # without predictions it goes on
    project.close()


def test_items_added_to_a_tfidf_pool_since_the_fit_are_refused_until_the_next(trained, tmp_path):
    before = trained.export("jsonl", predictions=True)
    meta = trained.folder.features_dir / "meta.json"
    cache = meta.read_text()
    trained.add(_sms(tmp_path / "more.csv", 3, 2, skip=30))
    with pytest.raises(ConflictError, match=r"v1 was fitted on the TF-IDF features of the 40 "):
        trained.export("jsonl", predictions=True)
    assert meta.read_text() == cache  # refused before the features were made anew
    # The next fit predicts every item, the new ones too.
    trained.label([f"ham-{i}" for i in range(10, 15)])
    assert trained.train() == 2
    after = _jsonl(trained.export("jsonl", predictions=True))
    assert len(after) == 45 and {r["model_version"] for r in after} == {2}
    assert after != _jsonl(before)[:45]


def test_a_changed_features_setting_is_refused_until_the_next_fit(trained):
    with trained.db.write() as s:
        project = get_project(s, project_id=trained.pid)
        project.settings = {**project.settings, "features": "tfidf+embedding:wordllama"}
    with pytest.raises(ConflictError, match=r"v1 was fitted on tfidf features, but .* now "):
        trained.export("csv", predictions=True)


def test_a_model_without_probabilities_gives_the_prediction_alone(tmp_path, sms, db_url):
    project = Project(tmp_path / "svm", sms, db_url, features="tfidf", model="linear-svm")
    project.label(HAM_SPAM)
    project.train()
    _, record = project.served()
    records = _jsonl(project.export("jsonl", predictions=True))
    with project.db.read() as s:
        X = project_features(s, get_project(s, project_id=project.pid), project.folder).X
    assert [r["prediction"] for r in records] == list(record["model"].predict(X))
    assert {(r["confidence"], r["probabilities"]) for r in records} == {(None, None)}
    rows = list(csv.DictReader(io.StringIO(project.export("csv", predictions=True))))
    assert {(r["confidence"], r["p_ham"], r["p_spam"]) for r in rows} == {("", "", "")}
    tasks = json.loads(project.export("label-studio", predictions=True))
    assert all(set(t["predictions"][0]) == {"model_version", "result"} for t in tasks)
    project.close()


def test_a_model_of_an_earlier_release_predicts_until_its_tfidf_is_rebuilt(trained, tmp_path):
    version, record = trained.served()
    del record["features"]  # what fits of earlier releases wrote
    joblib.dump(record, trained.folder.root / str(version.artefact))
    expected = trained.expected()
    records = _jsonl(trained.export("jsonl", predictions=True))
    assert len(records) == len(expected)
    for r in records:
        assert r["probabilities"] == pytest.approx(expected[r["id"]], abs=1e-6)
    trained.add(_sms(tmp_path / "more.csv", 2, 2, skip=30))
    with pytest.raises(ConflictError, match="TF-IDF"):
        trained.export("jsonl", predictions=True)


def test_a_tabular_pool_predicts_items_added_since_the_fit(tmp_path, db_url):
    rng = np.random.default_rng(0)
    data, more = tmp_path / "rows.csv", tmp_path / "more.csv"
    for path, start, n in ((data, 0, 30), (more, 30, 6)):
        with path.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["id", "f1", "f2", "label"])
            for i in range(start, start + n):
                x = rng.normal(size=2)
                out.writerow([f"r{i}", *np.round(x, 4), "yes" if x[0] > 0 else "no"])
    project = Project(tmp_path / "tab", data, db_url)
    with data.open() as fh:
        truth = {r["id"]: r["label"] for r in csv.DictReader(fh)}
    project.label([f"r{i}" for i in range(20)], value=truth.__getitem__)
    project.train()
    assert project.add(more) == 6
    expected = project.expected()
    rows = list(csv.DictReader(io.StringIO(project.export("csv", predictions=True))))
    assert list(rows[0])[:4] == ["id", "f1", "f2", "label"]
    assert len(rows) == 36 and {r["model_version"] for r in rows} == {"1"}
    for row in rows:
        assert float(row["p_no"]) == pytest.approx(expected[row["id"]]["no"], abs=1e-6)
    project.close()


def test_a_tabular_field_named_like_a_prediction_column_is_refused(tmp_path, db_url):
    data = tmp_path / "rows.csv"
    data.write_text(
        "id,confidence,f2,label\n"
        + "".join(f"r{i},{i % 7},{i % 3},{'ab'[i % 2]}\n" for i in range(20))
    )
    project = Project(tmp_path / "tab", data, db_url)
    project.label([f"r{i}" for i in range(12)], value=lambda ext: "ab"[int(ext[1:]) % 2])
    project.train()
    assert "confidence" in project.export("csv").splitlines()[0]
    with pytest.raises(InvalidDataError, match="'confidence' have the name of a column"):
        project.export("csv", predictions=True)
    project.close()


def test_the_admin_api_exports_predictions_on_request(trained):
    from fastapi.testclient import TestClient

    from labelwise.server import ServerConfig, create_app

    with trained.db.write() as s:
        _, token = create_annotator(
            s, get_project(s, project_id=trained.pid), name="boss", role="admin"
        )
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(ServerConfig(trained.op))) as client:
        url = f"/api/projects/{trained.pid}/export"
        plain = client.get(url, params={"format": "jsonl"}, headers=headers)
        assert plain.status_code == 200 and "prediction" not in plain.text
        got = client.get(url, params={"format": "jsonl", "predictions": "true"}, headers=headers)
        assert got.status_code == 200, got.text
        assert _jsonl(got.text) == _jsonl(trained.export("jsonl", predictions=True))
        with trained.db.write() as s:  # back to before any model
            get_project(s, project_id=trained.pid).current_version_id = None
        refused = client.get(url, params={"predictions": "true"}, headers=headers)
        assert refused.status_code == 409 and "no model" in refused.json()["error"]
