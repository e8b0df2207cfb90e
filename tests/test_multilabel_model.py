"""MultiLabelModel: one classifier per label, thresholds chosen on cross-validated scores."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC

from labelwise import label_sets
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.models import multilabel
from labelwise.models.multilabel import MultiLabelModel, best_threshold, check_indicator
from labelwise.models.registry import make_model


def _data(n=1200, seed=0):
    """A common label (about half the items) and a rare one (about 5 %), each driven by one
    feature with noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    Y = np.zeros((n, 2), dtype=np.int8)
    Y[:, 0] = X[:, 0] + rng.normal(size=n) > 0
    Y[:, 1] = X[:, 1] + rng.normal(scale=0.8, size=n) > 2.0
    return X, Y


def test_all_is_sorted():
    assert multilabel.__all__ == sorted(multilabel.__all__, key=lambda s: (s[0].islower(), s))


# best_threshold: F1 of "score >= t" worked out by hand for every distinct set of predictions.


def test_best_threshold_midpoint_of_the_best_interval():
    # y = [0, 1, 0, 1], P = 2. Positive from 0.1: 4 predicted, TP 2, F1 = 4/6; from 0.2: 3, 2,
    # F1 = 4/5; from 0.3: 2, 1, F1 = 2/4; from 0.4: 1, 1, F1 = 2/3. Best: (0.1, 0.2] -> 0.15.
    assert best_threshold([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]) == pytest.approx(0.15)


def test_best_threshold_tie_goes_to_the_threshold_nearer_one_half():
    # y = [1, 0, 0, 1]: from 0.2: F1 = 4/6; from 0.4: 2/5; from 0.6: 2/4; from 0.8: 2/3.
    # A tie between (0, 0.2] -> 0.1 and (0.6, 0.8] -> 0.7; 0.7 is nearer 0.5.
    assert best_threshold([0.2, 0.4, 0.6, 0.8], [1, 0, 0, 1]) == pytest.approx(0.7)


def test_best_threshold_keeps_one_half_when_it_is_among_the_best():
    # y = [0, 0, 1, 1]: from 0.6 F1 = 1, the interval (0.4, 0.6] holds 0.5.
    assert best_threshold([0.2, 0.4, 0.6, 0.8], [0, 0, 1, 1]) == 0.5
    # Unsorted input, same answer.
    assert best_threshold([0.8, 0.2, 0.6, 0.4], [1, 0, 1, 0]) == 0.5


def test_best_threshold_all_positive_when_that_is_best():
    # y = [1, 1, 0]: from 0.0 (all): F1 = 4/5; from 0.3: 2 predicted, TP 1 -> 2/4;
    # from 0.9: 1, 0 -> 0. Threshold 0.0 predicts everything.
    assert best_threshold([0.0, 0.9, 0.3], [1, 1, 0]) == 0.0
    # Same ordering with a smallest score above 0: the interval (0, 0.2] -> 0.1.
    assert best_threshold([0.2, 0.9, 0.3], [1, 1, 0]) == pytest.approx(0.1)


def test_best_threshold_refuses_no_positive_and_bad_shapes():
    with pytest.raises(InvalidDataError, match="no positive"):
        best_threshold([0.1, 0.2], [0, 0])
    with pytest.raises(InvalidDataError, match="equal"):
        best_threshold([0.1, 0.2], [0, 1, 1])


# check_indicator


def test_check_indicator_accepts_bool_int_and_sparse():
    Y = np.array([[True, False], [False, False]])
    out = check_indicator(Y)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, [[1, 0], [0, 0]])
    np.testing.assert_array_equal(check_indicator(sp.csr_matrix(Y.astype(int))), out)
    np.testing.assert_array_equal(check_indicator([[1.0, 0.0], [0.0, 0.0]]), out)


@pytest.mark.parametrize(
    ("Y", "message"),
    [
        ([1, 0, 1], "2-D"),
        ([[1, 2], [0, 1]], "only 0 and 1, got 2 at row 0, column 1"),
        ([[0.5, 0]], "only 0 and 1"),
        ([["a", "b"]], "dtype"),
        (np.zeros((3, 0)), "no label columns"),
    ],
)
def test_check_indicator_refuses(Y, message):
    with pytest.raises(InvalidDataError, match=message):
        check_indicator(Y)


# The model


def test_cv_thresholds_beat_one_half_on_a_rare_label():
    X, Y = _data()
    train, test = slice(0, 800), slice(800, None)
    model = MultiLabelModel(LogisticRegression(), cv=3, random_state=0).fit(X[train], Y[train])
    assert model.cv_thresholds_.all()
    # The rare label's probabilities seldom reach 0.5: its threshold drops well below.
    assert model.thresholds_[1] < 0.3
    chosen = f1_score(Y[test, 1], model.predict(X[test])[:, 1])
    at_half = f1_score(Y[test, 1], (model.predict_proba(X[test])[:, 1] >= 0.5).astype(int))
    assert chosen > at_half + 0.05


def test_predict_proba_shape_and_values_are_each_labels_own_classifier():
    X, Y = _data(n=300)
    model = MultiLabelModel(LogisticRegression(), labels=["common", "rare"]).fit(X, Y)
    proba = model.predict_proba(X[:7])
    assert proba.shape == (7, 2)
    assert ((proba >= 0) & (proba <= 1)).all()
    for j in range(2):
        alone = LogisticRegression().fit(X, Y[:, j])
        np.testing.assert_allclose(proba[:, j], alone.predict_proba(X[:7])[:, 1])
    pred = model.predict(X[:7])
    assert pred.shape == (7, 2)
    assert pred.dtype == np.int8
    np.testing.assert_array_equal(pred, (proba >= model.thresholds_).astype(np.int8))
    assert model.labels_ == ("common", "rare")


def test_sparse_input_gives_the_dense_result():
    X, Y = _data(n=300)
    dense = MultiLabelModel(LogisticRegression()).fit(X, Y)
    for matrix in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix):
        sparse = MultiLabelModel(LogisticRegression()).fit(matrix(X), Y)
        np.testing.assert_allclose(
            sparse.predict_proba(matrix(X[:20])), dense.predict_proba(X[:20]), atol=1e-5
        )
        np.testing.assert_allclose(sparse.thresholds_, dense.thresholds_, atol=1e-5)


def test_registry_models_with_and_without_probabilities():
    X, Y = _data(n=300)
    model = MultiLabelModel(make_model("logreg", random_state=0)).fit(X, Y)
    assert model.predict(X).shape == (300, 2)
    # LinearSVC has no predict_proba: its scores are the logistic function of its decisions.
    svm = MultiLabelModel(LinearSVC(random_state=0)).fit(X, Y)
    alone = LinearSVC(random_state=0).fit(X, Y[:, 1])
    np.testing.assert_allclose(
        svm.predict_proba(X[:5])[:, 1], expit(alone.decision_function(X[:5]))
    )


def test_a_label_with_no_positive_or_no_negative_is_a_constant():
    X, Y = _data(n=200)
    Y3 = np.column_stack([Y[:, 0], np.zeros(200, dtype=int), np.ones(200, dtype=int)])
    model = MultiLabelModel(LogisticRegression(), labels=["a", "never", "always"]).fit(X, Y3)
    assert model.constant_labels_ == {"never": 0, "always": 1}
    assert model.estimators_[1] is None
    assert model.estimators_[2] is None
    assert not model.cv_thresholds_[1:].any()
    proba = model.predict_proba(X[:4])
    np.testing.assert_array_equal(proba[:, 1], 0.0)
    np.testing.assert_array_equal(proba[:, 2], 1.0)
    pred = model.predict(X[:4])
    np.testing.assert_array_equal(pred[:, 1], 0)
    np.testing.assert_array_equal(pred[:, 2], 1)


def test_a_label_too_rare_for_cv_keeps_one_half():
    X, _ = _data(n=60)
    Y = np.zeros((60, 2), dtype=int)
    Y[:30, 0] = 1
    Y[[3, 40], 1] = 1  # two positives: fewer than cv=3
    model = MultiLabelModel(LogisticRegression(), cv=3).fit(X, Y)
    assert model.cv_thresholds_.tolist() == [True, False]
    assert model.thresholds_[1] == 0.5
    assert model.constant_labels_ == {}


def test_the_callers_estimator_is_never_fitted_and_the_model_clones():
    X, Y = _data(n=100)
    template = LogisticRegression()
    model = MultiLabelModel(template, cv=4, random_state=3)
    model.fit(X, Y)
    assert not hasattr(template, "coef_")
    copy = clone(model)
    assert copy.get_params()["cv"] == 4
    assert copy.get_params()["random_state"] == 3
    assert not hasattr(copy, "estimators_")


def test_score_is_subset_accuracy():
    X, Y = _data(n=200)
    model = MultiLabelModel(LogisticRegression()).fit(X, Y)
    expected = np.mean(np.all(model.predict(X) == Y, axis=1))
    assert model.score(X, Y) == pytest.approx(expected)


def test_same_seed_same_thresholds():
    X, Y = _data(n=300)
    a = MultiLabelModel(LogisticRegression(), random_state=5).fit(X, Y)
    b = MultiLabelModel(LogisticRegression(), random_state=5).fit(X, Y)
    np.testing.assert_array_equal(a.thresholds_, b.thresholds_)


@pytest.mark.parametrize(
    ("Y", "kwargs", "error", "message"),
    [
        (np.zeros(10), {}, InvalidDataError, "2-D"),
        (np.zeros((9, 2)), {}, InvalidDataError, "9 rows but X has 10"),
        (np.full((10, 2), 2), {}, InvalidDataError, "only 0 and 1"),
        (np.zeros((10, 2)), {"labels": ["a"]}, InvalidDataError, "1 label names given for 2"),
        (np.zeros((10, 2)), {"labels": ["a", "a"]}, InvalidDataError, "distinct"),
        (np.zeros((10, 2)), {"cv": 1}, InvalidParameterError, "cv must be"),
    ],
)
def test_fit_refuses(Y, kwargs, error, message):
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(error, match=message):
        MultiLabelModel(LogisticRegression(), **kwargs).fit(X, Y)


def test_predict_refuses_unfitted_and_wrong_width():
    X, Y = _data(n=100)
    with pytest.raises(InvalidParameterError, match="not fitted"):
        MultiLabelModel(LogisticRegression()).predict(X)
    model = MultiLabelModel(LogisticRegression()).fit(X, Y)
    with pytest.raises(InvalidDataError, match="3 features but the model was fitted on 5"):
        model.predict(X[:, :3])


def test_label_set_classifier_fits_and_predicts_sets_in_their_stored_form():
    from sklearn.base import clone

    from labelwise import label_sets
    from labelwise.models.multilabel import LabelSetClassifier
    from labelwise.models.registry import make_model, model_outputs

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    Y = (X[:, :3] > 0.3).astype(int)
    labels = ["insult", "threat", "spam"]
    y = np.asarray(label_sets.from_indicator(Y, labels), dtype=object)
    model = LabelSetClassifier(make_model("logreg"), labels).fit(X, y)
    predicted = model.predict(X)
    assert set(predicted) <= set(
        label_sets.from_indicator(np.indices((8,))[0][:, None] >> np.arange(3) & 1, labels)
    )
    assert np.mean(predicted == y) > 0.8
    out = model_outputs(model, X, np.arange(10))
    assert out.multi_label and out.values.shape == (10, 3)
    assert list(out.classes) == labels
    np.testing.assert_array_equal(out.predicted(), predicted[:10])
    assert not clone(model).__dict__.get("model_")
    single = make_model("logreg").fit(X, Y[:, 0])
    assert not model_outputs(single, X, np.arange(3)).multi_label


@pytest.mark.parametrize("method", ["self-training", "label-spreading"])
def test_a_semi_supervised_per_label_model_learns_from_the_unlabeled_rows(method):
    from labelwise.models.multilabel import LabelSetClassifier
    from labelwise.models.semi import SemiSupervised, fit_model, unlabeled_sample

    X, Y = _data(n=600)
    names = ["common", "rare"]
    y = np.asarray(label_sets.from_indicator(Y, names))
    labeled, rest = np.arange(150), np.arange(150, 600)
    base = SemiSupervised(LogisticRegression(), method=method, threshold=0.8, max_unlabeled=300)
    template = LabelSetClassifier(base, names)
    assert template.uses_unlabeled and template.max_unlabeled == 300
    extra = unlabeled_sample(template, rest, np.random.default_rng(0))
    assert len(extra) == 300  # the worker and the learner draw the sample from the template
    model = fit_model(template, X[labeled], y[labeled], X[extra])
    made = model.pseudo_labels_
    # Every label's classifier saw the unlabeled rows and labeled some of them.
    assert made and {name.removeprefix("not ") for _, name, _ in made} == set(names)
    assert all(0 <= pos < len(extra) for pos, _, _ in made)
    assert [c for *_, c in made] == sorted((c for *_, c in made), reverse=True)
    for estimator in model.model_.estimators_:
        assert estimator.pseudo_labels_
    # A plain per-label model takes none and makes none.
    plain = LabelSetClassifier(LogisticRegression(), names)
    assert not plain.uses_unlabeled
    assert len(unlabeled_sample(plain, rest, np.random.default_rng(0))) == 0
    assert fit_model(plain, X[labeled], y[labeled]).pseudo_labels_ is None
