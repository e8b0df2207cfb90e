"""What an import checks beyond errors: numbered ids that never collide, data warnings (a label
column like ids, repeated texts, an .npz file's splits), label names, and its progress steps."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from labelwise.exceptions import DataWarning, InvalidDataError
from labelwise.io import chunks as _chunks
from labelwise.io import stream as _stream
from labelwise.services.import_checks import (
    ID_LIKE_FRACTION,
    ID_LIKE_MIN_VALUES,
    _warn_label_values,
)
from labelwise.services.transfer import import_file
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Item, Label
from labelwise.store.projects import ProjectSettings, create_project, get_project


class Project:
    """One project on the test database with its own folder."""

    def __init__(self, db, root: Path, *, kind: str = "text", labels=("a", "b")) -> None:
        self.db = db
        self.folder = ProjectFolder.create(root, root.name)
        with db.write() as s:
            settings = ProjectSettings(features="pixels" if kind == "image" else None)
            self.id = create_project(
                s, name=root.name, kind=kind, labels=list(labels), settings=settings
            ).id

    def load(self, path: Path, **kwargs: Any) -> int:
        with self.db.write() as s:
            return import_file(s, get_project(s, project_id=self.id), self.folder, path, **kwargs)

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """(external id, meta) of every item, in row order."""
        with self.db.read() as s:
            rows = s.execute(
                select(Item.external_id, Item.meta)
                .where(Item.project_id == self.id)
                .order_by(Item.row)
            )
            return [
                (ext, meta if isinstance(meta, dict) else json.loads(meta)) for ext, meta in rows
            ]

    def labels(self) -> dict[str, str]:
        with self.db.read() as s:
            rows = s.execute(
                select(Item.external_id, Label.value).join(Label, Label.item_id == Item.id)
            )
            return dict(list(rows))


def _quiet(call: Any) -> list[str]:
    """Run ``call()``; the DataWarning messages it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        call()
    return [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


# ------------------------------------------------------------------------------------------ ids


def test_files_without_ids_are_numbered_on_from_the_project(db, tmp_path):
    project = Project(db, tmp_path / "p")
    first = tmp_path / "a.csv"
    first.write_text("text\nhello there\nsecond text\nthird one\n")
    second = tmp_path / "b.csv"
    second.write_text("text\nfourth text\nfifth text\n")
    assert project.load(first) == 3
    assert project.load(second) == 2  # refused before: ids 0 and 1 were taken
    assert project.load(first) == 3  # the same file again: new items, said in a warning
    assert [ext for ext, _ in project.items()] == [str(i) for i in range(8)]


def test_tabular_files_without_ids_are_numbered_on_chunk_by_chunk(db, tmp_path, monkeypatch):
    monkeypatch.setattr(_stream, "SAMPLE_BYTES", 64)  # read in chunks, as a large file is
    monkeypatch.setattr(_chunks, "DEFAULT_CHUNK_ROWS", 4)
    project = Project(db, tmp_path / "p", kind="tabular")
    path = tmp_path / "rows.csv"
    path.write_text("f1,f2\n" + "".join(f"{i},{i / 2}\n" for i in range(10)))
    assert project.load(path) == 10
    assert project.load(path) == 10
    assert [ext for ext, _ in project.items()] == [str(i) for i in range(20)]


def test_numbered_ids_that_meet_ids_given_before_say_why(db, tmp_path):
    project = Project(db, tmp_path / "p")
    given = tmp_path / "given.csv"
    given.write_text("id,text\n2,a text\n3,another text\n")
    assert project.load(given) == 2
    plain = tmp_path / "plain.csv"
    plain.write_text("text\nnew one\nnew two\nnew three\n")
    with pytest.raises(
        InvalidDataError, match=r"plain.csv has no id column.*\(from 2\).*id_column="
    ):
        project.load(plain)
    assert len(project.items()) == 2  # all or nothing
    named = tmp_path / "named.csv"
    named.write_text("doc,text\nd1,new one\nd2,new two\n")
    assert project.load(named, id_column="doc") == 2
    assert [ext for ext, _ in project.items()][-2:] == ["d1", "d2"]


# ------------------------------------------------------------------------------------- warnings


def test_the_rule_for_a_label_column_like_ids():
    def warned(distinct: int, rows: int) -> bool:
        counts = {f"v{i}": 1 for i in range(distinct)}
        counts["v0"] += rows - distinct
        return bool(_quiet(lambda: _warn_label_values("f.csv", "label", counts)))

    assert (ID_LIKE_MIN_VALUES, ID_LIKE_FRACTION) == (20, 0.5)
    assert warned(200, 200)
    assert warned(21, 41)  # more than 20, and more than half the rows
    assert not warned(20, 20)  # a small label set is never suspect
    assert not warned(21, 42)  # 21 classes over 42 rows: plausible
    assert not warned(3, 1000)
    [message] = _quiet(lambda: _warn_label_values("f.csv", "name", {str(i): 1 for i in range(30)}))
    assert message == (
        "label column 'name' of f.csv has 30 distinct values in 30 labeled rows, more like ids "
        "or free text than classes; if another column holds the labels, name it with "
        "label_column="
    )


def test_importing_labels_from_a_column_like_ids_warns(db, tmp_path):
    project = Project(db, tmp_path / "p", labels=[f"u{i}" for i in range(30)])
    path = tmp_path / "swapped.csv"
    path.write_text("text,label\n" + "".join(f"text {i} here,u{i}\n" for i in range(30)))
    found = _quiet(lambda: project.load(path, with_labels=True))
    assert found == [
        "label column 'label' of swapped.csv has 30 distinct values in 30 labeled rows, more "
        "like ids or free text than classes; if another column holds the labels, name it with "
        "label_column="
    ]
    # Without with_labels the column is not used: nothing said about it (the texts repeat).
    again = _quiet(lambda: project.load(path))
    assert len(again) == 1 and again[0].startswith("swapped.csv: 30 of its 30 texts repeat")


def test_texts_repeated_under_new_ids_are_counted(db, tmp_path):
    project = Project(db, tmp_path / "p")
    first = tmp_path / "a.csv"
    first.write_text("id,text\nx1,hello there\nx2,second text\n")
    assert not _quiet(lambda: project.load(first))
    again = tmp_path / "b.csv"
    again.write_text("id,text\ny1,fresh text\ny2,hello there\ny3,fresh text\ny4,second text\n")
    [message] = _quiet(lambda: project.load(again))
    assert message == (
        "b.csv: 3 of its 4 texts repeat under new ids (2 already in the project, 1 repeating an "
        "earlier row of the file; first at row 1, id 'y2': 'hello there'); every copy is "
        "imported as an item of its own"
    )
    assert len(project.items()) == 6


# ------------------------------------------------------------------------------- npz and names


def _splits_npz(path: Path, **extra: Any) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        train_images=rng.integers(0, 255, (3, 4, 4), dtype=np.uint8),
        train_labels=np.array([[0], [1], [2]]),
        val_images=rng.integers(0, 255, (1, 4, 4), dtype=np.uint8),
        val_labels=np.array([[1]]),
        test_images=rng.integers(0, 255, (2, 4, 4), dtype=np.uint8),
        test_labels=np.array([[2], [0]]),
        **extra,
    )
    return path


def test_npz_splits_stay_apart_in_each_items_meta(db, tmp_path):
    project = Project(db, tmp_path / "p", kind="image", labels=("cat", "dog", "owl"))
    path = _splits_npz(tmp_path / "med.npz", label_names=np.array(["cat", "dog", "owl"]))
    found = _quiet(lambda: project.load(path, with_labels=True))
    assert found == [
        "med.npz keeps its items in splits (train 3, val 1, test 2): all of them go into the "
        "pool to label, each item's split recorded in its meta ('split')"
    ]
    items = project.items()
    assert [meta["split"] for _, meta in items] == ["train"] * 3 + ["val"] + ["test"] * 2
    assert {meta["source"] for _, meta in items} == {"med.npz"}
    assert project.labels() == {"0": "cat", "1": "dog", "2": "owl", "3": "dog", "4": "owl"} | {
        "5": "cat"
    }


def test_tabular_npz_splits_and_label_names_given(db, tmp_path):
    project = Project(db, tmp_path / "p", kind="tabular", labels=("no", "yes"))
    path = tmp_path / "xy.npz"
    np.savez(
        path,
        X_train=np.arange(6.0).reshape(3, 2),
        y_train=np.array([0, 1, 1]),
        X_test=np.arange(4.0).reshape(2, 2),
        y_test=np.array([1, 0]),
    )
    with pytest.raises(InvalidDataError, match="label 1 .* has no name: label_names gives 1 name"):
        project.load(path, with_labels=True, label_names=["no"])
    assert project.load(path, with_labels=True, label_names=["no", "yes"]) == 5
    assert [meta["split"] for _, meta in project.items()] == ["train"] * 3 + ["test"] * 2
    assert project.labels() == {"0": "no", "1": "yes", "2": "yes", "3": "yes", "4": "no"}


def test_label_names_for_a_csv_of_class_numbers(db, tmp_path):
    project = Project(db, tmp_path / "p", labels=("ham", "spam"))
    path = tmp_path / "numbers.csv"
    path.write_text("text,label\nbuy now,1\nsee you at noon,0\n")
    assert project.load(path, with_labels=True, label_names=["ham", "spam"]) == 2
    assert project.labels() == {"0": "spam", "1": "ham"}


# ------------------------------------------------------------------------------------ progress


def test_an_import_reports_reading_and_inserting(db, tmp_path, monkeypatch):
    calls: list[tuple[str, int, int | None]] = []

    def steps(step: str, done: int, total: int | None) -> None:
        calls.append((step, done, total))

    project = Project(db, tmp_path / "p")
    path = tmp_path / "a.csv"
    path.write_text("text\n" + "".join(f"text number {i}\n" for i in range(25)))
    assert project.load(path, steps=steps) == 25
    assert calls[0] == ("reading", 0, None)
    steps_seen = list(dict.fromkeys(step for step, _, _ in calls))
    assert steps_seen[:2] == ["reading", "inserting"]  # then embedding, with the default features
    assert [c for c in calls if c[0] == "reading"][-1] == ("reading", 25, 25)
    assert [c for c in calls if c[0] == "inserting"][-1] == ("inserting", 25, 25)

    calls.clear()
    monkeypatch.setattr(_stream, "SAMPLE_BYTES", 64)
    monkeypatch.setattr(_chunks, "DEFAULT_CHUNK_ROWS", 10)
    table = Project(db, tmp_path / "t", kind="tabular")
    rows = tmp_path / "rows.csv"
    rows.write_text("f1,f2\n" + "".join(f"{i},{i}\n" for i in range(25)))
    assert table.load(rows, steps=steps) == 25
    inserted = [done for step, done, _ in calls if step == "inserting"]
    assert inserted == [10, 20, 25, 25]  # chunk by chunk, then the end
    assert [done for step, done, _ in calls if step == "reading"][-1] == 25
