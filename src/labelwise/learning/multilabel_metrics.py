"""Multi-label evaluation on a holdout: micro and macro F1, per-label scores, Hamming loss and
subset accuracy, with 95 % intervals.

Label sets are indicator matrices of shape ``(n_samples, n_labels)`` (see
:func:`labelwise.models.multilabel.check_indicator`). The conventions are scikit-learn's with
``zero_division=0``: a precision, recall or F1 whose denominator is 0 counts as 0, and the macro
average weighs every label given, a label absent from the holdout included (unlike the
single-label :func:`~labelwise.learning.evaluate.score_predictions`, which averages over the
classes present only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidDataError
from labelwise.learning.evaluate import ClassMetrics, wilson_interval
from labelwise.models.multilabel import check_indicator

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "MULTI_LABEL_METRIC_NAMES",
    "MultiLabelMetrics",
    "multilabel_scores",
]

#: The summary scores :meth:`MultiLabelMetrics.get` answers (higher is better for each).
MULTI_LABEL_METRIC_NAMES = ("macro_f1", "micro_f1", "subset_accuracy")

#: Bootstrap resamples behind the F1 intervals, and the seed that makes them reproducible.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
#: Resampled rows held in memory at once (resamples x items), bounding the bootstrap's memory.
_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class MultiLabelMetrics:
    """Holdout scores of multi-label predictions.

    Attributes
    ----------
    micro_f1 : float
        F1 of all (item, label) decisions pooled: ``2 TP / (2 TP + FP + FN)`` summed over labels.
    macro_f1 : float
        Mean of the per-label F1 over every label given.
    per_label : dict of str to ClassMetrics
        Per label name: precision, recall, F1 and support (items that truly carry it).
    hamming_loss : float
        Share of (item, label) decisions that are wrong.
    subset_accuracy : float
        Share of items whose whole predicted label set equals the true one.
    micro_f1_interval, macro_f1_interval : tuple of float
        95 % percentile-bootstrap intervals (``BOOTSTRAP_RESAMPLES`` resamples of the items
        with replacement, seed ``BOOTSTRAP_SEED``).
    subset_accuracy_interval : tuple of float
        95 % Wilson score interval of the subset accuracy (a binomial proportion over items).
    n_samples : int
        Items in the holdout.
    """

    micro_f1: float
    macro_f1: float
    per_label: dict[str, ClassMetrics]
    hamming_loss: float
    subset_accuracy: float
    micro_f1_interval: tuple[float, float]
    macro_f1_interval: tuple[float, float]
    subset_accuracy_interval: tuple[float, float]
    n_samples: int

    def get(self, name: str) -> float:
        """A summary score by name (one of ``MULTI_LABEL_METRIC_NAMES``), as
        :meth:`labelwise.learning.evaluate.Metrics.get` answers for single-label runs."""
        if name not in MULTI_LABEL_METRIC_NAMES:
            raise KeyError(
                f"unknown multi-label metric {name!r}; expected one of "
                f"{', '.join(MULTI_LABEL_METRIC_NAMES)}"
            )
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """The scores as plain dicts, lists and numbers."""
        return asdict(self)


def _ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    """``num / den`` elementwise, 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _f1s(
    tp: NDArray[np.float64], fp: NDArray[np.float64], fn: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Micro F1 (summed over the last axis) and macro F1 (mean of per-label F1) of counts whose
    last axis is the label."""
    micro = _ratio(2 * tp.sum(axis=-1), 2 * tp.sum(axis=-1) + fp.sum(axis=-1) + fn.sum(axis=-1))
    macro = _ratio(2 * tp, 2 * tp + fp + fn).mean(axis=-1)
    return micro, macro


def _bootstrap_f1(
    hits: NDArray[np.float64], false_pos: NDArray[np.float64], misses: NDArray[np.float64]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """95 % percentile intervals of micro and macro F1 over bootstrap resamples of the items.

    ``hits``, ``false_pos`` and ``misses`` are 0/1 matrices of shape (n_samples, n_labels)
    marking each item's true positives, false positives and false negatives.
    """
    n = hits.shape[0]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    micro = np.empty(BOOTSTRAP_RESAMPLES)
    macro = np.empty(BOOTSTRAP_RESAMPLES)
    block = max(1, _BLOCK_CELLS // n)
    for start in range(0, BOOTSTRAP_RESAMPLES, block):
        stop = min(BOOTSTRAP_RESAMPLES, start + block)
        draws = rng.integers(0, n, size=(stop - start, n))
        # weights[b, i]: how often item i was drawn in resample b
        weights = np.zeros((stop - start, n))
        np.add.at(weights, (np.arange(stop - start)[:, None], draws), 1.0)
        micro[start:stop], macro[start:stop] = _f1s(
            weights @ hits, weights @ false_pos, weights @ misses
        )
    return _percentiles(micro), _percentiles(macro)


def _percentiles(values: NDArray[np.float64]) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def multilabel_scores(
    Y_true: ArrayLike, Y_pred: ArrayLike, labels: Sequence[str]
) -> MultiLabelMetrics:
    """Metrics of predicted label sets against the true ones.

    Parameters
    ----------
    Y_true, Y_pred : array-like of shape (n_samples, n_labels)
        Indicator matrices of 0s and 1s: the truth and the predictions.
    labels : sequence of str
        The name of each column, distinct.

    Returns
    -------
    MultiLabelMetrics
        Point estimates, per-label scores and intervals (bootstrap for the F1s, Wilson for the
        subset accuracy).
    """
    yt = check_indicator(Y_true, name="Y_true")
    yp = check_indicator(Y_pred, name="Y_pred")
    if yt.shape != yp.shape:
        raise InvalidDataError(f"Y_true and Y_pred differ in shape: {yt.shape} and {yp.shape}")
    if yt.shape[0] == 0:
        raise InvalidDataError("cannot evaluate on an empty holdout")
    names = tuple(str(name) for name in labels)
    if len(names) != yt.shape[1]:
        raise InvalidDataError(f"{len(names)} label names given for {yt.shape[1]} columns")
    if len(set(names)) != len(names):
        raise InvalidDataError(f"label names must be distinct, got {list(names)}")
    t, p = yt.astype(bool), yp.astype(bool)
    hits = (t & p).astype(np.float64)
    false_pos = (~t & p).astype(np.float64)
    misses = (t & ~p).astype(np.float64)
    tp, fp, fn = hits.sum(axis=0), false_pos.sum(axis=0), misses.sum(axis=0)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    support = t.sum(axis=0)
    micro, macro = _f1s(tp, fp, fn)
    n = yt.shape[0]
    exact = int(np.all(t == p, axis=1).sum())
    micro_interval, macro_interval = _bootstrap_f1(hits, false_pos, misses)
    return MultiLabelMetrics(
        micro_f1=float(micro),
        macro_f1=float(macro),
        per_label={
            name: ClassMetrics(float(pi), float(ri), float(fi), int(si))
            for name, pi, ri, fi, si in zip(names, precision, recall, f1, support, strict=True)
        },
        hamming_loss=float(np.mean(t != p)),
        subset_accuracy=exact / n,
        micro_f1_interval=micro_interval,
        macro_f1_interval=macro_interval,
        subset_accuracy_interval=wilson_interval(exact, n),
        n_samples=n,
    )
