"""The Lu et al. protocol: our US-C reproduces the published per-seed AUBC exactly."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from labelwise.benchmark import lu2023
from labelwise.benchmark.comparison import comparison_table
from labelwise.exceptions import InvalidDataError, InvalidParameterError

FIXTURES = Path(__file__).parent / "fixtures" / "lu2023"


def _published_per_seed():
    with (FIXTURES / "us_c_per_seed.csv").open() as fh:
        return {(r["dataset"], int(r["seed"])): float(r["aubc"]) for r in csv.DictReader(fh)}


@pytest.mark.parametrize("dataset", ["appendicitis", "haberman"])
def test_us_c_matches_published_per_seed(dataset):
    X, y = lu2023.load_dataset(FIXTURES, dataset)
    published = _published_per_seed()
    for seed in range(10):
        ours = lu2023.run_seed(X, y, seed, "us-c", dataset=dataset)
        assert ours.aubc == pytest.approx(published[(dataset, seed)], abs=2e-5), seed


def test_split_follows_the_protocol():
    train, test = lu2023.protocol_split(106, 3)
    assert len(train) == 63 and len(test) == 43
    assert len(set(train.tolist()) | set(test.tolist())) == 106
    idx = np.arange(106)
    np.random.default_rng(3).shuffle(idx)
    assert set(train.tolist()) == set(idx[:63].tolist())


def test_fast_svc_equals_libsvm():
    from sklearn.svm import SVC

    X, y = lu2023.load_dataset(FIXTURES, "haberman")
    fast = lu2023.task_model().fit(X[:150], y[:150])
    slow = SVC(kernel="rbf", gamma="auto", C=1.0).fit(X[:150], y[:150])
    np.testing.assert_allclose(fast.decision_function(X), slow.decision_function(X), atol=1e-9)
    np.testing.assert_array_equal(fast.predict(X), slow.predict(X))


def test_our_strategies_run_and_batch_mode(tmp_path):
    results = lu2023.run_benchmark(
        FIXTURES,
        tmp_path,
        datasets=["appendicitis"],
        strategies=["uniform", "default", "badge@logreg"],
        seeds=range(3),
        batch_size=10,
    )
    per = results["appendicitis"]
    for name in ("uniform", "default", "badge@logreg"):
        assert len(per[name]["aubc"]) + len(per[name]["skipped"]) == 3
        assert all(0.5 < a <= 1.0 for a in per[name]["aubc"])
    # Batch-mode AUBC is the mean accuracy over the label budget, initial model included.
    record = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[0])
    labels, acc = np.asarray(record["curve"]).T
    assert labels[0] == 20 and labels[-1] == 63
    assert record["aubc"] == pytest.approx(np.trapezoid(acc, labels) / (63 - 20), abs=1e-5)
    # Resumes: a second call runs nothing new and returns the same numbers.
    again = lu2023.run_benchmark(
        FIXTURES,
        tmp_path,
        datasets=["appendicitis"],
        strategies=["uniform", "default", "badge@logreg"],
        seeds=range(3),
        batch_size=10,
        on_progress=lambda *a: pytest.fail("re-ran a finished run"),
    )
    assert again == results
    assert json.loads((tmp_path / "results.json").read_text()) == results
    table = lu2023.markdown_table(results, batch_size=10)
    assert "| appendicitis | 3 |" in table


def test_table_compares_to_published_columns(tmp_path):
    results = lu2023.run_benchmark(
        FIXTURES, tmp_path, datasets=["appendicitis"], strategies=["us-c"], seeds=range(4)
    )
    table = lu2023.markdown_table(results)
    assert "US-C (published)" in table
    assert "0.8454 ± 0.0333" in table


def test_published_table_is_shipped():
    pub = lu2023.published()
    assert pub["heart"]["US-C"] == (0.8157, 0.0262)
    assert pub["spambase"]["QUIRE"] is None  # "error" in the paper
    assert "tic" not in lu2023.table_datasets(FIXTURES)
    assert lu2023.table_datasets(FIXTURES) == ["appendicitis", "haberman"]


def test_errors():
    with pytest.raises(InvalidDataError, match="no such dataset file"):
        lu2023.load_dataset(FIXTURES, "nope")
    with pytest.raises(InvalidParameterError, match="unknown strategy"):
        lu2023.check_strategy("smart")
    with pytest.raises(InvalidParameterError, match="takes no @model"):
        lu2023.check_strategy("us-c@logreg")
    with pytest.raises(InvalidDataError, match="no such data directory"):
        lu2023.run_benchmark(FIXTURES / "missing", FIXTURES)


def _entry(values, seeds=None):
    seeds = list(range(len(values))) if seeds is None else seeds
    return {"aubc": list(values), "seeds": seeds}


def test_paired_difference_uses_common_seeds_only():
    a = _entry([0.80, 0.90, 0.70], seeds=[0, 1, 2])
    b = _entry([0.75, 0.85, 0.99], seeds=[0, 1, 5])
    n, mean, se = lu2023.paired_difference(a, b)
    assert n == 2
    assert mean == pytest.approx(0.05)
    assert se == pytest.approx(0.0)


def test_comparison_table_counts_wins_and_losses_in_standard_errors():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.7, 0.8, size=20)
    noise = rng.normal(0, 0.001, size=20)
    results = {
        # the candidate clearly ahead of both
        "up": {
            "default": _entry(base + 0.02 + noise),
            "us-c": _entry(base),
            "uniform": _entry(base - 0.01),
        },
        # the candidate behind uniform: the trap the table must name
        "trap": {
            "default": _entry(base - 0.02 + noise),
            "us-c": _entry(base - 0.02 - noise),
            "uniform": _entry(base),
        },
    }
    table = comparison_table(results)
    assert "| up | 20 |" in table and "| trap | 20 |" in table
    assert "against us-c: ahead by more than one SE on 1 datasets (up)" in table
    assert "against uniform: ahead by more than one SE on 1 datasets (up), behind by more " in table
    assert table.rstrip().endswith("default is below uniform by more than one SE on: trap.")
    assert "**mean over 2 datasets**" in table
