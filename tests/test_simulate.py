"""Simulation end to end on real data: margin beats random; the output files keep their contract."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from labelwise import InvalidDataError, InvalidParameterError, SimulationConfig
from labelwise.learning.report import summary_table, write_simulation
from labelwise.learning.simulate import simulate


@pytest.fixture(scope="module")
def digits_result():
    X, y = load_digits(return_X_y=True)
    config = SimulationConfig(
        strategies=("random", "margin"),
        seeds=(0, 1, 2),
        initial=20,
        batch_size=20,
        budget=200,
        metric="accuracy",
    )
    return simulate(X / 16.0, y, config)


def test_margin_beats_random_on_digits(digits_result):
    random_aubc = np.asarray(digits_result.aubc("random"))
    margin_aubc = np.asarray(digits_result.aubc("margin"))
    # Paired over the same seeds (same split, same initial set): margin wins every seed.
    assert (margin_aubc > random_aubc).all()
    assert margin_aubc.mean() - random_aubc.mean() > 0.02


def test_same_initial_set_and_split_per_seed(digits_result):
    for seed_runs in zip(*digits_result.runs.values(), strict=True):
        assert len({run.seed for run in seed_runs}) == 1
        assert len({run.labels[0] for run in seed_runs}) == 1
        assert len({run.scores["accuracy"][0] for run in seed_runs}) == 1  # same seed model


def test_results_json_contract(digits_result, tmp_path):
    paths = write_simulation(digits_result, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"random", "margin"}
    for entry in results.values():
        assert len(entry["aubc"]) == 3
        assert len(entry["curves"]) == 3
        point = entry["curves"][0][0]
        assert set(point) >= {"labels", "accuracy", "macro_f1"}
        assert [p["labels"] for p in entry["curves"][0]][:3] == [20, 40, 60]
        assert entry["curves"][0][-1]["labels"] == 200
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["config"]["budget"] == 200
    assert set(run["full_pool"]) == {"0", "1", "2"}
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = (tmp_path / "curves.csv").read_text().splitlines()[0]
    assert header == "strategy,seed,round,labels,accuracy,macro_f1,balanced_accuracy"


def test_labels_to_reach_is_consistent_with_the_curves(digits_result):
    for name, runs in digits_result.runs.items():
        needed = digits_result.labels_to_reach(name, 0.95)
        for run, n in zip(runs, needed, strict=True):
            target = 0.95 * digits_result.full_pool[run.seed].accuracy
            if n is None:
                assert max(run.scores["accuracy"]) < target
            else:
                i = run.labels.index(n)
                assert run.scores["accuracy"][i] >= target
                assert all(s < target for s in run.scores["accuracy"][:i])


def test_summary_table_lists_every_strategy(digits_result):
    table = summary_table(digits_result)
    assert "| random |" in table and "| margin |" in table
    assert "labels to 99 %" in table


def test_noise_makes_curves_worse():
    X, y = load_digits(return_X_y=True)
    base = dict(strategies=("random",), seeds=(0,), batch_size=40, budget=300, metric="accuracy")
    clean = simulate(X, y, SimulationConfig(**base))
    noisy = simulate(X, y, SimulationConfig(**base, noise=0.4))
    assert np.mean(noisy.aubc("random")) < np.mean(clean.aubc("random")) - 0.05


def test_parallel_runs_equal_serial_runs():
    X, y = load_digits(return_X_y=True)
    base = dict(strategies=("margin", "random"), seeds=(0, 1), batch_size=30, budget=110)
    serial = simulate(X, y, SimulationConfig(**base))
    parallel = simulate(X, y, SimulationConfig(**base, n_jobs=2))
    assert serial.to_json() == parallel.to_json()


def test_one_class_and_bad_shapes_are_refused():
    X = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(InvalidDataError, match="at least two classes"):
        simulate(X, ["a"] * 30)
    with pytest.raises(InvalidDataError, match="must match"):
        simulate(X, ["a", "b"] * 10)
    with pytest.raises(InvalidDataError, match="single item"):
        simulate(X, ["a"] * 29 + ["b"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategies": ("nope",)}, "unknown strategy"),
        ({"strategies": ("margin", "margin")}, "repeats"),
        ({"model": "deep"}, "unknown model"),
        ({"budget": 10, "initial": 20}, "must exceed the initial"),
        ({"test_size": 1.5}, "test_size"),
        ({"metric": "auc"}, "unknown metric"),
        ({"seeds": ()}, "at least one seed"),
    ],
)
def test_bad_configurations(kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        SimulationConfig(**kwargs)
