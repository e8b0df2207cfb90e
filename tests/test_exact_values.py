"""Exact values, worked out by hand, for figures whose other tests check only a sign, a range
or that a seed repeats: Cohen's kappa between successive models, the query-by-committee
disagreement, density weights, the Wilson interval and the errors triage may allow.

A formula that is wrong but stays in range (a kappa of the wrong size that is still negative,
weights in (0, 1] with the wrong bandwidth) fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelwise.learning.evaluate import wilson_interval
from labelwise.learning.stopping import prediction_agreement
from labelwise.learning.triage import _allowed_errors
from labelwise.strategies import scorers, selectors

Z = 1.959964


# ------------------------------------------------------------------------- Cohen's kappa


def test_models_that_always_disagree_have_kappa_minus_one() -> None:
    # p_o = 0; each model says 0 and 1 half the time: p_e = 1/2 · 1/2 + 1/2 · 1/2 = 1/2;
    # kappa = (0 - 1/2) / (1 - 1/2) = -1.
    assert prediction_agreement([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


def test_cohens_kappa_worked_by_hand() -> None:
    previous = ["a", "a", "a", "a", "b", "b", "b", "b", "b", "b"]
    current = ["a", "a", "a", "b", "b", "b", "b", "b", "b", "a"]
    # 8 of 10 agree: p_o = 0.8. Both give a 4 times and b 6 times: p_e = 0.4² + 0.6² = 0.52.
    # kappa = (0.8 - 0.52) / (1 - 0.52) = 0.28 / 0.48 = 7 / 12.
    assert prediction_agreement(previous, current) == pytest.approx(7 / 12, abs=1e-12)
    # Unlike the share of agreeing rows (0.8), kappa discounts agreement by chance.
    assert prediction_agreement(previous, current) != pytest.approx(0.8)


def test_identical_predictions_of_one_class_count_as_full_agreement() -> None:
    assert prediction_agreement(["a"] * 5, ["a"] * 5) == 1.0


# ---------------------------------------------------------- query by committee (KL to consensus)


def test_kl_to_consensus_worked_by_hand() -> None:
    # Two members: (0.9, 0.1) and (0.5, 0.5); the consensus is their mean (0.7, 0.3).
    members = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])
    first = 0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
    second = 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)
    expected = (first + second) / 2  # (0.11632 + 0.08718) / 2
    assert expected == pytest.approx(0.10175, abs=1e-5)
    np.testing.assert_allclose(scorers.kl_to_consensus(members), [expected], rtol=1e-12)


def test_kl_to_consensus_of_two_certain_members_who_disagree_is_log_two() -> None:
    # (1, 0) and (0, 1): the consensus is (1/2, 1/2), each member is log 2 away from it
    # (0 log 0 = 0).
    members = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    np.testing.assert_allclose(scorers.kl_to_consensus(members), [math.log(2)], rtol=1e-12)


# --------------------------------------------------------------------------- density weights


def test_density_weights_worked_by_hand() -> None:
    # Three points on a line at 0, 1 and 3, all of them the reference sample. Their distances
    # are 1, 2 and 3: the bandwidth is the median, 2. Each weight is the mean of
    # exp(-(d / 2)² / 2) over the three references (itself included, at distance 0).
    X = np.array([[0.0], [1.0], [3.0]])
    near, mid, far = math.exp(-((1 / 2) ** 2) / 2), math.exp(-1 / 2), math.exp(-((3 / 2) ** 2) / 2)
    expected = [(1 + near + far) / 3, (near + 1 + mid) / 3, (far + mid + 1) / 3]
    w = selectors.density_weights(X, np.random.default_rng(0))
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    # The middle point is the most typical, the outlying one the least.
    assert np.argsort(w).tolist() == [2, 0, 1]


def test_density_weights_do_not_depend_on_the_scale_of_the_features() -> None:
    X = np.array([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(
        selectors.density_weights(1000 * X, np.random.default_rng(0)),
        selectors.density_weights(X, np.random.default_rng(0)),
        rtol=1e-12,
    )


# --------------------------------------------------------------------------- Wilson interval


def test_wilson_interval_of_no_successes_in_ten() -> None:
    # p = 0: centre = half = (z² / 2n) / (1 + z² / n) = z² / (2 (n + z²)); the interval is
    # (0, z² / (n + z²)) = (0, 0.2775).
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(Z * Z / (10 + Z * Z), rel=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_wilson_interval_of_half_is_symmetric_about_it() -> None:
    # p = 1/2, n = 10: centre (1/2 + z²/20) / (1 + z²/10) = 1/2;
    # half width z · sqrt(1/40 + z²/400) / (1 + z²/10) = 0.2634.
    low, high = wilson_interval(5, 10)
    half = Z * math.sqrt(0.25 / 10 + Z * Z / 400) / (1 + Z * Z / 10)
    assert (low, high) == (pytest.approx(0.5 - half, rel=1e-12), pytest.approx(0.5 + half))
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))


def test_wilson_interval_of_eight_in_ten() -> None:
    # p = 0.8, n = 10: centre (0.8 + z²/20) / (1 + z²/10) = 0.7167, half width
    # z · sqrt(0.016 + z²/400) / (1 + z²/10) = 0.2265: (0.4902, 0.9433).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_without_trials_is_everything() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


# ---------------------------------------------------------------- errors triage may allow


def test_errors_allowed_at_a_level_are_the_budget_rounded_down() -> None:
    # 90 %: a tenth of the held-out items may be wrong, rounded down.
    assert [_allowed_errors(n, 0.9, False) for n in (1, 9, 10, 19, 20, 25)] == [0, 0, 1, 1, 2, 2]


def test_conservative_errors_need_the_wilson_bound_under_the_budget() -> None:
    # No error at all is allowed until even 0 of n has a Wilson upper bound of at most 0.1:
    # z² / (n + z²) <= 0.1, i.e. n >= 9 z² = 34.57, so from 35 items on.
    assert round(9 * Z * Z, 2) == 34.57
    assert _allowed_errors(34, 0.9, True) == -1
    assert _allowed_errors(35, 0.9, True) == 0
    assert wilson_interval(0, 35)[1] <= 0.1 < wilson_interval(0, 34)[1]
