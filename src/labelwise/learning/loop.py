"""The active-learning loop with an oracle: seed → query → label → fit → evaluate → stop?

The oracle is anything that answers labels for pool indices: a :class:`GroundTruthOracle` replays
a labeled dataset (with optional label noise) for simulations; the labeling app plays the same
role with human experts, asynchronously.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidParameterError
from labelwise.learning.history import Round
from labelwise.learning.learner import ActiveLearner
from labelwise.learning.stopping import Budget, StoppingCriterion, first_stop, prediction_agreement
from labelwise.pool import take_rows
from labelwise.strategies.query import as_generator

__all__ = ["GroundTruthOracle", "Oracle", "RunResult", "run_active_learning"]


class Oracle(Protocol):
    """Answers the labels of pool indices."""

    def __call__(self, indices: NDArray[np.intp]) -> NDArray[Any]: ...


class GroundTruthOracle:
    """Answers from known labels; with probability ``noise`` a wrong class instead.

    Parameters
    ----------
    y : array-like of shape (n_items,)
        The true label of every pool item.
    noise : float in [0, 1)
        Chance that an answer is replaced by a different class, drawn uniformly.
    random_state : int, Generator or None
    """

    def __init__(
        self,
        y: ArrayLike,
        *,
        noise: float = 0.0,
        random_state: int | np.random.Generator | None = None,
    ):
        if not 0.0 <= noise < 1.0:
            raise InvalidParameterError(f"noise must be in [0, 1), got {noise}")
        self.y = np.asarray(y)
        self.noise = noise
        self.classes = np.unique(self.y)
        self.rng = as_generator(random_state)
        self.n_answered = 0

    def __call__(self, indices: NDArray[np.intp]) -> NDArray[Any]:
        answers = self.y[indices].copy()
        self.n_answered += len(indices)
        if self.noise > 0 and len(self.classes) > 1:
            flip = self.rng.random(len(answers)) < self.noise
            for i in np.flatnonzero(flip):
                others = self.classes[self.classes != answers[i]]
                answers[i] = others[self.rng.integers(len(others))]
        return answers


@dataclass(frozen=True)
class RunResult:
    """The rounds of a finished run and why it stopped."""

    rounds: tuple[Round, ...]
    stopped_because: str

    def curve(self, metric: str) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """(labels, scores) of the rounds that have holdout metrics."""
        pts = [(r.n_labels, r.metrics.get(metric)) for r in self.rounds if r.metrics is not None]
        return (
            np.asarray([p[0] for p in pts], dtype=np.int64),
            np.asarray([p[1] for p in pts], dtype=np.float64),
        )


def run_active_learning(
    learner: ActiveLearner,
    oracle: Oracle,
    *,
    initial: int = 20,
    initial_method: str = "random",
    X_test: Any = None,
    y_test: ArrayLike | None = None,
    stopping: Sequence[StoppingCriterion] = (),
    stop_set_size: int = 0,
    max_rounds: int | None = None,
    on_round: Callable[[Round], None] | None = None,
) -> RunResult:
    """Run the loop until a stopping criterion fires or the pool is exhausted.

    Parameters
    ----------
    learner : ActiveLearner
        Its pool should hold no labels yet (labels already there count toward the budget).
    oracle : Oracle
    initial : int
        Size of the seed set.
    initial_method : {"random", "typical"}
        How the seed set is chosen (:meth:`ActiveLearner.initial_batch`).
    X_test, y_test : holdout, optional
        Evaluated after every round when given.
    stopping : sequence of StoppingCriterion
        A :class:`Budget` among them also caps the last batch, so the budget is hit exactly.
    stop_set_size : int
        Size of a random unlabeled stop set on which successive models' predictions are
        compared (for :class:`~labelwise.learning.stopping.StabilizingPredictions`); 0 for none.
    max_rounds : int, optional
    on_round : callable, optional
        Called with each :class:`Round` as it completes (progress reporting).
    """
    if (X_test is None) != (y_test is None):
        raise InvalidParameterError("give both X_test and y_test, or neither")
    budget = min((c.max_labels for c in stopping if isinstance(c, Budget)), default=None)
    stop_rows = _stop_set(learner, stop_set_size)
    previous_pred: NDArray[Any] | None = None
    rounds: list[Round] = []

    def record(queried: NDArray[np.intp], kinds: tuple[str, ...], query_seconds: float) -> None:
        nonlocal previous_pred
        agreement = None
        if stop_rows is not None and learner.estimator_ is not None:
            pred = np.asarray(learner.predict(take_rows(learner.pool.X, stop_rows)))
            if previous_pred is not None:
                agreement = prediction_agreement(previous_pred, pred)
            previous_pred = pred
        metrics = (
            learner.evaluate(X_test, y_test) if X_test is not None and y_test is not None else None
        )
        rnd = Round(
            index=len(rounds),
            n_labels=learner.pool.n_labeled,
            queried=queried,
            kinds=kinds,
            metrics=metrics,
            stop_set_agreement=agreement,
            fit_seconds=learner.last_fit_seconds,
            query_seconds=query_seconds,
        )
        rounds.append(rnd)
        if on_round is not None:
            on_round(rnd)

    n_initial = min(initial, budget) if budget is not None else initial
    seed = learner.initial_batch(n_initial, method=initial_method)
    learner.teach(seed.indices, oracle(seed.indices))
    record(seed.indices, seed.kinds, 0.0)

    while True:
        reason = first_stop(stopping, rounds)
        if reason is not None:
            return RunResult(tuple(rounds), reason)
        remaining = learner.pool.n_items - learner.pool.n_labeled
        if remaining == 0:
            return RunResult(tuple(rounds), "pool exhausted: every item is labeled")
        if max_rounds is not None and len(rounds) > max_rounds:
            return RunResult(tuple(rounds), f"reached {max_rounds} rounds")
        size = min(learner.batch_size, remaining)
        if budget is not None:
            size = min(size, budget - learner.pool.n_labeled)
        start = time.perf_counter()
        batch = learner.query(size)
        query_seconds = time.perf_counter() - start
        learner.teach(batch.indices, oracle(batch.indices))
        record(batch.indices, batch.kinds, query_seconds)


def _stop_set(learner: ActiveLearner, size: int) -> NDArray[np.intp] | None:
    if size <= 0:
        return None
    unlabeled = learner.pool.unlabeled
    # A spawned generator: asking for a stop set does not change which items get queried.
    rng = learner.rng.spawn(1)[0]
    return np.sort(rng.choice(unlabeled, size=min(size, len(unlabeled)), replace=False))
