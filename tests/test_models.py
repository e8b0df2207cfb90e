"""Reading model outputs over a pool: the fast logistic-regression path equals scikit-learn."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, StandardScaler
from sklearn.svm import LinearSVC

from labelwise.models.registry import linear_form, make_model, map_outputs, model_outputs
from labelwise.pool import take_rows
from labelwise.strategies.committee import Committee
from labelwise.strategies.scorers import margin


@pytest.mark.parametrize("n_classes", [2, 3, 10])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pipeline", [False, True])
def test_logistic_regression_outputs_equal_predict_proba(n_classes, dtype, pipeline):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(3000, 12)).astype(dtype)
    y = rng.integers(0, n_classes, size=3000)
    model = (make_model("logreg") if pipeline else LogisticRegression(max_iter=500)).fit(X, y)
    wanted = {
        "most rows, read in place": np.sort(rng.choice(3000, 2800, replace=False)),
        "a few rows, gathered": np.sort(rng.choice(3000, 300, replace=False)),
        "unsorted rows": rng.permutation(3000)[:1000],
    }
    for rows in wanted.values():
        got = model_outputs(model, X, rows, chunk_size=512)
        expected = model.predict_proba(X[rows])
        assert got.kind == "proba" and got.values.shape == expected.shape
        np.testing.assert_allclose(got.values, expected, rtol=1e-5, atol=1e-6)


def test_sparse_pools_fall_back_to_predict_proba():
    rng = np.random.default_rng(0)
    X = sp.random(500, 30, density=0.1, format="csr", random_state=0)
    y = rng.integers(0, 3, size=500)
    model = make_model("logreg").fit(X, y)
    np.testing.assert_allclose(model_outputs(model, X).values, model.predict_proba(X))


def test_the_function_sees_only_the_wanted_rows_in_their_order():
    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    model = LogisticRegression().fit(X, np.arange(20) % 2)
    rows = np.array([0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 19])
    first_feature = map_outputs(model, X, rows, lambda o: o.values[:, 0], chunk_size=4)
    np.testing.assert_allclose(first_feature, model.predict_proba(X[rows])[:, 0])


def test_consecutive_rows_are_a_view_others_a_copy():
    X = np.zeros((100, 3))
    assert np.shares_memory(take_rows(X, np.arange(10, 60)), X)
    assert not np.shares_memory(take_rows(X, np.array([1, 2, 4])), X)
    assert take_rows(X, np.array([5])).shape == (1, 3)


def test_margin_is_the_same_for_row_and_column_major_probabilities():
    P = np.random.default_rng(1).dirichlet(np.ones(6), size=400)
    top2 = np.sort(P, axis=1)[:, -2:]
    expected = 1 - (top2[:, 1] - top2[:, 0])
    np.testing.assert_allclose(margin(P), expected)
    np.testing.assert_allclose(margin(np.asfortranarray(P)), expected)


def _scaled_data(n_classes: int, dtype=np.float64):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(1500, 7)) * rng.uniform(0.1, 20, 7) + rng.normal(size=7) * 5
    return X.astype(dtype), rng.integers(0, n_classes, size=1500)


LINEAR_MODELS = {
    "logreg pipeline": lambda: make_model("logreg"),
    "standard+maxabs+logreg": lambda: make_pipeline(
        StandardScaler(), MaxAbsScaler(), LogisticRegression(max_iter=500)
    ),
    "linear svm": lambda: LinearSVC(),
    "scaled sgd": lambda: make_pipeline(StandardScaler(), SGDClassifier(random_state=0)),
    "ridge": lambda: RidgeClassifier(),
}


@pytest.mark.parametrize("name", sorted(LINEAR_MODELS))
@pytest.mark.parametrize("n_classes", [2, 4])
def test_scalers_fold_exactly_into_the_linear_form(name, n_classes):
    X, y = _scaled_data(n_classes)
    model = LINEAR_MODELS[name]().fit(X, y)
    W, b = linear_form(model)
    scores = X @ W.T + b
    expected = model.decision_function(X)
    np.testing.assert_allclose(scores.squeeze(), expected, rtol=1e-7, atol=1e-7)


def test_models_without_a_linear_form_say_so():
    X, y = _scaled_data(3)
    assert linear_form(make_model("forest").fit(X, y)) is None
    assert linear_form(make_pipeline(PCA(3), LogisticRegression()).fit(X, y)) is None
    assert linear_form(LogisticRegression()) is None  # not fitted


@pytest.mark.parametrize("name", sorted(LINEAR_MODELS))
@pytest.mark.parametrize("n_classes", [2, 4])
def test_a_linear_committee_votes_like_its_members_predict(name, n_classes):
    X, y = _scaled_data(n_classes, np.float32)
    committee = Committee.bagged(
        LINEAR_MODELS[name](), X[:300], y[:300], n_members=5, rng=np.random.default_rng(0)
    )
    assert committee._stacked_scores() is not None
    _, votes = committee.disagreement(X, np.arange(len(X)), chunk_size=400)
    expected = np.stack(
        [np.searchsorted(committee.classes_, m.predict(X)) for m in committee.members]
    )
    assert (votes != expected).mean() < 1e-3  # float32 rounding at an exact tie, at most
