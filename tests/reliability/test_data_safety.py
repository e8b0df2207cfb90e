"""Data safety: export then import round-trips exactly; a database of the previous release
upgrades with every row intact; a backup taken while labels are being written is consistent.

**Round trips.** "Exactly" is what an export carries (:mod:`labelwise.services.export`): each
item's id, content (text, tabular fields, image pixels), resolved label and status, and every
standing answer with its annotator, label, action, duration, time and (for triage's decisions)
confidence. A project with every kind of history (agreement, conflict, adjudication, relabel,
undo, skip, an automatic decision, imported labels, texts with quotes, newlines, tabs and
non-Latin scripts) is exported in each format, brought back into a new project, exported again,
and the two are compared field by field. The one documented difference: a CSV cell that starts
like a spreadsheet formula is written with a leading ``'``, which an import keeps.

**Migrations.** ``tests/fixtures/release-0001/`` holds a project folder whose database is at the
previous release's schema (revision 0001), filled by SQL (see ``make_fixture.py`` there). A copy
is upgraded by opening it, as every command does; every row of every table must come through
unchanged, and the server, the command line and the worker must work on it. The same rows go
into an empty PostgreSQL database at revision 0001, upgraded the same way.

**Backup.** ``labelwise backup`` runs while another thread submits labels as fast as it can.
The copy must pass an integrity check, hold exactly a prefix of the acknowledged labels (every
label acknowledged before the backup began, none that was not acknowledged), and count every
item's labels as its label rows do (no half-written submit). PostgreSQL's dump is restored into
a new database and checked the same way.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.server import ServerConfig, create_app
from labelwise.services import backup as backup_module
from labelwise.services import setup
from labelwise.services.export import export_project
from labelwise.services.setup import OpenProject, init_project, open_project
from labelwise.services.transfer import import_file
from labelwise.services.worker import train_once
from labelwise.store import answers, leasing, undo
from labelwise.store.annotators import create_annotator, hash_token
from labelwise.store.db import Database
from labelwise.store.folder import ProjectFolder
from labelwise.store.migrate import current_revision, head_revision, upgrade
from labelwise.store.models import Annotator, Item, Label, TriageDecision, utcnow
from labelwise.store.projects import ProjectSettings, create_project, get_project
from labelwise.store.review import adjudicate
from labelwise.store.sign_ins import start_session
from labelwise.strategies.reasons import Kind, Reason
from needs import need_program
from postgres_server import new_database

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RELEASE_0001 = FIXTURES / "release-0001"
SUFFIX = {"csv": "csv", "jsonl": "jsonl", "label-studio": "json"}
runner = CliRunner()


def _invoke(*args: Any) -> Any:
    """Run ``labelwise ARGS`` in this process; the pools the command opened are closed when it
    returns, as the end of its process would."""
    opened: list[OpenProject] = []

    def tracked(*a: Any, **k: Any) -> OpenProject:
        opened.append(open_project(*a, **k))
        return opened[-1]

    with mock.patch.object(setup, "open_project", tracked):
        result = runner.invoke(app, [str(a) for a in args])
    for project in opened:
        project.db.dispose()
    return result


_OPENED: list[OpenProject] = []


def _init(*args: Any, **kwargs: Any) -> tuple[OpenProject, str]:
    """:func:`init_project`, its connection pool closed when the test ends."""
    opened, token = init_project(*args, **kwargs)
    _OPENED.append(opened)
    return opened, token


@pytest.fixture(autouse=True)
def _close_projects() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().db.dispose()


def _backend(url: str) -> str:
    return make_url(url).get_backend_name()


# =========================================================================== round trips


class Source:
    """A project and the store calls the tests make on it, one transaction each."""

    def __init__(self, opened: OpenProject):
        self.opened = opened
        self.db = opened.db
        self.pid = opened.project_id
        self.people: dict[str, int] = {}

    def person(self, name: str, role: str = "annotator") -> int:
        with self.db.write() as s:
            annotator, _ = create_annotator(
                s, get_project(s, project_id=self.pid), name=name, role=role
            )
            self.people[name] = annotator.id
        return self.people[name]

    def _item(self, s: Any, ext: str) -> int:
        found = s.scalar(
            select(Item.id).where(Item.project_id == self.pid, Item.external_id == ext)
        )
        assert found is not None, ext
        return int(found)

    def answer(self, who: str, ext: str, value: str, duration_ms: int | None = None) -> None:
        with self.db.write() as s:
            answers.submit_label(
                s,
                get_project(s, project_id=self.pid),
                s.get_one(Annotator, self.people[who]),
                item_id=self._item(s, ext),
                value=value,
                duration_ms=duration_ms,
            )

    def skip(self, who: str, ext: str) -> None:
        with self.db.write() as s:
            project = get_project(s, project_id=self.pid)
            annotator = s.get_one(Annotator, self.people[who])
            item_id = self._item(s, ext)
            # A skip needs the item handed to the annotator: lease it to them as `next` would.
            leasing.grant(
                s,
                project,
                annotator,
                s.get_one(Item, item_id),
                now=leasing.database_now(s),
                reason=Reason(Kind.STRATEGY, summary="handed out for the test"),
                model_version_id=None,
                predicted=None,
            )
            answers.skip_item(s, project, annotator, item_id=item_id, duration_ms=300)

    def undo(self, who: str) -> None:
        with self.db.write() as s:
            back = undo.undo_last(
                s, get_project(s, project_id=self.pid), s.get_one(Annotator, self.people[who])
            )
            leasing.release(s, s.get_one(Annotator, self.people[who]), leases=[back.lease or ""])

    def settle(self, who: str, ext: str, value: str) -> None:
        with self.db.write() as s:
            adjudicate(
                s,
                get_project(s, project_id=self.pid),
                s.get_one(Annotator, self.people[who]),
                item_id=self._item(s, ext),
                value=value,
            )

    def decide(self, ext: str, value: str, confidence: float) -> None:
        """An automatic decision, as labelwise.services.triage records one."""
        with self.db.write() as s:
            item = s.get_one(Item, self._item(s, ext))
            s.add(
                TriageDecision(
                    project_id=self.pid,
                    item_id=item.id,
                    batch="b1",
                    accepted=True,
                    audit=False,
                    label=value,
                    confidence=confidence,
                    policy={"target": "precision", "value": 0.95},
                    created_at=utcnow(),
                )
            )
            item.target, item.done = 0, True

    def export(self, fmt: str, out: Any = None) -> str:
        buffer = io.StringIO()
        with self.db.read() as s:
            export_project(
                s,
                get_project(s, project_id=self.pid),
                fmt,
                buffer if out is None else out,
                folder=self.opened.folder,
            )
        return buffer.getvalue()

    def records(self) -> list[dict[str, Any]]:
        # Split on "\n" only: a text may hold U+2028, which splitlines() would cut at.
        return [json.loads(line) for line in self.export("jsonl").split("\n") if line]


TEXTS = {
    "t01": "Plain words, with a comma",
    "t02": 'She said "hello" and left',
    "t03": "two\nlines",
    "t04": "  padded on both sides  ",
    "t05": "ünïcödé ✓ 🙂 and 中文",
    "t06": "tab\tinside",
    "t07": "=SUM(A1:A9)",  # a formula to a spreadsheet: CSV writes it as '=SUM(A1:A9)
    "t08": "windows\r\nline end",
    "t09": "line\u2028separator",
    "t10": "plain ten",
    "t11": "plain eleven",
    "t12": "plain twelve",
}


def _text_source(db_url: str, root: Path) -> Source:
    """Every kind of history, over texts that are hard to carry."""
    data = root / "texts.jsonl"
    root.mkdir(parents=True)
    data.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in TEXTS.items()))
    opened, _ = _init(
        root / "src",
        data,
        name=f"src-{uuid.uuid4().hex[:8]}",
        labels=["ham", "spam"],
        db_url=db_url,
        settings=ProjectSettings(overlap=1.0, routine=0.0),
    )
    src = Source(opened)
    for name, role in (("ana", "annotator"), ("ben", "annotator"), ("boss", "admin")):
        src.person(name, role)
    src.answer("ana", "t01", "spam", 1200)
    src.answer("ben", "t01", "spam", 3400)  # agreement
    src.answer("ana", "t02", "ham", 800)
    src.answer("ben", "t02", "spam", 2100)  # conflict
    src.answer("ana", "t03", "ham", 10)
    src.answer("ben", "t03", "spam")  # no timing
    src.settle("boss", "t03", "spam")  # adjudicated
    src.answer("ana", "t04", "ham", 500)
    src.answer("ana", "t04", "spam", 700)  # a relabel: the first answer is history
    src.answer("ben", "t04", "spam", 900)
    src.answer("ben", "t05", "ham", 600)
    src.undo("ben")  # taken back: history only
    src.skip("ana", "t06")
    src.answer("ana", "t07", "spam", 5000)
    src.decide("t08", "ham", 0.9731)
    src.answer("ben", "t09", "ham")
    more = root / "more.csv"
    more.write_text("id,text,label\nx01,imported one,spam\nx02,imported two,ham\n")
    with src.db.write() as s:
        import_file(s, get_project(s, project_id=src.pid), opened.folder, more, with_labels=True)
    return src


def _compare(
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    *,
    content: tuple[str, ...],
    expected_content: dict[str, Any] | None = None,
) -> int:
    """Assert ``after`` equals ``before`` field by field; returns how many fields were compared.

    ``expected_content`` gives, by id, content that is meant to differ (what it should be)."""
    expected_content = expected_content or {}
    assert [r["id"] for r in after] == [r["id"] for r in before]
    compared = 0
    for old, new in zip(before, after, strict=True):
        where = old["id"]
        for key in (*content, "label", "status"):
            want = expected_content.get(where, old[key]) if key in content else old[key]
            assert new[key] == want, (where, key, new[key], want)
            compared += 1
        assert len(new["annotations"]) == len(old["annotations"]), where
        for a, b in zip(old["annotations"], new["annotations"], strict=True):
            assert a.keys() == b.keys(), (where, a, b)
            for key in a:
                assert b[key] == a[key], (where, key, b[key], a[key])
                compared += 1
    return compared


def test_text_export_then_import_round_trips_exactly(db_url, tmp_path, record):
    src = _text_source(db_url, tmp_path / "work")
    before = src.records()
    answers = sum(len(r["annotations"]) for r in before)
    statuses = {r["status"] for r in before}
    assert statuses == {"labeled", "conflict", "automatic", "unlabeled"}
    for fmt in ("csv", "jsonl", "label-studio"):
        path = tmp_path / f"export.{SUFFIX[fmt]}"
        src.export(fmt, path)
        # Into a new project (init), and into an existing empty one (import).
        restored, _ = _init(
            tmp_path / f"copy-{fmt}",
            path,
            name=f"copy-{uuid.uuid4().hex[:8]}",
            with_labels=True,
            db_url=db_url,
            settings=ProjectSettings(overlap=0.0),
        )
        copy = Source(restored)
        folder = ProjectFolder.create(tmp_path / f"into-{fmt}", "into")
        with src.db.write() as s:
            pid = create_project(
                s, name=f"into-{uuid.uuid4().hex[:8]}", kind="text", labels=["ham", "spam"]
            ).id
        with src.db.write() as s:
            project = get_project(s, project_id=pid)
            assert import_file(s, project, folder, path, with_labels=True) == 14
        into = Source(OpenProject(folder, src.db, pid))

        guarded = {"t07": "'" + TEXTS["t07"]} if fmt == "csv" else {}
        compared = 0
        for target in (copy, into):
            after = target.records()
            compared += _compare(before, after, content=("text",), expected_content=guarded)
            # Exported again in the same format, the file is the same, byte for byte.
            assert target.export(fmt) == src.export(fmt), fmt
        with copy.db.read() as s:
            people = {
                a.name: (a.role, a.disabled)
                for a in s.scalars(select(Annotator).where(Annotator.project_id == copy.pid))
            }
        # Attribution only: the people come back without a usable token (disabled).
        assert people == {
            "admin": ("admin", False),
            "ana": ("annotator", True),
            "ben": ("annotator", True),
            "boss": ("admin", True),
            "import": ("annotator", True),
        }
        record(
            "data-safety",
            check=f"export → import round trip (text, {fmt}; init and import)",
            database=_backend(db_url),
            items=len(before),
            answers=answers,
            fields_compared=compared,
            differences=0,
            note="CSV keeps the ' it adds before a formula-like cell" if guarded else "",
        )


def test_tabular_and_image_exports_round_trip_exactly(db_url, tmp_path, record):
    # Tabular: labels from the file (the import annotator) and people's answers.
    rng = np.random.default_rng(1)
    data = tmp_path / "rows.csv"
    with data.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "f1", "f2", "f3", "label"])
        for i in range(12):
            label = "" if i % 3 == 0 else ("yes" if i % 2 else "no")
            out.writerow([f"row{i}", *np.round(rng.normal(size=3), 6), label])
    opened, _ = _init(
        tmp_path / "tab",
        data,
        name=f"tab-{uuid.uuid4().hex[:8]}",
        with_labels=True,
        db_url=db_url,
        settings=ProjectSettings(overlap=0.0),
    )
    tab = Source(opened)
    tab.person("ana")
    tab.answer("ana", "row0", "yes", 1500)
    tab.answer("ana", "row3", "no")
    before = tab.records()
    compared = 0
    for fmt in ("csv", "jsonl"):
        path = tmp_path / f"tab.{fmt}"
        tab.export(fmt, path)
        restored, _ = _init(
            tmp_path / f"tab-copy-{fmt}",
            path,
            name=f"tab-copy-{uuid.uuid4().hex[:8]}",
            with_labels=True,
            db_url=db_url,
        )
        copy = Source(restored)
        compared += _compare(before, copy.records(), content=("f1", "f2", "f3"))
        assert copy.export(fmt) == tab.export(fmt)
        restored.db.dispose()
    record(
        "data-safety",
        check="export → import round trip (tabular, csv and jsonl)",
        database=_backend(db_url),
        items=len(before),
        answers=sum(len(r["annotations"]) for r in before),
        fields_compared=compared,
        differences=0,
    )

    # Images: the pixels come back (the files get new names in the new project's media/).
    for k in range(4):
        path = tmp_path / "pets" / ("cat" if k % 2 else "dog") / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (5, 4), (60 * k, 255 - 60 * k, 7)).save(path)
    opened, _ = _init(
        tmp_path / "img", tmp_path / "pets", name=f"img-{uuid.uuid4().hex[:8]}", db_url=db_url
    )
    img = Source(opened)
    img.person("ana")
    img.person("boss", "admin")
    img.answer("ana", "cat/1.png", "cat", 800)
    img.answer("ana", "dog/0.png", "cat", 900)
    img.settle("boss", "dog/0.png", "dog")
    before = img.records()
    path = opened.folder.root / "export.jsonl"  # image paths are relative to the project
    img.export("jsonl", path)
    restored, _ = _init(
        tmp_path / "img-copy",
        path,
        name=f"img-copy-{uuid.uuid4().hex[:8]}",
        image_column="image",
        with_labels=True,
        db_url=db_url,
    )
    copy = Source(restored)
    after = copy.records()
    compared = _compare(before, after, content=())
    for old, new in zip(before, after, strict=True):
        with (
            Image.open(opened.folder.root / old["image"]) as a,
            Image.open(restored.folder.root / new["image"]) as b,
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        compared += 1
    record(
        "data-safety",
        check="export → import round trip (images, jsonl)",
        database=_backend(db_url),
        items=len(before),
        answers=sum(len(r["annotations"]) for r in before),
        fields_compared=compared,
        differences=0,
    )
    restored.db.dispose()


# ============================================================================= migrations


def _fixture_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "release_0001_fixture", RELEASE_0001 / "make_fixture.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Rows = dict[str, list[dict[str, Any]]]


def _dump(conn: Any, tables: tuple[str, ...]) -> Rows:
    """Every row of ``tables``, in id order, by column (JSON columns as parsed values)."""

    def value(v: Any) -> Any:
        if isinstance(v, str) and v.startswith(("[", "{")):  # SQLite keeps JSON as text
            try:
                return json.loads(v)
            except ValueError:
                return v
        return v

    return {
        table: [
            {column: value(v) for column, v in row._mapping.items()}
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))
        ]
        for table in tables
    }


def _old_columns(after: Rows, before: Rows) -> Rows:
    """``after`` without the columns later schemas added (each added column is checked on its
    own): what to compare with the rows as the previous release left them."""
    kept = {table: set(rows[0]) for table, rows in before.items() if rows}
    return {
        table: [{c: v for c, v in row.items() if c in kept.get(table, row)} for row in rows]
        for table, rows in after.items()
    }


def test_the_committed_fixture_is_what_its_script_makes(tmp_path):
    script = _fixture_script()
    script.main(tmp_path)
    made = create_engine(f"sqlite:///{tmp_path / 'labelwise.sqlite3'}")
    # Read-only, and not through labelwise's Database (which would switch it to WAL).
    committed = create_engine(
        f"sqlite:///file:{RELEASE_0001 / 'labelwise.sqlite3'}?mode=ro&uri=true"
    )
    try:
        with made.connect() as a, committed.connect() as b:
            assert _dump(a, script.TABLES) == _dump(b, script.TABLES)
            revision = b.execute(text("SELECT version_num FROM alembic_version")).scalar()
            assert revision == "0001"
    finally:
        made.dispose()
        committed.dispose()
    assert (tmp_path / "labelwise.json").read_text() == (
        RELEASE_0001 / "labelwise.json"
    ).read_text()


def _check_history_kept(after: Rows) -> None:
    """A few rows read by meaning: the relabel, the undo and the adjudication are there; the
    columns added since are empty (a lease made before tokens has none)."""
    actions = [row["action"] for row in after["labels"]]
    assert all(row["token"] is None for row in after["leases"])
    assert actions.count("undo") == 1 and actions.count("adjudicate") == 1
    assert actions.count("skip") == 1 and len(actions) == 20
    assert len(after["items"]) == 30 and len(after["queue"]) == 17


def test_a_database_of_the_previous_release_upgrades_intact_and_works(tmp_path, record):
    script = _fixture_script()
    root = tmp_path / "reviews"
    shutil.copytree(RELEASE_0001, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = root / "labelwise.sqlite3"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    plain = Database(f"sqlite:///{path}")
    with plain.engine.connect() as conn:
        before = _dump(conn, script.TABLES)
    plain.dispose()

    opened = open_project(root)  # every command opens a project this way: it migrates
    try:
        assert current_revision(opened.db) == head_revision() != "0001"
        assert "triage_decisions" in inspect(opened.db.engine).get_table_names()
        with opened.db.engine.connect() as conn:
            after = _dump(conn, script.TABLES)
        assert _old_columns(after, before) == before
        _check_history_kept(after)

        # The server: ana's next item is the queue's first, whose lease expired long ago.
        client = TestClient(create_app(ServerConfig(opened)))
        ana = {"Authorization": f"Bearer {script.TOKENS['ana']}"}
        admin = {"Authorization": f"Bearer {script.TOKENS['admin']}"}
        got = client.post(f"/api/projects/{opened.project_id}/next", headers=ana, json={})
        assert got.status_code == 200, got.text
        assert got.json()["item"]["id"] == 14
        answered = client.post(
            f"/api/projects/{opened.project_id}/items/14/label",
            headers=ana,
            json={"value": "positive", "duration_ms": 1234, "request_id": "after-upgrade"},
        )
        assert answered.status_code == 200, answered.text
        summary = client.get(f"/api/projects/{opened.project_id}", headers=admin).json()
        assert summary["model"]["version"] == 1 and summary["progress"]["items"] == 30
        exported = client.get(
            f"/api/projects/{opened.project_id}/export", headers=admin, params={"format": "jsonl"}
        )
        lines = [json.loads(line) for line in exported.text.split("\n") if line]
        records = {r["id"]: r for r in lines}
        assert records["r004"]["annotations"][0]["action"] == "adjudicate"
        assert records["r003"]["status"] == "conflict"
        assert records["r014"]["annotations"][0]["duration_ms"] == 1234
        client.close()

        # The command line and the worker: the next fit completes.
        status = _invoke("status", root)
        assert status.exit_code == 0, status.output
        assert "model: v1 (logreg, 12 labels)" in status.stdout
        outcome = train_once(opened.folder, opened.db, force=True)
        assert outcome.status == "trained" and outcome.version == 3, outcome
    finally:
        opened.db.dispose()
    record(
        "data-safety",
        check="previous release's database (revision 0001) upgraded to head",
        database="sqlite",
        rows=sum(len(rows) for rows in before.values()),
        rows_changed=0,
        app_after_upgrade="next, label, export, status, fit: ok",
    )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: the fixture file
def test_the_previous_release_schema_upgrades_on_postgresql(db_url, record):
    script = _fixture_script()
    db = Database(db_url)
    try:
        assert current_revision(db) is None  # an empty database
        upgrade(db, "0001")
        with db.engine.begin() as conn:
            counts = script.fill(conn)
        with db.engine.connect() as conn:
            before = _dump(conn, script.TABLES)
        upgrade(db)
        assert current_revision(db) == head_revision()
        with db.engine.connect() as conn:
            after = _dump(conn, script.TABLES)
        assert _old_columns(after, before) == before
        _check_history_kept(after)
        # The store on the upgraded rows: ana is handed item 14 (its lease expired), answers it.
        with db.write() as s:
            project = get_project(s, name=script.PROJECT)
            ana = s.scalar(select(Annotator).where(Annotator.name == "ana"))
            got = leasing.next_item(s, project, ana)
            assert got is not None and got.item.id == 14
            answers.submit_label(s, project, ana, item_id=14, value="positive")
        buffer = io.StringIO()
        with db.read() as s:
            assert export_project(s, get_project(s, name=script.PROJECT), "jsonl", buffer) == 30
        assert '"annotator": "ana"' in buffer.getvalue()
    finally:
        db.dispose()
    record(
        "data-safety",
        check="previous release's schema (revision 0001) upgraded to head",
        database="postgresql",
        rows=sum(counts.values()),
        rows_changed=0,
        app_after_upgrade="next, label, export: ok",
    )


# ================================================================================= backup


@pytest.fixture
def heavy_sizes(heavy: bool) -> dict[str, float]:
    """Items in the project, backups taken, and the least time the writer runs (seconds)."""
    if heavy:
        return {"items": 20_000, "backups": 5, "seconds": 20.0}
    return {"items": 600, "backups": 1, "seconds": 0.0}


class Writer(threading.Thread):
    """One annotator answering as fast as the store allows; ``acked`` holds the id of every
    label whose transaction committed, in commit order (one writer: commit order is id order
    of acknowledgement)."""

    def __init__(self, db: Database, pid: int, annotator_id: int):
        super().__init__(daemon=True)
        self.db, self.pid, self.annotator_id = db, pid, annotator_id
        self.acked: list[int] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            k = 0
            while not self.stop.is_set():
                with self.db.write(durable=False) as s:
                    project = get_project(s, project_id=self.pid)
                    got = leasing.next_item(s, project, s.get_one(Annotator, self.annotator_id))
                    if got is None:
                        return
                    item_id = got.item.id
                with self.db.write() as s:
                    project = get_project(s, project_id=self.pid)
                    who = s.get_one(Annotator, self.annotator_id)
                    if k % 7 == 6:
                        done = answers.skip_item(s, project, who, item_id=item_id)
                    else:
                        value = project.label_set[k % 2]
                        done = answers.submit_label(s, project, who, item_id=item_id, value=value)
                    label_id = done.label.id
                self.acked.append(label_id)  # the transaction committed: acknowledged
                k += 1
        except BaseException as exc:  # reported by the test
            self.error = exc

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)


def _busy_project(db_url: str, root: Path, n_items: int) -> tuple[OpenProject, int]:
    """A project with a fitted model (artefact and feature cache on disk) and an annotator."""
    data = root / "items.csv"
    root.mkdir(parents=True)
    words = ["win", "cash", "prize", "lunch", "meeting", "later", "home", "free"]
    with data.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "label"])
        for i in range(n_items):
            spam = i % 3 == 0
            body = " ".join(words[(i * k + spam) % 8] for k in range(1, 6))
            out.writerow([f"b{i}", f"{body} {i}", "spam" if spam else "ham"])
    opened, _ = _init(
        root / "project",
        data,
        name=f"busy-{uuid.uuid4().hex[:8]}",
        db_url=db_url,
        settings=ProjectSettings(overlap=0.0, routine=0.0, retrain_every=1000),
    )
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        annotator, _ = create_annotator(s, project, name="fast", role="annotator")
    for value in ("spam", "ham", "spam", "ham"):  # enough for a first model
        with opened.db.write() as s:
            project = get_project(s, project_id=opened.project_id)
            who = s.get_one(Annotator, annotator.id)
            got = leasing.next_item(s, project, who)
            assert got is not None
            answers.submit_label(s, project, who, item_id=got.item.id, value=value)
    assert train_once(opened.folder, opened.db, force=True).status == "trained"
    return opened, annotator.id


def _consistency(conn: Any, pid: int) -> tuple[set[int], int]:
    """(label ids, items whose counts disagree with their label rows) of the project."""
    ids = set(
        conn.execute(text("SELECT id FROM labels WHERE project_id = :p"), {"p": pid}).scalars()
    )
    torn = conn.execute(
        text(
            "SELECT count(*) FROM items i WHERE i.project_id = :p AND i.n_labels <> ("
            "SELECT count(*) FROM labels l WHERE l.item_id = i.id AND l.action = 'label' "
            "AND l.is_current = :yes)"
        ),
        {"p": pid, "yes": True},
    ).scalar()
    return ids, int(torn or 0)


@contextmanager
def _restored_postgres(dump: Path) -> Iterator[str]:
    """A new PostgreSQL database loaded from ``dump`` with psql; dropped afterwards."""

    psql = need_program("psql", how=PG_CLIENT)
    with new_database("lw_restore") as restored:
        url = make_url(restored)
        env = dict(os.environ) | ({"PGPASSWORD": url.password} if url.password else {})
        loaded = subprocess.run(
            [
                psql,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-h",
                url.host or "127.0.0.1",
                "-p",
                str(url.port or 5432),
                "-U",
                url.username or "postgres",
                "-d",
                str(url.database),
                "-f",
                str(dump),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert loaded.returncode == 0, loaded.stderr
        yield restored


#: How to get ``pg_dump`` and ``psql``, for the message when one is missing.
PG_CLIENT = "install the PostgreSQL client tools (apt-get install postgresql-client)"


def _require_pg_dump() -> None:
    need_program("pg_dump", how=PG_CLIENT)


def test_a_backup_taken_while_labels_are_written_is_consistent(
    db_url, heavy_sizes, tmp_path, record
):
    backend = _backend(db_url)
    if backend == "postgresql":
        _require_pg_dump()
    opened, annotator_id = _busy_project(db_url, tmp_path / "busy", int(heavy_sizes["items"]))
    with opened.db.read() as s:
        initial = set(s.scalars(select(Label.id).where(Label.project_id == opened.project_id)))
    writer = Writer(opened.db, opened.project_id, annotator_id)
    started = time.monotonic()
    writer.start()
    try:
        for n in range(int(heavy_sizes["backups"])):
            writer.wait_for(len(writer.acked) + 10)
            before = len(writer.acked)
            dest = tmp_path / f"backup-{n}"
            result = _invoke("backup", opened.folder.root, dest)
            after = len(writer.acked)
            assert result.exit_code == 0, result.output
            assert "backed up" in result.stdout and not result.stderr.strip(), result.output
            manifest = json.loads((dest / "backup.json").read_text())
            assert manifest["features"] == "copied" and manifest["warnings"] == []
            assert (dest / "models" / "v00001.joblib").is_file()

            with ExitStack() as stack:
                if backend == "sqlite":
                    check = sqlite3.connect(dest / "labelwise.sqlite3")
                    assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
                    check.close()
                    url = f"sqlite:///{dest / 'labelwise.sqlite3'}"
                    status = _invoke("status", dest)
                else:
                    url = stack.enter_context(_restored_postgres(dest / "database.sql"))
                    status = _invoke("status", dest, "--db", url)
                assert status.exit_code == 0, status.output
                copy = Database(url)
                stack.callback(copy.dispose)
                with copy.engine.connect() as conn:
                    ids, torn = _consistency(conn, opened.project_id)
                    rows = {
                        r.id: (r.item_id, r.action, r.value)
                        for r in conn.execute(text("SELECT id, item_id, action, value FROM labels"))
                    }
            taken = ids - initial
            k = len(taken)
            lost = len(set(writer.acked[:before]) - taken)
            # Exactly a prefix of what was acknowledged, and all that came before the backup.
            assert taken == set(writer.acked[:k]), "not a prefix of the acknowledged labels"
            assert lost == 0 and before <= k <= after + 1, (before, k, after)
            assert torn == 0, f"{torn} items count labels their rows do not hold"
            with opened.db.read() as s:
                live = {
                    r.id: (r.item_id, r.action, r.value)
                    for r in s.execute(select(Label.id, Label.item_id, Label.action, Label.value))
                }
            assert all(rows[i] == live[i] for i in ids)
            record(
                "data-safety",
                check="backup while labels are written",
                database=backend,
                items=int(heavy_sizes["items"]),
                labels_acknowledged_before=before,
                labels_in_backup=k,
                labels_acknowledged_during=after - before,
                labels_lost=lost,
                torn_items=torn,
                integrity="ok",
            )
        while time.monotonic() - started < heavy_sizes["seconds"] and writer.is_alive():
            time.sleep(0.1)
    finally:
        writer.stop.set()
        writer.join(timeout=60)
        opened.db.dispose()
    assert writer.error is None, repr(writer.error)


def test_a_backup_holds_its_own_project_only(db_url, tmp_path, record):
    # Backing up one project of a shared database dumped another project's items and token
    # hashes. The copy holds the project's rows only, and restores to a working project.
    backend = _backend(db_url)
    if backend == "postgresql":
        _require_pg_dump()
    ours, _ = _busy_project(db_url, tmp_path / "ours", 30)
    theirs, _ = _busy_project(db_url, tmp_path / "theirs", 20)
    with theirs.db.write() as s:
        _, their_token = create_annotator(
            s, get_project(s, project_id=theirs.project_id), name="their-secret", role="admin"
        )
        their_name = get_project(s, project_id=theirs.project_id).name
    with ours.db.write() as s:  # a browser session of ours: no part of a backup either
        admin = s.scalar(select(Annotator).where(Annotator.project_id == ours.project_id))
        session_hash = hash_token(start_session(s, admin))
    result = _invoke("backup", ours.folder.root, tmp_path / "copy")
    assert result.exit_code == 0, result.output
    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'copy' / 'labelwise.sqlite3'}"
            raw = (tmp_path / "copy" / "labelwise.sqlite3").read_bytes()
        else:
            raw = (tmp_path / "copy" / "database.sql").read_bytes()
            url = stack.enter_context(_restored_postgres(tmp_path / "copy" / "database.sql"))
        # nothing of theirs, not even in a free page of the file
        assert hash_token(their_token).encode() not in raw
        assert their_name.encode() not in raw
        assert session_hash.encode() not in raw
        copy = Database(url)
        stack.callback(copy.dispose)
        with copy.engine.connect() as conn:
            names = conn.execute(text("SELECT name FROM projects")).scalars().all()
            counts = {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("items", "annotators", "sign_ins")
            }
        assert names == [ours.project().name]
        assert counts["items"] == 30 and counts["sign_ins"] == 0
        status = _invoke("status", tmp_path / "copy", "--db", url)
        assert status.exit_code == 0 and "of 30 items done" in status.stdout, status.output
    record("data-safety", check="backup of one project of a shared database", database=backend,
           other_projects_rows=0)  # fmt: skip


def test_a_backup_refuses_a_bad_destination_and_leaves_nothing_when_it_fails(tmp_path, monkeypatch):
    opened, _ = _busy_project(f"sqlite:///{tmp_path / 'p.sqlite3'}", tmp_path / "p", 40)
    root = opened.folder.root
    opened.db.dispose()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("keep me")
    for dest, message in [
        (tmp_path / "full", "exists and is not an empty folder"),
        (root / "media" / "copy", "lies inside the project's media/ folder"),
        (root, "exists and is not an empty folder"),
    ]:
        result = _invoke("backup", root, dest)
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "full" / "something").read_text() == "keep me"

    def full_disk(*args: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(backup_module, "_copy_files", full_disk)
    result = _invoke("backup", root, tmp_path / "never")
    assert result.exit_code == 2 and "No space left on device" in result.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith((".never", "never"))]
    assert leftovers == []


def test_a_copy_left_by_a_killed_backup_is_removed_by_the_next(tmp_path):
    # A backup killed mid-way left a hidden partial copy, with the token hashes, forever.
    import platform
    import subprocess
    import sys

    opened, _ = _busy_project(f"sqlite:///{tmp_path / 'p.sqlite3'}", tmp_path / "p", 20)
    root = opened.folder.root
    opened.db.dispose()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(gone.stdout)  # a process that has ended
    left = tmp_path / ".old.partial-0badcafe"
    left.mkdir()
    (left / "labelwise.sqlite3").write_text("token hashes")
    (left / ".owner").write_text(f"{platform.node()} {dead_pid}\n")
    running = tmp_path / ".other.partial-1234abcd"  # a backup running now is left alone
    running.mkdir()
    (running / ".owner").write_text(f"{platform.node()} {os.getpid()}\n")
    result = _invoke("backup", root, tmp_path / "fresh")
    assert result.exit_code == 0, result.output
    assert not left.exists() and running.exists()
    assert not (tmp_path / "fresh" / ".owner").exists()
    assert oct((tmp_path / "fresh").stat().st_mode & 0o777) == "0o700"


def test_a_backup_leaves_out_a_feature_cache_that_does_not_match(tmp_path):
    opened, _ = _busy_project(f"sqlite:///{tmp_path / 'p.sqlite3'}", tmp_path / "p", 40)
    root = opened.folder.root
    opened.db.dispose()
    meta = json.loads((root / "features" / "meta.json").read_text())
    # As if the worker had rebuilt the cache for items imported after the snapshot.
    (root / "features" / "meta.json").write_text(json.dumps(meta | {"n_items": 41}))
    result = _invoke("backup", root, tmp_path / "copy")
    assert result.exit_code == 0, result.output
    assert "feature cache left out" in result.stdout
    assert list((tmp_path / "copy" / "features").iterdir()) == []
    assert _invoke("status", tmp_path / "copy").exit_code == 0


def test_a_tabular_backup_keeps_its_pool(tmp_path):
    """A tabular project's features/ holds the pool itself, not a cache: always copied."""
    data = tmp_path / "rows.csv"
    data.write_text(
        "id,f1,f2,label\n" + "".join(f"r{i},{i / 7:.6f},{i % 5},a\n" for i in range(30))
    )
    opened, _ = _init(tmp_path / "tab", data, labels=["a", "b"], name=f"tab-{uuid.uuid4().hex[:6]}")
    source = Source(opened).export("jsonl")
    result = _invoke("backup", opened.folder.root, tmp_path / "copy")
    assert result.exit_code == 0, result.output
    assert "feature cache left out" not in result.stdout
    copy = open_project(tmp_path / "copy")
    try:
        assert Source(copy).export("jsonl") == source  # the fields come from the copied pool
    finally:
        copy.db.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_postgresql_backup_without_pg_dump_says_what_to_install(db_url, tmp_path, monkeypatch):
    opened, _ = _init(
        tmp_path / "p", FIXTURES / "reviews.csv", name=f"p-{uuid.uuid4().hex[:8]}", db_url=db_url
    )
    opened.db.dispose()
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = _invoke("backup", tmp_path / "p", tmp_path / "copy")
    assert result.exit_code == 2
    assert "needs pg_dump (the PostgreSQL client tools) on PATH" in result.stderr
    assert not (tmp_path / "copy").exists()
