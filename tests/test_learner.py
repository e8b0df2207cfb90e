"""ActiveLearner and the loop: clone-not-mutate, teach by index, history, stopping, cold start."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from labelwise import (
    ActiveLearner,
    Budget,
    GroundTruthOracle,
    InvalidParameterError,
    Plateau,
    StabilizingPredictions,
    run_active_learning,
)


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    return X[idx[:400]], y[idx[:400]], X[idx[400:]], y[idx[400:]]


def _estimator():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))


def test_the_callers_estimator_is_never_fitted(cancer):
    X, y, Xt, yt = cancer
    est = _estimator()
    before = pickle.dumps(est)
    learner = ActiveLearner(est, X, strategy="margin", batch_size=5, random_state=0)
    run_active_learning(
        learner, GroundTruthOracle(y), initial=20, X_test=Xt, y_test=yt, stopping=[Budget(40)]
    )
    assert pickle.dumps(est) == before
    assert learner.estimator_ is not est
    assert learner.estimator_ is not None


def test_teach_by_index_refits_on_exactly_the_labeled_rows(cancer):
    X, y, _, _ = cancer
    learner = ActiveLearner(_estimator(), X, random_state=0)
    learner.teach([0, 5, 9, 30], y[[0, 5, 9, 30]])
    if len(set(y[[0, 5, 9, 30]])) > 1:
        assert learner.estimator_[-1].n_features_in_ == X.shape[1]
    learner.teach(np.arange(40, 60), y[40:60])
    assert learner.pool.n_labeled == 24
    assert learner.estimator_ is not None
    np.testing.assert_array_equal(learner.pool.y_labeled, y[learner.pool.labeled])


def test_run_history_and_budget_hit_exactly(cancer):
    X, y, Xt, yt = cancer
    learner = ActiveLearner(_estimator(), X, strategy="entropy", batch_size=7, random_state=3)
    result = run_active_learning(
        learner, GroundTruthOracle(y), initial=10, X_test=Xt, y_test=yt, stopping=[Budget(45)]
    )
    labels = [r.n_labels for r in result.rounds]
    assert labels[0] == 10 and labels[-1] == 45
    assert all(b - a == 7 for a, b in zip(labels[:-1], labels[1:-1], strict=False))
    assert result.stopped_because.startswith("budget reached")
    queried = np.concatenate([r.queried for r in result.rounds])
    assert len(set(queried.tolist())) == 45
    assert all(r.metrics is not None for r in result.rounds)
    per_class = result.rounds[-1].metrics.per_class
    assert set(per_class) == {"0", "1"}
    assert result.rounds[-1].metrics.accuracy > 0.85


def test_same_seed_same_run(cancer):
    X, y, Xt, yt = cancer

    def run(seed):
        learner = ActiveLearner(
            _estimator(), X, strategy="margin+kmeans", batch_size=5, random_state=seed
        )
        res = run_active_learning(learner, GroundTruthOracle(y), initial=10, stopping=[Budget(30)])
        return np.concatenate([r.queried for r in res.rounds])

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_cold_start_is_recorded_in_the_reasons():
    X = np.random.default_rng(0).normal(size=(200, 3))
    y = np.zeros(200, dtype=int)
    y[:3] = 1  # a rare class: the seed set almost surely misses it
    learner = ActiveLearner(
        LogisticRegression(), X, strategy="margin", batch_size=10, random_state=0
    )
    seed = learner.initial_batch(5)
    learner.teach(seed.indices, y[seed.indices])
    assert learner.estimator_ is None
    batch = learner.query()
    assert set(batch.kinds) == {"cold-start"}


def test_plateau_stops_a_flat_run(cancer):
    X, y, Xt, yt = cancer
    learner = ActiveLearner(_estimator(), X, strategy="margin", batch_size=10, random_state=0)
    result = run_active_learning(
        learner,
        GroundTruthOracle(y),
        initial=20,
        X_test=Xt,
        y_test=yt,
        stopping=[Plateau(metric="accuracy", patience=3, min_delta=0.01), Budget(390)],
    )
    assert result.stopped_because.startswith("plateau")
    assert result.rounds[-1].n_labels < 390


def test_stabilizing_predictions_stop_without_a_holdout(cancer):
    X, y, _, _ = cancer
    learner = ActiveLearner(_estimator(), X, strategy="margin", batch_size=10, random_state=0)
    result = run_active_learning(
        learner,
        GroundTruthOracle(y),
        initial=20,
        stop_set_size=200,
        stopping=[StabilizingPredictions(threshold=0.98, window=3), Budget(390)],
    )
    assert result.stopped_because.startswith("predictions stabilized")
    kappas = [r.stop_set_agreement for r in result.rounds[-3:]]
    assert all(k >= 0.98 for k in kappas)
    assert result.rounds[0].metrics is None


def test_noisy_oracle_flips_about_the_asked_share():
    y = np.array(["a", "b", "c"] * 1000)
    oracle = GroundTruthOracle(y, noise=0.2, random_state=0)
    answers = oracle(np.arange(3000))
    assert 0.17 < np.mean(answers != y) < 0.23


def test_bad_settings_are_named():
    with pytest.raises(InvalidParameterError, match="noise"):
        GroundTruthOracle([0, 1], noise=1.0)
    with pytest.raises(InvalidParameterError, match="estimator"):
        ActiveLearner("not a model", np.zeros((3, 2)))
    learner = ActiveLearner(LogisticRegression(), np.zeros((3, 2)))
    with pytest.raises(InvalidParameterError, match="X_test and y_test"):
        run_active_learning(learner, GroundTruthOracle([0, 1, 0]), X_test=np.zeros((1, 2)))
