"""The active learner: a pool, a strategy and a model refitted as labels arrive.

>>> learner = ActiveLearner(LogisticRegression(), X_pool, strategy="margin", random_state=0)
>>> seed = learner.initial_batch(20)
>>> learner.teach(seed.indices, y_pool[seed.indices])
>>> batch = learner.query(10)             # indices and reasons
>>> learner.teach(batch.indices, labels)  # refits a clone of the estimator
>>> learner.evaluate(X_test, y_test).macro_f1

With ``multi_label=True`` an item's label is a set of the labels ``classes`` names, possibly
empty: answers are taught as lists of names or ``;``-joined strings and kept in their canonical
form (:mod:`labelwise.label_sets`), the estimator is the per-label template of a
:class:`~labelwise.models.multilabel.LabelSetClassifier`, the strategy comes from the
multi-label names and :meth:`ActiveLearner.evaluate` gives
:class:`~labelwise.learning.multilabel_metrics.MultiLabelMetrics` (micro and macro F1, per
label, Hamming loss, subset accuracy).

The caller's estimator is a template: each fit works on a fresh clone, stored as
``estimator_``. Labels are taught by pool index; the pool is never copied. A template that
scales its columns with the pool's statistics (the named models of :mod:`labelwise.models.registry`,
see :class:`~labelwise.features.scaling.PoolScaler`) gets them from this pool.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike
from threadpoolctl import threadpool_limits

from labelwise.exceptions import InvalidDataError, InvalidParameterError, PoolExhaustedError
from labelwise.features.scaling import fit_to_pool
from labelwise.learning.evaluate import Metrics, evaluate
from labelwise.learning.multilabel_eval import canonical_sets, evaluate_label_sets
from labelwise.learning.multilabel_metrics import MultiLabelMetrics
from labelwise.models.multilabel import LabelSetClassifier
from labelwise.models.registry import DEFAULT_CHUNK_SIZE
from labelwise.models.semi import fit_model, unlabeled_sample
from labelwise.pool import Pool, check_labels, take_rows
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
        Every label value that may occur (fixes their order in reports). For a multi-label
        learner, required: the labels an item's set is drawn from, in order.
    multi_label : bool, default False
        Items carry sets of labels (see the module's notes).
    random_state : int, Generator or None
    chunk_size : int
        Rows scored at once.

    Attributes
    ----------
    pool : Pool
    estimator_ : fitted classifier or None
        Fitted on the labeled set; None until two classes (for multi-label, two different
        label sets) are labeled.
    labels : tuple of str
        Multi-label: the labels, in order; empty for a single-label learner.
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
        multi_label: bool = False,
        random_state: int | np.random.Generator | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ):
        if not hasattr(estimator, "fit"):
            raise InvalidParameterError(
                f"estimator must be a scikit-learn classifier, got {type(estimator).__name__}"
            )
        self.estimator = estimator
        self.multi_label = bool(multi_label)
        self.labels: tuple[str, ...] = ()
        if self.multi_label:
            self.labels = _multi_label_names(classes)
            if not getattr(estimator, "multi_label", False):
                estimator = LabelSetClassifier(estimator, list(self.labels))
            # The pool's classes are the label sets met so far, in their canonical form.
            classes = None
        self.pool = Pool(X, classes=classes)
        # What every fit clones: the caller's estimator with the pool's column statistics.
        self._template = fit_to_pool(estimator, self.pool.X)
        if isinstance(strategy, str):
            strategy = (
                make_strategy(strategy, multi_label=True)
                if self.multi_label
                else make_strategy(strategy)
            )
        self.strategy = strategy
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

    def teach(
        self, indices: ArrayLike, labels: ArrayLike | Sequence[Any], *, refit: bool = True
    ) -> None:
        """Record labels for pool ``indices`` and, by default, refit the model.

        For a multi-label learner each label is a set: a list of names, a ``;``-joined string
        or a JSON list (stored in canonical form; a name outside :attr:`labels` raises
        :class:`InvalidDataError` before anything is recorded).
        """
        if self.multi_label:
            values = [labels] if isinstance(labels, str) else list(cast(Iterable[Any], labels))
            idx, values = check_labels(indices, values, self.pool.n_items)
            self.pool.label(idx, canonical_sets(values, self.labels, rows=idx).tolist())
        else:
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

    def evaluate(self, X: Any, y: ArrayLike) -> Metrics | MultiLabelMetrics | None:
        """Holdout metrics of the current model, or None before two classes are labeled.

        A multi-label learner reads ``y`` as label sets and gives
        :class:`~labelwise.learning.multilabel_metrics.MultiLabelMetrics`.
        """
        if self.estimator_ is None:
            return None
        if self.multi_label:
            return evaluate_label_sets(
                self.estimator_, X, list(np.asarray(y, dtype=object)), self.labels
            )
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


def _multi_label_names(classes: Any) -> tuple[str, ...]:
    """The labels of a multi-label learner: given, distinct, none containing ``;``."""
    from labelwise.label_sets import check_label_names

    if classes is None:
        raise InvalidParameterError(
            "a multi-label learner needs classes=: the labels an item's set is drawn from"
        )
    names = tuple(str(c) for c in classes)
    if not names:
        raise InvalidParameterError("a multi-label learner needs at least one label in classes=")
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"classes {list(names)!r} repeats a label")
    check_label_names(names)
    return names
