"""Stopping criteria: when is labeling more no longer worth it?

Each criterion looks at the history of rounds and returns a reason to stop, or ``None``:

- :class:`Budget`: a fixed number of labels is reached;
- :class:`Plateau`: the holdout metric has not improved by ``min_delta`` for ``patience`` rounds;
- :class:`StabilizingPredictions`: successive models agree on an unlabeled stop set (Cohen's
  kappa at least ``threshold`` over ``window`` rounds; Bloodgood & Vijay-Shanker 2009). It needs
  no labels beyond those being collected, so it also works without a holdout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import cohen_kappa_score

from labelwise.evaluate import METRIC_NAMES
from labelwise.exceptions import InvalidParameterError
from labelwise.history import Round

__all__ = [
    "Budget",
    "Plateau",
    "StabilizingPredictions",
    "StoppingCriterion",
    "first_stop",
    "prediction_agreement",
]


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
        if self.metric not in METRIC_NAMES:
            raise InvalidParameterError(
                f"unknown metric {self.metric!r}; expected one of {', '.join(METRIC_NAMES)}"
            )
        if self.patience < 1:
            raise InvalidParameterError(f"patience must be at least 1, got {self.patience}")
        if self.min_delta < 0:
            raise InvalidParameterError(f"min_delta must be non-negative, got {self.min_delta}")

    def check(self, history: Sequence[Round]) -> str | None:
        scores = [r.metrics.get(self.metric) for r in history if r.metrics is not None]
        if len(scores) <= self.patience:
            return None
        best_before = max(scores[: -self.patience])
        recent = max(scores[-self.patience :])
        if recent < best_before + self.min_delta:
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

    def check(self, history: Sequence[Round]) -> str | None:
        kappas = [r.stop_set_agreement for r in history[-self.window :]]
        if len(kappas) < self.window or any(k is None for k in kappas):
            return None
        if all(k is not None and k >= self.threshold for k in kappas):
            return (
                f"predictions stabilized: agreement on the stop set ≥ {self.threshold} "
                f"for {self.window} rounds"
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
