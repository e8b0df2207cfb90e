"""Multi-label projects in and out: label lists imported from CSV, JSONL, Parquet and Label
Studio multi-choice, stored as canonical sets; exported as ``;``-joined cells, JSON lists and
multi-choice results, with per-label predictions; export then import gives the same sets."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from labelwise.exceptions import InvalidDataError
from labelwise.models.multilabel import LabelSetClassifier
from labelwise.services.export import export_project
from labelwise.services.export_formats import WRITERS, Predicted, Record
from labelwise.services.setup import init_project
from labelwise.services.transfer import import_file
from labelwise.store.features import feature_source, project_features
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Annotator, Item, Label
from labelwise.store.models import Project as ProjectRow
from labelwise.store.projects import ProjectSettings, create_project, get_project
from labelwise.store.versions import record_version

LABELS = ("insult", "spam", "threat")


class Project:
    """A text project (multi-label unless told) on the test database, with its own folder."""

    def __init__(self, db, root: Path, *, multi_label=True, labels=LABELS, kind="text"):
        self.db = db
        self.folder = ProjectFolder.create(root, root.name)
        settings = ProjectSettings(
            overlap=0.0, multi_label=multi_label, features="tfidf" if kind == "text" else None
        )
        with db.write() as s:
            project = create_project(
                s, name=root.name, kind=kind, labels=list(labels), settings=settings
            )
            self.id = project.id

    def load(self, path: Path, **kwargs: Any) -> int:
        with self.db.write() as s:
            return import_file(s, get_project(s, project_id=self.id), self.folder, path, **kwargs)

    def export(self, fmt: str, **kwargs: Any) -> str:
        buffer = io.StringIO()
        with self.db.read() as s:
            project = get_project(s, project_id=self.id)
            export_project(s, project, fmt, buffer, folder=self.folder, **kwargs)
        return buffer.getvalue()

    def answers(self) -> dict[str, list[tuple[str, str]]]:
        """external id -> [(annotator, stored value)] of the current answers, in order."""
        with self.db.read() as s:
            rows = s.execute(
                select(Item.external_id, Annotator.name, Label.value)
                .join(Label, Label.item_id == Item.id)
                .join(Annotator, Annotator.id == Label.annotator_id)
                .where(Item.project_id == self.id, Label.is_current.is_(True))
                .order_by(Label.id)
            ).all()
        out: dict[str, list[tuple[str, str]]] = {}
        for ext, name, value in rows:
            out.setdefault(ext, []).append((name, value))
        return out

    def values(self) -> dict[str, str]:
        """external id -> the one stored answer of each labeled item."""
        return {ext: given[0][1] for ext, given in self.answers().items()}


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "labels"])
        out.writerows(rows)
    return path


# Several labels (in another order than the project's), one, the empty set, and no label.
CSV_ROWS = [
    ("a", "you are a fool and I will find you", "threat;insult"),
    ("b", "buy cheap watches now", "spam"),
    ("c", "see you at lunch tomorrow", "[]"),
    ("d", "what a lovely morning", ""),
]
WANTED = {"a": "insult;threat", "b": "spam", "c": ""}


def test_csv_label_lists_are_stored_as_canonical_sets(db, tmp_path):
    project = Project(db, tmp_path / "p")
    data = _write_csv(tmp_path / "data.csv", CSV_ROWS)
    assert project.load(data, with_labels=True) == 4
    # Canonical: the project's label order; "[]" the empty set; an empty cell no label at all.
    assert project.answers() == {ext: [("import", value)] for ext, value in WANTED.items()}
    # Without with_labels the lists only suggest labels: nothing is stored.
    other = Project(db, tmp_path / "q")
    other.load(data)
    assert other.answers() == {}


def test_jsonl_and_parquet_lists_and_an_explicit_empty_list(db, tmp_path):
    records = [
        {"id": "a", "text": "you are a fool and I will find you", "labels": ["threat", "insult"]},
        {"id": "b", "text": "buy cheap watches now", "labels": ["spam"]},
        {"id": "c", "text": "see you at lunch tomorrow", "labels": []},
        {"id": "d", "text": "what a lovely morning", "labels": None},
        {"id": "e", "text": "no key at all here"},
    ]
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    project = Project(db, tmp_path / "p")
    project.load(jsonl, with_labels=True)
    assert project.values() == WANTED

    parquet = tmp_path / "data.parquet"
    pd.DataFrame(
        {
            "id": [r["id"] for r in records],
            "text": [r["text"] for r in records],
            "labels": [r.get("labels") for r in records],
        }
    ).to_parquet(parquet)
    again = Project(db, tmp_path / "q")
    again.load(parquet, with_labels=True)
    assert again.values() == WANTED


def _label_studio(path: Path, annotations: dict[str, list[str] | None]) -> Path:
    tasks = []
    for ext, chosen in annotations.items():
        result = (
            []
            if chosen is None
            else [
                {
                    "type": "choices",
                    "from_name": "label",
                    "to_name": "text",
                    "value": {"choices": chosen},
                }
            ]
        )
        tasks.append(
            {"id": ext, "data": {"text": f"text of {ext}"}, "annotations": [{"result": result}]}
        )
    path.write_text(json.dumps(tasks))
    return path


def test_label_studio_multi_choice_in_and_out(db, tmp_path):
    data = _label_studio(
        tmp_path / "ls.json",
        {"a": ["threat", "insult"], "b": ["spam"], "c": [], "d": None},
    )
    project = Project(db, tmp_path / "p")
    project.load(data, with_labels=True)
    assert project.values() == WANTED  # a result with no choices: the empty set; none: no label

    tasks = json.loads(project.export("label-studio"))
    by_id = {t["meta"]["external_id"]: t for t in tasks}
    for ext, value in WANTED.items():
        (annotation,) = by_id[ext]["annotations"]
        (result,) = annotation["result"]  # one choices result holding the whole set
        assert result["type"] == "choices"
        assert result["value"]["choices"] == (value.split(";") if value else [])
        assert by_id[ext]["meta"]["label"] == (value.split(";") if value else [])
    assert by_id["d"]["annotations"] == [] and by_id["d"]["meta"]["label"] is None

    # A single-label project refuses several choices, and says how to take them.
    single = Project(db, tmp_path / "q", multi_label=False)
    with pytest.raises(InvalidDataError, match="takes one label.*--multi-label"):
        single.load(data, with_labels=True)
    assert single.answers() == {}


def test_csv_and_jsonl_exports_write_sets_as_lists(db, tmp_path):
    project = Project(db, tmp_path / "p")
    project.load(_write_csv(tmp_path / "data.csv", CSV_ROWS), with_labels=True)

    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(project.export("csv")))}
    assert {ext: rows[ext]["label"] for ext in "abcd"} == {
        "a": "insult;threat",
        "b": "spam",
        "c": "[]",  # the empty set, not an empty cell (which is no label)
        "d": "",
    }
    assert rows["c"]["status"] == "labeled" and rows["d"]["status"] == "unlabeled"
    # The history keeps each answer's stored form, the canonical string.
    assert [a["label"] for a in json.loads(rows["a"]["annotations"])] == ["insult;threat"]
    assert [a["label"] for a in json.loads(rows["c"]["annotations"])] == [""]

    records = {r["id"]: r for r in map(json.loads, project.export("jsonl").splitlines())}
    assert {ext: records[ext]["label"] for ext in "abcd"} == {
        "a": ["insult", "threat"],
        "b": ["spam"],
        "c": [],
        "d": None,
    }


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "label-studio"])
def test_export_then_import_gives_the_same_sets(db, tmp_path, fmt):
    project = Project(db, tmp_path / "p")
    project.load(_write_csv(tmp_path / "data.csv", CSV_ROWS), with_labels=True)
    suffix = {"csv": "csv", "jsonl": "jsonl", "label-studio": "json"}[fmt]
    exported = tmp_path / f"export.{suffix}"
    exported.write_text(project.export(fmt), encoding="utf-8")

    # Brought back as an export: the answers with their annotators (restore).
    again = Project(db, tmp_path / "q")
    again.load(exported, with_labels=True)
    assert again.answers() == project.answers()
    assert again.export(fmt) == project.export(fmt)


def test_a_plain_import_of_an_exports_label_column_gives_the_same_sets(db, tmp_path):
    """The flat label column alone (no annotations: not an export any more) reads back too."""
    project = Project(db, tmp_path / "p")
    project.load(_write_csv(tmp_path / "data.csv", CSV_ROWS), with_labels=True)
    for fmt, suffix in (("csv", "csv"), ("jsonl", "jsonl")):
        frame = (
            pd.read_csv(io.StringIO(project.export(fmt)), dtype=str, keep_default_na=False)
            if fmt == "csv"
            else pd.read_json(io.StringIO(project.export(fmt)), lines=True, dtype=False)
        )
        path = tmp_path / f"plain.{suffix}"
        plain = frame[["id", "text", "label"]]
        if fmt == "csv":
            plain.to_csv(path, index=False)
        else:
            plain.to_json(path, orient="records", lines=True)
        again = Project(db, tmp_path / f"q-{fmt}")
        again.load(path, with_labels=True)
        assert again.values() == WANTED


def test_bad_label_lists_are_refused_naming_the_row_and_nothing_is_stored(db, tmp_path):
    project = Project(db, tmp_path / "p")
    unknown = _write_csv(
        tmp_path / "unknown.csv",
        [("a", "first text here", "spam"), ("b", "second text here", "insult;rude;mean")],
    )
    with pytest.raises(InvalidDataError, match=r"row 1 \(id 'b'\).*'mean', 'rude' are not labels"):
        project.load(unknown, with_labels=True)
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(
        json.dumps({"id": "a", "text": "one", "labels": ["spam"]})
        + "\n"
        + json.dumps({"id": "b", "text": "two", "labels": [1, 2]})
        + "\n"
    )
    with pytest.raises(InvalidDataError, match=r"'labels', row 1.*label names"):
        project.load(bad_json, with_labels=True)
    with db.read() as s:
        assert s.scalar(select(Item.id).where(Item.project_id == project.id)) is None
    assert project.answers() == {}


def test_a_single_label_project_given_lists_suggests_multi_label(db, tmp_path):
    project = Project(db, tmp_path / "p", multi_label=False)
    data = _write_csv(tmp_path / "data.csv", CSV_ROWS)
    with pytest.raises(InvalidDataError, match=r"row 0 \(id 'a'\).*--multi-label"):
        project.load(data, with_labels=True)
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text(json.dumps({"id": "a", "text": "one", "labels": ["spam", "insult"]}) + "\n")
    with pytest.raises(InvalidDataError, match=r"holds a list at row 0.*--multi-label"):
        project.load(jsonl, with_labels=True)
    listed = _write_csv(tmp_path / "listed.csv", [("a", "one text here", '["spam"]')])
    with pytest.raises(InvalidDataError, match=r"row 0 \(id 'a'\).*--multi-label"):
        project.load(listed, with_labels=True)
    # A label that is no set of the project's labels is only named.
    other = _write_csv(tmp_path / "other.csv", [("a", "one text here", "ham")])
    with pytest.raises(InvalidDataError, match=r"label 'ham' is not one of") as caught:
        project.load(other, with_labels=True)
    assert "--multi-label" not in str(caught.value)
    assert project.answers() == {}


def test_tabular_label_lists_stream_in_chunks(db, tmp_path):
    rng = np.random.default_rng(0)
    sets = ["insult;threat", "spam", "[]", "", "threat"]
    frame = pd.DataFrame(rng.normal(size=(10, 3)), columns=["f1", "f2", "f3"])
    frame["labels"] = [sets[i % len(sets)] for i in range(10)]
    data = tmp_path / "table.csv"
    frame.to_csv(data, index=False)
    project = Project(db, tmp_path / "p", kind="tabular")
    assert project.load(data, with_labels=True) == 10
    stored = {str(i): v for i, v in project.values().items()}
    want = {"insult;threat", "spam", "", "threat"}
    assert set(stored.values()) == want and len(stored) == 8  # the empty cells: no label
    assert stored["2"] == "" and "3" not in stored


def test_init_takes_the_label_set_from_the_lists(tmp_path, db_url):
    data = _write_csv(tmp_path / "data.csv", CSV_ROWS)
    opened, _ = init_project(
        tmp_path / "p",
        data,
        db_url=db_url,
        with_labels=True,
        settings=ProjectSettings(multi_label=True, features="tfidf"),
    )
    try:
        project = opened.project()
        assert project.label_set == ["insult", "spam", "threat"]  # every name, sorted
        with opened.db.read() as s:
            values = dict(
                s.execute(
                    select(Item.external_id, Label.value).join(Label, Label.item_id == Item.id)
                ).all()
            )
        assert values == WANTED
    finally:
        opened.db.dispose()


def _served(project: Project, model: Any) -> None:
    """Serve ``model`` as the project's first version, as the worker writes one."""
    with project.db.write() as s:
        row = get_project(s, project_id=project.id)
        features = project_features(s, row, project.folder)
        path = project.folder.artefact_path(1)
        joblib.dump({"model": model, "features": feature_source(features)}, path)
        version = record_version(
            s,
            row,
            n_labels=4,
            label_counts={},
            metrics={},
            strategy="default",
            model_name="logreg",
            artefact=str(path.relative_to(project.folder.root)),
            fit_seconds=0.0,
            queue=[],
        )
        row.current_version_id = version.id


def test_predictions_export_per_label_probabilities(db, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    Y = (X[:, :3] > 0).astype(int)
    sets = [";".join(name for name, on in zip(LABELS, row, strict=True) if on) for row in Y]
    frame = pd.DataFrame(X, columns=["f1", "f2", "f3"])
    frame["labels"] = [s if s else "[]" for s in sets]
    data = tmp_path / "table.csv"
    frame.to_csv(data, index=False)
    project = Project(db, tmp_path / "p", kind="tabular")
    project.load(data, with_labels=True)
    model = LabelSetClassifier(LogisticRegression(), list(LABELS)).fit(X, sets)
    _served(project, model)
    proba = model.predict_proba(X)
    predicted = model.predict(X)
    predicted_on = model.predict_indicator(X).astype(bool)

    records = [json.loads(line) for line in project.export("jsonl", predictions=True).splitlines()]
    assert len(records) == 40
    for k, r in enumerate(records):
        assert list(r["probabilities"]) == list(LABELS)
        assert [r["probabilities"][name] for name in LABELS] == pytest.approx(proba[k], abs=1e-6)
        assert r["prediction"] == (predicted[k].split(";") if predicted[k] else [])
        # The probability of the set's least sure label decision (present or absent).
        decided = np.where(predicted_on[k], proba[k], 1 - proba[k])
        assert r["confidence"] == pytest.approx(decided.min(), abs=1e-4)
        assert r["model_version"] == 1
    assert any(len(r["prediction"]) > 1 for r in records)

    rows = list(csv.DictReader(io.StringIO(project.export("csv", predictions=True))))
    assert list(rows[0])[-6:] == [
        "prediction",
        "confidence",
        "p_insult",
        "p_spam",
        "p_threat",
        "model_version",
    ]
    for k, row in enumerate(rows):
        assert row["prediction"] == (predicted[k] or "[]")
        assert float(row["confidence"]) == pytest.approx(records[k]["confidence"], abs=1e-4)
        probabilities = [float(row[f"p_{name}"]) for name in LABELS]
        assert probabilities == pytest.approx(proba[k], abs=1e-6)


def test_label_studio_predictions_hold_the_predicted_set():
    row = ProjectRow(
        name="p",
        kind="text",
        label_set=list(LABELS),
        settings=ProjectSettings(multi_label=True).to_dict(),
    )
    buffer = io.StringIO()
    records = [
        Record("a", "some text", "insult;threat", "labeled", [], Predicted("insult", None, {}, 3)),
        Record("b", "more text", None, "unlabeled", [], Predicted("", None, {}, 3)),
    ]
    WRITERS["label-studio"](buffer, row, iter(records), [], list(LABELS))
    tasks = json.loads(buffer.getvalue())
    assert [t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks] == [["insult"], []]
    assert all("score" not in t["predictions"][0] for t in tasks)  # no one confidence
    assert [t["meta"]["label"] for t in tasks] == [["insult", "threat"], None]
