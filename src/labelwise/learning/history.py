"""The record of an active-learning run: one :class:`Round` per query-and-label cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelwise.learning.evaluate import Metrics
from labelwise.learning.multilabel_metrics import MultiLabelMetrics

__all__ = ["Round"]


@dataclass(frozen=True)
class Round:
    """What happened in one round.

    Attributes
    ----------
    index : int
        0 for the initial (seed) set, then 1, 2, ...
    n_labels : int
        Labels known after this round.
    queried : int array
        Pool indices labeled in this round.
    kinds : tuple of str
        Each queried item's reason kind ("strategy", "exploration", "routine", "cold-start").
    metrics : Metrics, MultiLabelMetrics or None
        Holdout scores of the model fitted after this round (None without a holdout, or while
        fewer than two classes are labeled); MultiLabelMetrics in a multi-label run.
    stop_set_agreement : float or None
        Cohen's kappa between this round's and the previous round's predictions on the stop set.
    fit_seconds, query_seconds : float
        Time spent fitting after the round and choosing its batch.
    """

    index: int
    n_labels: int
    queried: NDArray[np.intp]
    kinds: tuple[str, ...]
    metrics: Metrics | MultiLabelMetrics | None = None
    stop_set_agreement: float | None = None
    fit_seconds: float = 0.0
    query_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (metrics without the per-class breakdown's objects)."""
        return {
            "round": self.index,
            "labels": self.n_labels,
            "queried": [int(i) for i in self.queried],
            "kinds": list(self.kinds),
            "metrics": self.metrics.to_dict() if self.metrics else None,
            "stop_set_agreement": self.stop_set_agreement,
            "fit_seconds": self.fit_seconds,
            "query_seconds": self.query_seconds,
        }
