"""Multi-label scorers: exact values on small matrices worked out by hand, and properties."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.strategies import multilabel_scorers as ml

# Two rows where both the sign convention and the number of labels k decide the ranking.
#   A = [0.9, 0.6, 0.1]: sum 1.6 -> k = 2;  B = [0.8, 0.3, 0.2]: sum 1.3 -> k = 1.
# MMC adds 1 - p over the k predicted labels and p over the others:
#   k = (2, 1): A = 0.1 + 0.4 + 0.1 = 0.6,  B = 0.2 + 0.3 + 0.2 = 0.7   -> B first
#   k = (1, 1): A = 0.1 + 0.6 + 0.1 = 0.8,  B = 0.7                     -> A first
#   k = (2, 2): A = 0.6,                    B = 0.2 + 0.7 + 0.2 = 1.1
TWO_ROWS = np.array([[0.9, 0.6, 0.1], [0.8, 0.3, 0.2]])


@st.composite
def label_probas(draw, max_rows=6, max_labels=6):
    n = draw(st.integers(1, max_rows))
    n_labels = draw(st.integers(1, max_labels))
    return draw(arrays(np.float64, (n, n_labels), elements=st.floats(0.0, 1.0)))


# --- margins ------------------------------------------------------------------------------------


def test_mean_margin_by_hand():
    P = [[0.5, 0.5], [1.0, 0.0], [0.9, 0.3], [0.5, 1.0], [0.7, 0.7]]
    # |2p - 1|: [0, 0], [1, 1], [0.8, 0.4], [0, 1], [0.4, 0.4]; one minus their mean.
    out = ml.mean_margin_uncertainty(P)
    assert out.dtype == np.float64
    assert out.shape == (5,)
    np.testing.assert_allclose(out, [1.0, 0.0, 0.4, 0.5, 0.6])


def test_min_margin_by_hand():
    P = [[0.5, 0.5], [1.0, 0.0], [0.9, 0.3], [0.5, 1.0], [0.7, 0.7]]
    # one minus the smallest |2p - 1|: 1 - 0, 1 - 1, 1 - 0.4, 1 - 0, 1 - 0.4
    out = ml.min_margin_uncertainty(P)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [1.0, 0.0, 0.6, 1.0, 0.6])


def test_mean_and_min_margin_rank_differently():
    # [0.5, 1.0]: one label at a toss-up, one certain; [0.7, 0.7]: both somewhat unsure.
    P = [[0.5, 1.0], [0.7, 0.7]]
    assert np.argmax(ml.mean_margin_uncertainty(P)) == 1  # 0.5 < 0.6
    assert np.argmax(ml.min_margin_uncertainty(P)) == 0  # 1.0 > 0.6


def test_margins_are_symmetric_in_p_and_one_minus_p():
    P = np.array([[0.2, 0.9, 0.55]])
    for scorer in (ml.mean_margin_uncertainty, ml.min_margin_uncertainty):
        np.testing.assert_allclose(scorer(P), scorer(1.0 - P))


@given(label_probas())
def test_margins_lie_in_unit_interval_and_min_is_at_least_mean(P):
    mean = ml.mean_margin_uncertainty(P)
    low = ml.min_margin_uncertainty(P)
    assert ((mean >= -1e-12) & (mean <= 1.0 + 1e-12)).all()
    assert ((low >= -1e-12) & (low <= 1.0 + 1e-12)).all()
    assert (low >= mean - 1e-12).all()


@given(st.lists(st.booleans(), min_size=1, max_size=8))
def test_a_certain_row_scores_zero_on_both_margins(bits):
    P = np.array([bits], dtype=np.float64)
    assert ml.mean_margin_uncertainty(P)[0] == 0.0
    assert ml.min_margin_uncertainty(P)[0] == 0.0


def test_label_margins_by_hand_at_per_label_thresholds():
    # Label 0 decided at 0.2, label 1 at 0.5 (|2p - 1|), label 2 at 0.8.
    P = [[0.2, 0.5, 0.8], [0.6, 0.75, 0.4], [0.1, 0.0, 1.0]]
    t = [0.2, 0.5, 0.8]
    # above: (p - t) / (1 - t); below: (t - p) / t
    np.testing.assert_allclose(
        ml.label_margins(P, t), [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 1.0, 1.0]]
    )
    np.testing.assert_allclose(ml.mean_margin_uncertainty(P, t), [1.0, 0.5, 1.0 - 2.5 / 3])
    np.testing.assert_allclose(ml.min_margin_uncertainty(P, t), [1.0, 0.5, 0.5])


def test_a_rare_label_is_uncertain_near_its_threshold_not_near_one_half():
    # A label the model predicts from 0.1 on: 0.12 is a coin toss for it, 0.5 a clear yes.
    P = [[0.12], [0.5]]
    assert np.argmax(ml.mean_margin_uncertainty(P)) == 1  # measured from 0.5
    assert np.argmax(ml.mean_margin_uncertainty(P, [0.1])) == 0


def test_label_margins_at_the_ends_of_the_threshold_range():
    # t = 1 with p = 1, and t = 0: a probability on its threshold has margin 0, never NaN.
    np.testing.assert_allclose(ml.label_margins([[1.0, 0.0]], [1.0, 0.0]), [[0.0, 0.0]])
    np.testing.assert_allclose(ml.label_margins([[0.5, 0.5]], [1.0, 0.0]), [[0.5, 0.5]])


@pytest.mark.parametrize("bad", [[0.5], [[0.5, 0.5]], [0.5, 1.5], [np.nan, 0.5]])
def test_label_margins_refuse_bad_thresholds(bad):
    with pytest.raises(InvalidParameterError, match="thresholds must"):
        ml.label_margins([[0.1, 0.2]], bad)


@given(label_probas(), st.floats(0.0, 1.0))
def test_thresholded_margins_lie_in_the_unit_interval(P, t):
    for scorer in (ml.mean_margin_uncertainty, ml.min_margin_uncertainty):
        u = scorer(P, t)
        assert ((u >= -1e-12) & (u <= 1.0 + 1e-12)).all()


# --- MMC ----------------------------------------------------------------------------------------


def test_mmc_by_hand_with_given_cardinalities():
    np.testing.assert_allclose(ml.mmc(TWO_ROWS, [2, 1]), [0.6, 0.7])
    np.testing.assert_allclose(ml.mmc(TWO_ROWS, [1, 1]), [0.8, 0.7])
    np.testing.assert_allclose(ml.mmc(TWO_ROWS, [2, 2]), [0.6, 1.1])
    np.testing.assert_allclose(ml.mmc(TWO_ROWS, 1), [0.8, 0.7])  # a scalar for every row


def test_mmc_default_cardinality_is_the_rounded_sum():
    # sums 1.6 and 1.3 round to k = (2, 1)
    out = ml.mmc(TWO_ROWS)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.6, 0.7])


def test_mmc_wrong_k_changes_the_ranking():
    right = ml.mmc(TWO_ROWS, [2, 1])
    wrong = ml.mmc(TWO_ROWS, [1, 1])
    assert np.argmax(right) == 1
    assert np.argmax(wrong) == 0


def test_mmc_wrong_sign_would_reverse_the_ranking():
    # sum_j (1 + y_j f_j) / 2, the sign flipped, is n_labels minus the right utility:
    # A = 0.9 + 0.6 + 0.9 = 2.4, B = 0.8 + 0.7 + 0.8 = 2.3 -> A first, where MMC puts B first.
    p = TWO_ROWS
    y = np.array([[1, 1, -1], [1, -1, -1]])
    flipped = ((1 + y * (2 * p - 1)) / 2).sum(axis=1)
    np.testing.assert_allclose(flipped, [2.4, 2.3])
    right = ml.mmc(p, [2, 1])
    np.testing.assert_allclose(right, 3.0 - flipped)
    assert np.argmax(right) != np.argmax(flipped)


def test_mmc_rounds_half_up():
    # sum 1.5 -> k = 2; sum 2.5 -> k = 3 (round half to even would give 2, and utility 1.0).
    P = [[0.75, 0.75, 0.0], [1.0, 0.75, 0.75]]
    # k = 2: 0.25 + 0.25 + 0 = 0.5;  k = 3: 0 + 0.25 + 0.25 = 0.5
    np.testing.assert_allclose(ml.mmc(P), [0.5, 0.5])
    np.testing.assert_allclose(ml.mmc(P, [2, 2]), [0.5, 1.0])


def test_mmc_default_k_is_at_least_one():
    # An all-zero row: sum 0 is clipped to k = 1, so the top label counts 1 - 0 = 1.
    np.testing.assert_allclose(ml.mmc([[0.0, 0.0, 0.0]]), [1.0])
    # With k = 0 given, the utility is the sum of the probabilities.
    np.testing.assert_allclose(ml.mmc([[0.0, 0.0, 0.0], [0.2, 0.5, 0.1]], 0), [0.0, 0.8])


def test_mmc_certain_row_with_its_own_cardinality_scores_zero():
    P = [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    np.testing.assert_allclose(ml.mmc(P), [0.0, 0.0])
    # k = 1 on the first row predicts its second present label absent: p = 1 is added.
    np.testing.assert_allclose(ml.mmc(P, [1, 1]), [1.0, 0.0])


def test_mmc_ties_do_not_change_the_utility():
    # k = 1 between two labels at 0.5: 0.5 + 0.5 + 0.2 whichever is chosen.
    np.testing.assert_allclose(ml.mmc([[0.5, 0.5, 0.2], [0.2, 0.5, 0.5]], 1), [1.2, 1.2])


@given(P=label_probas(), seed=st.integers(0, 2**32 - 1))
def test_mmc_lies_in_range_and_ignores_label_order(P, seed):
    out = ml.mmc(P)
    assert ((out >= -1e-12) & (out <= P.shape[1] + 1e-12)).all()
    perm = np.random.default_rng(seed).permutation(P.shape[1])
    np.testing.assert_allclose(ml.mmc(P[:, perm]), out, atol=1e-12)


@pytest.mark.parametrize(
    ("cardinality", "match"),
    [([1, 1, 1], "shape"), ([1.5, 1], "whole"), ([4, 1], r"\[0, 3\]"), ([-1, 1], r"\[0, 3\]")],
)
def test_mmc_rejects_bad_cardinality(cardinality, match):
    with pytest.raises(InvalidParameterError, match=match):
        ml.mmc(TWO_ROWS, cardinality)


# --- predict_cardinality ------------------------------------------------------------------------

LABELED = np.array(
    [
        [0.9, 0.1, 0.05],
        [0.95, 0.05, 0.0],
        [0.1, 0.8, 0.1],  # unsorted: sorted inside
        [0.9, 0.85, 0.1],
        [0.7, 0.7, 0.05],
        [0.1, 0.8, 0.9],
    ]
)
Y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 0], [0, 1, 1]])


def test_predict_cardinality_learns_one_from_two_labels():
    query = [[0.9, 0.05, 0.05], [0.8, 0.8, 0.0]]
    k = ml.predict_cardinality(LABELED, Y, query)
    assert k.dtype == np.int64
    np.testing.assert_array_equal(k, [1, 2])


def test_predict_cardinality_sorts_and_normalises_rows():
    # the same rows with labels permuted, and halved: same features, same prediction
    query = [[0.05, 0.9, 0.05], [0.4, 0.0, 0.4]]
    np.testing.assert_array_equal(ml.predict_cardinality(LABELED, Y, query), [1, 2])


def test_predict_cardinality_with_one_count_returns_it():
    Y_two = np.array([[1, 1, 0], [0, 1, 1]])
    k = ml.predict_cardinality([[0.9, 0.8, 0.1], [0.2, 0.7, 0.6]], Y_two, [[0.1, 0.1, 0.1]] * 3)
    np.testing.assert_array_equal(k, [2, 2, 2])


def test_predict_cardinality_feeds_mmc():
    k = ml.predict_cardinality(LABELED, Y, TWO_ROWS)
    np.testing.assert_allclose(ml.mmc(TWO_ROWS, k), ml.mmc(TWO_ROWS, list(k)))


def test_predict_cardinality_rejects_bad_inputs():
    with pytest.raises(InvalidDataError, match="Y_labeled must have the shape"):
        ml.predict_cardinality(LABELED, Y[:, :2], TWO_ROWS)
    with pytest.raises(InvalidDataError, match="Y_labeled must hold only 0 and 1"):
        ml.predict_cardinality(LABELED, Y * 2, TWO_ROWS)
    with pytest.raises(InvalidDataError, match="P_sorted has 2 labels"):
        ml.predict_cardinality(LABELED, Y, TWO_ROWS[:, :2])
    with pytest.raises(InvalidDataError, match="at least one labeled row"):
        ml.predict_cardinality(np.zeros((0, 3)), np.zeros((0, 3)), TWO_ROWS)
    with pytest.raises(InvalidDataError, match="P_labeled_sorted"):
        ml.predict_cardinality(LABELED * 2, Y, TWO_ROWS)


# --- label cardinality inconsistency ------------------------------------------------------------

LCI_P = [[0.9, 0.6, 0.1], [0.8, 0.3, 0.2], [0.5, 0.5, 0.5], [0.9, 0.9, 0.9]]


def test_lci_by_hand():
    # labels above 0.5 (strictly): 2, 1, 0, 3
    np.testing.assert_allclose(ml.label_cardinality_inconsistency(LCI_P, 1.5), [0.5, 0.5, 1.5, 1.5])
    np.testing.assert_allclose(ml.label_cardinality_inconsistency(LCI_P, 2), [0.0, 1.0, 2.0, 1.0])


def test_lci_threshold():
    # above 0.4: 2, 1, 3, 3
    out = ml.label_cardinality_inconsistency(LCI_P, 2, threshold=0.4)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize(("c", "t"), [(-1.0, 0.5), (4.0, 0.5), (math.nan, 0.5), (1.0, 1.5)])
def test_lci_rejects_bad_settings(c, t):
    with pytest.raises(InvalidParameterError, match="must lie in"):
        ml.label_cardinality_inconsistency(LCI_P, c, threshold=t)


# --- label-set vote entropy ---------------------------------------------------------------------


def test_label_set_vote_entropy_by_hand():
    # 4 members, 2 items, 2 labels.
    # item 0: label 0 unanimous (H = 0), label 1 split 2-2 (H = log 2)      -> log 2 / 2
    # item 1: label 0 voted by 1 of 4 (H(1/4) = 2 log 2 - 3/4 log 3), label 1 by none -> half that
    votes = np.array(
        [
            [[1, 1], [1, 0]],
            [[1, 1], [0, 0]],
            [[1, 0], [0, 0]],
            [[1, 0], [0, 0]],
        ]
    )
    out = ml.label_set_vote_entropy(votes)
    assert out.dtype == np.float64
    h_quarter = 2 * math.log(2) - 0.75 * math.log(3)
    np.testing.assert_allclose(out, [math.log(2) / 2, h_quarter / 2])


def test_label_set_vote_entropy_agreement_and_even_split():
    agree = np.ones((3, 1, 4))
    assert ml.label_set_vote_entropy(agree)[0] == 0.0
    split = np.array([[[0, 1, 0]], [[1, 0, 1]]])
    assert ml.label_set_vote_entropy(split)[0] == pytest.approx(math.log(2))
    assert ml.label_set_vote_entropy(np.array([[[1, 0]]]))[0] == 0.0  # one member: no dissent


@given(arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4)),
              elements=st.integers(0, 1)))  # fmt: skip
def test_label_set_vote_entropy_is_between_zero_and_log_two(votes):
    out = ml.label_set_vote_entropy(votes)
    assert ((out >= 0.0) & (out <= math.log(2) + 1e-12)).all()
    np.testing.assert_allclose(ml.label_set_vote_entropy(1 - votes), out)


def test_label_set_vote_entropy_rejects_bad_votes():
    with pytest.raises(InvalidDataError, match="3 dimensions"):
        ml.label_set_vote_entropy(np.zeros((2, 3)))
    with pytest.raises(InvalidDataError, match="only 0 and 1"):
        ml.label_set_vote_entropy(np.full((2, 1, 2), 2))
    with pytest.raises(InvalidDataError, match="NaN"):
        ml.label_set_vote_entropy(np.full((2, 1, 2), np.nan))
    with pytest.raises(InvalidDataError, match="at least one committee member"):
        ml.label_set_vote_entropy(np.zeros((0, 1, 2)))


# --- input checks shared by the probability scorers ---------------------------------------------

SCORERS = [
    ml.mean_margin_uncertainty,
    ml.min_margin_uncertainty,
    ml.mmc,
    lambda P: ml.label_cardinality_inconsistency(P, 1.0),
]


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize(
    ("P", "match"),
    [
        ([0.1, 0.2], "shape"),
        (np.zeros((2, 0)), "at least one label"),
        ([[0.1, math.nan]], "NaN"),
        ([[0.1, 1.2]], r"in \[0, 1\]"),
        ([[-0.1, 0.5]], r"in \[0, 1\]"),
        ([["a", "b"]], "numeric"),
    ],
)
def test_probability_scorers_reject_bad_matrices(scorer, P, match):
    with pytest.raises(InvalidDataError, match=match):
        scorer(P)


@pytest.mark.parametrize("scorer", SCORERS)
def test_probability_scorers_accept_no_rows(scorer):
    out = scorer(np.zeros((0, 3)))
    assert out.shape == (0,)
    assert out.dtype == np.float64
