"""Stopping criteria: when is labeling more no longer worth it?

Each criterion looks at the history of rounds and returns a reason to stop, or ``None``:

- :class:`Budget`: a fixed number of labels is reached;
- :class:`Plateau`: the holdout metric has not improved by ``min_delta`` for ``patience`` rounds;
- :class:`StabilizingPredictions`: successive models agree on an unlabeled stop set (Cohen's
  kappa at least ``threshold`` over ``window`` rounds; Bloodgood & Vijay-Shanker 2009). It needs
  no labels beyond those being collected, so it also works without a holdout.
- :class:`ExpectedGain`: a learning curve ``a − b·n^(−c)`` fitted to the scores so far predicts
  that the next ``more`` labels gain less than ``min_gain`` (:func:`fit_learning_curve`).

Besides ``check`` on rounds, :class:`Plateau`, :class:`StabilizingPredictions` and
:class:`ExpectedGain` answer on plain sequences of scores, agreements and label counts
(``improvement``/``flat``, ``stable``, ``forecast``): the project dashboard, whose versions are
rows in a database rather than rounds, asks them the same questions, so there is one rule.

A criterion's ``metric`` is a single-label name (``METRIC_NAMES``) or a multi-label one
(``MULTI_LABEL_METRIC_NAMES``); ``macro_f1``, the default, is both, so the same criterion stops a
multi-label run on its macro-F1 over the labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import cohen_kappa_score

from labelwise.exceptions import InvalidParameterError
from labelwise.learning.evaluate import METRIC_NAMES
from labelwise.learning.history import Round
from labelwise.learning.multilabel_metrics import MULTI_LABEL_METRIC_NAMES

__all__ = [
    "Budget",
    "ExpectedGain",
    "GainForecast",
    "LearningCurveFit",
    "Plateau",
    "StabilizingPredictions",
    "StoppingCriterion",
    "first_stop",
    "fit_learning_curve",
    "prediction_agreement",
]

#: Every metric a criterion may watch: single-label and multi-label summary scores.
_METRICS = tuple(dict.fromkeys(METRIC_NAMES + MULTI_LABEL_METRIC_NAMES))


def _check_metric(metric: str) -> None:
    """Refuse a metric no run records."""
    if metric not in _METRICS:
        raise InvalidParameterError(
            f"unknown metric {metric!r}; expected one of {', '.join(_METRICS)}"
        )


def _points(history: Sequence[Round], metric: str) -> list[tuple[int, float]]:
    """(labels, score) of the rounds with holdout metrics; a clear error when the run's kind
    (single- or multi-label) has no such metric."""
    try:
        return [(r.n_labels, r.metrics.get(metric)) for r in history if r.metrics is not None]
    except KeyError as exc:
        raise InvalidParameterError(f"this run has no metric {metric!r}: {exc.args[0]}") from None


class StoppingCriterion(Protocol):
    """Says why to stop given the rounds so far, or ``None`` to go on."""

    def check(self, history: Sequence[Round]) -> str | None: ...


@dataclass(frozen=True)
class Budget:
    """Stop once ``max_labels`` labels are known."""

    max_labels: int

    def __post_init__(self) -> None:
        if self.max_labels < 1:
            raise InvalidParameterError(f"max_labels must be positive, got {self.max_labels}")

    def check(self, history: Sequence[Round]) -> str | None:
        if history and history[-1].n_labels >= self.max_labels:
            return f"budget reached: {history[-1].n_labels} of {self.max_labels} labels"
        return None


@dataclass(frozen=True)
class Plateau:
    """Stop when the holdout ``metric`` has not beaten its best by ``min_delta`` for ``patience``
    rounds."""

    metric: str = "macro_f1"
    patience: int = 3
    min_delta: float = 0.005

    def __post_init__(self) -> None:
        _check_metric(self.metric)
        if self.patience < 1:
            raise InvalidParameterError(f"patience must be at least 1, got {self.patience}")
        if self.min_delta < 0:
            raise InvalidParameterError(f"min_delta must be non-negative, got {self.min_delta}")

    def improvement(self, scores: Sequence[float]) -> float | None:
        """The best of the last ``patience`` scores minus the best before them; None while there
        are no more than ``patience`` scores (nothing to compare with yet)."""
        if len(scores) <= self.patience:
            return None
        return max(scores[-self.patience :]) - max(scores[: -self.patience])

    def flat(self, scores: Sequence[float]) -> bool:
        """Whether the last ``patience`` scores failed to beat the best before them by
        ``min_delta``: the plateau :meth:`check` stops on."""
        if len(scores) <= self.patience:
            return False
        return max(scores[-self.patience :]) < max(scores[: -self.patience]) + self.min_delta

    def check(self, history: Sequence[Round]) -> str | None:
        scores = [score for _, score in _points(history, self.metric)]
        if self.flat(scores):
            return (
                f"plateau: {self.metric} gained less than {self.min_delta} over the last "
                f"{self.patience} rounds (best {max(scores):.4f})"
            )
        return None


@dataclass(frozen=True)
class StabilizingPredictions:
    """Stop when successive models' predictions on the stop set agree (kappa ≥ ``threshold``)
    for ``window`` rounds in a row."""

    threshold: float = 0.99
    window: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise InvalidParameterError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.window < 1:
            raise InvalidParameterError(f"window must be at least 1, got {self.window}")

    def stable(self, agreements: Sequence[float | None]) -> bool:
        """Whether the last ``window`` agreements (kappa of each model with its predecessor,
        None where there was none) all reach ``threshold``."""
        recent = agreements[-self.window :]
        if len(recent) < self.window:
            return False
        return all(k is not None and k >= self.threshold for k in recent)

    def check(self, history: Sequence[Round]) -> str | None:
        if self.stable([r.stop_set_agreement for r in history]):
            return (
                f"predictions stabilized: agreement on the stop set ≥ {self.threshold} "
                f"for {self.window} rounds"
            )
        return None


@dataclass(frozen=True)
class LearningCurveFit:
    """``score(n) = asymptote − scale · n^(−rate)``: an inverse power law, the usual shape of a
    learning curve (Figueroa et al. 2012), fitted to the scores seen so far."""

    asymptote: float
    scale: float
    rate: float
    n_points: int

    def predict(self, n: ArrayLike) -> np.ndarray:
        return self.asymptote - self.scale * np.power(np.asarray(n, dtype=np.float64), -self.rate)

    def expected_gain(self, n: int, more: int = 100) -> float:
        """Predicted score after ``n + more`` labels minus after ``n``."""
        return float(self.predict(n + more) - self.predict(n))


def fit_learning_curve(
    labels: ArrayLike, scores: ArrayLike, *, min_points: int = 4, upper: float = 1.0
) -> LearningCurveFit | None:
    """Least-squares fit of :class:`LearningCurveFit` to ``(labels, score)`` points.

    The asymptote is kept in ``[0, upper]`` (scores are accuracies or F1), the scale
    non-negative and the rate in ``(0, 3]``, so the curve rises and flattens. Returns None with
    fewer than ``min_points`` distinct label counts or when the fit does not converge: no
    extrapolation is better than a wild one.
    """
    from scipy.optimize import curve_fit

    n = np.asarray(labels, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(n) & np.isfinite(y) & (n > 0)
    n, y = n[keep], y[keep]
    if len(np.unique(n)) < min_points:
        return None

    def curve(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a - b * np.power(x, -c)

    start = (min(float(y.max()), upper), max(float(y.max() - y.min()), 1e-3) * n.min() ** 0.5, 0.5)
    try:
        (a, b, c), _ = curve_fit(
            curve, n, y, p0=start, bounds=([0.0, 0.0, 1e-3], [upper, np.inf, 3.0]), maxfev=5000
        )
    except (RuntimeError, ValueError):
        return None
    return LearningCurveFit(float(a), float(b), float(c), len(n))


@dataclass(frozen=True)
class GainForecast:
    """What a fitted learning curve says of the next labels.

    Attributes
    ----------
    fit : LearningCurveFit
        The curve fitted to the scores so far.
    at : int
        The label count the forecast starts from.
    more : int
        How many more labels it looks ahead.
    gain : float
        The score the curve predicts after ``at + more`` labels minus after ``at``.
    flat : bool
        Whether ``gain`` falls short of the criterion's ``min_gain``: a reason to stop.
    """

    fit: LearningCurveFit
    at: int
    more: int
    gain: float
    flat: bool


@dataclass(frozen=True)
class ExpectedGain:
    """Stop when the fitted learning curve of ``metric`` says the next ``more`` labels gain less
    than ``min_gain``."""

    metric: str = "macro_f1"
    more: int = 100
    min_gain: float = 0.005
    min_points: int = 4

    def __post_init__(self) -> None:
        _check_metric(self.metric)
        if self.more < 1 or self.min_gain < 0 or self.min_points < 3:
            raise InvalidParameterError(
                "more must be positive, min_gain non-negative and min_points at least 3"
            )

    def forecast(
        self, labels: Sequence[float], scores: Sequence[float | None], at: int | None = None
    ) -> GainForecast | None:
        """The curve fitted to ``(labels, scores)`` and its gain over the next ``more`` labels
        from ``at`` (default: the last label count); None with fewer than ``min_points``
        distinct label counts or when the fit fails."""
        if not labels:
            return None
        y = np.asarray(scores, dtype=np.float64)
        fit = fit_learning_curve(labels, y, min_points=self.min_points)
        if fit is None:
            return None
        start = int(labels[-1]) if at is None else at
        gain = fit.expected_gain(start, self.more)
        return GainForecast(fit, start, self.more, gain, gain < self.min_gain)

    def check(self, history: Sequence[Round]) -> str | None:
        points = _points(history, self.metric)
        forecast = self.forecast([n for n, _ in points], [y for _, y in points])
        if forecast is not None and forecast.flat:
            return (
                f"expected gain: the fitted learning curve predicts {forecast.gain:+.4f} "
                f"{self.metric} from the next {self.more} labels"
            )
        return None


def prediction_agreement(previous: ArrayLike, current: ArrayLike) -> float:
    """Cohen's kappa between two models' predictions on the same rows.

    Identical predictions count as full agreement even when they are all one class (where kappa
    itself is undefined).
    """
    a, b = np.asarray(previous), np.asarray(current)
    if np.array_equal(a, b):
        return 1.0
    return float(cohen_kappa_score(a, b))


def first_stop(criteria: Sequence[StoppingCriterion], history: Sequence[Round]) -> str | None:
    """The first criterion's reason to stop, or ``None``."""
    for criterion in criteria:
        reason = criterion.check(history)
        if reason is not None:
            return reason
    return None
