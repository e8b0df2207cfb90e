"""Evaluation on a holdout: accuracy, balanced accuracy, macro and per-class precision/recall/F1;
and the area under the budget curve (AUBC) that summarises a learning curve in one number."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from labelwise.exceptions import InvalidDataError

__all__ = ["ClassMetrics", "Metrics", "aubc", "evaluate", "score_predictions", "wilson_interval"]

METRIC_NAMES = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1")


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall and F1 of one class, with its support (true items in the holdout)."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Metrics:
    """Holdout scores of one model. Macro averages weigh every class equally."""

    accuracy: float
    balanced_accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    n_samples: int

    def get(self, name: str) -> float:
        """A summary metric by name (one of ``METRIC_NAMES``)."""
        if name not in METRIC_NAMES:
            raise KeyError(f"unknown metric {name!r}; expected one of {', '.join(METRIC_NAMES)}")
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_predictions(
    y_true: ArrayLike, y_pred: ArrayLike, *, labels: Sequence[Any] | None = None
) -> Metrics:
    """Metrics of predictions against the truth.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    labels : sequence, optional
        Every class to report (so a class the model never predicts still counts, with zeros);
        defaults to the union of both arrays.
    """
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.shape != yp.shape or yt.ndim != 1:
        raise InvalidDataError(
            f"y_true and y_pred must be 1-D of equal length, got {yt.shape} and {yp.shape}"
        )
    if len(yt) == 0:
        raise InvalidDataError("cannot evaluate on an empty holdout")
    classes = np.asarray(labels) if labels is not None else np.unique(np.concatenate([yt, yp]))
    p, r, f, s = precision_recall_fscore_support(
        yt, yp, labels=classes, average=None, zero_division=0.0
    )
    # Macro averages over the classes present in the truth: a class absent from the holdout has
    # no recall to average.
    present = s > 0
    return Metrics(
        accuracy=float(accuracy_score(yt, yp)),
        balanced_accuracy=float(np.mean(r[present])) if present.any() else 0.0,
        macro_precision=float(np.mean(p[present])) if present.any() else 0.0,
        macro_recall=float(np.mean(r[present])) if present.any() else 0.0,
        macro_f1=float(np.mean(f[present])) if present.any() else 0.0,
        per_class={
            str(c): ClassMetrics(float(pi), float(ri), float(fi), int(si))
            for c, pi, ri, fi, si in zip(classes, p, r, f, s, strict=True)
        },
        n_samples=len(yt),
    )


def evaluate(model: Any, X: Any, y: ArrayLike, *, labels: Sequence[Any] | None = None) -> Metrics:
    """Metrics of a fitted ``model`` on the holdout ``(X, y)``."""
    y_true = np.asarray(y)
    return score_predictions(y_true, np.asarray(model.predict(X)), labels=labels)


def aubc(scores: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Area under the budget curve, normalised to the score scale (1.0 = perfect throughout).

    Parameters
    ----------
    scores : array-like of shape (n_points,)
        The metric after each round.
    labels : array-like of shape (n_points,), optional
        Labels used at each point. When given, the trapezoid area over ``labels`` is divided
        by the label range; when omitted, points are taken as equally spaced and the area
        ``trapz(scores, dx=1)`` is divided by ``n_points`` -- the definition of Lu et al. (2023)
        for one query per round, with the initial model's score excluded by the caller.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise InvalidDataError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    if labels is None:
        return float(np.trapezoid(s, dx=1.0) / len(s)) if len(s) > 1 else float(s[0])
    x = np.asarray(labels, dtype=np.float64)
    if x.shape != s.shape:
        raise InvalidDataError(f"labels shape {x.shape} does not match scores {s.shape}")
    span = x[-1] - x[0]
    if span <= 0:
        return float(s.mean())
    return float(np.trapezoid(s, x) / span)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion ((0, 1) when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
