"""Multi-label metrics: a case worked out by hand, agreement with scikit-learn, intervals."""

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
)

from labelwise.exceptions import InvalidDataError
from labelwise.learning import multilabel_metrics
from labelwise.learning.evaluate import ClassMetrics
from labelwise.learning.multilabel_metrics import multilabel_scores

Y_TRUE = [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]]
Y_PRED = [[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]]


def test_all_is_sorted():
    names = multilabel_metrics.__all__
    kind = lambda s: 0 if s.isupper() else 1 if s[0].isupper() else 2  # noqa: E731
    assert names == sorted(names, key=lambda s: (kind(s), s))


def test_hand_computed_case():
    m = multilabel_scores(Y_TRUE, Y_PRED, ["a", "b", "c"])
    # a: true [1,0,1,0], predicted [1,0,1,0]: TP 2, FP 0, FN 0.
    # b: true [0,1,1,0], predicted [0,1,0,0]: TP 1, FP 0, FN 1 -> P 1, R 1/2, F1 2/3.
    # c: true [1,0,0,0], predicted [0,1,0,0]: TP 0, FP 1, FN 1 -> all 0.
    assert m.per_label["a"] == ClassMetrics(1.0, 1.0, 1.0, 2)
    assert m.per_label["b"].precision == 1.0
    assert m.per_label["b"].recall == 0.5
    assert m.per_label["b"].f1 == pytest.approx(2 / 3)
    assert m.per_label["b"].support == 2
    assert m.per_label["c"] == ClassMetrics(0.0, 0.0, 0.0, 1)
    # Micro: TP 3, FP 1, FN 2 -> 6 / (6 + 1 + 2) = 2/3. Macro: (1 + 2/3 + 0) / 3 = 5/9.
    assert m.micro_f1 == pytest.approx(2 / 3)
    assert m.macro_f1 == pytest.approx(5 / 9)
    # Wrong cells: (0, c), (1, c), (2, b): 3 of 12.
    assert m.hamming_loss == 0.25
    # Only the empty set of item 3 is exactly right.
    assert m.subset_accuracy == 0.25
    # Wilson, 1 of 4, z = 1.96: centre (0.25 + 0.4802) / 1.9604 = 0.37248,
    # half 1.96 * sqrt(0.046875 + 0.060023) / 1.9604 = 0.32690.
    low, high = m.subset_accuracy_interval
    assert low == pytest.approx(0.04559, abs=2e-4)
    assert high == pytest.approx(0.69937, abs=2e-4)
    assert m.n_samples == 4
    assert m.to_dict()["per_label"]["b"]["support"] == 2


def test_a_label_nobody_has_or_predicts_scores_zero_and_counts_in_the_macro_mean():
    # Column d: no true and no predicted positive -> P, R, F1 all 0 (zero_division=0).
    yt = np.column_stack([np.array(Y_TRUE), np.zeros(4, dtype=int)])
    yp = np.column_stack([np.array(Y_PRED), np.zeros(4, dtype=int)])
    m = multilabel_scores(yt, yp, ["a", "b", "c", "d"])
    assert m.per_label["d"] == ClassMetrics(0.0, 0.0, 0.0, 0)
    assert m.macro_f1 == pytest.approx((1 + 2 / 3 + 0 + 0) / 4)
    assert m.micro_f1 == pytest.approx(2 / 3)
    assert m.macro_f1 == pytest.approx(f1_score(yt, yp, average="macro", zero_division=0))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, L = 60, 5
    yt = (rng.random((n, L)) < [0.5, 0.2, 0.05, 0.0, 0.9]).astype(int)
    flip = rng.random((n, L)) < 0.2
    yp = np.where(flip, 1 - yt, yt)
    yp[:, 2] = 0  # a label never predicted
    m = multilabel_scores(yt, yp, [f"l{j}" for j in range(L)])
    assert m.micro_f1 == pytest.approx(f1_score(yt, yp, average="micro", zero_division=0))
    assert m.macro_f1 == pytest.approx(f1_score(yt, yp, average="macro", zero_division=0))
    p, r, f, s = precision_recall_fscore_support(yt, yp, average=None, zero_division=0)
    for j in range(L):
        got = m.per_label[f"l{j}"]
        assert got.precision == pytest.approx(p[j])
        assert got.recall == pytest.approx(r[j])
        assert got.f1 == pytest.approx(f[j])
        assert got.support == s[j]
    assert m.hamming_loss == pytest.approx(hamming_loss(yt, yp))
    assert m.subset_accuracy == pytest.approx(accuracy_score(yt, yp))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intervals_contain_the_point_estimate_and_repeat(seed):
    rng = np.random.default_rng(seed)
    yt = (rng.random((200, 4)) < [0.5, 0.3, 0.2, 0.6]).astype(int)
    yp = np.where(rng.random((200, 4)) < 0.15, 1 - yt, yt)
    m = multilabel_scores(yt, yp, ["a", "b", "c", "d"])
    for point, (low, high) in [
        (m.micro_f1, m.micro_f1_interval),
        (m.macro_f1, m.macro_f1_interval),
        (m.subset_accuracy, m.subset_accuracy_interval),
    ]:
        assert 0.0 <= low <= point <= high <= 1.0
        assert high - low < 0.3
    again = multilabel_scores(yt, yp, ["a", "b", "c", "d"])
    assert again == m


def test_perfect_predictions_have_degenerate_f1_intervals():
    m = multilabel_scores(Y_TRUE, Y_TRUE, ["a", "b", "c"])
    assert m.micro_f1_interval == (1.0, 1.0)
    assert m.macro_f1 == 1.0
    # Every resample lacking item 0 has no positive of c: its F1 is 0 there, so the macro
    # interval reaches below 1.
    assert m.macro_f1_interval[0] < 1.0
    assert m.subset_accuracy == 1.0


@pytest.mark.parametrize(
    ("yt", "yp", "labels", "message"),
    [
        (Y_TRUE, [[1, 0, 0]], ["a", "b", "c"], "differ in shape"),
        (Y_TRUE, Y_PRED, ["a", "b"], "2 label names given for 3"),
        (Y_TRUE, Y_PRED, ["a", "b", "a"], "distinct"),
        ([[1, 0, 3]], [[1, 0, 1]], ["a", "b", "c"], "Y_true must hold only 0 and 1"),
        (np.zeros((0, 3)), np.zeros((0, 3)), ["a", "b", "c"], "empty"),
    ],
)
def test_refusals(yt, yp, labels, message):
    with pytest.raises(InvalidDataError, match=message):
        multilabel_scores(yt, yp, labels)
