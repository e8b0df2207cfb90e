"""The partitioned pool format: written, reopened, read back row for row; bad input refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.scale import ensure_partitioned, open_partitioned, write_partitioned
from labelwise.scale.topk import CandidateSet


@pytest.mark.parametrize("storage", ["npy", "parquet"])
def test_dense_round_trip(storage, tmp_path):
    if storage == "parquet":
        pytest.importorskip("pyarrow")
    X = np.random.default_rng(0).normal(size=(1003, 7)).astype(np.float32)
    pool = write_partitioned(X, tmp_path / "p", rows_per_partition=250, storage=storage)
    again = open_partitioned(tmp_path / "p")
    assert again.shape == (1003, 7)
    assert again.dtype == "float32"
    assert [p.rows for p in again.partitions] == [250, 250, 250, 250, 3]
    assert again.offsets.tolist() == [0, 250, 500, 750, 1000, 1003]
    rows = np.array([1002, 0, 249, 250, 777, 3, 3])
    np.testing.assert_array_equal(pool.take(rows), X[rows])
    reader = pool.reader()
    np.testing.assert_array_equal(reader.range(240, 760), X[240:760])
    part = again.partitions[1].open()
    if storage == "npy":
        assert isinstance(part, np.memmap)  # read in place, never loaded whole
    np.testing.assert_array_equal(part, X[250:500])


def test_sparse_round_trip(tmp_path):
    X = sp.random(500, 30, density=0.05, format="csr", random_state=1, dtype=np.float64)
    pool = write_partitioned(X, tmp_path / "p", rows_per_partition=128)
    assert pool.storage == "npz" and pool.is_sparse
    rows = np.array([499, 0, 130, 129, 128])
    got = pool.take(rows)
    assert sp.issparse(got)
    assert (got != X[rows]).nnz == 0
    assert (pool.reader().range(100, 300) != X[100:300]).nnz == 0


def test_ids_name_rows(tmp_path):
    X = np.zeros((6, 2))
    pool = write_partitioned(X, tmp_path / "s", ids=["e", "b", "a", "f", "c", "d"])
    np.testing.assert_array_equal(pool.rows_of(["a", "d", "e"]), [2, 5, 0])
    with pytest.raises(InvalidDataError, match="id 'zz' is not in the pool"):
        pool.rows_of(["a", "zz"])
    numbered = write_partitioned(X, tmp_path / "n", ids=[10, 11, 12, 13, 14, 15])
    np.testing.assert_array_equal(numbered.rows_of(["12", "10"]), [2, 0])
    plain = write_partitioned(X, tmp_path / "plain")
    np.testing.assert_array_equal(plain.rows_of(["5", "0"]), [5, 0])
    with pytest.raises(InvalidDataError, match="id 6 is not a row"):
        plain.rows_of(["6"])
    with pytest.raises(InvalidDataError, match="id 'x' is not in the pool"):
        plain.rows_of(["x"])


def test_bad_input_is_refused_with_the_reason(tmp_path):
    X = np.ones((10, 3))
    bad = X.copy()
    bad[7, 2] = np.inf
    with pytest.raises(InvalidDataError, match=r"NaN or infinity \(first at row 7, column 2\)"):
        write_partitioned(bad, tmp_path / "a", rows_per_partition=3)
    assert not list(tmp_path.iterdir())  # nothing half-written is left
    with pytest.raises(InvalidParameterError, match="ids must be unique: 1 repeat"):
        write_partitioned(X, tmp_path / "b", ids=list("abcdefghia"))
    with pytest.raises(InvalidParameterError, match="one id per row"):
        write_partitioned(X, tmp_path / "b", ids=["a"])
    with pytest.raises(InvalidParameterError, match="storage 'npz' is for sparse"):
        write_partitioned(X, tmp_path / "b", storage="npz")
    with pytest.raises(InvalidParameterError, match="storage must be one of"):
        write_partitioned(X, tmp_path / "b", storage="csv")
    with pytest.raises(InvalidParameterError, match="rows_per_partition must be at least 1"):
        write_partitioned(X, tmp_path / "b", rows_per_partition=0)
    with pytest.raises(InvalidDataError, match="must be numeric"):
        write_partitioned(X.astype(bool), tmp_path / "b")
    with pytest.raises(InvalidDataError, match="must be 2-D"):
        write_partitioned(np.ones(5), tmp_path / "b")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidParameterError, match="not a partitioned pool"):
        write_partitioned(X, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_overwrite_only_when_asked(tmp_path):
    write_partitioned(np.ones((4, 2)), tmp_path / "p")
    with pytest.raises(InvalidParameterError, match="pass overwrite=True"):
        write_partitioned(np.zeros((5, 2)), tmp_path / "p")
    pool = write_partitioned(np.zeros((5, 2)), tmp_path / "p", overwrite=True)
    assert pool.n_rows == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_damaged_folders_are_named(tmp_path):
    with pytest.raises(InvalidDataError, match="no manifest.json"):
        open_partitioned(tmp_path)
    pool = write_partitioned(np.ones((9, 2)), tmp_path / "p", rows_per_partition=4)
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    manifest["partitions"][1]["offset"] = 5
    (tmp_path / "p" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidDataError, match="partition 1 starts at row 5"):
        open_partitioned(tmp_path / "p")
    manifest["partitions"][1]["offset"] = 4
    (tmp_path / "p" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "p" / "part-00002.npy").unlink()
    with pytest.raises(InvalidDataError, match="partition file missing"):
        open_partitioned(tmp_path / "p")
    np.save(tmp_path / "p" / "part-00002.npy", np.ones((3, 2)))
    with pytest.raises(InvalidDataError, match="holds 3x2 float64 but the manifest says 1x2"):
        pool.partitions[2].open()


def test_ensure_reuses_a_current_copy_and_replaces_a_stale_one(tmp_path):
    X = np.arange(20.0).reshape(10, 2)
    first = ensure_partitioned(X, tmp_path / "p", source={"file": "m.npy", "size": 1})
    stamp = (tmp_path / "p" / "manifest.json").stat().st_mtime_ns
    again = ensure_partitioned(X, tmp_path / "p", source={"file": "m.npy", "size": 1})
    assert again.source == first.source
    assert (tmp_path / "p" / "manifest.json").stat().st_mtime_ns == stamp
    changed = ensure_partitioned(X[:6], tmp_path / "p", source={"file": "m.npy", "size": 2})
    assert changed.n_rows == 6 and changed.source == {"file": "m.npy", "size": 2}


@pytest.mark.parametrize("explicit", [False, True])
def test_candidate_set_maps_positions_to_rows(explicit):
    rng = np.random.default_rng(3)
    n = 1000
    base = np.sort(rng.choice(n, size=400, replace=False)) if explicit else np.arange(n)
    excluded = np.sort(rng.choice(base, size=60, replace=False))
    full = np.setdiff1d(base, excluded)
    cand = CandidateSet(n, base if explicit else None, excluded)
    assert len(cand) == len(full)
    positions = rng.integers(0, len(full), size=200)
    np.testing.assert_array_equal(cand.take(positions), full[positions])
    assert cand.span() == (full[0], full[-1])
    less = cand.without(full[::7])
    np.testing.assert_array_equal(less.take(np.arange(len(less))), np.delete(full, np.s_[::7]))
    include, exclude = cand.within(200, 700)
    local = np.arange(500) if include is None else include
    np.testing.assert_array_equal(
        np.setdiff1d(local, exclude) + 200, full[(full >= 200) & (full < 700)]
    )
    of = CandidateSet.of(n, full)
    np.testing.assert_array_equal(of.take(np.arange(len(of))), full)


def test_importing_the_package_does_not_import_dask():
    code = (
        "import sys, labelwise.scale; print('distributed' in sys.modules or 'dask' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_connect_without_dask_says_how_to_install(monkeypatch):
    import builtins

    from labelwise.scale import connect

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with (
        pytest.raises(InvalidParameterError, match=r"pip install labelwise\[scale\]"),
        connect("local:1"),
    ):
        pass


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("local", ("local", None)),
        ("local:3", ("local", 3)),
        (" tcp://10.0.0.5:8786 ", ("tcp://10.0.0.5:8786", None)),
        ("tls://sched.example:8786", ("tls://sched.example:8786", None)),
    ],
)
def test_scheduler_forms(text, expected):
    from labelwise.scale import parse_scheduler

    assert parse_scheduler(text) == expected


@pytest.mark.parametrize("text", ["local:0", "10.0.0.5:8786", "", "local:x"])
def test_bad_scheduler_is_named(text):
    from labelwise.scale import parse_scheduler

    with pytest.raises(InvalidParameterError, match="--scheduler"):
        parse_scheduler(text)


def test_model_and_labels_files(tmp_path):
    import joblib

    from labelwise.models.registry import make_model
    from labelwise.scale.files import load_model, read_labels

    X = np.random.default_rng(0).normal(size=(30, 3))
    model = make_model("logreg").fit(X[:10], np.arange(10) % 2)
    joblib.dump(model, tmp_path / "bare.joblib")
    joblib.dump({"model": model, "classes": [0, 1]}, tmp_path / "version.joblib")
    joblib.dump([1, 2], tmp_path / "junk.joblib")
    assert load_model(tmp_path / "bare.joblib").classes_.tolist() == [0, 1]
    assert load_model(tmp_path / "version.joblib").classes_.tolist() == [0, 1]
    with pytest.raises(InvalidDataError, match="holds list, not a fitted classifier"):
        load_model(tmp_path / "junk.joblib")
    (tmp_path / "text.joblib").write_text("not a pickle")
    with pytest.raises(InvalidDataError, match="not a model saved with joblib"):
        load_model(tmp_path / "text.joblib")

    pool = write_partitioned(X, tmp_path / "p", ids=[f"r{i}" for i in range(30)])
    (tmp_path / "l.jsonl").write_text('{"id": "r4", "label": "1"}\n{"id": "r2", "label": "0"}\n')
    rows, values = read_labels(tmp_path / "l.jsonl", pool, model.classes_)
    assert rows.tolist() == [4, 2] and values.tolist() == [1, 0]
    (tmp_path / "l.tsv").write_text("id\tlabel\nr7\tspam\nr8\t\n")
    rows, values = read_labels(tmp_path / "l.tsv", pool)
    assert rows.tolist() == [7] and values.tolist() == ["spam"]
    with pytest.raises(InvalidDataError, match="label 'spam' is not an integer"):
        read_labels(tmp_path / "l.tsv", pool, model.classes_)
    (tmp_path / "nolabel.csv").write_text("id,class\nr1,a\n")
    with pytest.raises(InvalidDataError, match="has no column label; found id, class"):
        read_labels(tmp_path / "nolabel.csv", pool)


@pytest.mark.parametrize(
    "name",
    [
        "labelwise.scale",
        "labelwise.scale.backend",
        "labelwise.scale.cluster",
        "labelwise.scale.files",
        "labelwise.scale.partitions",
        "labelwise.scale.score",
        "labelwise.scale.shards",
        "labelwise.scale.topk",
        "labelwise.scale.writing",
    ],
)
def test_all_is_sorted_and_resolves(name):
    import importlib

    module = importlib.import_module(name)
    kind = lambda s: 0 if s.isupper() else 1 if s[0].isupper() else 2  # noqa: E731
    assert module.__all__ == sorted(module.__all__, key=lambda s: (kind(s), s))
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"
