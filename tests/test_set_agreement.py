"""Agreement on label sets (:mod:`labelwise.learning.set_agreement`): the MASI distance,
Krippendorff's alpha with it, and per-label Cohen's kappa, on examples worked by hand."""

from __future__ import annotations

from fractions import Fraction

import pytest
from sklearn.metrics import cohen_kappa_score

from labelwise.exceptions import InvalidDataError
from labelwise.learning.set_agreement import krippendorff_alpha, masi_distance, per_label_kappa


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # The same set: J = 1, M = 1, distance 0.
        ({"a", "b"}, {"b", "a"}, Fraction(0)),
        # Two empty sets are the same set.
        (set(), set(), Fraction(0)),
        # {a} inside {a, b}: J = 1/2, M = 2/3, distance 1 - 1/3 = 2/3.
        ({"a"}, {"a", "b"}, Fraction(2, 3)),
        # {a, b} and {b, c} overlap: J = 1/3, M = 1/3, distance 1 - 1/9 = 8/9.
        ({"a", "b"}, {"b", "c"}, Fraction(8, 9)),
        # Disjoint: J = 0, distance 1; the empty set against a non-empty one too.
        ({"a"}, {"b"}, Fraction(1)),
        (set(), {"a"}, Fraction(1)),
        # {a, b, c} and {a, b, d}: J = 2/4, M = 1/3, distance 1 - 1/6 = 5/6.
        (("a", "b", "c"), ["d", "a", "b"], Fraction(5, 6)),
    ],
)
def test_masi_distance_worked_by_hand(a, b, expected) -> None:
    assert masi_distance(a, b) == pytest.approx(float(expected), abs=1e-12)
    assert masi_distance(b, a) == pytest.approx(float(expected), abs=1e-12)


def test_krippendorff_alpha_with_masi_worked_by_hand() -> None:
    # Four items, two coders; the last has one answer only, so it is not pairable.
    #   item 1: {a}  {a}       distance 0
    #   item 2: {a}  {a, b}    distance 2/3 (subset, J = 1/2)
    #   item 3: {b}  {a, b}    distance 2/3
    #   item 4: {a}  -
    # n = 6 pairable answers. Each item has m_u = 2, so its ordered pairs weigh 1 / (2 - 1) = 1:
    #   D_o = (0 + 2 * 2/3 + 2 * 2/3) / 6 = (8/3) / 6 = 4/9.
    # The 6 answers are {a} x3, {a, b} x2, {b} x1; ordered pairs of different sets:
    #   {a}-{a,b}: 2 * 3 * 2 * 2/3 = 8;  {a}-{b}: 2 * 3 * 1 * 1 = 6;
    #   {a,b}-{b}: 2 * 2 * 1 * 2/3 = 8/3
    #   D_e = (8 + 6 + 8/3) / (6 * 5) = (50/3) / 30 = 5/9.
    # alpha = 1 - (4/9) / (5/9) = 1/5.
    units = [
        [{"a"}, {"a"}],
        [{"a"}, {"a", "b"}],
        [{"b"}, {"a", "b"}],
        [{"a"}, None],
    ]
    assert krippendorff_alpha(units) == pytest.approx(0.2, abs=1e-12)


def test_krippendorff_alpha_on_singletons_is_the_nominal_alpha() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units,
    # values 1-5 with gaps; the published nominal alpha is 0.743. Singleton sets under MASI are
    # nominal data (distance 0 if equal, else 1).
    rows = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[None if r[u] is None else {str(r[u])} for r in rows] for u in range(12)]
    alpha = krippendorff_alpha(units)
    assert alpha is not None and round(alpha, 3) == 0.743


def test_krippendorff_alpha_undefined_cases() -> None:
    assert krippendorff_alpha([]) is None
    assert krippendorff_alpha([[{"a"}, None], [None, {"b"}]]) is None  # nothing pairable
    assert krippendorff_alpha([[{"a"}, {"a"}], [{"a"}, {"a"}]]) is None  # D_e = 0
    assert krippendorff_alpha([[set(), set()], [{"a"}, {"a"}]]) == 1.0  # perfect agreement


def test_per_label_kappa_worked_by_hand() -> None:
    # Labels a, b, c over five items; the last is answered by the first coder only (left out).
    #   item  first    second
    #   1     {a}      {a}
    #   2     {a, b}   {a}
    #   3     {}       {}
    #   4     {b}      {b}
    #   5     {a}      -
    # a: yes 2/4 and 2/4, agree on all 4: p_o = 1, p_e = 1/4 + 1/4 = 1/2, kappa = 1.
    # b: yes 2/4 and 1/4, agree on items 1, 3, 4: p_o = 3/4,
    #    p_e = (1/2)(1/4) + (1/2)(3/4) = 1/2, kappa = (3/4 - 1/2) / (1/2) = 1/2.
    # c: nobody says yes: p_e = 1, kappa undefined.
    first = [{"a"}, {"a", "b"}, set(), {"b"}, {"a"}]
    second = [{"a"}, {"a"}, set(), {"b"}, None]
    kappas = per_label_kappa(first, second, ["a", "b", "c"])
    assert list(kappas) == ["a", "b", "c"]
    assert kappas["a"] == pytest.approx(1.0, abs=1e-12)
    assert kappas["b"] == pytest.approx(0.5, abs=1e-12)
    assert kappas["c"] is None
    # The same as scikit-learn's kappa of the yes/no ratings.
    yes_first = [int("b" in s) for s in first[:4]]
    yes_second = [int("b" in s) for s in second[:4]]
    assert kappas["b"] == pytest.approx(cohen_kappa_score(yes_first, yes_second), abs=1e-12)


def test_per_label_kappa_needs_aligned_answers_and_shared_items() -> None:
    assert per_label_kappa([{"a"}], [None], ["a"]) == {"a": None}
    with pytest.raises(InvalidDataError, match="aligned by item, got 2 and 1"):
        per_label_kappa([{"a"}, {"a"}], [{"a"}], ["a"])
