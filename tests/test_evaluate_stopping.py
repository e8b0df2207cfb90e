"""Metrics, AUBC and the stopping criteria on hand-made histories."""

import numpy as np
import pytest

from labelwise import Budget, Plateau, Round, StabilizingPredictions, aubc, score_predictions
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.stopping import prediction_agreement


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
    from labelwise.evaluate import Metrics

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
