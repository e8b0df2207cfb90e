"""The command line: real runs write their files; bad input exits non-zero with one clear line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.cli.common import parse_seeds
from labelwise.exceptions import InvalidParameterError

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    path = tmp_path_factory.mktemp("data") / "digits.csv"
    header = ",".join([f"p{i}" for i in range(X.shape[1])] + ["label"])
    rows = [",".join([*map(str, x.astype(int)), str(t)]) for x, t in zip(X, y, strict=True)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_simulate_writes_the_contracted_files(digits_csv, tmp_path):
    out = tmp_path / "out"
    result = _run(
        "simulate",
        digits_csv,
        "--label-column",
        "label",
        "--strategies",
        "random,margin",
        "--seeds",
        "0-1",
        "--batch-size",
        "30",
        "--budget",
        "110",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "| margin |" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"random", "margin"}
    assert len(results["margin"]["aubc"]) == 2
    assert {p["labels"] for p in results["margin"]["curves"][0]} == {20, 50, 80, 110}
    for name in ("curves.csv", "learning_curves.png", "summary.md", "run.json"):
        assert (out / name).stat().st_size > 0


def test_simulate_on_the_bundled_text_dataset(tmp_path):
    result = _run(
        "simulate",
        "sms-spam",
        "--strategies",
        "margin",
        "--seeds",
        "0",
        "--batch-size",
        "20",
        "--budget",
        "60",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["classes"] == ["ham", "spam"]
    assert run["n_items"] == 5574


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "no such file"),
        ([FIXTURES / "reviews.csv", "--label-column", "nope"], "nope"),
        ([FIXTURES / "reviews.csv", "--strategies", "clever"], "unknown strategy 'clever'"),
        ([FIXTURES / "reviews.csv", "--model", "gpt"], "unknown model 'gpt'"),
        ([FIXTURES / "reviews.csv", "--seeds", "9-2"], "runs backwards"),
        # The library's test_size= is named as the flag that set it.
        ([FIXTURES / "reviews.csv", "--test-size", "2"], "--test-size must be in (0, 1)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = _run("simulate", *args, "--out", tmp_path / "o")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_one_class_labels(tmp_path):
    data = tmp_path / "one.csv"
    data.write_text("text,label\n" + "".join(f"message number {i},ham\n" for i in range(30)))
    result = _run("simulate", data, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "at least two classes" in result.stderr


def test_real_entry_point_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "labelwise.cli",
            "simulate",
            str(tmp_path / "none.tsv"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_benchmark_command(tmp_path):
    result = _run(
        "benchmark",
        "lu2023",
        "--data-dir",
        FIXTURES / "lu2023",
        "--datasets",
        "appendicitis",
        "--strategies",
        "uniform,us-c",
        "--seeds",
        "0-2",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert "| appendicitis | 3 |" in result.stdout
    assert (tmp_path / "results.md").exists()
    bad = _run("benchmark", "lu2023", "--data-dir", tmp_path / "nowhere", "--out", tmp_path)
    assert bad.exit_code == 2
    assert "no such data directory" in bad.stderr


def test_listing_commands():
    assert "badge" in _run("strategies").stdout
    assert "logreg" in _run("models").stdout


def test_parse_seeds():
    assert parse_seeds("0-3") == (0, 1, 2, 3)
    assert parse_seeds("1,4-5") == (1, 4, 5)
    with pytest.raises(InvalidParameterError, match="repeats"):
        parse_seeds("1,1")
    with pytest.raises(InvalidParameterError, match="cannot read"):
        parse_seeds("a-b")
    assert np.array_equal(parse_seeds("7"), (7,))
