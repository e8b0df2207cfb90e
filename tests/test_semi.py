"""Semi-supervised models: the unlabeled pool helps, and pseudo-labels stay inside the model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_moons

from labelwise import ActiveLearner
from labelwise.exceptions import InvalidParameterError
from labelwise.models.registry import make_model
from labelwise.models.semi import SemiSupervised, fit_model, unlabeled_sample


@pytest.fixture(scope="module")
def moons():
    X, y = make_moons(n_samples=600, noise=0.08, random_state=0)
    return X, np.asarray(["left", "right"])[y]


def _few_labels(y, per_class=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    )


def test_label_spreading_uses_the_pool_shape(moons):
    """Two interleaved moons, three labels each: a linear model cannot follow them, spreading
    along the neighbour graph of the unlabeled pool can."""
    X, y = moons
    lab = _few_labels(y)
    rest = np.setdiff1d(np.arange(len(y)), lab)
    plain = make_model("logreg").fit(X[lab], y[lab])
    spread = fit_model(make_model("label-spreading"), X[lab], y[lab], X[rest])
    acc_plain = np.mean(plain.predict(X[rest]) == y[rest])
    acc_spread = np.mean(spread.predict(X[rest]) == y[rest])
    assert acc_spread > 0.95 > acc_plain
    assert len(spread.pseudo_labels_) == len(rest)  # every unlabeled row takes part
    positions = [p for p, *_ in spread.pseudo_labels_]
    assert max(positions) < len(rest)  # positions index the unlabeled rows given
    right = np.mean([y[rest][p] == label for p, label, _ in spread.pseudo_labels_])
    assert right > 0.95


def test_self_training_pseudo_labels_confident_rows_only(moons):
    X, y = moons
    lab = _few_labels(y, per_class=10)
    rest = np.setdiff1d(np.arange(len(y)), lab)
    model = fit_model(make_model("self-training", random_state=0), X[lab], y[lab], X[rest])
    assert set(model.classes_) == {"left", "right"}
    assert model.predict_proba(X[:5]).shape == (5, 2)
    confidences = [c for *_, c in model.pseudo_labels_]
    # confidence of the final model; each was at least 0.75 when it was assigned
    assert confidences and np.mean(np.asarray(confidences) >= 0.75) > 0.9
    assert confidences == sorted(confidences, reverse=True)


def test_the_template_is_untouched_and_plain_models_ignore_unlabeled(moons):
    X, y = moons
    template = make_model("self-training")
    before = clone(template).get_params()
    fit_model(template, X[:50], y[:50], X[50:100])
    assert not hasattr(template, "model_")
    assert template.get_params().keys() == before.keys()
    plain = fit_model(make_model("logreg"), X[:50], y[:50], X[50:100])
    assert not hasattr(plain, "pseudo_labels_")


def test_unlabeled_sample_size_and_who_gets_one():
    rng = np.random.default_rng(0)
    candidates = np.arange(20_000)
    semi = SemiSupervised(make_model("logreg"), max_unlabeled=500)
    picked = unlabeled_sample(semi, candidates, rng)
    assert len(picked) == 500 and np.all(np.diff(picked) > 0)
    assert len(unlabeled_sample(make_model("logreg"), candidates, rng)) == 0


def test_the_learner_hands_unlabeled_rows_to_a_semi_supervised_model(moons):
    X, y = moons
    learner = ActiveLearner(make_model("label-spreading"), X, strategy="margin", random_state=0)
    lab = _few_labels(y)
    learner.teach(lab, y[lab])
    assert learner.estimator_.pseudo_labels_
    assert np.mean(learner.estimator_.predict(X) == y) > 0.95


def test_bad_settings_are_named(moons):
    X, y = moons
    with pytest.raises(InvalidParameterError, match="method"):
        SemiSupervised(make_model("logreg"), method="magic").fit(X[:20], y[:20])
    with pytest.raises(InvalidParameterError, match="base classifier"):
        SemiSupervised(None).fit(X[:20], y[:20])
    with pytest.raises(InvalidParameterError, match="features"):
        SemiSupervised(make_model("logreg")).fit(X[:20], y[:20], np.zeros((5, 3)))
