"""Reading label lists (``multi_label``): every format's way of writing a set, the empty set
apart from no label, and what is refused."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from labelwise.exceptions import DataWarning, InvalidDataError, InvalidParameterError
from labelwise.io.load import load_dataset, open_tabular_stream
from labelwise.services.import_checks import _label_counts, _warn_label_values
from labelwise.services.label_studio import read_label_studio


def test_delimited_lists_keep_the_files_order_and_tell_empty_from_missing(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text(
        "text\tlabels\n"
        "first text here\tthreat; insult;threat\n"
        "second text here\tspam\n"
        "third text here\t[]\n"
        "fourth text here\t\n"
        'fifth text here\t["spam", "insult"]\n'
    )
    data = load_dataset(path, multi_label=True)
    # Each name once, stripped, in the file's order; [] the empty set; an empty cell no label.
    assert data.labels.tolist() == ["threat;insult", "spam", "", None, "spam;insult"]
    # Read as one label per row, the same cells are plain labels.
    assert load_dataset(path).labels.tolist()[0] == "threat; insult;threat"


def test_json_lists_and_a_stream_of_a_parquet_list_column(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(
        json.dumps(
            [
                {"text": "a long enough text", "labels": ["b", "a"]},
                {"text": "another text here", "labels": []},
                {"text": "a third text here", "labels": None},
                {"text": "a fourth text here"},
            ]
        )
    )
    assert load_dataset(path, multi_label=True).labels.tolist() == ["b;a", "", None, None]

    parquet = tmp_path / "table.parquet"
    frame = pd.DataFrame({"f1": [1.0, 2.0, 3.0], "f2": [0.5, 0.1, 0.2]})
    frame["labels"] = [["x", "y"], [], None]
    frame.to_parquet(parquet)
    stream = open_tabular_stream(parquet, multi_label=True)
    assert stream is not None
    assert [c.labels.tolist() for c in stream.chunks(rows=2)] == [["x;y", ""], [None]]
    assert stream.label_counts() == {"x;y": 1, "": 1}


def test_what_is_not_a_label_list_is_refused_naming_the_row(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(
        json.dumps({"text": "fine text", "labels": ["a"]})
        + "\n"
        + json.dumps({"text": "bad text", "labels": {"a": 1}})
        + "\n"
    )
    with pytest.raises(InvalidDataError, match=r"label column 'labels', row 1: .*label list"):
        load_dataset(path, multi_label=True)
    with pytest.raises(InvalidParameterError, match="label_names"):
        load_dataset(path, multi_label=True, label_names=["a", "b"])


def test_label_studio_multi_choice(tmp_path):
    def task(i, result):
        return {"id": i, "data": {"text": f"text {i}"}, "annotations": [{"result": result}]}

    def choices(names, source="label"):
        return {"type": "choices", "from_name": source, "value": {"choices": names}}

    tasks = [
        task(1, [choices(["b", "a"])]),
        task(2, [choices([])]),
        task(3, []),
        task(4, [choices(["a"])]),
    ]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(tasks))
    data = read_label_studio(path, multi_label=True)
    assert data.labels.tolist() == ["b;a", "", None, "a"]
    with pytest.raises(InvalidDataError, match="takes one label"):
        read_label_studio(path)
    # Choices of two controls are not mixed into one set unless one is picked.
    path.write_text(json.dumps([task(1, [choices(["a"]), choices(["x"], "topic")])]))
    with pytest.raises(InvalidDataError, match="pick one with label_column="):
        read_label_studio(path, multi_label=True)
    assert read_label_studio(path, label_column="topic", multi_label=True).labels.tolist() == ["x"]


def _warnings(counts, multi_label):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        _warn_label_values("data.csv", "labels", counts, multi_label=multi_label)
    return [str(w.message) for w in caught]


def test_the_id_like_check_counts_the_labels_of_the_lists():
    names = [f"l{k}" for k in range(6)]
    # 30 rows, each a different combination of 6 labels: 30 distinct lists, but 6 labels.
    combos = [";".join(n for j, n in enumerate(names) if (k + 1) >> j & 1) for k in range(1, 31)]
    counts = _label_counts(np.asarray(combos, dtype=object))
    assert len(counts) == 30
    assert _warnings(counts, multi_label=True) == []
    assert _warnings(counts, multi_label=False)  # as one label per row: like ids
    # Thirty different names, one per row, look like ids in a multi-label file too.
    ids = _label_counts(np.asarray([f"name{k};l0" for k in range(30)], dtype=object))
    (message,) = _warnings(ids, multi_label=True)
    assert "31 distinct values in 30 labeled rows" in message


def test_a_long_label_list_is_read_in_linear_time(tmp_path):
    path = tmp_path / "long.csv"
    names = ";".join(f"n{k}" for k in range(100_000))
    path.write_text(f"text,labels\nsome text here,{names}\n")
    start = time.perf_counter()
    data = load_dataset(path, multi_label=True)
    # Each name once, in order: quadratic work would take minutes here, not milliseconds.
    assert time.perf_counter() - start < 10
    assert data.labels[0].count(";") == 99_999


def _npz_with_sets(path, *, names=None, **extra):
    """24 small images with an indicator matrix of three labels (one column per label)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(24, 8, 8), dtype=np.uint8)
    Y = np.zeros((24, 3), dtype=np.uint8)
    Y[::2, 0] = 1
    Y[::3, 1] = 1
    Y[5, :] = 1
    arrays = {"images": images, "labels": Y, **extra}
    if names is not None:
        arrays["label_names"] = np.asarray(names)
    np.savez(path, **arrays)
    return Y


def test_an_npz_indicator_matrix_is_read_as_label_sets(tmp_path):
    path = tmp_path / "findings.npz"
    Y = _npz_with_sets(path, names=["effusion", "nodule", "edema"])
    data = load_dataset(path, multi_label=True)
    assert data.kind == "image" and data.items.shape == (24, 8, 8)
    names = ["effusion", "nodule", "edema"]
    expected = [";".join(n for n, on in zip(names, row, strict=True) if on) for row in Y]
    assert data.labels.tolist() == expected
    assert data.labels[1] == "" and data.labels[5] == "effusion;nodule;edema"
    # Read as one label per item, the matrix is refused, naming the way to read it.
    with pytest.raises(InvalidDataError, match=r"one column per label.*--multi-label"):
        load_dataset(path)


def test_an_npz_indicator_matrix_without_names_is_named_by_column(tmp_path):
    # MedMNIST's multi-label files keep their splits and no names.
    rng = np.random.default_rng(1)
    arrays = {
        f"{split}_{what}": (
            rng.integers(0, 255, size=(n, 8, 8), dtype=np.uint8)
            if what == "images"
            else (rng.random((n, 4)) < 0.3).astype(np.uint8)
        )
        for split, n in (("train", 10), ("test", 5))
        for what in ("images", "labels")
    }
    np.savez(tmp_path / "chest.npz", **arrays)
    data = load_dataset(tmp_path / "chest.npz", multi_label=True)
    assert data.splits.tolist() == ["train"] * 10 + ["test"] * 5
    Y = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    assert data.labels.tolist() == [";".join(str(j) for j in np.flatnonzero(row)) for row in Y]


@pytest.mark.parametrize(
    ("names", "labels", "message"),
    [
        (["a", "b"], None, "must name each of the 3 label columns"),
        (["a", "a", "b"], None, "blank or repeated label name"),
        (["a", "b;c", "d"], None, "label name with ';'"),
        (None, np.full((24, 3), 2, dtype=np.uint8), "must hold only 0 and 1"),
    ],
)
def test_a_bad_npz_indicator_matrix_is_refused(tmp_path, names, labels, message):
    path = tmp_path / "bad.npz"
    _npz_with_sets(path, names=names)
    if labels is not None:
        with np.load(path) as archive:
            arrays = dict(archive)
        arrays["labels"] = labels
        np.savez(path, **arrays)
    with pytest.raises(InvalidDataError, match=message):
        load_dataset(path, multi_label=True)


def test_simulate_replays_an_npz_of_images_with_label_sets(tmp_path):
    from typer.testing import CliRunner

    from labelwise.cli import app
    from labelwise.cli.learning import _simulation_data

    path = tmp_path / "findings.npz"
    rng = np.random.default_rng(2)
    Y = (rng.random((90, 3)) < 0.4).astype(np.uint8)
    images = rng.integers(0, 60, size=(90, 8, 8)).astype(np.uint8)
    images[:, :4, :4] += (Y[:, 0] * 150).astype(np.uint8)[:, None, None]  # each label its patch
    images[:, 4:, 4:] += (Y[:, 1] * 150).astype(np.uint8)[:, None, None]
    names = np.asarray(["effusion", "nodule", "edema"])
    np.savez(path, images=images, labels=Y, label_names=names)
    found = _simulation_data(path, None)  # detected: no flag needed
    assert found.label_lists and found.data.kind == "image"
    args = ["simulate", str(path), "--out", str(tmp_path / "out"), "--strategies"]
    args += ["random,default", "--seeds", "0", "--initial", "20", "--batch-size", "10"]
    args += ["--budget", "40", "--features", "pixels"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "macro-F1" in summary and "micro-F1" in summary
