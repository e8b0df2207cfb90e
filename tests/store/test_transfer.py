"""Import (every file format into each project kind it fits, all or nothing, Label Studio JSON
without ever fetching a URL) and export (CSV, JSONL, Label Studio), round trips included."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import select

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.services import export as export_module
from labelwise.services.export import EXPORT_FORMATS, export_project
from labelwise.services.transfer import import_file, read_data
from labelwise.store import answers
from labelwise.store.annotators import create_annotator
from labelwise.store.features import item_fields
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import count_items
from labelwise.store.models import Annotator, Item, Label
from labelwise.store.projects import ProjectSettings, create_project, get_project
from labelwise.store.review import adjudicate, resolved_labels

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRANSFER = FIXTURES / "transfer"


# ------------------------------------------------------------------------------------ helpers


class Project:
    """One project on the test database with its own folder."""

    def __init__(self, db, root: Path, *, kind="text", labels=("ham", "spam"), overlap=0.0):
        self.db = db
        name = root.name
        self.folder = ProjectFolder.create(root, name)
        with db.write() as s:
            self.id = create_project(
                s,
                name=name,
                kind=kind,
                labels=list(labels),
                settings=ProjectSettings(overlap=overlap),
            ).id

    def load(self, path: Path | str, **kwargs: Any) -> int:
        with self.db.write() as s:
            return import_file(s, get_project(s, project_id=self.id), self.folder, path, **kwargs)

    def export(self, fmt: str, **kwargs: Any) -> str:
        buffer = io.StringIO()
        with self.db.read() as s:
            project = get_project(s, project_id=self.id)
            export_project(s, project, fmt, buffer, folder=self.folder, **kwargs)
        return buffer.getvalue()

    def fields(self) -> list[tuple[str, dict[str, float]]]:
        """(external id, fields) of every tabular item, in row order (from the feature file)."""
        items = self.items()
        return [
            (i.external_id, f) for i, f in zip(items, item_fields(self.folder, items), strict=True)
        ]

    def items(self) -> list[Item]:
        with self.db.read() as s:
            stmt = select(Item).where(Item.project_id == self.id).order_by(Item.row)
            return list(s.scalars(stmt))

    def count(self) -> int:
        with self.db.read() as s:
            return count_items(s, get_project(s, project_id=self.id))

    def resolved(self) -> dict[str, str]:
        """external id -> resolved label."""
        with self.db.read() as s:
            final, _ = resolved_labels(s, get_project(s, project_id=self.id))
            ids = {r.id: r.external_id for r in s.execute(select(Item.id, Item.external_id))}
        return {ids[item_id]: value for item_id, value in final.items()}

    def annotator(self, name: str, role: str = "annotator") -> int:
        with self.db.write() as s:
            project = get_project(s, project_id=self.id)
            annotator, _ = create_annotator(s, project, name=name, role=role)
            return annotator.id

    def answer(self, who: int, ext: str, value: str, duration_ms: int | None = None) -> None:
        with self.db.write() as s:
            project = get_project(s, project_id=self.id)
            item_id = s.scalar(
                select(Item.id).where(Item.project_id == self.id, Item.external_id == ext)
            )
            answers.submit_label(
                s,
                project,
                s.get_one(Annotator, who),
                item_id=item_id,
                value=value,
                duration_ms=duration_ms,
            )

    def adjudicate(self, admin: int, ext: str, value: str) -> None:
        with self.db.write() as s:
            project = get_project(s, project_id=self.id)
            item_id = s.scalar(
                select(Item.id).where(Item.project_id == self.id, Item.external_id == ext)
            )
            adjudicate(s, project, s.get_one(Annotator, admin), item_id=item_id, value=value)

    def media_files(self) -> list[Path]:
        return sorted(p for p in self.folder.media_dir.rglob("*") if p.is_file())


def _png(path: Path, value: int, *, size=(6, 5), mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    color: Any = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, color).save(path)
    return path


def _tasks(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tasks))
    return path


def _choice(value: str) -> dict[str, Any]:
    """A Label Studio annotation choosing ``value``."""
    region = {"type": "choices", "value": {"choices": [value]}, "from_name": "label"}
    return {"result": [{**region, "to_name": "text"}]}


def _import_labels(project: Project) -> dict[str, str]:
    """external id -> label recorded by the ``import`` annotator."""
    with project.db.read() as s:
        rows = s.execute(
            select(Item.external_id, Label.value)
            .join(Label, Label.item_id == Item.id)
            .join(Annotator, Annotator.id == Label.annotator_id)
            .where(Item.project_id == project.id, Annotator.name == "import")
        ).all()
    return dict(rows)


# ------------------------------------------------------------------- import: text, tabular, image


def test_csv_into_a_text_project(db, tmp_path):
    plain, labeled = Project(db, tmp_path / "plain"), Project(db, tmp_path / "labeled")
    assert plain.load(FIXTURES / "reviews.csv") == 8
    assert labeled.load(FIXTURES / "reviews.csv", with_labels=True) == 8
    for project in (plain, labeled):
        items = project.items()
        assert [i.external_id for i in items] == [f"m{k}" for k in range(1, 9)]
        assert items[0].content == "Win a free cruise, reply YES now to claim"
        assert items[0].meta == {"source": "reviews.csv"}
    # By default a label column only suggests the label set.
    assert _import_labels(plain) == {} and all(i.n_labels == 0 for i in plain.items())
    labels = _import_labels(labeled)
    assert labels["m1"] == "spam" and labels["m4"] == "ham"  # "ham " is trimmed
    assert len(labels) == 8 and all(i.n_labels == 1 for i in labeled.items())
    assert labeled.resolved() == labels


def test_tsv_jsonl_and_parquet_into_a_text_project(db, tmp_path):
    labels = ("ham", "spam", "positive", "negative", "0", "1")
    project = Project(db, tmp_path / "p", labels=labels)
    assert project.load(FIXTURES / "messages.tsv", with_labels=True) == 10
    assert project.load(FIXTURES / "records.jsonl", with_labels=True) == 4
    path = tmp_path / "items.parquet"
    pd.DataFrame(
        {"uid": ["a", "b", "c"], "text": ["one two", "three four", "five"], "label": [1, 0, 1]}
    ).to_parquet(path)
    assert project.load(path, with_labels=True) == 3
    items = project.items()
    assert [i.row for i in items] == list(range(17))
    assert [i.external_id for i in items[:3]] == ["0", "1", "2"]  # headerless: row numbers
    assert items[2].content == 'He said "no" and left'  # quotes are characters in a TSV
    assert [i.external_id for i in items[10:14]] == ["101", "102", "103", "104"]
    assert [(i.external_id, i.content) for i in items[14:]] == [
        ("a", "one two"),
        ("b", "three four"),
        ("c", "five"),
    ]
    labels_by_id = _import_labels(project)
    assert labels_by_id["1"] == "spam" and labels_by_id["102"] == "negative"
    assert "103" not in labels_by_id  # a null label is no label
    assert [labels_by_id[k] for k in "abc"] == ["1", "0", "1"]  # integers become strings


def test_csv_and_npz_into_a_tabular_project(db, tmp_path):
    project = Project(db, tmp_path / "p", kind="tabular", labels=("0", "1"))
    assert project.load(FIXTURES / "tabular.csv", with_labels=True) == 6
    assert project.fields()[0] == (
        "a",
        {"f1": 0.5, "f2": 1.0, "f3": -2.0},
    )
    assert _import_labels(project)["c"] == "1"

    other = Project(db, tmp_path / "q", kind="tabular", labels=("0", "1"))
    path = tmp_path / "xy.npz"
    np.savez(path, X=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.5]]), y=np.array([0, 1, 1]))
    assert other.load(path, with_labels=True) == 3
    assert other.fields()[2][1] == {"f1": 5.0, "f2": 6.5}
    assert _import_labels(other) == {"0": "0", "1": "1", "2": "1"}


def test_a_second_tabular_import_must_have_the_same_fields(db, tmp_path):
    project = Project(db, tmp_path / "p", kind="tabular", labels=("0", "1"))
    project.load(FIXTURES / "tabular.csv")
    other = tmp_path / "other.csv"
    other.write_text("id,f1,f2,g\nz,1,2,3\n")
    with pytest.raises(InvalidDataError, match=r"other.csv has the fields f1, f2, g .* f1, f2, f3"):
        project.load(other)
    other.write_text("id,f1,f2,f3,g\nz,1,2,3,4\n")  # naming the fields picks them out
    assert project.load(other, feature_columns=["f1", "f2", "f3"]) == 1
    assert project.count() == 7
    with pytest.raises(InvalidDataError, match="holds text items but the project is a tabular"):
        project.load(FIXTURES / "reviews.csv")


def test_npz_and_image_folder_into_an_image_project(db, tmp_path):
    project = Project(db, tmp_path / "p", kind="image", labels=("0", "1", "cat", "dog"))
    path = tmp_path / "images.npz"
    images = np.arange(3 * 5 * 6, dtype=np.uint8).reshape(3, 5, 6)
    np.savez(path, images=images, labels=np.array([1, 0, 1]))
    assert project.load(path, with_labels=True) == 3
    for kind in ("cat", "dog"):
        for k in range(2):
            _png(tmp_path / "pets" / kind / f"{kind}{k}.png", 40 * k)
    assert project.load(tmp_path / "pets", with_labels=True) == 4
    items = project.items()
    assert [i.external_id for i in items[3:]] == [
        "cat/cat0.png",
        "cat/cat1.png",
        "dog/dog0.png",
        "dog/dog1.png",
    ]
    for item in items:  # every content is a PNG under media/
        with Image.open(project.folder.inside(item.content, project.folder.media_dir)) as image:
            assert image.size == (6, 5)
    with Image.open(project.folder.media_dir / items[1].content) as image:
        np.testing.assert_array_equal(np.asarray(image), images[1])
    assert _import_labels(project) == {
        "0": "1",
        "1": "0",
        "2": "1",
        "cat/cat0.png": "cat",
        "cat/cat1.png": "cat",
        "dog/dog0.png": "dog",
        "dog/dog1.png": "dog",
    }


def test_image_folders_a_killed_import_left_are_swept_when_old(db, tmp_path):
    """An import killed after copying its images, before its commit, leaves a batch folder no
    item names: the worker removes it when it starts, once it is old enough that no running
    import can still be filling it. Anything else in media/ stays."""
    import os
    import time

    from labelwise.services.transfer import MEDIA_SWEEP_AGE_S
    from labelwise.services.worker import run_worker

    project = Project(db, tmp_path / "p", kind="image")
    np.savez(tmp_path / "a.npz", images=np.zeros((3, 5, 6), dtype=np.uint8))
    assert project.load(tmp_path / "a.npz") == 3
    media = project.folder.media_dir
    (used,) = media.iterdir()
    left, running, mine = media / "0123456789ab", media / "ba9876543210", media / "scans"
    for folder in (left, running, mine):
        _png(folder / "0000000.png", 7)
    old = time.time() - MEDIA_SWEEP_AGE_S - 60
    for path in (used, left, mine):
        os.utime(path, (old, old))

    run_worker(project.folder, db, poll_seconds=0.01, max_cycles=1)

    assert sorted(p.name for p in media.iterdir()) == sorted([used.name, running.name, "scans"])
    for item in project.items():
        assert (media / item.content).is_file()


def test_images_of_another_size_are_refused_before_anything_is_copied(db, tmp_path):
    project = Project(db, tmp_path / "p", kind="image")
    np.savez(tmp_path / "a.npz", images=np.zeros((2, 5, 6), dtype=np.uint8))
    project.load(tmp_path / "a.npz")
    before = project.media_files()
    np.savez(tmp_path / "b.npz", images=np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(InvalidDataError, match=r"b.npz holds 8x8 grayscale images .* 6x5"):
        project.load(tmp_path / "b.npz")
    assert project.count() == 2 and project.media_files() == before


# ---------------------------------------------------------------------------- import: atomicity


def test_a_bad_label_in_the_middle_stores_nothing(db, tmp_path):
    project = Project(db, tmp_path / "p")
    project.load(FIXTURES / "reviews.csv")
    path = tmp_path / "more.csv"
    path.write_text("id,text,label\nn1,first,ham\nn2,second,eggs\nn3,third,spam\n")
    with pytest.raises(InvalidDataError, match=r"more.csv, row 1 \(id 'n2'\): label 'eggs'"):
        project.load(path, with_labels=True)
    assert project.count() == 8
    assert project.load(path) == 3  # without labels the same file is fine


BAD_FILES = [
    ("bad.jsonl", '{"text": "a", "id": "x1"}\n{"text": "b", "id": \n{"text": "c"}\n', "line 2"),
    (
        "bad.csv",
        "id,text\nx1,a\nx2, \nx3,c\n",
        r"'text' is empty in 1 rows \(first at row 1",
    ),
    ("bad.tsv", "id\ttext\nx1\ta\nm3\tb\nx3\tc\n", r"bad.tsv: 1 item id\(s\) already exist.*'m3'"),
]


def test_a_bad_row_in_the_middle_stores_nothing(db, tmp_path):
    project = Project(db, tmp_path / "p")
    project.load(FIXTURES / "reviews.csv", with_labels=True)
    for name, content, message in BAD_FILES:
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(InvalidDataError, match=message) as caught:
            project.load(path)
        assert name in str(caught.value)  # names the file
        assert project.count() == 8, name


def test_a_failed_image_import_leaves_no_media_behind(db, tmp_path):
    project = Project(db, tmp_path / "p", kind="image")
    np.savez(tmp_path / "a.npz", images=np.zeros((3, 5, 6), dtype=np.uint8))
    project.load(tmp_path / "a.npz")  # ids "0", "1", "2"
    before = project.media_files()
    for k in range(3):
        _png(tmp_path / "ls" / f"{k}.png", 10 * k)
    # The second task's id clashes with a stored item: found only when the rows are checked,
    # after the images were copied in.
    tasks = [{"id": 10 + k, "data": {"image": f"{k}.png"}} for k in range(3)]
    tasks[1]["id"] = 1
    path = _tasks(tmp_path / "ls" / "tasks.json", tasks)
    with pytest.raises(InvalidDataError, match=r"tasks.json: 1 item id\(s\) already exist"):
        project.load(path)
    assert project.count() == 3
    assert project.media_files() == before
    assert len(list(project.folder.media_dir.iterdir())) == 1  # the first import's batch only


# --------------------------------------------------------------------------- import: Label Studio


def test_label_studio_export_into_a_text_project(db, tmp_path):
    project = Project(db, tmp_path / "p")
    assert project.load(TRANSFER / "label_studio_export.json", with_labels=True) == 4
    items = project.items()
    assert [i.external_id for i in items] == ["11", "12", "13", "14"]
    assert items[0].content == "Win a free cruise, reply YES now to claim"
    # A cancelled annotation is passed over; then the first one counts; no choice, no label.
    assert _import_labels(project) == {"11": "spam", "12": "ham", "14": "ham"}
    assert [i.n_labels for i in items] == [1, 1, 0, 1]
    # Without with_labels the annotations are not even read (this one's label is unknown).
    tasks = [{"id": 1, "data": {"text": "hello there"}, "annotations": [_choice("nonsense")]}]
    assert project.load(_tasks(tmp_path / "t.json", tasks)) == 1
    assert project.count() == 5 and "1" not in _import_labels(project)


def test_label_studio_images_into_an_image_project(db, tmp_path):
    base = tmp_path / "export"
    _png(base / "imgs" / "a.png", 10, mode="RGB")
    _png(base / "imgs" / "sub" / "b.png", 200, mode="RGB")
    tasks = [
        {"id": 1, "data": {"image": "imgs/a.png"}, "annotations": [_choice("dog")]},
        {"id": 2, "data": {"image": "imgs/sub/../sub/b.png"}, "annotations": []},
    ]
    project = Project(db, tmp_path / "p", kind="image", labels=("cat", "dog"))
    assert project.load(_tasks(base / "tasks.json", tasks), with_labels=True) == 2
    items = project.items()
    with Image.open(project.folder.media_dir / items[1].content) as image:
        assert image.mode == "RGB" and image.getpixel((0, 0)) == (200, 55, 7)
    assert _import_labels(project) == {"1": "dog"}


def test_a_refused_label_studio_image_stores_and_copies_nothing(db, tmp_path):
    base = tmp_path / "export"
    tasks = [{"id": k, "data": {"image": f"{k}.png"}} for k in range(3)]
    for k in range(3):
        _png(base / f"{k}.png", k)
    tasks[2]["data"]["image"] = "https://example.com/2.png"
    project = Project(db, tmp_path / "p", kind="image")
    with pytest.raises(InvalidDataError, match=r"tasks.json, task '2' \(#2\): image .* URL"):
        project.load(_tasks(base / "tasks.json", tasks))
    assert project.count() == 0 and project.media_files() == []


# The Label Studio reader on its own (no database): key inference, choices, refusals.


def test_plain_label_studio_tasks_use_the_only_string_field_and_row_numbers():
    dataset = read_data(TRANSFER / "label_studio_plain.json", kind="text")
    assert dataset.kind == "text" and dataset.labels is None
    assert list(dataset.ids) == ["0", "1", "2"]
    assert dataset.items[1] == "FREE entry to win a prize, text WIN now"


def test_label_studio_text_key_is_named_when_ambiguous(tmp_path):
    tasks = [{"data": {"title": "Hi", "body": f"Long message {k}"}} for k in range(2)]
    path = _tasks(tmp_path / "t.json", tasks)
    with pytest.raises(InvalidDataError, match=r"'title', 'body'\); name it with text_column="):
        read_data(path)
    assert list(read_data(path, text_column="body").items) == ["Long message 0", "Long message 1"]


def test_label_studio_choices_pick_one_from_name(tmp_path):
    regions = [
        {"type": "choices", "from_name": "topic", "value": {"choices": ["sports"]}},
        {"type": "choices", "from_name": "spamness", "value": {"choices": ["spam"]}},
    ]
    tasks = [{"id": "a", "data": {"text": "Free tickets!"}, "annotations": [{"result": regions}]}]
    path = _tasks(tmp_path / "t.json", tasks)
    with pytest.raises(
        InvalidDataError,
        match=r"t.json, task 'a' \(#0\): the annotation chooses 'sports', 'spam'.*label_column=",
    ):
        read_data(path)
    assert list(read_data(path, label_column="spamness").labels) == ["spam"]
    assert read_data(path, annotations=False).labels is None


def test_label_studio_kind_must_match_the_project(tmp_path):
    _png(tmp_path / "a.png", 1)
    images = _tasks(tmp_path / "images.json", [{"data": {"image": "a.png"}}])
    texts = _tasks(tmp_path / "texts.json", [{"data": {"text": "hello"}}])
    assert read_data(images).kind == "image" and read_data(texts).kind == "text"
    with pytest.raises(InvalidDataError, match="holds image tasks .* text project"):
        read_data(images, kind="text")
    with pytest.raises(InvalidDataError, match="holds text tasks .* image project"):
        read_data(texts, kind="image")
    with pytest.raises(InvalidDataError, match="tabular project"):
        read_data(texts, kind="tabular")


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("http://example.com/a.png", "is a URL; Labelwise never fetches URLs"),
        ("https://example.com/a.png?x=1", "is a URL"),
        ("s3://bucket/a.png", "is a URL"),
        ("data:image/png;base64,iVBORw0KGgo=", "is a URL"),
        ("file:///etc/passwd", "is a URL"),
        ("/data/upload/1/a.png", "is an absolute path"),
        ("../outside.png", "leaves the folder"),
        ("imgs/../../outside.png", "leaves the folder"),
        ("link.png", "leaves the folder"),  # a symlink pointing out
        ("imgs/missing.png", "no such image file"),
    ],
)
def test_label_studio_images_never_leave_the_folder(tmp_path, image, message):
    _png(tmp_path / "outside.png", 1)
    base = tmp_path / "export"
    _png(base / "imgs" / "ok.png", 2)
    (base / "link.png").symlink_to(tmp_path / "outside.png")
    tasks = [{"id": "t0", "data": {"image": "imgs/ok.png"}}, {"id": "t1", "data": {"image": image}}]
    with pytest.raises(InvalidDataError, match=message) as caught:
        read_data(_tasks(base / "tasks.json", tasks), kind="image")
    assert "tasks.json, task 't1' (#1)" in str(caught.value)


def test_a_json_list_of_plain_records_is_not_label_studio(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"id": "a", "text": "hello", "data": "x"}]))
    dataset = read_data(path, text_column="text")
    assert list(dataset.items) == ["hello"] and list(dataset.ids) == ["a"]


# ------------------------------------------------------------------------------------ export


@pytest.fixture
def reviewed(db, tmp_path) -> Project:
    """Six text items, overlap 2: m1, m2 agreed; m3 conflict; m4 conflict adjudicated; m5 one
    answer so far; m6 unlabeled. Timings in ms."""
    project = Project(db, tmp_path / "rev", overlap=1.0)
    path = tmp_path / "rev.csv"
    path.write_text("id,text\n" + "".join(f"m{k},message number {k}\n" for k in range(1, 7)))
    project.load(path)
    ana, ben = project.annotator("ana"), project.annotator("ben")
    boss = project.annotator("boss", role="admin")
    for ext, a, b in [("m1", "spam", "spam"), ("m2", "ham", "ham"), ("m3", "ham", "spam")]:
        project.answer(ana, ext, a, duration_ms=1200)
        project.answer(ben, ext, b, duration_ms=3400)
    project.answer(ana, "m4", "ham", duration_ms=10)
    project.answer(ben, "m4", "spam")
    project.adjudicate(boss, "m4", "spam")
    project.answer(ben, "m5", "ham", duration_ms=500)
    return project


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_jsonl_export_resolves_labels_and_nests_answers(reviewed):
    records = {r["id"]: r for r in _jsonl(reviewed.export("jsonl"))}
    assert list(records) == ["m1", "m2", "m3", "m4", "m5", "m6"]
    assert {k: (r["label"], r["status"]) for k, r in records.items()} == {
        "m1": ("spam", "labeled"),
        "m2": ("ham", "labeled"),
        "m3": (None, "conflict"),
        "m4": ("spam", "labeled"),
        "m5": ("ham", "labeled"),
        "m6": (None, "unlabeled"),
    }
    assert records["m1"]["text"] == "message number 1"
    m3 = records["m3"]["annotations"]
    assert [(a["annotator"], a["label"], a["duration_ms"], a["action"]) for a in m3] == [
        ("ana", "ham", 1200, "label"),
        ("ben", "spam", 3400, "label"),
    ]
    assert m3[0]["created_at"].endswith("Z") and "T" in m3[0]["created_at"]
    # The adjudication comes first; an answer without a timing has duration null.
    m4 = records["m4"]["annotations"]
    assert [(a["annotator"], a["action"], a["duration_ms"]) for a in m4] == [
        ("boss", "adjudicate", None),
        ("ana", "label", 10),
        ("ben", "label", None),
    ]
    assert records["m6"]["annotations"] == []


def test_csv_export_has_the_label_and_compact_annotations(reviewed):
    rows = list(csv.DictReader(io.StringIO(reviewed.export("csv"))))
    assert list(rows[0]) == ["id", "text", "label", "status", "annotations"]
    by_id = {r["id"]: r for r in rows}
    assert (by_id["m3"]["label"], by_id["m3"]["status"]) == ("", "conflict")
    assert (by_id["m4"]["label"], by_id["m4"]["status"]) == ("spam", "labeled")
    answers = json.loads(by_id["m4"]["annotations"])
    assert [a["annotator"] for a in answers] == ["boss", "ana", "ben"]
    assert " " not in by_id["m4"]["annotations"]
    assert json.loads(by_id["m6"]["annotations"]) == []


def test_label_studio_export_shape(reviewed):
    tasks = {t["meta"]["external_id"]: t for t in json.loads(reviewed.export("label-studio"))}
    m4 = tasks["m4"]
    assert m4["data"] == {"text": "message number 4"}
    assert m4["meta"]["status"] == "labeled" and m4["meta"]["label"] == "spam"
    first = m4["annotations"][0]
    assert first["ground_truth"] is True and first["was_cancelled"] is False
    assert first["result"][0] | {"id": None} == {
        "id": None,
        "type": "choices",
        "from_name": "label",
        "to_name": "text",
        "value": {"choices": ["spam"]},
        "origin": "manual",
    }
    assert [a["result"][0]["value"]["choices"] for a in tasks["m3"]["annotations"]] == [
        ["ham"],
        ["spam"],
    ]
    assert tasks["m3"]["annotations"][0]["lead_time"] == 1.2
    assert tasks["m6"]["annotations"] == []


def test_csv_cells_are_safe_to_open_in_a_spreadsheet(db, tmp_path):
    texts = {
        '=HYPERLINK("http://x")': '\'=HYPERLINK("http://x")',
        "+1+1": "'+1+1",
        "-2+3": "'-2+3",
        "@SUM(A1:A2)": "'@SUM(A1:A2)",
        "\tindented": "'\tindented",
        "\rreturn": "'\rreturn",
        "-2.5": "-2.5",  # a plain number is no formula
        "a = b": "a = b",
    }
    path = tmp_path / "cells.jsonl"
    lines = [{"id": f"=cmd{k}", "text": t} for k, t in enumerate(texts)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    project = Project(db, tmp_path / "p")
    project.load(path, text_column="text")
    rows = list(csv.reader(io.StringIO(project.export("csv"), newline="")))
    assert [r[1] for r in rows[1:]] == list(texts.values())
    assert [r[0] for r in rows[1:]] == [f"'=cmd{k}" for k in range(len(texts))]
    # JSONL keeps the values as they are.
    assert [r["text"] for r in _jsonl(project.export("jsonl"))] == list(texts)


def test_export_to_a_path_is_all_or_nothing(reviewed, tmp_path, monkeypatch):
    out, broken = tmp_path / "out.csv", tmp_path / "broken.jsonl"
    with reviewed.db.read() as s:
        project = get_project(s, project_id=reviewed.id)
        assert export_project(s, project, "csv", out) == 6
        with pytest.raises(InvalidParameterError, match="fmt must be one of csv, jsonl"):
            export_project(s, project, "xlsx", tmp_path / "x.xlsx")

        def fail(*args: Any) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(export_module, "_answers", fail)
        with pytest.raises(OSError, match="disk full"):
            export_project(s, project, "jsonl", broken)
    assert out.read_bytes().startswith(b"\xef\xbb\xbfid,text,label")  # a BOM for spreadsheets
    written = sorted(p.name for p in tmp_path.iterdir() if "sqlite3" not in p.name and p.is_file())
    assert written == ["out.csv", "rev.csv"]  # no partial file, no .part left behind


def test_export_streams_in_chunks_and_labeled_only_keeps_conflicts(reviewed, monkeypatch):
    monkeypatch.setattr(export_module, "_CHUNK", 4)  # six items: two chunks
    assert [r["id"] for r in _jsonl(reviewed.export("jsonl"))] == [f"m{k}" for k in range(1, 7)]
    labeled = [r["id"] for r in _jsonl(reviewed.export("jsonl", labeled_only=True))]
    assert labeled == ["m1", "m2", "m3", "m4", "m5"]  # the conflict m3 holds answers
    for fmt in ("csv", "label-studio"):
        text = reviewed.export(fmt, labeled_only=True)
        assert "m6" not in text and "m3" in text, fmt
    assert len(json.loads(reviewed.export("label-studio"))) == 6


def test_tabular_export_has_one_column_per_field(db, tmp_path):
    project = Project(db, tmp_path / "p", kind="tabular", labels=("0", "1"))
    project.load(FIXTURES / "tabular.csv", with_labels=True)
    rows = list(csv.DictReader(io.StringIO(project.export("csv"))))
    assert list(rows[0]) == ["id", "f1", "f2", "f3", "label", "status", "annotations"]
    assert rows[0] | {"annotations": ""} == {
        "id": "a",
        "f1": "0.5",
        "f2": "1.0",
        "f3": "-2.0",  # a negative number stays a number
        "label": "1",
        "status": "labeled",
        "annotations": "",
    }
    with pytest.raises(InvalidParameterError, match="export a tabular project as csv or jsonl"):
        project.export("label-studio")


# --------------------------------------------------------------------------------- round trips


SUFFIX = {"csv": "csv", "jsonl": "jsonl", "label-studio": "json"}


def test_text_round_trips(reviewed, tmp_path):
    original = {i.external_id: i.content for i in reviewed.items()}
    for fmt in EXPORT_FORMATS:
        path = tmp_path / f"export.{SUFFIX[fmt]}"
        with reviewed.db.read() as s:
            export_project(s, get_project(s, project_id=reviewed.id), fmt, path)
        copy = Project(reviewed.db, tmp_path / f"copy-{fmt}")
        assert copy.load(path, with_labels=True) == 6, fmt
        assert {i.external_id: i.content for i in copy.items()} == original, fmt
        # An export's answers come back with their annotators (labelwise.services.restore), the
        # conflict m3 included; field-by-field equality: tests/reliability/test_data_safety.py.
        assert copy.resolved() == reviewed.resolved(), fmt
        assert _import_labels(copy) == {}, fmt


def test_image_round_trips(db, tmp_path):
    project = Project(db, tmp_path / "src", kind="image", labels=("cat", "dog"))
    for kind in ("cat", "dog"):
        for k in range(2):
            _png(tmp_path / "pets" / kind / f"{k}.png", 50 * k + (kind == "dog"), mode="RGB")
    project.load(tmp_path / "pets", with_labels=True)
    for fmt in EXPORT_FORMATS:
        path = project.folder.root / f"export.{SUFFIX[fmt]}"  # image paths are relative to it
        with db.read() as s:
            export_project(s, get_project(s, project_id=project.id), fmt, path)
        copy = Project(db, tmp_path / f"copy-{fmt}", kind="image", labels=("cat", "dog"))
        column = {} if fmt == "label-studio" else {"image_column": "image"}
        assert copy.load(path, with_labels=True, **column) == 4, fmt
        assert (
            copy.resolved()
            == project.resolved()
            == {
                "cat/0.png": "cat",
                "cat/1.png": "cat",
                "dog/0.png": "dog",
                "dog/1.png": "dog",
            }
        ), fmt
        for old, new in zip(project.items(), copy.items(), strict=True):
            assert old.external_id == new.external_id
            with (
                Image.open(project.folder.media_dir / old.content) as a,
                Image.open(copy.folder.media_dir / new.content) as b,
            ):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_tabular_round_trips(db, tmp_path):
    project = Project(db, tmp_path / "src", kind="tabular", labels=("0", "1"))
    project.load(FIXTURES / "tabular.csv", with_labels=True)
    expected = project.fields()
    for fmt in ("csv", "jsonl"):
        path = tmp_path / f"export.{fmt}"
        with db.read() as s:
            project_row = get_project(s, project_id=project.id)
            export_project(s, project_row, fmt, path, folder=project.folder)
        copy = Project(db, tmp_path / f"copy-{fmt}", kind="tabular", labels=("0", "1"))
        # The annotations column is text: name the fields, or it would be taken for the text.
        assert copy.load(path, with_labels=True, feature_columns=["f1", "f2", "f3"]) == 6
        assert copy.fields() == expected, fmt
        assert copy.resolved() == project.resolved(), fmt
