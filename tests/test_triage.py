"""Triage: thresholds for a target sensitivity or precision, on calibrated held-out predictions."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from labelwise import InvalidDataError, InvalidParameterError
from labelwise.learning.triage import TriageTarget, fit_policy, triage


def _scores(n_pos=500, n_neg=500, seed=0):
    rng = np.random.default_rng(seed)
    p_pos = np.concatenate([rng.beta(5, 2, n_pos), rng.beta(2, 5, n_neg)])
    y = np.array(["pos"] * n_pos + ["neg"] * n_neg)
    return np.column_stack([1 - p_pos, p_pos]), y


@pytest.mark.parametrize("conservative", [True, False])
def test_a_sensitivity_policy_misses_no_more_positives_than_allowed(conservative):
    P, y = _scores()
    target = TriageTarget("sensitivity", 0.98, "pos", conservative)
    policy = fit_policy(P, y, ["neg", "pos"], target)
    accepted, as_label = policy.accepts(P)
    missed = int(np.sum(accepted & (y == "pos")))
    assert missed <= 0.02 * 500
    assert set(as_label[accepted]) == {"neg"}  # a positive is never decided automatically
    assert policy.expected["sensitivity"] == pytest.approx(1 - missed / 500)
    # The threshold is as loose as the target allows: one more positive and it is broken.
    if not conservative:
        assert missed == 10
    assert 0.1 < accepted.mean() < 0.5


def test_the_upper_bound_rule_accepts_less_than_the_point_estimate():
    P, y = _scores(n_pos=150, n_neg=150, seed=1)
    point = fit_policy(P, y, ["neg", "pos"], TriageTarget("sensitivity", 0.95, "pos", False))
    bound = fit_policy(P, y, ["neg", "pos"], TriageTarget("sensitivity", 0.95, "pos", True))
    assert bound.max_positive < point.max_positive
    assert bound.expected["accepted_share"] < point.expected["accepted_share"]


def test_a_precision_policy_keeps_each_class_accepted_items_right():
    P, y = _scores(seed=2)
    policy = fit_policy(P, y, ["neg", "pos"], TriageTarget("precision", 0.95, conservative=False))
    accepted, as_label = policy.accepts(P)
    for c in ("neg", "pos"):
        mine = accepted & (as_label == c)
        assert mine.sum() > 20
        assert np.mean(y[mine] == c) >= 0.95
    assert accepted.mean() < 1.0


def test_triage_on_a_real_model_holds_the_sensitivity_on_new_items():
    X, y = make_classification(
        n_samples=6000, n_features=10, n_informative=6, weights=[0.6], random_state=0
    )
    labels = np.where(y == 1, "disease", "healthy")
    X_lab, y_lab, X_new, y_new = X[:3000], labels[:3000], X[3000:], labels[3000:]
    target = TriageTarget("sensitivity", 0.98, "disease")
    decisions = triage(LogisticRegression(), X_lab, y_lab, X_new, target, audit=0.1)
    accepted = decisions.accepted
    sensitivity = 1 - np.mean(accepted[y_new == "disease"])
    assert sensitivity >= 0.97  # the target, up to the noise of new data
    assert 0.1 < accepted.mean() < 0.6  # and it does spare the experts work
    assert set(decisions.labels[accepted]) == {"healthy"}
    assert np.all(decisions.confidence[accepted] > 0.5)
    audit = decisions.audit
    assert not np.any(audit & ~accepted)
    assert audit.sum() == round(0.1 * accepted.sum())
    assert np.array_equal(decisions.to_experts, ~accepted | audit)


def test_same_seed_same_decisions():
    X, y = make_classification(n_samples=600, random_state=3)
    target = TriageTarget("precision", 0.9)
    a = triage(LogisticRegression(), X[:300], y[:300], X[300:], target, random_state=7)
    b = triage(LogisticRegression(), X[:300], y[:300], X[300:], target, random_state=7)
    assert np.array_equal(a.accepted, b.accepted) and np.array_equal(a.audit, b.audit)


@pytest.mark.parametrize(
    "args",
    [
        ("recall", 0.9, None),
        ("sensitivity", 1.0, "pos"),
        ("sensitivity", 0.0, "pos"),
        ("sensitivity", 0.9, None),
    ],
)
def test_bad_targets_are_refused(args):
    with pytest.raises(InvalidParameterError):
        TriageTarget(*args)


def test_bad_inputs_name_what_is_wrong():
    P, y = _scores()
    with pytest.raises(InvalidParameterError, match="positive class 'sick'"):
        fit_policy(P, y, ["neg", "pos"], TriageTarget("sensitivity", 0.9, "sick"))
    with pytest.raises(InvalidDataError, match="do not match"):
        fit_policy(P[:10], y, ["neg", "pos"], TriageTarget("precision", 0.9))
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(InvalidDataError, match="at least two classes"):
        triage(LogisticRegression(), X, ["a"] * 40, X, TriageTarget("precision", 0.9))
    with pytest.raises(InvalidParameterError, match="audit"):
        triage(LogisticRegression(), X, ["a", "b"] * 20, X, TriageTarget("precision", 0.9), audit=2)


def test_too_few_labeled_positives_accept_nothing_and_say_how_many_are_needed():
    P, y = _scores(n_pos=40, n_neg=40, seed=3)
    policy = fit_policy(P, y, ["neg", "pos"], TriageTarget("sensitivity", 0.95, "pos"))
    accepted, _ = policy.accepts(P)
    assert not accepted.any()
    assert "40 labeled 'pos' items cannot show sensitivity 0.95" in policy.expected["note"]
    needed = int(policy.expected["note"].split("at least ")[1].split()[0])
    enough, ys = _scores(n_pos=needed, n_neg=40, seed=3)
    fine = fit_policy(enough, ys, ["neg", "pos"], TriageTarget("sensitivity", 0.95, "pos"))
    assert "note" not in fine.expected and fine.max_positive > 0


def test_a_target_from_options_takes_exactly_one_and_says_so_in_the_callers_words():
    target = TriageTarget.from_options(sensitivity=0.98, precision=None, positive="pos")
    assert target == TriageTarget("sensitivity", 0.98, "pos", True)
    loose = TriageTarget.from_options(
        sensitivity=None, precision=0.9, positive="ignored", point_estimate=True
    )
    assert loose == TriageTarget("precision", 0.9, None, False)
    with pytest.raises(InvalidParameterError, match="exactly one target: sensitivity or"):
        TriageTarget.from_options(sensitivity=None, precision=None)
    with pytest.raises(InvalidParameterError, match="--sensitivity or --precision"):
        TriageTarget.from_options(
            sensitivity=0.9, precision=0.9, names=("--sensitivity", "--precision")
        )
    with pytest.raises(InvalidParameterError, match="positive class"):
        TriageTarget.from_options(sensitivity=0.9, precision=None)
