"""Hostile and broken input: each file is refused with a clear error, and nothing stored changes.

One table of inputs (:data:`CASES`), each tried through ``labelwise import`` (one line on stderr
starting ``error:``, a non-zero exit, no traceback) and, where the server takes that kind of
file, through ``POST /api/projects/{id}/import`` (a 4xx whose ``error`` names what was wrong and
never the server's temporary folder). Before and after each attempt the project is read back
whole: every item, label, annotator and triage decision row, and every file under
``features/``, ``media/`` and ``models/`` by content hash; the two must be equal.

Three projects per database (SQLite and PostgreSQL): text (with labels and a built feature
cache), tabular and images. They are made once per module, in one PostgreSQL database of the
module's own; every case leaves them as they were, which is the point.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
import struct
import tarfile
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.server import ServerConfig, create_app
from labelwise.server.routes import projects as project_routes
from labelwise.services import setup
from labelwise.services.setup import OpenProject, init_project, open_project
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.features import load_features
from labelwise.store.leasing import next_item
from labelwise.store.models import Annotator, Item, Label, TriageDecision
from labelwise.store.projects import ProjectSettings, get_project
from postgres_server import new_database

runner = CliRunner()

# ------------------------------------------------------------------------------ the projects


@dataclass
class Target:
    """A project under attack: its folder, database, a served app and its admin token."""

    kind: str
    opened: OpenProject
    client: TestClient
    admin: str
    annotator: str

    @property
    def root(self) -> Path:
        return self.opened.folder.root

    def api(self, path: str) -> str:
        return f"/api/projects/{self.opened.project_id}{path}"

    def snapshot(self) -> dict[str, Any]:
        """Every stored row of the project and every file of its folder (by hash)."""
        pid = self.opened.project_id
        with self.opened.db.read() as s:
            rows: dict[str, Any] = {}
            for model in (Item, Label, Annotator, TriageDecision):
                table = model.__table__
                found = s.execute(
                    select(table).where(table.c.project_id == pid).order_by(table.c.id)
                ).all()
                rows[table.name] = [tuple(r) for r in found]
        files = {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("features", "media", "models")
            for p in sorted((self.root / sub).rglob("*"))
            if p.is_file()
        }
        return {"rows": rows, "files": files}


def _png(path: Path, value: int, size: tuple[int, int] = (6, 5)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def _text_data(path: Path) -> Path:
    lines = ["id,text,label"] + [
        f"m{i},{'win a prize now' if i % 3 == 0 else 'lunch at noon'} number {i},"
        f"{'spam' if i % 3 == 0 else 'ham'}"
        for i in range(40)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _tabular_data(path: Path) -> Path:
    rng = np.random.default_rng(0)
    lines = ["id,f1,f2,f3,label"] + [
        f"t{i},{rng.normal():.4f},{rng.normal():.4f},{rng.normal():.4f},{i % 2}" for i in range(30)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _image_data(folder: Path) -> Path:
    for k in range(6):
        _png(folder / ("cat" if k % 2 else "dog") / f"{k}.png", 40 * k)
    return folder


def _build(kind: str, base: Path, db_url: str | None) -> Target:
    data = {"text": _text_data, "tabular": _tabular_data, "image": _image_data}[kind](
        base / ("pets" if kind == "image" else f"{kind}.csv")
    )
    opened, admin = init_project(
        base / "project",
        data,
        name=f"hostile-{kind}-{uuid.uuid4().hex[:6]}",
        db_url=db_url,
        settings=ProjectSettings(overlap=0.0, routine=0.0),
    )
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        annotator, token = create_annotator(s, project, name="alice", role="annotator")
    for _ in range(5):  # some answers, so that labels are part of what must not change
        with opened.db.write() as s:
            project = get_project(s, project_id=opened.project_id)
            who = s.get_one(Annotator, annotator.id)
            got = next_item(s, project, who)
            assert got is not None
            submit_label(s, project, who, item_id=got.item.id, value=project.label_set[0])
    with opened.db.read() as s:
        load_features(s, get_project(s, project_id=opened.project_id), opened.folder)
    return Target(kind, opened, TestClient(create_app(ServerConfig(opened))), admin, token)


@pytest.fixture(scope="module")
def _postgres_database() -> Iterator[str]:
    """A PostgreSQL database of this module's own (skipped without a server, except in CI)."""
    with new_database("lw_hostile") as url:
        yield url


@pytest.fixture(scope="module")
def targets(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str, str], Target]]:
    """``get(kind, database)``: the module's project of that kind on that database."""
    made: dict[tuple[str, str], Target] = {}

    def get(kind: str, database: str) -> Target:
        if (kind, database) not in made:
            url = None
            if database == "postgresql":
                url = request.getfixturevalue("_postgres_database")
            made[kind, database] = _build(kind, tmp_path_factory.mktemp(kind), url)
        return made[kind, database]

    yield get
    for target in made.values():
        target.client.close()
        target.opened.db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---------------------------------------------------------------------------- hostile files


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds almost no data: what a
    decompression bomb shows a reader before it decodes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _npz_declaring(shape: tuple[int, ...], name: str = "images") -> bytes:
    """An .npz whose one array declares ``shape`` (uint8) in its header; the data is absent."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.npy", header.getvalue() + b"\0" * 4096)
    return out.getvalue()


def _npz_members(names: list[str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in names:
            array = io.BytesIO()
            np.save(array, np.ones((3, 2)))
            archive.writestr(name, array.getvalue())
    return out.getvalue()


def _parquet(frame: Any) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out)
    return out.getvalue()


def _good_parquet() -> bytes:
    import pandas as pd

    return _parquet(pd.DataFrame({"id": ["p1", "p2"], "text": ["one two three", "four five"]}))


def _tar(name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _zip(name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, content)
    return out.getvalue()


def _junk(n: int = 4096) -> bytes:
    return np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()


def _frame(**columns: Any) -> Any:
    import pandas as pd

    return pd.DataFrame(columns)


def _export_like(annotations: Any) -> str:
    record = {
        "id": "r1",
        "text": "restored item",
        "label": "ham",
        "status": "labeled",
        "annotations": annotations,
    }
    return json.dumps(record) + "\n"


Maker = Callable[[Path], Path]


def _file(name: str, content: bytes | str) -> Maker:
    def make(folder: Path) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


def _lazy(name: str, content: Callable[[], bytes]) -> Maker:
    return lambda folder: _file(name, content())(folder)


def _images(build: Callable[[Path], None]) -> Maker:
    def make(folder: Path) -> Path:
        root = folder / "images"
        root.mkdir()
        build(root)
        return root

    return make


def _with_outside(build: Callable[[Path, Path], Path]) -> Maker:
    """A file made beside ``outside.png``, an ordinary image in the folder above the data."""

    def make(folder: Path) -> Path:
        outside = _png(folder / "outside.png", 99)
        data = folder / "data"
        data.mkdir()
        try:
            return build(data, outside)
        except (OSError, NotImplementedError):
            pytest.skip("symbolic links are not available here")

    return make


@dataclass(frozen=True)
class Case:
    """One hostile input: what it is, the project kind it is thrown at, how to make it, and a
    pattern the error must match (on each surface)."""

    name: str
    kind: str
    make: Maker
    expect: str
    options: tuple[str, ...] = ()
    http: bool = True
    params: dict[str, str] = field(default_factory=dict)


def _symlinked_image_column(data: Path, outside: Path) -> Path:
    _png(data / "inside.png", 10)
    (data / "link.png").symlink_to(outside)
    (data / "list.csv").write_text("id,image\nx1,inside.png\nx2,link.png\n")
    return data / "list.csv"


def _symlinked_image_folder(data: Path, outside: Path) -> Path:
    _png(data / "cat" / "0.png", 10)
    (data / "cat" / "1.png").symlink_to(outside)
    return data


def _image_column(name: str, value: str) -> Maker:
    def make(folder: Path) -> Path:
        _png(folder / "ok.png", 10)
        return _file(name, f"id,image\nx0,ok.png\nx1,{value}\n")(folder)

    return make


CASES = [
    # -- malformed and truncated text formats
    Case(
        "malformed CSV (ragged row)",
        "text",
        _file("ragged.csv", "id,text\nx1,hello there\nx2,a,b,c\n"),
        r"Expected 2 fields in line 3, saw 4",
    ),
    Case(
        "CSV whose first row has an unquoted extra field",
        "text",
        _file("extra.csv", 'id,text\nx1,"hello, there",lost\nx2,second row\n'),
        r"row 0 has 3 fields but the header names 2 \(extra value 'lost'\)",
    ),
    Case(
        "truncated CSV (inside a quoted field)",
        "text",
        _file("cut.csv", 'id,text\nx1,hello there\nx2,"and then the file ends'),
        r"EOF inside string",
    ),
    Case(
        "truncated CSV (last row cut short)",
        "text",
        _file("short.csv", "id,text,label\nx1,hello there,ham\nx2"),
        r"text column 'text' is empty in 1 rows \(first at row 1\)",
    ),
    Case(
        "malformed JSONL (missing comma)",
        "text",
        _file("bad.jsonl", '{"id": "x1", "text": "a"}\n{"id": "x2" "text": "b"}\n'),
        r"line 2: invalid JSON",
    ),
    Case(
        "truncated JSONL",
        "text",
        _file("cut.jsonl", '{"id": "x1", "text": "a b c"}\n{"id": "x2", "te'),
        r"line 2: invalid JSON",
    ),
    Case(
        "JSONL line that is not an object",
        "text",
        _file("array.jsonl", '["x1", "a b c"]\n'),
        r"line 1: expected a JSON object",
    ),
    Case(
        "JSON nested 100,000 deep (JSONL)",
        "text",
        _file("deep.jsonl", "[" * 100_000 + "]" * 100_000 + "\n"),
        r"line 1: JSON nested too deeply",
    ),
    Case(
        "JSON nested 100,000 deep (JSON)",
        "text",
        _file("deep.json", '{"a":' * 100_000 + "1" + "}" * 100_000),
        r"JSON nested too deeply",
    ),
    Case(
        "truncated Parquet",
        "text",
        _lazy("cut.parquet", lambda: _good_parquet()[: len(_good_parquet()) // 2]),
        r"cannot read Parquet file .*cut\.parquet",
    ),
    Case(
        "random bytes named .parquet",
        "text",
        _lazy("junk.parquet", _junk),
        r"cannot read Parquet file .*junk\.parquet",
    ),
    Case(
        "Parquet with a list column as the text",
        "text",
        _lazy("lists.parquet", lambda: _parquet(_frame(id=["x1"], text=[["a", "b"]]))),
        r"text column 'text' holds a list at row 0",
    ),
    Case(
        "JSONL with an object as the text",
        "text",
        _file("object.jsonl", '{"id": "x1", "text": {"nested": "value"}}\n'),
        r"text column 'text' holds an object at row 0",
        options=("--text-column", "text"),
        params={"text_column": "text"},
    ),
    # -- wrong encodings and binary junk
    Case(
        "binary junk named .csv",
        "text",
        _lazy("junk.csv", _junk),
        r"junk\.csv is binary",
    ),
    Case(
        "UTF-16 without a byte order mark",
        "text",
        _file("utf16.csv", "id,text\nx1,héllo there\n".encode("utf-16-le")),
        r"looks like UTF-16 text without a byte order mark",
    ),
    Case(
        "UTF-16 byte order mark over invalid UTF-16",
        "text",
        _file("badbom.csv", b"\xff\xfe" + "id,text\n".encode("utf-16-le") + b"\x00\xd8"),
        r"UTF-16 byte order mark but is not valid UTF-16",
    ),
    Case(
        "gzip file named .csv",
        "text",
        _lazy("packed.csv", lambda: gzip.compress(b"id,text\nx1,hello\n", mtime=0)),
        r"packed\.csv is binary",
    ),
    # -- empty and header-only files
    Case("empty file", "text", _file("empty.csv", b""), r"empty\.csv is empty"),
    Case("whitespace-only file", "text", _file("blank.jsonl", "  \n\n \t\n"), r"is empty"),
    Case("header-only CSV", "text", _file("header.csv", "id,text,label\n"), r"holds no rows"),
    Case("empty JSON list", "text", _file("none.json", "[]"), r"holds no rows"),
    Case(
        "Parquet without rows",
        "text",
        _lazy(
            "norows.parquet",
            lambda: _parquet(_frame(id=np.array([], dtype=object), text=np.array([], object))),
        ),
        r"holds no rows",
    ),
    # -- ids and labels
    Case(
        "duplicate ids within the file",
        "text",
        _file("dups.csv", "id,text\nx1,alpha beta\nx2,gamma delta\nx1,epsilon zeta\n"),
        r"duplicate id 'x1' \(rows 0 and 2\)",
    ),
    Case(
        "ids already stored",
        "text",
        _file("again.csv", "id,text\nnew1,a new item\nm3,already here\n"),
        r"1 item id\(s\) already exist in the project, e\.g\. 'm3'",
    ),
    Case(
        "blank id",
        "text",
        _file("blankid.csv", "id,text\nx1,alpha beta\n,gamma delta\n"),
        r"id column 'id' is empty in 1 rows",
    ),
    Case(
        "id of 301 characters",
        "text",
        _file("longid.jsonl", json.dumps({"id": "x" * 301, "text": "a b c"}) + "\n"),
        r"id must be 1 to 300 characters",
    ),
    Case(
        "unknown label in imported labels",
        "text",
        _file("labels.csv", "id,text,label\nx1,alpha beta,ham\nx2,gamma delta,eggs\n"),
        r"row 1 \(id 'x2'\): label 'eggs' is not one of the project's labels",
        options=("--with-labels",),
        params={"with_labels": "true"},
    ),
    Case(
        "unknown label in an export's answers",
        "text",
        _file(
            "export.jsonl", _export_like([{"annotator": "ana", "label": "eggs", "action": "label"}])
        ),
        r"ana's label 'eggs' is not one of the project's labels",
        options=("--with-labels",),
        params={"with_labels": "true"},
    ),
    Case(
        "export whose answers are not a list",
        "text",
        _file("export.jsonl", _export_like("ham")),
        r"line 1 \(id 'r1'\): annotations must be a list",
        options=("--with-labels",),
        params={"with_labels": "true"},
    ),
    Case(
        "CSV export whose answers are not JSON",
        "text",
        _file("export.csv", 'id,text,label,status,annotations\nr1,restored,ham,labeled,"[{oops"\n'),
        r"export\.csv, row 0: annotations '\[\{oops' are not valid JSON",
        options=("--with-labels",),
        params={"with_labels": "true"},
    ),
    Case(
        "export answer with a bad time",
        "text",
        _file(
            "export.jsonl",
            _export_like(
                [{"annotator": "ana", "label": "ham", "action": "label", "created_at": "soon"}]
            ),
        ),
        r"created_at 'soon' is not an ISO 8601 time",
        options=("--with-labels",),
        params={"with_labels": "true"},
    ),
    # -- sizes and characters
    Case(
        "a 10 MB text field",
        "text",
        _lazy("huge.csv", lambda: b"id,text\nx1," + b"lorem ipsum " * 873_813 + b"\n"),
        r"item 'x1' is 10,485,756 characters long; the limit is 1,000,000",
    ),
    Case(
        "NUL character in the text",
        "text",
        _file("nul.jsonl", '{"id": "x1", "text": "before\\u0000after"}\n'),
        r"item 'x1' holds a NUL character \(U\+0000\) at position 6",
    ),
    Case(
        "tabular rows into a text project",
        "text",
        _file("numbers.csv", "id,a,b\nx1,1,2\nx2,3,4\n"),
        r"holds tabular items but the project is a text project",
    ),
    # -- archives and other files
    Case(
        "zip archive",
        "text",
        _lazy("data.zip", lambda: _zip("data.csv", b"id,text\nx1,hello\n")),
        r"is binary|cannot import 'data\.zip'",
    ),
    Case(
        "tar archive with a path-traversal member",
        "text",
        _lazy("data.tar", lambda: _tar("../../evil.csv", b"id,text\nx1,hello\n")),
        r"is binary|cannot import 'data\.tar'",
    ),
    Case(
        "tar archive named .csv",
        "text",
        _lazy("data.csv", lambda: _tar("inner.csv", b"id,text\nx1,hello\n")),
        r"data\.csv is binary",
    ),
    Case(
        "Windows executable",
        "text",
        _file("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200)),
        r"is binary|cannot import 'setup\.exe'",
    ),
    # -- tabular fields
    Case(
        "NaN in a tabular field",
        "tabular",
        _file("nan.csv", "id,f1,f2,f3\nx1,1,2,3\nx2,nan,2,3\n"),
        r"feature column 'f1' holds a missing value, NaN or infinity \(first at row 1\)",
    ),
    Case(
        "infinity in a tabular field",
        "tabular",
        _file("inf.csv", "id,f1,f2,f3\nx1,1,2,3\nx2,1,-inf,3\n"),
        r"feature column 'f2' holds a missing value, NaN or infinity \(first at row 1\)",
    ),
    Case(
        "a number too large for a float (1e999)",
        "tabular",
        _file("overflow.csv", "id,f1,f2,f3\nx1,1,2,1e999\n"),
        r"feature column 'f3' holds a missing value, NaN or infinity \(first at row 0\)",
    ),
    Case(
        "Infinity literal in JSONL",
        "tabular",
        _file("inf.jsonl", '{"id": "x1", "f1": 1, "f2": Infinity, "f3": 3}\n'),
        r"feature column 'f2' holds a missing value, NaN or infinity",
    ),
    Case(
        "NaN in Parquet",
        "tabular",
        _lazy(
            "nan.parquet",
            lambda: _parquet(
                _frame(id=["x1", "x2"], f1=[1.0, float("nan")], f2=[1.0, 2.0], f3=[2.0, 3.0])
            ),
        ),
        r"feature column 'f1' holds a missing value, NaN or infinity",
    ),
    Case(
        "other fields than the stored items",
        "tabular",
        _file("fields.csv", "id,f1,f2,zz\nx1,1,2,3\n"),
        r"has the fields f1, f2, zz but the project's items have f1, f2, f3",
    ),
    # -- images
    Case(
        "a text file named .png in an image folder",
        "image",
        _images(lambda root: (root / "fake.png").write_text("not an image")),
        r"fake\.png is not a readable image",
        http=False,
    ),
    Case(
        "a file that is not an image in an image folder",
        "image",
        _images(lambda root: (_png(root / "a.png", 1), (root / "notes.txt").write_text("hi"))),
        r"notes\.txt is not an image file",
        http=False,
    ),
    Case(
        "decompression bomb (PNG declaring 100,000 x 100,000 pixels)",
        "image",
        _images(lambda root: (root / "bomb.png").write_bytes(_png_header(100_000, 100_000))),
        r"bomb\.png is too large to load as an image",
        http=False,
    ),
    Case(
        "huge image (PNG declaring 8,000 x 8,000 pixels)",
        "image",
        _images(lambda root: (root / "big.png").write_bytes(_png_header(8_000, 8_000))),
        r"big\.png has 8000x8000 pixels, more than the limit of 50,000,000",
        http=False,
    ),
    Case(
        "images of another size than the stored ones",
        "image",
        _images(lambda root: _png(root / "wide.png", 5, size=(9, 5))),
        r"holds 9x5 grayscale images but the project's images are 6x5 grayscale",
        http=False,
    ),
    Case(
        "image path with ../",
        "image",
        _image_column("list.csv", "../outside.png"),
        r"row 1: image path '\.\./outside\.png' must be relative to .* and stay inside it",
        options=("--image-column", "image"),
        http=False,
    ),
    Case(
        "absolute image path",
        "image",
        _image_column("list.csv", "/etc/passwd"),
        r"row 1: image path '/etc/passwd' must be relative to",
        options=("--image-column", "image"),
        http=False,
    ),
    Case(
        "image URL (server-side fetch)",
        "image",
        _image_column("list.csv", "http://169.254.169.254/latest/meta-data.png"),
        r"row 1: image path 'http://169\.254\.169\.254/latest/meta-data\.png' must be relative",
        options=("--image-column", "image"),
        http=False,
    ),
    Case(
        "NUL byte in an image path",
        "image",
        lambda folder: _file("list.jsonl", '{"id": "x1", "image": "ok.png\\u0000.txt"}\n')(folder),
        r"row 0: image path 'ok\.png\\x00\.txt' holds a NUL character",
        options=("--image-column", "image"),
        http=False,
    ),
    Case(
        "image path that is a symlink out of the folder",
        "image",
        _with_outside(_symlinked_image_column),
        r"row 1: image path 'link\.png' must be relative to .* and stay inside it",
        options=("--image-column", "image"),
        http=False,
    ),
    Case(
        "image folder holding a symlink out of it",
        "image",
        _with_outside(_symlinked_image_folder),
        r"1\.png is a link to .*outside\.png, outside",
        http=False,
    ),
    Case(
        "Label Studio task whose image is a URL",
        "image",
        _file("tasks.json", json.dumps([{"id": 1, "data": {"image": "http://10.0.0.1/a.png"}}])),
        r"task '1' \(#0\): image 'http://10\.0\.0\.1/a\.png' is a URL; Labelwise never fetches",
    ),
    Case(
        "Label Studio task whose image leaves the folder",
        "image",
        _file("tasks.json", json.dumps([{"id": 1, "data": {"image": "../../etc/passwd"}}])),
        r"task '1' \(#0\): image '\.\./\.\./etc/passwd' leaves the folder",
    ),
    Case(
        ".npz decompression bomb (declares 10^17 bytes)",
        "image",
        _lazy("bomb.npz", lambda: _npz_declaring((10**9, 10**4, 10**4))),
        r"array 'images' of shape \(1000000000, 10000, 10000\) would take [\d,.]+ GiB, more "
        r"than this machine's memory",
    ),
    Case(
        ".npz of huge images (declares 8,000 x 8,000 pixels)",
        "image",
        _lazy("big.npz", lambda: _npz_declaring((1, 8000, 8000))),
        r"images in 'images' have 8000x8000 pixels, more than the limit of 50,000,000",
    ),
    Case(
        ".npz that is random bytes",
        "image",
        _lazy("junk.npz", _junk),
        r"cannot read .*junk\.npz as \.npz",
    ),
    Case(
        ".npz with path-traversal member names",
        "image",
        _lazy("slip.npz", lambda: _npz_members(["../../evil.npy", "/abs/evil.npy"])),
        r"holds arrays \['\.\./\.\./evil', '/abs/evil'\]; expected images/labels",
    ),
]


def _invoke(*args: str) -> Any:
    """Run ``labelwise ARGS`` in this process. A real run leaves its connection pool to the end
    of the process; here the pools the command opened are closed when it returns, as the end
    of the process would."""
    opened: list[OpenProject] = []

    def tracked(*a: Any, **k: Any) -> OpenProject:
        opened.append(open_project(*a, **k))
        return opened[-1]

    with mock.patch.object(setup, "open_project", tracked):
        result = runner.invoke(app, list(args))
    for project in opened:
        project.db.dispose()
    return result


def _cli(target: Target, path: Path, case: Case) -> tuple[int, str]:
    result = _invoke("import", str(target.root), str(path), *case.options)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0, output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return result.exit_code, lines[0]


def _http(target: Target, path: Path, case: Case) -> tuple[int, str]:
    response = target.client.post(
        target.api("/import"),
        headers={"Authorization": f"Bearer {target.admin}"},
        files={"file": (path.name, path.read_bytes())},
        params=case.params,
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    message = response.json()["error"]
    assert tempfile.gettempdir() not in message, message  # never the server's own paths
    return response.status_code, message


# The command line on SQLite; the server (the same store code under it) on both databases.
RUNS = [("sqlite", c) for c in CASES] + [("postgresql", c) for c in CASES if c.http]


@pytest.mark.parametrize(("database", "case"), RUNS, ids=[f"{d}-{c.name}" for d, c in RUNS])
def test_hostile_file_is_refused_and_nothing_changes(database, case, targets, tmp_path, record):
    target = targets(case.kind, database)
    path = case.make(tmp_path)
    before = target.snapshot()
    if database == "sqlite":
        code, line = _cli(target, path, case)
        assert re.search(case.expect, line), line
        assert target.snapshot() == before
        record(
            "hostile",
            input=case.name,
            surface="cli",
            database=database,
            outcome=f"exit {code}: {line.replace(f'{tmp_path}{os.sep}', '')}",
            stored_unchanged=True,
        )
    if not case.http or path.is_dir():
        return
    status, message = _http(target, path, case)
    assert re.search(case.expect, message), message
    assert target.snapshot() == before
    record(
        "hostile",
        input=case.name,
        surface="http",
        database=database,
        outcome=f"HTTP {status}: {message}",
        stored_unchanged=True,
    )


# ------------------------------------------------------------------------ the other surfaces


def test_unknown_and_oversized_labels_submitted_are_refused(database, targets, record):
    target = targets("text", database)
    me = {"Authorization": f"Bearer {target.annotator}"}
    got = target.client.post(target.api("/next"), headers=me, json={})
    assert got.status_code == 200, got.text
    item_id = got.json()["item"]["id"]
    before = target.snapshot()
    attempts = {
        "unknown label submitted": ({"value": "eggs"}, r"'eggs' is not a label of this project"),
        "label with a NUL character submitted": (
            {"value": "ham\u0000"},
            r"'ham\\x00' is not a label of this project",
        ),
        "1 MB label submitted": ({"value": "x" * 1_000_000}, r"value: String should have at"),
        # past the body cap: refused before it is read
        "10 MB label submitted": ({"value": "x" * 10_000_000}, r"may be at most 1 MiB"),
        "negative duration submitted": (
            {"value": "ham", "duration_ms": -5},
            r"duration_ms: Input should be greater than or equal to 0",
        ),
    }
    for name, (body, expect) in attempts.items():
        response = target.client.post(target.api(f"/items/{item_id}/label"), headers=me, json=body)
        status = 413 if name.startswith("10 MB") else 422
        assert response.status_code == status, (name, response.text)
        assert re.search(expect, response.json()["error"]), (name, response.text)
        assert target.snapshot() == before, name
        record(
            "hostile",
            input=name,
            surface="http",
            database=database,
            outcome=f"HTTP {status}: {response.json()['error'][:120]}",
            stored_unchanged=True,
        )
    target.client.post(target.api("/release"), headers=me, json={"items": [item_id]})


def test_a_zip_bomb_inside_an_npz_is_refused_before_it_is_inflated(
    targets, tmp_path, monkeypatch, record
):
    """A member np.load would read whole (not an array) that inflates 1000-fold: refused from
    its declared size. The machine's memory is taken as 8 MiB so that 64 MiB of zeros (64 KiB
    compressed) stand for a bomb of the size that would matter on a real machine."""
    from labelwise.io import media as _media

    monkeypatch.setattr(_media, "_memory_bytes", lambda: 8 * 2**20)
    target = targets("image", "sqlite")
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        array = io.BytesIO()
        np.save(array, np.zeros((2, 5, 6), dtype=np.uint8))
        archive.writestr("images.npy", array.getvalue())
        archive.writestr("padding", bytes(64 * 2**20))
    assert path.stat().st_size < 2**20
    case = Case("zip bomb member", "image", _file("unused", b""), "")
    before = target.snapshot()
    expect = r"member 'padding' would take 64\.0 MiB, more than this machine's memory \(8\.0 MiB\)"
    code, line = _cli(target, path, case)
    status, message = _http(target, path, case)
    assert re.search(expect, line) and re.search(expect, message), (line, message)
    assert target.snapshot() == before
    for surface, outcome in (("cli", f"exit {code}"), ("http", f"HTTP {status}")):
        record(
            "hostile",
            input=".npz with a member inflating 1000-fold (zip bomb)",
            surface=surface,
            database="sqlite",
            outcome=f"{outcome}: {message}",
            stored_unchanged=True,
        )


def test_an_upload_over_the_limit_is_refused_while_it_streams(targets, monkeypatch, record):
    target = targets("text", "sqlite")
    monkeypatch.setattr(project_routes, "MAX_UPLOAD", 1024 * 1024)  # the real one is 200 MB
    before = target.snapshot()
    body = b"id,text\n" + b"".join(b"x%d,some text here\n" % i for i in range(80_000))
    response = target.client.post(
        target.api("/import"),
        headers={"Authorization": f"Bearer {target.admin}"},
        files={"file": ("big.csv", body)},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "upload larger than 1 MB"
    assert target.snapshot() == before
    record(
        "hostile",
        input=f"upload of {len(body) / 2**20:.1f} MB over a 1 MB limit",
        surface="http",
        database="sqlite",
        outcome="HTTP 422: upload larger than 1 MB",
        stored_unchanged=True,
    )


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../../../tmp/evil.csv", "evil.csv"),
        ("/etc/cron.d/evil.csv", "evil.csv"),
        ("..\\..\\windows\\evil.csv", "evil.csv"),
        ("evil\u0000.csv", "evil_00.csv"),  # the client percent-encodes the NUL
        (".hidden.csv", "hidden.csv"),
    ],
)
def test_a_file_name_cannot_place_the_upload(sent, kept, targets, tmp_path, record):
    """Path traversal in the uploaded file's name: the name is reduced to a plain one, the file
    lives only in the server's own temporary folder, and the items are added as any others."""
    target = targets("text", "sqlite")
    before = target.snapshot()["rows"]["items"]
    ext = f"up-{uuid.uuid4().hex[:8]}"
    response = target.client.post(
        target.api("/import"),
        headers={"Authorization": f"Bearer {target.admin}"},
        files={"file": (sent, f"id,text\n{ext},an uploaded message\n".encode())},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"imported": 1, "file": kept}
    items = target.snapshot()["rows"]["items"]
    assert items[: len(before)] == before  # what was there is untouched
    with target.opened.db.read() as s:
        added = s.scalar(select(Item).where(Item.external_id == ext))
        assert added is not None and added.meta == {"source": kept}
    record(
        "hostile",
        input=f"upload named {sent!r}",
        surface="http",
        database="sqlite",
        outcome=f"HTTP 200: stored as {kept!r} in a private temporary folder",
        stored_unchanged=True,
    )


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("latin-1", "latin1.csv"), ("cp1252", "cp1252.csv"), ("utf-16", "unicode.txt")],
)
def test_text_in_other_encodings_is_read_not_garbled(encoding, name, targets, tmp_path, record):
    """Latin-1 and Windows-1252 files, and spreadsheet "Unicode text" (UTF-16 with a byte order
    mark, tab-separated), are decoded: their accents and quotes arrive intact."""
    target = targets("text", "sqlite")
    before = target.snapshot()["rows"]["items"]
    tag = uuid.uuid4().hex[:6]
    texts = {f"{tag}-1": "café crème brûlée", f"{tag}-2": "naïve “quoted” – dash"}
    if encoding == "latin-1":
        texts[f"{tag}-2"] = "naïve façade"  # latin-1 has no curly quotes
    sep = "\t" if encoding == "utf-16" else ","
    body = f"id{sep}text\n" + "".join(f"{k}{sep}{v}\n" for k, v in texts.items())
    path = tmp_path / name
    path.write_bytes(body.encode(encoding))
    result = _invoke("import", str(target.root), str(path))
    assert result.exit_code == 0, result.output
    with target.opened.db.read() as s:
        stored = dict(
            s.execute(
                select(Item.external_id, Item.content).where(Item.external_id.like(f"{tag}-%"))
            ).all()
        )
    assert stored == texts
    assert target.snapshot()["rows"]["items"][: len(before)] == before
    record(
        "hostile",
        input=f"{encoding} text file",
        surface="cli",
        database="sqlite",
        outcome="exit 0: decoded, accents intact",
        stored_unchanged=True,
    )


def _mutated(fmt: str, prefix: str, rng: np.random.Generator) -> tuple[str, bytes]:
    """A good file of 20 items, then cut short, bytes flipped or junk spliced in."""
    rows = [
        {"id": f"{prefix}{i}", "text": f'message {i}, with "quotes" and more'} for i in range(20)
    ]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, ["id", "text"])
        writer.writeheader()
        writer.writerows(rows)
        good = out.getvalue().encode()
    elif fmt == "jsonl":
        good = "".join(json.dumps(r) + "\n" for r in rows).encode()
    else:
        good = _parquet(_frame(id=[r["id"] for r in rows], text=[r["text"] for r in rows]))
    data = bytearray(good)
    how = int(rng.integers(3))
    if how == 0:  # truncated anywhere
        data = data[: int(rng.integers(1, len(data)))]
    elif how == 1:  # a few bytes flipped
        for at in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
            data[at] ^= int(rng.integers(1, 256))
    else:  # junk spliced in
        at = int(rng.integers(0, len(data)))
        data[at:at] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    return f"fuzz.{fmt}", bytes(data)


def test_cut_and_corrupted_files_never_crash_the_import(heavy, tmp_path, record):
    """Random cuts, flipped bytes and spliced junk in CSV, JSONL and Parquet files: each upload
    is imported (a cut at a row boundary is still a good file) or refused with a message and
    nothing stored changed; never a server error."""
    (tmp_path / "fuzz").mkdir()
    target = _build("text", tmp_path / "fuzz", None)
    rng = np.random.default_rng(2024)
    n = 900 if heavy else 30
    imported = refused = 0
    try:
        for k in range(n):
            name, body = _mutated(("csv", "jsonl", "parquet")[k % 3], f"f{k}-", rng)
            before = target.snapshot()
            response = target.client.post(
                target.api("/import"),
                headers={"Authorization": f"Bearer {target.admin}"},
                files={"file": (name, body)},
            )
            assert response.status_code in (200, 422), (k, name, response.text)
            if response.status_code == 200:
                imported += 1
                continue
            refused += 1
            assert response.json()["error"].strip(), (k, name)
            assert target.snapshot() == before, (k, name)
    finally:
        target.client.close()
        target.opened.db.dispose()
    record(
        "hostile",
        input=f"{n} cut or corrupted CSV/JSONL/Parquet files (random cuts, byte flips, junk)",
        surface="http",
        database="sqlite",
        inputs=n,
        outcome=f"{imported} imported, {refused} refused with a message, 0 server errors",
        stored_unchanged=True,
        server_errors=0,
    )
