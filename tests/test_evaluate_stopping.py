"""Metrics, AUBC and the stopping criteria on hand-made histories."""

import numpy as np
import pytest

from labelwise import Budget, Plateau, Round, StabilizingPredictions, aubc, score_predictions
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.learning.stopping import prediction_agreement


def test_metrics_by_hand():
    m = score_predictions(["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "a"])
    assert m.accuracy == pytest.approx(3 / 5)
    assert m.per_class["a"].precision == pytest.approx(1 / 2)
    assert m.per_class["a"].recall == pytest.approx(1 / 2)
    assert m.per_class["b"].precision == pytest.approx(2 / 3)
    assert m.per_class["b"].recall == pytest.approx(1.0)
    assert m.per_class["c"].f1 == 0.0
    assert m.balanced_accuracy == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    f1_b = 2 * (2 / 3) / (2 / 3 + 1)
    assert m.macro_f1 == pytest.approx((0.5 + f1_b + 0.0) / 3)


def test_labels_never_predicted_still_count():
    m = score_predictions([0, 1, 1], [1, 1, 1], labels=[0, 1, 2])
    assert set(m.per_class) == {"0", "1", "2"}
    assert m.per_class["2"].support == 0


def test_evaluation_input_errors():
    with pytest.raises(InvalidDataError, match="equal length"):
        score_predictions([0, 1], [0])
    with pytest.raises(InvalidDataError, match="empty holdout"):
        score_predictions([], [])


def test_aubc_matches_the_published_definition():
    acc = [0.5, 0.7, 0.9]
    assert aubc(acc) == pytest.approx(np.trapezoid(acc, dx=1) / 3)
    assert aubc([1.0, 1.0], [10, 50]) == pytest.approx(1.0)
    assert aubc([0.0, 1.0], [0, 10]) == pytest.approx(0.5)


def _rounds(values, kappas=None):
    from labelwise.learning.evaluate import Metrics

    out = []
    for i, v in enumerate(values):
        m = Metrics(v, v, v, v, v, {}, 10)
        out.append(
            Round(
                i, 10 * (i + 1), np.empty(0, np.intp), (), m, None if kappas is None else kappas[i]
            )
        )
    return out


def test_budget():
    assert Budget(30).check(_rounds([0.1, 0.2])) is None
    assert "budget reached" in Budget(20).check(_rounds([0.1, 0.2]))
    with pytest.raises(InvalidParameterError):
        Budget(0)


def test_plateau():
    rising = _rounds([0.5, 0.6, 0.7, 0.8, 0.9])
    assert Plateau("accuracy", patience=2, min_delta=0.01).check(rising) is None
    flat = _rounds([0.5, 0.8, 0.805, 0.801, 0.803])
    assert "plateau" in Plateau("accuracy", patience=3, min_delta=0.01).check(flat)
    assert Plateau("accuracy", patience=3, min_delta=0.001).check(flat) is None
    with pytest.raises(InvalidParameterError, match="unknown metric"):
        Plateau("auc")


def test_stabilizing_predictions():
    crit = StabilizingPredictions(threshold=0.95, window=2)
    assert crit.check(_rounds([0.1, 0.2, 0.3], [None, 0.9, 0.99])) is None
    assert "stabilized" in crit.check(_rounds([0.1, 0.2, 0.3], [None, 0.96, 0.99]))


def test_prediction_agreement():
    assert prediction_agreement([1, 1, 1], [1, 1, 1]) == 1.0
    assert prediction_agreement([0, 1, 0, 1], [1, 0, 1, 0]) < 0


def test_learning_curve_fit_recovers_an_inverse_power_law():
    from labelwise.learning.stopping import fit_learning_curve

    n = np.array([20, 40, 80, 160, 320, 640])
    truth = 0.92 - 0.8 * n**-0.6
    noisy = truth + np.random.default_rng(0).normal(0, 0.002, size=len(n))
    fit = fit_learning_curve(n, noisy)
    assert fit is not None and fit.n_points == 6
    assert fit.asymptote == pytest.approx(0.92, abs=0.02)
    expected = (0.8 * 640**-0.6) - (0.8 * 740**-0.6)
    assert fit.expected_gain(640, 100) == pytest.approx(expected, abs=0.003)
    assert fit.expected_gain(20, 100) > fit.expected_gain(640, 100) > 0


def test_learning_curve_needs_enough_points():
    from labelwise.learning.stopping import fit_learning_curve

    assert fit_learning_curve([10, 20, 30], [0.5, 0.6, 0.7]) is None
    assert fit_learning_curve([10, 10, 10, 10], [0.5, 0.6, 0.7, 0.8]) is None


def test_expected_gain_stops_a_flattening_curve_only():
    from labelwise import ExpectedGain

    steep = _rounds([0.3, 0.45, 0.55, 0.63, 0.7, 0.76])
    assert ExpectedGain("accuracy", more=100, min_gain=0.01).check(steep) is None
    n = 10 * np.arange(1, 9)
    flat = _rounds((0.9 - 0.5 * n**-1.5).tolist())
    reason = ExpectedGain("accuracy", more=100, min_gain=0.01).check(flat)
    assert reason is not None and "next 100 labels" in reason
    with pytest.raises(InvalidParameterError):
        ExpectedGain("accuracy", more=0)
