"""The active learner: a pool, a strategy and a model refitted as labels arrive.

>>> learner = ActiveLearner(LogisticRegression(), X_pool, strategy="margin", random_state=0)
>>> seed = learner.initial_batch(20)
>>> learner.teach(seed.indices, y_pool[seed.indices])
>>> batch = learner.query(10)             # indices and reasons
>>> learner.teach(batch.indices, labels)  # refits a clone of the estimator
>>> learner.evaluate(X_test, y_test).macro_f1

The caller's estimator is a template: each fit works on a fresh clone, stored as
``estimator_``. Labels are taught by pool index; the pool is never copied. A template that
scales its columns with the pool's statistics (the named models of :mod:`labelwise.models.registry`,
see :class:`~labelwise.features.scaling.PoolScaler`) gets them from this pool.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from threadpoolctl import threadpool_limits

from labelwise.exceptions import InvalidDataError, InvalidParameterError, PoolExhaustedError
from labelwise.features.scaling import fit_to_pool
from labelwise.learning.evaluate import Metrics, evaluate
from labelwise.models.registry import DEFAULT_CHUNK_SIZE
from labelwise.models.semi import fit_model, unlabeled_sample
from labelwise.pool import Pool, take_rows
from labelwise.strategies.base import Strategy
from labelwise.strategies.factory import make_strategy
from labelwise.strategies.query import TYPICAL_SUMMARY, Batch, BatchMix, Reason, as_generator, query
from labelwise.strategies.selectors import typical_points

__all__ = ["ActiveLearner"]

# Fits on fewer cells than this run with one BLAS thread: for small problems extra threads cost
# more in synchronisation than they save (measured 13-40x slower with two threads on 2 cores).
_SMALL_FIT_CELLS = 2_000_000


class ActiveLearner:
    """Pool-based active learning around any scikit-learn classifier.

    Parameters
    ----------
    estimator : classifier
        Unfitted template; never modified.
    X : matrix of shape (n_items, n_features)
        The pool (dense, memory-mapped or sparse); kept by reference, validated once.
    strategy : str or Strategy, default "default"
    batch_size : int, default 10
        Items per :meth:`query` unless the call says otherwise.
    mix : BatchMix, optional
        Exploration and routine shares of each batch.
    classes : sequence, optional
        Every label value that may occur (fixes their order in reports).
    random_state : int, Generator or None
    chunk_size : int
        Rows scored at once.

    Attributes
    ----------
    pool : Pool
    estimator_ : fitted classifier or None
        Fitted on the labeled set; None until two classes are labeled.
    """

    def __init__(
        self,
        estimator: Any,
        X: Any,
        *,
        strategy: str | Strategy = "default",
        batch_size: int = 10,
        mix: BatchMix | None = None,
        classes: Any = None,
        random_state: int | np.random.Generator | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ):
        if not hasattr(estimator, "fit"):
            raise InvalidParameterError(
                f"estimator must be a scikit-learn classifier, got {type(estimator).__name__}"
            )
        self.estimator = estimator
        self.pool = Pool(X, classes=classes)
        # What every fit clones: the caller's estimator with the pool's column statistics.
        self._template = fit_to_pool(estimator, self.pool.X)
        self.strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
        self.batch_size = batch_size
        self.mix = mix or BatchMix()
        self.chunk_size = chunk_size
        self.rng = as_generator(random_state)
        self.estimator_: Any = None
        self.last_fit_seconds = 0.0
        # Items handed out as uniformly random picks (seed set, exploration): an unbiased sample.
        self._random_picks: set[int] = set()

    def initial_batch(self, size: int, *, method: str = "random") -> Batch:
        """A seed set of ``size`` unlabeled items, before any model.

        ``method`` "random": a uniform sample (an unbiased one: the adaptive strategy and the
        accuracy estimate may use it). "typical": TypiClust's choice, the most typical item of
        each of ``size`` k-means clusters of the pool (:func:`labelwise.strategies.selectors.
        typical_points`), which covers the pool's regions better at low budgets.
        """
        unlabeled = self.pool.unlabeled
        if size < 1:
            raise InvalidParameterError(f"initial size must be at least 1, got {size}")
        if size > len(unlabeled):
            raise PoolExhaustedError(
                f"asked for {size} initial items but only {len(unlabeled)} are unlabeled"
            )
        if method == "typical":
            rows = typical_points(take_rows(self.pool.X, unlabeled), size, self.rng)
            picks = unlabeled[rows]
            reason = Reason("typical", "initial", TYPICAL_SUMMARY)
            return Batch(picks.astype(np.intp), (reason,) * size)
        if method != "random":
            raise InvalidParameterError(
                f"initial method must be 'random' or 'typical', got {method!r}"
            )
        picks = self.rng.choice(unlabeled, size=size, replace=False)
        reason = Reason("exploration", "initial", "random pick for the initial labeled set")
        self._random_picks.update(int(i) for i in picks)
        return Batch(picks.astype(np.intp), (reason,) * size)

    def query(self, batch_size: int | None = None) -> Batch:
        """The next batch to label (see :func:`labelwise.strategies.query.query`)."""
        labeled = self.pool.labeled_mask
        sample = np.asarray(sorted(i for i in self._random_picks if labeled[i]), dtype=np.intp)
        batch = query(
            self.pool,
            self.estimator_,
            strategy=self.strategy,
            batch_size=self.batch_size if batch_size is None else batch_size,
            mix=self.mix,
            random_state=self.rng,
            estimator=self._template,
            chunk_size=self.chunk_size,
            random_sample=sample,
        )
        self._random_picks.update(
            int(i)
            for i, kind in zip(batch.indices, batch.kinds, strict=True)
            if kind in ("exploration", "cold-start")
        )
        return batch

    def teach(self, indices: ArrayLike, labels: ArrayLike, *, refit: bool = True) -> None:
        """Record labels for pool ``indices`` and, by default, refit the model."""
        self.pool.label(indices, np.asarray(labels, dtype=object).tolist())
        if refit:
            self.fit()

    def fit(self) -> ActiveLearner:
        """Fit a fresh clone of the estimator on the labeled set (None with < 2 classes)."""
        labeled = self.pool.labeled
        y = self.pool.labels_of(labeled)
        if len(np.unique(y)) < 2:
            self.estimator_ = None
            return self
        X_lab = take_rows(self.pool.X, labeled)
        extra = unlabeled_sample(self._template, self.pool.unlabeled, self.rng)
        unlabeled = take_rows(self.pool.X, extra) if len(extra) else None
        start = time.perf_counter()
        cells = X_lab.shape[0] * X_lab.shape[1]
        with threadpool_limits(limits=1 if cells < _SMALL_FIT_CELLS else None):
            self.estimator_ = fit_model(self._template, X_lab, y, unlabeled)
        self.last_fit_seconds = time.perf_counter() - start
        return self

    def evaluate(self, X: Any, y: ArrayLike) -> Metrics | None:
        """Holdout metrics of the current model, or None before two classes are labeled."""
        if self.estimator_ is None:
            return None
        known = set(np.asarray(y).tolist()) | set(self.pool.classes.tolist())
        try:
            labels = sorted(known)
        except TypeError:
            raise InvalidDataError(
                f"holdout labels and pool labels are of different types: {sorted(map(repr, known))}"
            ) from None
        return evaluate(self.estimator_, X, y, labels=labels)

    def predict(self, X: Any) -> Any:
        if self.estimator_ is None:
            raise InvalidParameterError("no model yet: label items of at least two classes")
        return self.estimator_.predict(X)
