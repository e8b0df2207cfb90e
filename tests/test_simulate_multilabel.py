"""Multi-label learning: the learner on label sets, stopping on macro-F1, simulate and the
``simulate`` command on files of label sets."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.learning.learner import ActiveLearner
from labelwise.learning.loop import GroundTruthOracle, run_active_learning
from labelwise.learning.multilabel_eval import canonical_sets, label_names_of, looks_multi_label
from labelwise.learning.multilabel_metrics import MultiLabelMetrics
from labelwise.learning.report import summary_table, write_simulation
from labelwise.learning.simulate import SimulationConfig, simulate
from labelwise.learning.stopping import Budget, ExpectedGain, Plateau
from labelwise.models.registry import make_model

LABELS = ("a", "b", "c")
runner = CliRunner()


def _sets(n=300, seed=0, noise=0.0):
    """Features whose first three columns decide the three labels (each when above 0.3)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    Y = X[:, :3] > 0.3
    if noise:
        Y ^= rng.random(Y.shape) < noise
    y = [";".join(name for name, on in zip(LABELS, row, strict=True) if on) for row in Y]
    return X, np.asarray(y, dtype=object)


def _learner(X, **kwargs):
    kwargs.setdefault("strategy", "random")
    return ActiveLearner(
        make_model("logreg"), X, multi_label=True, classes=LABELS, random_state=0, **kwargs
    )


def test_canonical_sets_read_every_form_and_name_a_stranger():
    values = ["b;a", '["c"]', ["a", "c"], "", None, "a"]
    assert canonical_sets(values, LABELS).tolist() == ["a;b", "c", "a;c", "", "", "a"]
    assert label_names_of(["b;a", None, ["c"]]) == ("a", "b", "c")
    with pytest.raises(InvalidDataError, match=r"item 7 holds 'z'"):
        canonical_sets(["a", "z;b"], LABELS, rows=[3, 7])


def test_looks_multi_label_rule():
    assert looks_multi_label(["a", "a;b"])
    assert looks_multi_label(["a", '["a", "b"]'])
    assert looks_multi_label([["a"], "b"])
    assert not looks_multi_label(["a", "b", "a b"])
    assert not looks_multi_label([1, 2, None])


def test_learner_keeps_sets_canonical_and_fits_a_label_set_model():
    X, y = _sets()
    learner = _learner(X[:200])
    learner.teach([0, 1, 2, 3], [["b", "a"], "c;a", '["b"]', []])
    assert learner.pool.labels_of([0, 1, 2, 3]).tolist() == ["a;b", "a;c", "b", ""]
    learner.teach(np.arange(4, 60), y[4:60])
    assert getattr(learner.estimator_, "multi_label", False)
    assert list(learner.estimator_.classes_) == list(LABELS)
    predicted = learner.predict(X[200:])
    assert set(label_names_of(predicted)) <= set(LABELS)
    metrics = learner.evaluate(X[200:], y[200:])
    assert isinstance(metrics, MultiLabelMetrics)
    assert metrics.get("macro_f1") == metrics.macro_f1 > 0.6
    assert 0.0 <= metrics.micro_f1_interval[0] <= metrics.micro_f1 <= metrics.micro_f1_interval[1]
    assert set(metrics.per_label) == set(LABELS)


def test_learner_refuses_a_bad_set_and_records_nothing():
    X, _ = _sets(50)
    learner = _learner(X)
    learner.teach([0, 1], ["a", "b"])
    with pytest.raises(InvalidDataError, match=r"item 5 holds 'zebra'"):
        learner.teach([4, 5], ["a", "zebra;b"])
    assert learner.pool.n_labeled == 2
    with pytest.raises(InvalidParameterError, match="missing"):
        learner.teach([6], [None])
    assert learner.pool.n_labeled == 2


def test_a_multi_label_learner_needs_its_labels():
    X, _ = _sets(20)
    with pytest.raises(InvalidParameterError, match="needs classes="):
        ActiveLearner(make_model("logreg"), X, multi_label=True, strategy="random")
    with pytest.raises(InvalidParameterError, match="must not contain"):
        ActiveLearner(
            make_model("logreg"), X, multi_label=True, classes=["a;b", "c"], strategy="random"
        )


def test_a_multi_label_learner_refuses_a_single_label_strategy():
    X, _ = _sets(20)
    with pytest.raises(InvalidParameterError):
        _learner(X, strategy="entropy")


def test_loop_records_macro_and_micro_f1_each_round():
    X, y = _sets(300)
    learner = _learner(X[:200], batch_size=20)
    result = run_active_learning(
        learner,
        GroundTruthOracle(y[:200]),
        initial=20,
        X_test=X[200:],
        y_test=y[200:],
        stopping=[Budget(80)],
    )
    labels, macro = result.curve("macro_f1")
    _, micro = result.curve("micro_f1")
    assert labels.tolist() == [20, 40, 60, 80]
    assert np.all((macro > 0) & (macro <= 1)) and np.all((micro > 0) & (micro <= 1))
    assert result.rounds[-1].to_dict()["metrics"]["macro_f1"] == macro[-1]


def test_multi_label_run_stops_on_a_macro_f1_plateau():
    # Labels decided by clean thresholds: macro-F1 climbs fast, then stops improving.
    X, y = _sets(600, seed=1)
    learner = _learner(X[:450], batch_size=30)
    plateau = Plateau(metric="macro_f1", patience=2, min_delta=0.02)
    result = run_active_learning(
        learner,
        GroundTruthOracle(y[:450]),
        initial=30,
        X_test=X[450:],
        y_test=y[450:],
        stopping=[plateau, Budget(450)],
    )
    assert result.stopped_because.startswith("plateau: macro_f1")
    scores = [r.metrics.macro_f1 for r in result.rounds]
    assert plateau.flat(scores) and not plateau.flat(scores[:-1])
    assert result.rounds[-1].n_labels < 450


def test_stopping_on_a_metric_the_run_lacks_says_so():
    X, y = _sets(200)
    for criterion in (Plateau(metric="accuracy"), ExpectedGain(metric="balanced_accuracy")):
        with pytest.raises(InvalidParameterError, match="this run has no metric"):
            run_active_learning(
                _learner(X[:150], batch_size=20),
                GroundTruthOracle(y[:150]),
                initial=20,
                X_test=X[150:],
                y_test=y[150:],
                stopping=[criterion, Budget(60)],
            )
    assert Plateau(metric="micro_f1").metric == "micro_f1"


def _config(**kwargs):
    base = {
        "strategies": ("random",),
        "seeds": (0, 1),
        "initial": 20,
        "batch_size": 20,
        "budget": 80,
        "multi_label": True,
    }
    return SimulationConfig(**{**base, **kwargs})


def test_simulate_multi_label_curves_aubc_and_table(tmp_path):
    X, y = _sets(300, noise=0.05)
    y = y.copy()
    y[:5] = None  # no set given: the empty set
    result = simulate(X, y, _config())
    assert result.classes == LABELS
    run = result.runs["random"][0]
    assert set(run.scores) == {"macro_f1", "micro_f1", "subset_accuracy"}
    assert run.labels == (20, 40, 60, 80)
    for metric in ("macro_f1", "micro_f1"):
        assert all(0 < v <= 1 for v in result.aubc("random", metric))
    assert isinstance(result.full_pool[0], MultiLabelMetrics)
    assert result.to_json()["random"]["curves"][0][0].keys() == {
        "labels",
        "macro_f1",
        "micro_f1",
        "subset_accuracy",
    }
    table = summary_table(result)
    assert "AUBC macro-F1" in table and "AUBC micro-F1" in table
    assert "mean macro-F1 / micro-F1 by labels" in table
    paths = write_simulation(result, tmp_path)
    assert paths["curves"].read_text().splitlines()[0].endswith("macro_f1,micro_f1,subset_accuracy")
    assert json.loads(paths["run"].read_text())["config"]["multi_label"] is True


def test_simulate_multi_label_takes_given_labels_and_checks_its_config():
    X, y = _sets(200)
    result = simulate(X, y, _config(seeds=(0,)), labels=["c", "b", "a", "d"])
    assert result.classes == ("c", "b", "a", "d")
    with pytest.raises(InvalidParameterError, match="unknown multi-label metric 'accuracy'"):
        _config(metric="accuracy")
    with pytest.raises(InvalidDataError, match="holds 'a'"):
        simulate(X, y, _config(seeds=(0,)), labels=["b", "c"])
    with pytest.raises(InvalidDataError, match="every item's set is empty"):
        simulate(X, [""] * len(y), _config(seeds=(0,)))


def _text_rows(n=160, seed=0):
    """Texts naming their labels among noise words, and each text's label set."""
    rng = np.random.default_rng(seed)
    words = {"x": "apple", "y": "berry", "z": "cherry"}
    rows = []
    for _ in range(n):
        chosen = [label for label in words if rng.random() < 0.4]
        noise = rng.choice(["stone", "cloud", "river", "paper", "glass"], size=3).tolist()
        rows.append((" ".join([*(words[c] for c in chosen), *noise]), chosen))
    return rows


def _simulate_cli(path, out, *extra):
    args = ["simulate", path, "--out", out, "--strategies", "random", "--seeds", "0"]
    args += ["--batch-size", "20", "--budget", "60", *extra]
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def sets_csv(tmp_path):
    path = tmp_path / "sets.csv"
    lines = ["text,labels"] + [f"{text},{';'.join(names)}" for text, names in _text_rows()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_simulate_multi_label_flag(sets_csv, tmp_path):
    result = _simulate_cli(sets_csv, tmp_path / "out", "--label-column", "labels", "--multi-label")
    assert result.exit_code == 0, result.output
    assert "multi-label over x, y, z" in result.output
    assert "AUBC macro-F1" in result.stdout and "AUBC micro-F1" in result.stdout
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["classes"] == ["x", "y", "z"] and run["config"]["multi_label"] is True


def test_cli_simulate_detects_label_sets_without_the_flag(sets_csv, tmp_path):
    result = _simulate_cli(sets_csv, tmp_path / "out", "--label-column", "labels")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "run.json").read_text())["config"]["multi_label"]


def test_cli_simulate_detects_json_lists(tmp_path):
    path = tmp_path / "sets.jsonl"
    path.write_text(
        "\n".join(json.dumps({"text": t, "label": names}) for t, names in _text_rows()) + "\n"
    )
    result = _simulate_cli(path, tmp_path / "out")
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["config"]["multi_label"] and run["classes"] == ["x", "y", "z"]


def test_cli_simulate_single_label_file_stays_single_label(tmp_path):
    path = tmp_path / "one.csv"
    rows = [(t, names[0] if names else "none") for t, names in _text_rows()]
    path.write_text("text,label\n" + "\n".join(f"{t},{label}" for t, label in rows) + "\n")
    result = _simulate_cli(path, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "run.json").read_text())["config"]["multi_label"] is False


def test_cli_simulate_multi_label_without_a_label_column(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text("text\n" + "\n".join(t for t, _ in _text_rows(20)) + "\n")
    result = _simulate_cli(path, tmp_path / "out", "--multi-label")
    assert result.exit_code != 0
    assert "--multi-label needs a label column" in result.output
