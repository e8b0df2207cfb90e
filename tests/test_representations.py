"""Representations around the model: pool scaling, side-by-side blocks, `auto`, typical points."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler, normalize

from labelwise.features import combine, make_featurizer, parse_features
from labelwise.features.scaling import PoolScaler, fit_to_pool, pool_statistics
from labelwise.learning.learner import ActiveLearner
from labelwise.models.auto import ALL_BLOCKS, AutoRepresentation, model_for_features
from labelwise.models.registry import linear_form, make_model, model_outputs
from labelwise.strategies.selectors import typical_points

# ----------------------------------------------------------------------------- pool scaling


def test_pool_statistics_match_numpy_on_a_dense_pool_read_in_chunks():
    X = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 4)).astype(np.float32)
    X[:, 3] = 7.0  # a constant column is left unscaled
    stats = pool_statistics(X, chunk=97)
    np.testing.assert_allclose(stats.mean, X.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.scale[:3], X[:, :3].std(axis=0), rtol=1e-5)
    assert stats.scale[3] == 1.0
    assert not stats.normalized


def test_rows_of_unit_norm_are_recognised_and_left_unscaled():
    X = normalize(np.random.default_rng(1).normal(size=(300, 8)))
    X[5] = 0.0  # an all-zero row (a text with no known word) does not count against it
    assert pool_statistics(X).normalized
    sparse = sp.csr_matrix(normalize(np.abs(np.random.default_rng(2).normal(size=(50, 6)))))
    assert pool_statistics(sparse, chunk=7).normalized
    model = fit_to_pool(make_model("logreg"), X)
    assert not model[0].bound  # passes its input through


def test_a_bound_scaler_standardises_with_the_pools_statistics_not_the_labeled_rows():
    rng = np.random.default_rng(3)
    X = rng.normal(10.0, 5.0, size=(500, 3))
    model = fit_to_pool(make_model("logreg", random_state=0), X)
    labeled = X[:20]
    y = (labeled[:, 0] > 10).astype(int)
    model.fit(labeled, y)
    expected = StandardScaler().fit(X).transform(labeled)  # the pool's, not the 20 rows'
    np.testing.assert_allclose(model[0].transform(labeled), expected, rtol=1e-6)
    # the affine map folds into the linear form: scores on raw rows without transforming them
    W, b = linear_form(model)
    np.testing.assert_allclose(X @ W.T + b, model.decision_function(X)[:, None], rtol=1e-6)


def test_sparse_pools_are_scaled_never_centred():
    X = sp.random(200, 5, density=0.3, format="csr", random_state=4) * 10
    model = fit_to_pool(make_model("logreg"), X)
    out = model[0].fit(X).transform(X)
    assert sp.issparse(out) and not np.asarray(model[0].mean).any()
    dense = X.toarray()
    np.testing.assert_allclose(out.toarray(), dense / np.sqrt((dense**2).mean(axis=0)), rtol=1e-5)


def test_models_without_a_pool_scaler_are_returned_as_they_are():
    estimator = LogisticRegression()
    assert fit_to_pool(estimator, np.ones((3, 2))) is estimator


def test_the_learner_binds_its_pool_and_leaves_the_callers_model_alone():
    X, y = make_classification(n_samples=300, n_features=5, random_state=0)
    X = X * np.array([1, 10, 100, 1000, 1e4])
    template = make_model("logreg", random_state=0)
    learner = ActiveLearner(template, X, random_state=0)
    learner.teach(np.arange(30), y[:30])
    assert not template[0].bound  # never modified
    np.testing.assert_allclose(learner.estimator_[0].scale, X.std(axis=0), rtol=1e-6)


def test_an_unbound_scaler_is_the_identity_and_rejects_half_statistics():
    X = np.arange(6.0).reshape(3, 2)
    assert PoolScaler().fit(X).transform(X) is X
    with pytest.raises(ValueError, match="both mean and scale"):
        PoolScaler(mean=np.zeros(2)).fit(X)
    with pytest.raises(ValueError, match="2 columns"):
        PoolScaler(mean=np.zeros(2), scale=np.ones(2)).fit(np.ones((2, 3)))


# ----------------------------------------------------------------------------- side by side


def test_blocks_side_by_side_keep_their_places_and_unit_rows():
    dense = normalize(np.random.default_rng(5).normal(size=(4, 3))).astype(np.float32)
    sparse = sp.csr_matrix(normalize(np.eye(4, 5, dtype=np.float32)))
    X, blocks = combine([("embedding", dense), ("tfidf", sparse)])
    assert sp.issparse(X) and X.dtype == np.float32
    assert blocks == {"embedding": (0, 3), "tfidf": (3, 8)}
    np.testing.assert_allclose(sp.linalg.norm(X, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(X[:, :3].toarray(), dense / np.sqrt(2), rtol=1e-6)
    X2, _ = combine([("a", dense), ("b", dense)], normalize=False)
    assert isinstance(X2, np.ndarray) and X2.shape == (4, 6)


# ------------------------------------------------------------------------------------- auto


def _two_views(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """A block that carries the class and a block of noise, side by side."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    signal = rng.normal(size=(n, 10)) + 1.5 * y[:, None]
    noise = rng.normal(size=(n, 30))
    X, blocks = combine([("signal", normalize(signal)), ("noise", normalize(noise))])
    return X, y, blocks


def test_auto_picks_the_block_that_carries_the_signal():
    X, y, blocks = _two_views()
    model = AutoRepresentation(LogisticRegression(), blocks).fit(X[:200], y[:200])
    assert set(model.scores_) == {ALL_BLOCKS, "signal", "noise"}
    assert model.scores_["signal"] > model.scores_["noise"]
    assert model.choice_ in (ALL_BLOCKS, "signal")
    # predicting uses the chosen columns, renormalised
    chosen = model.select(X[200:])
    assert chosen.shape[1] == {ALL_BLOCKS: 40, "signal": 10}[model.choice_]
    assert (model.predict(X[200:]) == y[200:]).mean() > 0.8
    out = model_outputs(model, X[200:])
    assert out.kind == "proba" and out.values.shape == (200, 2)


def test_auto_keeps_every_block_unless_one_alone_is_clearly_better():
    # Two equally good views: no single one beats both together by a standard error.
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    a = normalize(rng.normal(size=(300, 8)) + y[:, None])
    b = normalize(rng.normal(size=(300, 8)) + y[:, None])
    X, blocks = combine([("a", a), ("b", b)])
    model = AutoRepresentation(LogisticRegression(), blocks).fit(X, y)
    assert model.choice_ == ALL_BLOCKS


def test_auto_with_too_few_labels_to_compare_uses_every_block():
    X, y, blocks = _two_views(40)
    y = y.copy()
    y[:] = 0
    y[0] = 1  # one label of a class: no two folds
    model = AutoRepresentation(LogisticRegression(), blocks).fit(X, y)
    assert (model.choice_, model.scores_) == (ALL_BLOCKS, {})


def test_auto_is_a_cloneable_deterministic_classifier():
    X, y, blocks = _two_views()
    model = model_for_features(make_model("logreg"), parse_features("text", "auto"), blocks)
    assert isinstance(model, AutoRepresentation)
    a = clone(model).fit(X, y)
    b = clone(model).fit(X, y)
    assert a.scores_ == b.scores_ and a.choice_ == b.choice_
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X))
    fixed = model_for_features(make_model("logreg"), parse_features("text", "tfidf"), blocks)
    assert not isinstance(fixed, AutoRepresentation)


def test_auto_offers_only_what_its_model_offers():
    from sklearn.svm import LinearSVC

    X, y, blocks = _two_views()
    model = AutoRepresentation(LinearSVC(), blocks).fit(X, y)
    assert not hasattr(model, "predict_proba")
    assert model.decision_function(X).shape == (len(y),)


# ---------------------------------------------------------------------------- typical points


def test_typical_points_take_the_densest_item_of_each_cluster():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    sizes = (60, 40, 20)
    X = np.vstack(
        [c + rng.normal(scale=1.0, size=(n, 2)) for c, n in zip(centres, sizes, strict=True)]
    )
    X = np.vstack([X, [[30.0, 30.0]]])  # an outlier a random draw may take
    picks = typical_points(X, 3, np.random.default_rng(1))
    assert len(set(picks.tolist())) == 3 and 120 not in picks
    # one per cluster, each near its centre, largest cluster first
    owner = np.argmin(((X[picks][:, None, :] - centres) ** 2).sum(-1), axis=1)
    assert owner.tolist() == [0, 1, 2]
    assert np.all(np.linalg.norm(X[picks] - centres[owner], axis=1) < 1.0)
    again = typical_points(X, 3, np.random.default_rng(1))
    assert again.tolist() == picks.tolist()


def test_typical_points_work_on_sparse_tf_idf_and_refuse_impossible_sizes():
    texts = np.array(
        [f"cat {i}" for i in range(20)] + [f"dog bark {i}" for i in range(20)], dtype=object
    )
    X = make_featurizer("text", "tfidf", min_df=1).fit_transform(texts)
    picks = typical_points(X, 2, np.random.default_rng(0))
    assert {int(p) // 20 for p in picks} == {0, 1}
    with pytest.raises(ValueError, match="k must be"):
        typical_points(X, 41, np.random.default_rng(0))


def test_the_learner_starts_from_typical_items_when_asked():
    X, y = make_classification(n_samples=400, n_features=6, n_informative=4, random_state=2)
    learner = ActiveLearner(make_model("logreg"), X, random_state=0)
    seed = learner.initial_batch(10, method="typical")
    assert set(seed.kinds) == {"typical"} and len(set(seed.indices.tolist())) == 10
    assert learner.query(5).kinds  # its picks are no random sample, and it goes on from there
    with pytest.raises(Exception, match="'random' or 'typical'"):
        learner.initial_batch(5, method="kmeans")
