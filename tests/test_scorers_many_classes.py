"""Margin scoring with many classes: known values where a wrong pair of probabilities would show.

:func:`labelwise.strategies.scorers.margin` finds the two largest probabilities by a pass over the
columns up to 32 classes and by a partial sort beyond. Each row below is built so that every
plausible mistake gives a different number than the right one: the gap between the 2nd and 3rd
largest, the 1st and 3rd, the first two columns, or the two largest of a sort along the wrong axis.
"""

from __future__ import annotations

import numpy as np
import pytest

from labelwise import BatchMix, Pool
from labelwise.strategies import scorers
from labelwise.strategies.query import query

N_CLASSES = 40


def _row(tops: dict[int, float], n_classes: int = N_CLASSES) -> np.ndarray:
    """A probability row: ``tops`` (column of 40 -> probability, the column moved to the same
    relative place for another number of classes) and the rest shared evenly by the other
    columns, each share below every value in ``tops``."""
    row = np.zeros(n_classes)
    rest = 1.0 - sum(tops.values())
    others = n_classes - len(tops)
    row[:] = rest / others
    for column, p in tops.items():
        row[column * n_classes // N_CLASSES] = p
    assert np.count_nonzero(row != rest / others) == len(tops)  # no two columns moved together
    assert rest / others < min(tops.values())
    assert row.sum() == pytest.approx(1.0)
    return row


# The largest two in late, middle and first columns, never side by side, never first-two.
# Row 0: 0.30 (col 39), 0.22 (col 0), 0.20 (col 17): gap 0.08, margin 0.92.
#        (2nd - 3rd: 0.02 -> 0.98; 1st - 3rd: 0.10 -> 0.90.)
# Row 1: 0.45 (col 5), 0.15 (col 33), 0.14 (col 21), 0.13 (col 2): gap 0.30, margin 0.70.
# Row 2: two tied at 0.35 (cols 12 and 31): gap 0, margin 1.
# Row 3: certain: 1.0 in col 8, nothing else: gap 1, margin 0.
ROWS = [
    {39: 0.30, 0: 0.22, 17: 0.20},
    {5: 0.45, 33: 0.15, 21: 0.14, 2: 0.13},
    {12: 0.35, 31: 0.35},
]
EXPECTED = [0.92, 0.70, 1.0, 0.0]


def _matrix(n_classes: int = N_CLASSES) -> np.ndarray:
    certain = np.zeros(n_classes)
    certain[8 * n_classes // N_CLASSES] = 1.0
    return np.vstack([*(_row(r, n_classes) for r in ROWS), certain])


def test_margin_over_40_classes_is_one_minus_the_gap_of_the_top_two() -> None:
    np.testing.assert_allclose(scorers.margin(_matrix()), EXPECTED, atol=1e-12)


@pytest.mark.parametrize("n_classes", [32, 33, 64, 300])
def test_the_two_code_paths_agree_on_either_side_of_32_classes(n_classes: int) -> None:
    # 32 classes goes through the column pass, 33 and more through the partial sort.
    np.testing.assert_allclose(scorers.margin(_matrix(n_classes)), EXPECTED, atol=1e-12)


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_margin_over_40_classes_in_any_layout_and_precision(layout: str, dtype: type) -> None:
    p = np.asarray(_matrix(), dtype=dtype, order=layout)  # type: ignore[call-overload]
    got = scorers.margin(p)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, EXPECTED, atol=1e-6)


def test_margin_over_40_classes_does_not_change_its_input() -> None:
    p = _matrix()
    before = p.copy()
    scorers.margin(p)
    np.testing.assert_array_equal(p, before)


class _TableModel:
    """A fitted classifier stand-in whose probabilities for pool row ``i`` are ``table[i]``
    (the pool's one feature is the row number), so that the strategy sees known values."""

    def __init__(self, table: np.ndarray):
        self.table = table
        self.classes_ = np.array([f"c{j:02d}" for j in range(table.shape[1])], dtype=object)
        self.n_features_in_ = 1

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.table[np.asarray(X)[:, 0].astype(int)]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def test_the_margin_strategy_picks_the_smallest_gap_among_40_classes() -> None:
    """Three unlabeled rows, the right order being 0, 2, 1:

    - row 0: 0.40 and 0.39 on top (the rest 0.21 / 38 each): gap 0.01, margin 0.99;
    - row 1: 0.50, 0.30, 0.29: gap 0.20, margin 0.80, but its 2nd and 3rd differ by 0.01 only,
      so a margin of the 2nd and 3rd would pick it first;
    - row 2: 0.36, 0.33, 0.31: gap 0.03, margin 0.97.

    Rows 3 and 4 are labeled (two classes, so the model is used).
    """
    table = np.vstack(
        [
            _row({30: 0.40, 3: 0.39}),
            _row({11: 0.50, 36: 0.30, 0: 0.29}),
            _row({22: 0.36, 7: 0.33, 38: 0.31}),
            _row({1: 0.9}),
            _row({2: 0.9}),
        ]
    )
    pool = Pool(np.arange(len(table), dtype=float)[:, None])
    pool.label([3, 4], ["c01", "c02"])
    model = _TableModel(table)

    first = query(pool, model, strategy="margin", batch_size=1, random_state=0)
    assert first.indices.tolist() == [0]
    assert first.kinds == ("strategy",)

    batch = query(pool, model, strategy="margin", batch_size=3, mix=BatchMix(), random_state=0)
    assert sorted(batch.indices.tolist()) == [0, 1, 2]
    by_rank = sorted(zip(batch.reasons, batch.indices.tolist(), strict=True), key=_rank)
    assert [row for _, row in by_rank] == [0, 2, 1]
    assert [r.utility for r, _ in by_rank] == pytest.approx([0.99, 0.97, 0.80], abs=1e-12)


def _rank(pair: tuple) -> int:
    return int(pair[0].rank)
