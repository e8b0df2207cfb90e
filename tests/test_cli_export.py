"""``labelwise export`` then ``labelwise init --data EXPORT --with-labels``, end to end through
the CLI: every format comes back with its people's answers (the exported ``admin`` included)
and a working token for the new project's own admin, with or without ``--predictions``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.datasets import bundled_path
from labelwise.io.load import load_dataset
from labelwise.services.setup import open_project
from labelwise.services.worker import train_once
from labelwise.store.annotators import authenticate
from labelwise.store.answers import submit_label
from labelwise.store.features import field_names
from labelwise.store.models import Annotator, Item
from labelwise.store.projects import get_project
from labelwise.store.review import adjudicate

pytestmark = pytest.mark.slow

runner = CliRunner()
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SUFFIX = {"csv": "csv", "jsonl": "jsonl", "label-studio": "json"}


def _run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def _people(root: Path) -> dict[str, tuple[str, bool]]:
    opened = open_project(root)
    with opened.db.read() as s:
        found = {
            a.name: (a.role, a.disabled)
            for a in s.scalars(select(Annotator).where(Annotator.project_id == opened.project_id))
        }
    opened.db.dispose()
    return found


def _signed_in(root: Path, token: str) -> tuple[str, str]:
    """(name, role) of whom ``token`` signs in as."""
    opened = open_project(root)
    with opened.db.read() as s:
        who = authenticate(s, token, project_id=opened.project_id)
        found = (who.name, who.role)
    opened.db.dispose()
    return found


def _answers(root: Path) -> list[tuple[str, Any, str, list[dict[str, Any]]]]:
    """(id, label, status, answers) of every item, from a fresh JSONL export."""
    result = _run("export", root, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return [(r["id"], r["label"], r["status"], r["annotations"]) for r in records]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A text project whose own first admin answered and adjudicated, beside ``ana``; trained."""
    root = tmp_path_factory.mktemp("cli-export")
    data = load_dataset(bundled_path("sms-spam"))
    path = root / "sms.csv"
    truth = {}
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "label"])
        for i in range(40):
            out.writerow([f"m{i}", data.items[i], data.labels[i]])
            truth[f"m{i}"] = str(data.labels[i])
    proj = root / "src"
    made = _run("init", proj, "--data", path, "--features", "tfidf")
    assert made.exit_code == 0, made.output
    assert _run("token", proj, "--name", "ana", "--role", "annotator").exit_code == 0
    opened = open_project(proj)
    with opened.db.write() as s:
        ids = dict(s.execute(select(Item.external_id, Item.id)).all())
        for k in range(0, 24, 4):  # second opinions: two answers wanted
            s.get_one(Item, ids[f"m{k}"]).target = 2
    flip = {"ham": "spam", "spam": "ham"}
    for k in range(24):
        ext = f"m{k}"
        with opened.db.write() as s:
            project = get_project(s, project_id=opened.project_id)
            people = {a.name: a for a in s.scalars(select(Annotator))}
            submit_label(
                s, project, people["admin"], item_id=ids[ext], value=truth[ext], duration_ms=900
            )
            if k % 4 == 0:  # ana answers too, disagreeing on every other one
                value = flip[truth[ext]] if k % 8 == 0 else truth[ext]
                submit_label(s, project, people["ana"], item_id=ids[ext], value=value)
    with opened.db.write() as s:  # the admin settles one of the conflicts
        project = get_project(s, project_id=opened.project_id)
        admin = s.scalar(select(Annotator).where(Annotator.name == "admin"))
        adjudicate(s, project, admin, item_id=ids["m0"], value=truth["m0"])
    assert train_once(opened.folder, opened.db, force=True).status == "trained"
    opened.db.dispose()
    return proj


@pytest.mark.parametrize("predictions", [False, True], ids=["labels", "predictions"])
@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_an_export_comes_back_through_init_with_its_people(source, tmp_path, fmt, predictions):
    path = tmp_path / f"export.{SUFFIX[fmt]}"
    extra = ["--predictions"] if predictions else []
    exported = _run("export", source, "--format", fmt, "--out", path, *extra)
    assert exported.exit_code == 0, exported.output
    assert ("model_version" in path.read_text()) == predictions

    copy = tmp_path / "copy"
    made = _run("init", copy, "--data", path, "--with-labels", "--features", "tfidf")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    # Every answer as it was, with its annotator: the exported admin's too.
    before = _answers(source)
    assert any(a["annotator"] == "admin" for *_, given in before for a in given)
    assert any(a["action"] == "adjudicate" for *_, given in before for a in given)
    assert _answers(copy) == before
    # The exported admin is restored as a record (no token); the new project's own admin is
    # someone else, with a token that works.
    assert _people(copy) == {
        "admin": ("admin", True),  # adjudicated: restored as an admin
        "ana": ("annotator", True),
        "admin-2": ("admin", False),
    }
    assert _signed_in(copy, token) == ("admin-2", "admin")
    # Whoever is that exported admin takes the account over explicitly, answers and all.
    taken = _run("token", copy, "--name", "admin", "--reissue", "--role", "admin", "--api")
    assert taken.exit_code == 0, taken.output
    assert _signed_in(copy, taken.stdout.strip()) == ("admin", "admin")
    assert _answers(copy) == before


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_tabular_predictions_export_comes_back_without_its_prediction_columns(tmp_path, fmt):
    proj = tmp_path / "tab"
    made = _run("init", proj, "--data", FIXTURES / "tabular.csv", "--with-labels")
    assert made.exit_code == 0, made.output
    opened = open_project(proj)
    assert train_once(opened.folder, opened.db, force=True).status == "trained"
    opened.db.dispose()
    path = tmp_path / f"export.{fmt}"
    assert _run("export", proj, "--format", fmt, "--out", path, "--predictions").exit_code == 0
    header = path.read_text(encoding="utf-8-sig").splitlines()[0]
    assert "p_0" in header or '"probabilities"' in header

    copy = tmp_path / "copy"
    made = _run("init", copy, "--data", path, "--with-labels")
    assert made.exit_code == 0, made.output
    opened = open_project(copy)
    with opened.db.read() as s:
        fields = field_names(s, get_project(s, project_id=opened.project_id), opened.folder)
    opened.db.dispose()
    assert fields == ("f1", "f2", "f3")  # the predictions are not features
    assert _answers(copy) == _answers(proj)
    again = _run("export", copy, "--format", fmt)
    assert again.exit_code == 0
    assert again.stdout == _run("export", proj, "--format", fmt).stdout


def test_export_predictions_without_a_model_says_why_and_writes_nothing(tmp_path):
    proj = tmp_path / "tab"
    assert _run("init", proj, "--data", FIXTURES / "tabular.csv").exit_code == 0
    out = tmp_path / "out.csv"
    result = _run("export", proj, "--out", out, "--predictions")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: project 'tab' has no model to predict with yet")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    plain = _run("export", proj, "--format", "csv")
    assert plain.exit_code == 0
    assert plain.stdout.splitlines()[0].endswith(",annotations")
