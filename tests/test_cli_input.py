"""The first hour with `labelwise init` and `import`: input checked with one warning line each,
ids that never collide, .npz splits and label names, progress, flags in messages, clean help."""

from __future__ import annotations

import re

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from labelwise.cli import app, common
from labelwise.services.setup import open_project

runner = CliRunner()


def _run(*args, width: int = 100):
    return runner.invoke(
        app, [str(a) for a in args], env={"COLUMNS": str(width)}, terminal_width=width
    )


def _warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


def _texts(path, rows, header="text,label"):
    path.write_text(header + "\n" + "".join(f"{row}\n" for row in rows))
    return path


def _ids(project) -> list[str]:
    from sqlalchemy import select

    from labelwise.store.models import Item

    opened = open_project(project)
    try:
        with opened.db.read() as s:
            return list(s.scalars(select(Item.external_id).order_by(Item.row)))
    finally:
        opened.db.dispose()


# ------------------------------------------------------------------------------------ warnings


def test_init_warns_of_a_label_column_like_ids(tmp_path):
    data = _texts(tmp_path / "swapped.csv", [f"message {i} here,user{i}" for i in range(200)])
    result = _run("init", tmp_path / "p", "--data", data, "--features", "tfidf")
    assert result.exit_code == 0, result.output
    assert _warnings(result) == [
        "warning: label column 'label' of swapped.csv has 200 distinct values in 200 labeled "
        "rows, more like ids or free text than classes; if another column holds the labels, "
        "name it with --label-column"
    ]
    assert "labels: user0, user1, user10," in result.stderr  # the long set, shortened
    assert "(200 in all)" in result.stderr
    fine = _texts(tmp_path / "fine.csv", [f"message {i} here,{'ab'[i % 2]}" for i in range(200)])
    result = _run("init", tmp_path / "q", "--data", fine, "--features", "tfidf")
    assert result.exit_code == 0 and _warnings(result) == []


def test_init_warns_of_a_guessed_encoding(tmp_path):
    data = tmp_path / "latin.csv"
    data.write_bytes(b"text,label\ncaf\xe9 au lait,a\nna\xefve question,b\nplain line,a\n")
    result = _run("init", tmp_path / "p", "--data", data, "--features", "tfidf")
    assert result.exit_code == 0, result.output
    assert _warnings(result) == [
        "warning: latin.csv is not UTF-8: the encoding was guessed line by line, 2 as cp1252 of "
        "its 4 lines (first at line 2), the rest as UTF-8; if accented letters look wrong, save "
        "the file as UTF-8"
    ]


def test_import_warns_of_texts_repeated_under_new_ids(tmp_path):
    first = _texts(tmp_path / "a.csv", ["hello there,a", "second text,b"])
    assert _run("init", tmp_path / "p", "--data", first, "--features", "tfidf").exit_code == 0
    again = _texts(tmp_path / "b.csv", ["fresh text,a", "hello there,b", "fresh text,a"])
    result = _run("import", tmp_path / "p", again)
    assert result.exit_code == 0, result.output
    assert "imported 3 items from b.csv" in result.stdout
    assert _warnings(result) == [
        "warning: b.csv: 2 of its 3 texts repeat under new ids (1 already in the project, 1 "
        "repeating an earlier row of the file; first at row 1, id '3': 'hello there'); every "
        "copy is imported as an item of its own"
    ]


def test_a_second_import_without_ids_does_not_collide(tmp_path):
    first = _texts(tmp_path / "a.csv", ["one text,a", "two text,b", "three text,a"])
    assert _run("init", tmp_path / "p", "--data", first, "--features", "tfidf").exit_code == 0
    second = _texts(tmp_path / "b.csv", ["four text,a", "five text,b"])
    result = _run("import", tmp_path / "p", second)
    assert result.exit_code == 0, result.output  # was: 2 item id(s) already exist, e.g. '0'
    assert _run("import", tmp_path / "p", first).exit_code == 0  # again: new ids (and a warning)
    assert _ids(tmp_path / "p") == [str(i) for i in range(8)]


def test_npz_splits_and_label_names_on_the_command_line(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "med.npz"
    np.savez(
        data,
        train_images=rng.integers(0, 255, (4, 5, 5), dtype=np.uint8),
        train_labels=np.array([[0], [1], [0], [1]]),
        test_images=rng.integers(0, 255, (2, 5, 5), dtype=np.uint8),
        test_labels=np.array([[1], [0]]),
    )
    proj = tmp_path / "p"
    result = _run(
        "init", proj, "--data", data, "--label-names", "healthy,sick", "--features", "pixels"
    )
    assert result.exit_code == 0, result.output
    assert "labels: healthy, sick)" in result.stderr  # the names, in class order
    assert _warnings(result) == [
        "warning: med.npz keeps its items in splits (train 4, test 2): all of them go into the "
        "pool to label, each item's split recorded in its meta ('split')"
    ]
    bad = _run("import", proj, data, "--label-names", "healthy", "--with-labels")
    assert bad.exit_code == 2
    assert bad.stderr.strip().endswith("has no name: --label-names gives 1 name, for class 0")
    result = _run("import", proj, data, "--label-names", "healthy,sick", "--with-labels")
    assert result.exit_code == 0, result.output
    assert _ids(proj) == [str(i) for i in range(12)]


# ------------------------------------------------------------------------ flags and progress


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label-column", "nope"], r"error: --label-column 'nope' is not a column of \S*a\.csv"),
        (["--id-column", "nope"], r"error: --id-column 'nope' is not a column of \S*a\.csv"),
        (["--text-column", "text", "--image-column", "x"], r"error: give --text-column or --i"),
    ],
)
def test_errors_name_flags_not_parameters(tmp_path, args, message):
    data = _texts(tmp_path / "a.csv", ["one text,a", "two text,b"])
    result = _run("init", tmp_path / "p", "--data", data, *args)
    assert result.exit_code == 2
    assert re.match(message, result.stderr), result.stderr
    assert "_column" not in result.stderr


def test_a_file_without_labels_asks_for_the_labels_flag(tmp_path):
    data = _texts(tmp_path / "a.csv", ["one text", "two text"], header="text")
    result = _run("init", tmp_path / "p", "--data", data)
    assert result.exit_code == 2
    assert result.stderr == "error: a.csv has no label column: give the label set with --labels\n"


def test_cli_text_translates_only_the_commands_own_parameters():
    flags = {"label_column": "--label-column", "labels": "--labels", "as_json": "--json"}
    assert common._cli_text("name it with label_column=...", flags) == "name it with --label-column"
    assert common._cli_text("give labels=[...]", flags) == "give --labels"
    assert common._cli_text("the labels of x", flags) == "the labels of x"  # a plain word
    assert common._cli_text("column 'label_column' is", flags) == "column 'label_column' is"
    assert common._cli_text("drop feature_columns=", flags) == "drop feature_columns="  # no flag


def test_the_progress_reporter_is_called_for_reading_and_inserting(tmp_path, monkeypatch):
    seen: dict[str, list[tuple[int, int | None]]] = {}
    original = common._reporter

    def recording(progress, description):
        draw = original(progress, description)

        def report(done, total):
            seen.setdefault(description, []).append((done, total))
            draw(done, total)

        return report

    monkeypatch.setattr(common, "_reporter", recording)
    data = _texts(tmp_path / "a.csv", [f"text number {i},{'ab'[i % 2]}" for i in range(30)])
    assert _run("init", tmp_path / "p", "--data", data, "--features", "tfidf").exit_code == 0
    assert seen["reading"][0] == (0, None) and seen["reading"][-1] == (30, 30)
    assert seen["inserting"][-1] == (30, 30)
    seen.clear()
    table = tmp_path / "t.csv"
    table.write_text("f1,f2,label\n" + "".join(f"{i},{i * 2},{'ab'[i % 2]}\n" for i in range(40)))
    assert _run("init", tmp_path / "q", "--data", table).exit_code == 0
    assert seen["reading"][-1] == (40, 40)  # the label column's pass
    assert seen["inserting"][-1] == (40, 40)
    seen.clear()
    assert _run("import", tmp_path / "q", table).exit_code == 0
    assert seen["reading"][-1] == (40, 40) and seen["inserting"][-1] == (40, 40)


# ------------------------------------------------------------------------------------------ help


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    found = [[]]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        found.append([name])
        found += [[name, sub] for sub in getattr(command, "commands", {})]
    return found


@pytest.mark.parametrize("width", [80, 200])
def test_help_has_no_type_noise_and_no_word_broken(width):
    group = typer.main.get_command(app)
    for path in _commands():
        result = _run(*path, "--help", width=width)
        assert result.exit_code == 0, (path, result.output)
        out = result.output
        assert "<bool>" not in out, path
        assert "[default: no-" not in out, path  # off flags say nothing of their default
        assert "…" not in out, path  # nothing cut short
        flat = re.sub(r"[│╭╮╰╯─\s]+", " ", out)
        command = group
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            for word in re.findall(r"[^\s`]+", text):
                # Every word of every help text is there whole: not broken across lines, not
                # eaten as markup.
                assert word.strip(".,;:()") in flat, (path, word)


def test_demo_says_what_the_bundled_data_warns_of_in_one_line_each(tmp_path, monkeypatch):
    from labelwise.server import runtime

    served = []
    monkeypatch.setattr(
        runtime, "serve_project", lambda *a, **k: served.append(k) or k["listening"].close()
    )
    result = _run("demo", "--port", 0, "--dir", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    assert len(served) == 1
    repeats = [w for w in _warnings(result) if w.startswith("warning: sms_spam.tsv: ")]
    assert len(repeats) == 1 and "texts repeat" in repeats[0]
    assert "DataWarning" not in result.stderr  # no Python warning with its source line


def test_status_on_the_cold_start_queue_says_there_is_no_model_yet(tmp_path):
    from labelwise.services.worker import train_once

    data = _texts(tmp_path / "a.csv", [f"text number {i},{'ab'[i % 2]}" for i in range(40)])
    assert _run("init", tmp_path / "p", "--data", data, "--features", "tfidf").exit_code == 0
    opened = open_project(tmp_path / "p")
    assert train_once(opened.folder, opened.db).status == "cold-start"
    opened.db.dispose()
    result = _run("status", tmp_path / "p")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    cold = "model: none yet (v1 is the cold-start queue: typical items, chosen before any model)"
    assert cold in lines
    assert not any(line.startswith("model: v") for line in lines)
    assert lines[-1] == "verdict: no model yet"


def test_the_multi_label_demo_is_a_multi_label_project_of_the_bundled_comments(
    tmp_path, monkeypatch
):
    from labelwise.server import runtime
    from labelwise.store.projects import get_project, settings_of

    served = []
    monkeypatch.setattr(
        runtime, "serve_project", lambda *a, **k: served.append(a) or k["listening"].close()
    )
    monkeypatch.chdir(tmp_path)
    result = _run("demo", "--port", 0, "--multi-label")
    assert result.exit_code == 0, result.output
    # Its own default folder: the single-label demo's is left alone.
    assert served == [("labelwise-demo-multi-label",)]
    assert not (tmp_path / "labelwise-demo").exists()
    assert "warning" not in result.output  # the bundled comments repeat no text
    opened = open_project(tmp_path / "labelwise-demo-multi-label")
    try:
        with opened.db.read() as s:
            project = get_project(s, project_id=opened.project_id)
            assert settings_of(project).multi_label
            assert project.label_set == [
                "anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"
            ]  # fmt: skip
        assert _run("status", tmp_path / "labelwise-demo-multi-label").exit_code == 0
    finally:
        opened.db.dispose()
    # Run again: the same project; the other kind in that folder is refused in one line.
    assert _run("demo", "--port", 0, "--multi-label").exit_code == 0
    again = _run("demo", "--port", 0, "--dir", "labelwise-demo-multi-label")
    assert again.exit_code != 0
    assert "holds a multi-label project: run the demo with --multi-label there" in again.stderr
