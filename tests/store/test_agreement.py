"""Agreement between annotators: Fleiss' kappa
(:func:`labelwise.services.dashboard.fleiss_kappa`) on worked examples whose value is known, and
the dashboard's agreement figures on items two annotators labeled.

Every expected value is worked out by hand below, so that a wrong formula (a denominator of
``m * m`` instead of ``m * (m - 1)``, the expected agreement from one rater's marginals instead
of the pooled ones) fails here rather than showing a plausible number on the dashboard.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from labelwise.services.dashboard import dashboard, fleiss_kappa
from labelwise.store.projects import get_project

# Fleiss (1971), as worked on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters each,
# 5 categories; the published kappa is 0.210.
FLEISS_1971 = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ],
    dtype=float,
)


def test_the_fleiss_1971_example_gives_its_published_kappa() -> None:
    # By hand, with n = 10 subjects and m = 14 raters (140 ratings):
    #   column totals 20, 28, 39, 21, 32, so P_e = (20² + 28² + 39² + 21² + 32²) / 140²
    #                                            = 4170 / 19600 = 417 / 1960;
    #   sum over subjects of sum_j n_ij² = 196 + 60 + 70 + 94 + 74 + 98 + 58 + 46 + 66 + 66 = 828,
    #   so P̄ = (828 - n m) / (n m (m - 1)) = (828 - 140) / 1820 = 172 / 455;
    #   kappa = (P̄ - P_e) / (1 - P_e) = 4211 / 20059 = 0.20993...
    p_e = Fraction(417, 1960)
    p_bar = Fraction(172, 455)
    expected = (p_bar - p_e) / (1 - p_e)
    assert expected == Fraction(4211, 20059)
    kappa = fleiss_kappa(FLEISS_1971)
    assert kappa is not None
    assert kappa == pytest.approx(float(expected), abs=1e-12)
    assert round(kappa, 3) == 0.210  # the published figure


def test_rows_in_any_order_and_categories_in_any_order_give_the_same_kappa() -> None:
    shuffled = FLEISS_1971[::-1][:, [3, 0, 4, 1, 2]]
    assert fleiss_kappa(shuffled) == pytest.approx(4211 / 20059, abs=1e-12)


def test_two_raters_who_always_disagree_give_minus_one() -> None:
    # Every item split 1-1 over two categories: P_i = (1 + 1 - 2) / (2 * 1) = 0, so P̄ = 0;
    # each category holds half the ratings, P_e = 0.25 + 0.25 = 0.5; kappa = (0 - 0.5) / 0.5.
    counts = np.array([[1, 1], [1, 1], [1, 1], [1, 1]], dtype=float)
    assert fleiss_kappa(counts) == pytest.approx(-1.0, abs=1e-12)


def test_three_raters_worked_by_hand() -> None:
    # 4 items, 3 raters, 2 categories: (3, 0), (0, 3), (2, 1), (1, 2).
    # P_i = (9 - 3) / 6 = 1, 1, (4 + 1 - 3) / 6 = 1/3, 1/3  ->  P̄ = (8/3) / 4 = 2/3.
    # Category shares 6/12 and 6/12  ->  P_e = 1/2.  kappa = (2/3 - 1/2) / (1/2) = 1/3.
    counts = np.array([[3, 0], [0, 3], [2, 1], [1, 2]], dtype=float)
    assert fleiss_kappa(counts) == pytest.approx(1 / 3, abs=1e-12)


def test_perfect_agreement_is_one() -> None:
    # P̄ = 1 whatever the categories; with two categories used P_e = 0.5 < 1.
    counts = np.array([[3, 0, 0], [0, 3, 0], [3, 0, 0], [0, 0, 3]], dtype=float)
    assert fleiss_kappa(counts) == 1.0


def test_a_single_category_everyone_chose_is_full_agreement() -> None:
    # P_e = 1 makes kappa 0 / 0; every rater agreeing on every item counts as agreement.
    assert fleiss_kappa(np.array([[4], [4], [4]], dtype=float)) == 1.0
    assert fleiss_kappa(np.array([[2, 0], [2, 0], [2, 0]], dtype=float)) == 1.0


@pytest.mark.parametrize(
    "counts",
    [
        np.zeros((0, 3)),  # no items
        np.array([[1, 0], [0, 1]], dtype=float),  # one rater per item: no agreement to measure
        np.array([[2, 0], [1, 2]], dtype=float),  # unequal numbers of raters
    ],
    ids=["empty", "one-rater", "unequal-raters"],
)
def test_undefined_cases_are_none(counts: np.ndarray) -> None:
    assert fleiss_kappa(counts) is None


def test_the_dashboard_agreement_of_two_annotators(db: Any, store: Any) -> None:
    """Six items both annotators labeled, worked out by hand:

    ====  ====  ====
    item  a0    a1
    ====  ====  ====
    0     ham   ham
    1     ham   ham
    2     ham   spam
    3     ham   spam
    4     spam  spam
    5     spam  spam
    ====  ====  ====

    They agree on 4 of 6. Cohen's kappa uses each one's own shares: a0 says ham 4/6, a1 2/6, so
    chance agreement is (4/6)(2/6) + (2/6)(4/6) = 4/9 and kappa = (2/3 - 4/9) / (5/9) = 2/5.
    Fleiss' kappa pools the 12 answers (6 ham, 6 spam): chance agreement 1/2, and with P_i = 1
    on agreeing items and 0 on the others, P̄ = 2/3 and kappa = (2/3 - 1/2) / (1/2) = 1/3.
    """
    pid = store.project(7, overlap=1.0)
    ids = store.item_ids(pid)
    a, b = store.annotators(pid, 2)
    first = ["ham", "ham", "ham", "ham", "spam", "spam"]
    second = ["ham", "ham", "spam", "spam", "spam", "spam"]
    for item_id, x, y in zip(ids, first, second, strict=False):
        store.submit(pid, a, item_id, x)
        store.submit(pid, b, item_id, y)
    store.submit(pid, a, ids[6], "spam")  # one answer only: not shared, not counted
    # A changed answer counts as its latest value: a0 first says spam on item 0, then ham.
    store.submit(pid, a, ids[0], "spam")
    store.submit(pid, a, ids[0], "ham")
    with db.read() as s:
        agreement = dashboard(s, get_project(s, project_id=pid))["agreement"]
    assert agreement["items"] == 6
    assert agreement["percent_agreement"] == pytest.approx(4 / 6)
    assert agreement["fleiss_kappa"] == pytest.approx(1 / 3, abs=1e-12)
    [pair] = agreement["pairwise"]
    assert (pair["a"], pair["b"], pair["items"]) == ("a0", "a1", 6)
    assert pair["agreement"] == pytest.approx(4 / 6)
    assert pair["kappa"] == pytest.approx(2 / 5, abs=1e-12)
    assert agreement["per_annotator"] == {"a0": pytest.approx(4 / 6), "a1": pytest.approx(4 / 6)}
