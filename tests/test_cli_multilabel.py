"""Multi-label projects from the command line: ``init --multi-label``, ``import`` and
``export`` of label sets, and the errors that name what is wrong."""

from __future__ import annotations

import csv
import io
import json

from sqlalchemy import select
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.services.setup import open_project
from labelwise.store.models import Item, Label
from labelwise.store.projects import get_project, settings_of

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _data(path):
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "labels"])
        out.writerows(
            [
                ("m1", "you are a fool and I will find you", "threat;insult"),
                ("m2", "buy cheap watches now", "spam"),
                ("m3", "see you at lunch tomorrow", "[]"),
                ("m4", "what a lovely morning", ""),
            ]
        )
    return path


def _stored(root):
    opened = open_project(root)
    try:
        with opened.db.read() as s:
            project = get_project(s, project_id=opened.project_id)
            values = dict(
                s.execute(
                    select(Item.external_id, Label.value)
                    .join(Label, Label.item_id == Item.id)
                    .where(Label.is_current.is_(True))
                ).all()
            )
            return project.label_set, settings_of(project).multi_label, values
    finally:
        opened.db.dispose()


def test_init_multi_label_import_and_export(tmp_path):
    data = _data(tmp_path / "data.csv")
    root = tmp_path / "proj"
    made = _run(
        "init", root, "--data", data, "--multi-label", "--with-labels", "--features", "tfidf"
    )
    assert made.exit_code == 0, made.output
    assert "multi-label, labels: insult, spam, threat" in made.output
    labels, multi, values = _stored(root)
    assert multi is True and labels == ["insult", "spam", "threat"]  # the lists' names, sorted
    assert values == {"m1": "insult;threat", "m2": "spam", "m3": ""}

    # More items from JSONL lists; the project's setting says how to read them.
    more = tmp_path / "more.jsonl"
    more.write_text(
        json.dumps({"id": "m5", "text": "I will hurt you, idiot", "labels": ["insult", "threat"]})
        + "\n"
        + json.dumps({"id": "m6", "text": "the weather is fine", "labels": []})
        + "\n"
    )
    added = _run("import", root, more, "--with-labels")
    assert added.exit_code == 0, added.output
    assert _stored(root)[2] == {
        "m1": "insult;threat",
        "m2": "spam",
        "m3": "",
        "m5": "insult;threat",
        "m6": "",
    }

    out = _run("export", root, "--format", "jsonl")
    assert out.exit_code == 0, out.output
    records = {r["id"]: r["label"] for r in map(json.loads, out.stdout.splitlines())}
    assert records == {
        "m1": ["insult", "threat"],
        "m2": ["spam"],
        "m3": [],
        "m4": None,
        "m5": ["insult", "threat"],
        "m6": [],
    }
    rows = list(csv.DictReader(io.StringIO(_run("export", root, "--format", "csv").stdout)))
    assert [r["label"] for r in rows] == ["insult;threat", "spam", "[]", "", "insult;threat", "[]"]

    # Fixed at creation.
    changed = _run("config", root, "multi_label", "false")
    assert changed.exit_code != 0 and "fixed when a project is made" in changed.output


def test_multi_label_errors_are_one_line_naming_what_is_wrong(tmp_path):
    data = _data(tmp_path / "data.csv")
    # A single-label project given label lists is told of --multi-label.
    single = _run(
        "init", tmp_path / "one", "--data", data, "--with-labels", "--labels", "insult,spam,threat"
    )
    assert single.exit_code != 0
    assert "row 0 (id 'm1')" in single.output and "--multi-label" in single.output
    assert not (tmp_path / "one").exists()
    # A label holding the separator cannot be a label of a set.
    bad = _run(
        "init", tmp_path / "two", "--data", data, "--multi-label", "--labels", "a;b,spam,threat"
    )
    assert bad.exit_code != 0 and "must not contain ';'" in bad.output
    # An unknown label in a list is named.
    unknown = _run(
        "init",
        tmp_path / "three",
        "--data",
        data,
        "--multi-label",
        "--with-labels",
        "--labels",
        "insult,spam",
    )
    assert unknown.exit_code != 0 and "'threat' is not a label" in unknown.output


def test_a_backup_keeps_the_sets_and_the_setting(tmp_path):
    root = tmp_path / "proj"
    made = _run(
        "init",
        root,
        "--data",
        _data(tmp_path / "data.csv"),
        "--multi-label",
        "--with-labels",
        "--features",
        "tfidf",
    )
    assert made.exit_code == 0, made.output
    copied = _run("backup", root, tmp_path / "copy")
    assert copied.exit_code == 0, copied.output
    assert _stored(tmp_path / "copy") == _stored(root)
    assert _stored(root)[1] is True
    exports = [_run("export", r, "--format", "jsonl").stdout for r in (root, tmp_path / "copy")]
    assert exports[0] == exports[1] and '"label": []' in exports[0]
