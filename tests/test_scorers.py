"""Scorers: Hypothesis properties and exact values on hand-made probabilities."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labelwise.strategies import scorers

PROBA_SCORERS = [scorers.least_confident, scorers.margin, scorers.entropy]


@st.composite
def distributions(draw, min_classes=2, max_classes=8):
    k = draw(st.integers(min_classes, max_classes))
    raw = draw(arrays(np.float64, (k,), elements=st.floats(0.0, 1.0)))
    if raw.sum() <= 1e-9:
        raw = np.ones(k)
    return raw / raw.sum()


@given(distributions())
def test_entropy_is_highest_at_the_uniform_distribution(p):
    k = len(p)
    uniform = np.full((1, k), 1.0 / k)
    assert scorers.entropy(p[None])[0] <= scorers.entropy(uniform)[0] + 1e-12
    assert scorers.entropy(uniform)[0] == pytest.approx(np.log(k))


@pytest.mark.parametrize("scorer", PROBA_SCORERS)
@given(p=distributions(), seed=st.integers(0, 2**32 - 1))
def test_scorers_are_invariant_under_class_permutation(scorer, p, seed):
    perm = np.random.default_rng(seed).permutation(len(p))
    assert scorer(p[None])[0] == pytest.approx(scorer(p[perm][None])[0], abs=1e-12)


@pytest.mark.parametrize("scorer", PROBA_SCORERS)
@given(p=distributions())
def test_uniform_scores_at_least_as_high_as_any_distribution(scorer, p):
    uniform = np.full((1, len(p)), 1.0 / len(p))
    assert scorer(p[None])[0] <= scorer(uniform)[0] + 1e-12


@pytest.mark.parametrize("scorer", PROBA_SCORERS)
def test_a_certain_prediction_scores_lowest(scorer):
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.3, 0.2]])
    u = scorer(p)
    assert u[0] == pytest.approx(0.0, abs=1e-9)
    assert u[1] > u[0]


def test_exact_values():
    p = np.array([[0.6, 0.3, 0.1]])
    assert scorers.least_confident(p)[0] == pytest.approx(0.4)
    assert scorers.margin(p)[0] == pytest.approx(1 - 0.3)
    assert scorers.entropy(p)[0] == pytest.approx(
        -(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1))
    )


def test_margin_orders_by_gap_between_top_two():
    p = np.array([[0.5, 0.49, 0.01], [0.7, 0.2, 0.1], [0.34, 0.335, 0.325]])
    assert np.argsort(-scorers.margin(p)).tolist() == [2, 0, 1]


def test_decision_margin_binary_is_minus_abs():
    d = np.array([-2.0, 0.1, -0.05, 3.0])
    np.testing.assert_allclose(scorers.decision_margin(d), [-2.0, -0.1, -0.05, -3.0])
    assert int(np.argmax(scorers.decision_margin(d))) == 2


def test_decision_margin_multiclass_is_gap_between_top_two():
    d = np.array([[2.0, 1.5, -1.0], [0.2, 0.1, 0.15], [3.0, -1.0, 0.0]])
    np.testing.assert_allclose(scorers.decision_margin(d), [-0.5, -0.05, -3.0])


def test_vote_entropy_counts_votes():
    votes = np.array([[0, 0, 1], [0, 1, 1], [0, 1, 1], [0, 2, 1]])  # 4 members, 3 samples
    u = scorers.vote_entropy(votes, 3)
    assert u[0] == pytest.approx(0.0)
    assert u[2] == pytest.approx(0.0)
    assert u[1] == pytest.approx(-(0.25 * np.log(0.25) + 0.5 * np.log(0.5) + 0.25 * np.log(0.25)))


@given(
    arrays(np.int64, (5, 7), elements=st.integers(0, 3)),
)
@settings(max_examples=50)
def test_vote_entropy_is_the_entropy_of_the_vote_shares(votes):
    shares = np.stack([(votes == c).mean(axis=0) for c in range(4)], axis=1)
    np.testing.assert_allclose(
        scorers.vote_entropy(votes, 4), scorers.entropy(shares), rtol=1e-12, atol=1e-12
    )


@given(arrays(np.float64, (3, 2), elements=st.floats(0.01, 1.0)))
@settings(max_examples=50)
def test_kl_to_consensus_is_zero_when_members_agree_and_nonnegative(raw):
    p = raw / raw.sum(axis=1, keepdims=True)
    agree = np.stack([p, p, p])
    np.testing.assert_allclose(scorers.kl_to_consensus(agree), 0.0, atol=1e-12)
    rng = np.random.default_rng(0)
    mixed = rng.dirichlet(np.ones(2), size=(4, 3))
    assert (scorers.kl_to_consensus(mixed) >= 0).all()


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="n_samples, n_classes"):
        scorers.entropy(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="n_members, n_samples, n_classes"):
        scorers.kl_to_consensus(np.ones((2, 2)))


def test_random_utility_is_seeded():
    a = scorers.random_utility(5, np.random.default_rng(3))
    b = scorers.random_utility(5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
