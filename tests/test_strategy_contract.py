"""The contract every registered strategy passes, through the one entry point `query`."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from labelwise import (
    InvalidDataError,
    InvalidParameterError,
    ModelCapabilityError,
    Pool,
    PoolExhaustedError,
    available_strategies,
    query,
)
from needs import need_module

STRATEGIES = sorted(available_strategies())
NEEDS_PROBA = {"entropy", "least_confident", "badge", "qbc-kl", "entropy+kmeans", "bald"}
# Strategies that need Monte Carlo dropout samples run their contract with the torch MLP.
NEEDS_MC_DROPOUT = {"bald"}


def _template(name=None):
    if name in NEEDS_MC_DROPOUT:
        need_module("torch", "install PyTorch: pip install torch (CI: see .ci/run)")
        from labelwise.models.torch_model import MLPTorchClassifier

        return MLPTorchClassifier((32,), max_epochs=50, random_state=0, n_threads=1)
    return LogisticRegression(max_iter=500)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    return X, y


def _pool_and_model(X, y, n_labeled=30, estimator=None, name=None):
    pool = Pool(X)
    labeled = np.random.default_rng(0).choice(len(X), n_labeled, replace=False)
    pool.label(labeled, y[labeled])
    template = estimator if estimator is not None else _template(name)
    model = pickle.loads(pickle.dumps(template)).fit(X[labeled], y[labeled])
    return pool, model, template


@pytest.mark.parametrize("name", STRATEGIES)
def test_returns_batch_size_unique_unlabeled_indices(name, data):
    X, y = data
    pool, model, template = _pool_and_model(X, y, name=name)
    batch = query(pool, model, strategy=name, batch_size=12, random_state=0, estimator=template)
    assert len(batch.indices) == 12
    assert len(set(batch.indices.tolist())) == 12
    assert not pool.labeled_mask[batch.indices].any()
    assert len(batch.reasons) == 12
    # Strategies with "+explore" mark their random picks; every other pick is ranked 1, 2, ...
    assert {r.kind for r in batch.reasons} <= {"strategy", "exploration"}
    ranks = [r.rank for r in batch.reasons if r.kind == "strategy"]
    assert ranks == list(range(1, len(ranks) + 1))
    if "explore" not in name and name not in ("default", "bandit"):
        assert len(ranks) == 12


@pytest.mark.parametrize("name", STRATEGIES)
def test_same_seed_same_batch(name, data):
    X, y = data
    pool, model, template = _pool_and_model(X, y, name=name)
    a = query(pool, model, strategy=name, batch_size=8, random_state=42, estimator=template)
    b = query(pool, model, strategy=name, batch_size=8, random_state=42, estimator=template)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize("name", STRATEGIES)
def test_inputs_and_model_are_untouched(name, data):
    X, y = data
    pool, model, template = _pool_and_model(X, y, name=name)
    X_before = X.copy()
    mask_before = pool.labeled_mask.copy()
    model_before = pickle.dumps(model)
    template_before = pickle.dumps(template)
    query(pool, model, strategy=name, batch_size=5, random_state=0, estimator=template)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(pool.labeled_mask, mask_before)
    assert pickle.dumps(model) == model_before
    assert pickle.dumps(template) == template_before
    assert not hasattr(template, "coef_")


@pytest.mark.parametrize("name", STRATEGIES)
def test_exhausted_pool_is_a_clear_error(name, data):
    X, y = data
    pool, model, template = _pool_and_model(X, y, name=name)
    pool.label(np.arange(len(X)), y)
    with pytest.raises(PoolExhaustedError, match="no unlabeled items left"):
        query(pool, model, strategy=name, batch_size=1, estimator=template)


@pytest.mark.parametrize("name", STRATEGIES)
def test_batch_larger_than_pool_is_a_clear_error(name, data):
    X, y = data
    pool, model, template = _pool_and_model(X, y, name=name)
    with pytest.raises(PoolExhaustedError, match="only 270 unlabeled items remain"):
        query(pool, model, strategy=name, batch_size=271, estimator=template)


@pytest.mark.parametrize("name", STRATEGIES)
def test_whole_remaining_pool_can_be_asked_for(name, data):
    X, y = data
    pool, model, template = _pool_and_model(X, y, n_labeled=290, name=name)
    batch = query(pool, model, strategy=name, batch_size=10, random_state=0, estimator=template)
    assert sorted(batch.indices.tolist()) == pool.unlabeled.tolist()


@pytest.mark.parametrize("name", STRATEGIES)
def test_sparse_pool(name, data):
    import scipy.sparse as sp

    X, y = data
    Xs = sp.csr_matrix(np.abs(X))
    pool = Pool(Xs)
    labeled = np.arange(40)
    pool.label(labeled, y[labeled])
    template = _template(name)
    model = pickle.loads(pickle.dumps(template)).fit(Xs[labeled], y[labeled])
    batch = query(pool, model, strategy=name, batch_size=6, random_state=0, estimator=template)
    assert len(set(batch.indices.tolist())) == 6
    assert batch.indices.min() >= 40


@pytest.mark.parametrize("name", STRATEGIES)
def test_decision_only_model(name, data):
    X, y = data
    template = SVC(kernel="rbf", gamma="auto")
    pool, model, template = _pool_and_model(X, y, estimator=template)
    if name in NEEDS_PROBA:
        with pytest.raises(ModelCapabilityError, match="predict_proba"):
            query(pool, model, strategy=name, batch_size=4, estimator=template)
        return
    batch = query(pool, model, strategy=name, batch_size=4, random_state=0, estimator=template)
    assert len(set(batch.indices.tolist())) == 4


def test_nan_or_inf_features_are_refused():
    X = np.ones((10, 3))
    X[4, 1] = np.nan
    with pytest.raises(InvalidDataError, match=r"NaN or infinity \(first at row 4, column 1\)"):
        Pool(X)
    X[4, 1] = np.inf
    with pytest.raises(InvalidDataError, match="NaN or infinity"):
        Pool(X)


def test_empty_and_misshapen_pools_are_refused():
    with pytest.raises(InvalidDataError, match="empty"):
        Pool(np.empty((0, 3)))
    with pytest.raises(InvalidDataError, match="2-D"):
        Pool(np.ones(5))
    with pytest.raises(InvalidDataError, match="numeric"):
        Pool(np.array([["a", "b"]]))


def test_model_and_pool_feature_counts_must_match(data):
    X, y = data
    pool, _, template = _pool_and_model(X, y)
    other = LogisticRegression().fit(X[:50, :4], y[:50])
    with pytest.raises(InvalidDataError, match="fitted on 4 features but the pool has 6"):
        query(pool, other, strategy="margin", batch_size=3)


def test_labels_and_indices_must_pair_up(data):
    X, y = data
    pool = Pool(X)
    with pytest.raises(InvalidParameterError, match="3 indices but 2 labels"):
        pool.label([0, 1, 2], ["a", "b"])
    with pytest.raises(InvalidParameterError, match="outside the pool's rows 0..299"):
        pool.label([300], ["a"])


def test_unknown_strategy_lists_the_known_ones(data):
    X, y = data
    pool, model, _ = _pool_and_model(X, y)
    with pytest.raises(InvalidParameterError, match="unknown strategy 'smartest'.*margin"):
        query(pool, model, strategy="smartest", batch_size=3)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_sizes(bad, data):
    X, y = data
    pool, model, _ = _pool_and_model(X, y)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        query(pool, model, strategy="margin", batch_size=bad)
