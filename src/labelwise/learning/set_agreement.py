"""Agreement between annotators whose answers are label sets (multi-label projects).

- :func:`masi_distance`: how far apart two label sets are (Passonneau 2006), 0 for the same set,
  1 for disjoint sets;
- :func:`krippendorff_alpha`: Krippendorff's alpha over items answered by any number of coders
  (missing answers allowed), with the MASI distance between sets;
- :func:`per_label_kappa`: Cohen's kappa of two coders for each label, reading each label as a
  yes/no rating of every item both answered.

A label set is any collection of label names (a ``set``, ``frozenset``, list or tuple); its order
and repeats do not matter.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from labelwise.exceptions import InvalidDataError

__all__ = ["krippendorff_alpha", "masi_distance", "per_label_kappa"]

LabelSet = Collection[str]


def masi_distance(a: LabelSet, b: LabelSet) -> float:
    """The MASI distance between two label sets: ``1 - J * M``.

    ``J`` is the Jaccard similarity ``|a & b| / |a | b|`` and ``M`` the monotonicity weight: 1
    when the sets are equal, 2/3 when one is a subset of the other, 1/3 when they overlap
    otherwise, 0 when they are disjoint (Passonneau 2006). Two empty sets are the same set:
    distance 0.
    """
    x, y = frozenset(a), frozenset(b)
    if x == y:
        return 0.0
    union = len(x | y)
    common = len(x & y)
    if common == 0:
        return 1.0
    weight = 2 / 3 if (x <= y or y <= x) else 1 / 3
    return 1.0 - (common / union) * weight


def krippendorff_alpha(units: Sequence[Sequence[LabelSet | None]]) -> float | None:
    """Krippendorff's alpha of label sets with the MASI distance.

    Parameters
    ----------
    units : sequence of sequences
        One row per item, one entry per coder: that coder's label set, or None where the coder
        did not answer the item. Rows may differ in length.

    Returns
    -------
    float or None
        ``1 - D_o / D_e`` in the pairable-values form: only items with at least two answers
        count; ``D_o`` is the mean MASI distance between the answers given to the same item
        (each item's ordered pairs weighed by ``1 / (m_u - 1)``, ``m_u`` its answers, over
        ``n``, all pairable answers), ``D_e`` the mean distance between any two of the ``n``
        pairable answers, whatever their items. None when fewer than two answers are pairable
        or every pairable answer is the same set (``D_e = 0``: no variation to agree on).
    """
    pairable: list[list[frozenset[str]]] = []
    for row in units:
        values = [frozenset(v) for v in row if v is not None]
        if len(values) >= 2:
            pairable.append(values)
    n = sum(len(values) for values in pairable)
    if n < 2:
        return None
    observed = 0.0
    for values in pairable:
        within = sum(
            masi_distance(values[i], values[j])
            for i in range(len(values))
            for j in range(len(values))
            if i != j
        )
        observed += within / (len(values) - 1)
    observed /= n
    # Expected disagreement over every ordered pair of distinct pairable answers, counted by
    # distinct set (the number of distinct sets is small even when n is large).
    counts: dict[frozenset[str], int] = {}
    for values in pairable:
        for v in values:
            counts[v] = counts.get(v, 0) + 1
    sets = list(counts)
    expected = sum(
        counts[x] * counts[y] * masi_distance(x, y) for x in sets for y in sets if x != y
    ) / (n * (n - 1))
    if expected == 0:
        return None
    return 1.0 - observed / expected


def per_label_kappa(
    first: Sequence[LabelSet | None], second: Sequence[LabelSet | None], labels: Sequence[str]
) -> dict[str, float | None]:
    """Cohen's kappa of two coders for each label.

    Parameters
    ----------
    first, second : sequences of label sets
        Each coder's answer per item, aligned (None: that coder did not answer the item; such
        items are left out).
    labels : sequence of str
        The labels to score, in the order of the result.

    Returns
    -------
    dict of str to float or None
        Per label, ``(p_o - p_e) / (1 - p_e)`` over the items both coders answered, where
        ``p_o`` is the share of items both said yes or both said no to the label and ``p_e``
        the agreement expected from each coder's own share of yes. None when no item was
        answered by both, or when ``p_e = 1`` (both coders said the same, yes or no, to every
        item: kappa is 0 / 0).
    """
    if len(first) != len(second):
        raise InvalidDataError(
            f"the two coders' answers must be aligned by item, got {len(first)} and {len(second)}"
        )
    pairs = [
        (frozenset(a), frozenset(b))
        for a, b in zip(first, second, strict=True)
        if a is not None and b is not None
    ]
    out: dict[str, float | None] = {}
    n = len(pairs)
    for label in labels:
        if n == 0:
            out[label] = None
            continue
        yes_a = sum(label in a for a, _ in pairs) / n
        yes_b = sum(label in b for _, b in pairs) / n
        observed = sum((label in a) == (label in b) for a, b in pairs) / n
        chance = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
        out[label] = None if chance >= 1.0 else (observed - chance) / (1 - chance)
    return out
