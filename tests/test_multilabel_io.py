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
