"""What every query strategy shares: what it is given, what it returns, and the two protocols.

A strategy receives a :class:`QueryContext` (the candidates, the labeled set, a fitted model and
the :class:`~labelwise.strategies.backends.ScoringBackend` over the pool's rows) and returns a
:class:`Selection`: pool rows, best first, with their utilities. It reads the pool only through
the backend, so the same strategy runs on a matrix in memory and on a partitioned pool on a
cluster. Strategies never fit or modify the caller's model; a committee fits clones.

The strategies themselves are in :mod:`labelwise.strategies.utility` (a utility, then a
selector of :mod:`labelwise.strategies.among_top`) and :mod:`labelwise.strategies.sampling` (random
picks, exploration, core-set, BADGE); :mod:`labelwise.strategies` names them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.pipeline import Pipeline

from labelwise.exceptions import InvalidParameterError
from labelwise.models.auto import AutoRepresentation
from labelwise.models.multilabel import LabelSetClassifier
from labelwise.models.registry import DEFAULT_CHUNK_SIZE
from labelwise.pool import Matrix
from labelwise.strategies.backends import (
    CandidateRows,
    Candidates,
    MatrixBackend,
    Ranked,
    ScoringBackend,
)

__all__ = ["QueryContext", "Selection", "Selector", "Strategy", "represent"]


@dataclass(frozen=True, init=False)
class QueryContext:
    """Everything a strategy may look at.

    Attributes
    ----------
    X : matrix of shape (n_items, n_features), or None
        The whole pool when this process holds it (dense, memory-mapped or sparse, never
        copied); None for a pool scored elsewhere. Strategies read rows through ``backend``.
    candidates : Candidates
        Pool rows the strategy may pick from (the unlabeled items, or a subset); an int array
        given here is held as :class:`~labelwise.strategies.backends.CandidateRows`.
    labeled : int array of shape (n_labeled,)
        Pool indices with known labels.
    y_labeled : array of shape (n_labeled,)
        Their labels, aligned with ``labeled``.
    model : fitted classifier
        Trained on the labeled set; the strategy reads it and never refits it.
    estimator : unfitted classifier, optional
        The template ``model`` was cloned from; committees fit further clones of it.
    chunk_size : int
        Rows predicted at once when scoring the pool (the backend's, when one is given).
    random_sample : int array, optional
        Labeled pool indices that were drawn uniformly at random (seed set, exploration picks):
        an unbiased sample the adaptive strategy measures itself on.
    backend : ScoringBackend
        The pool's rows as strategies read them; by default a
        :class:`~labelwise.strategies.backends.MatrixBackend` over ``X``.
    """

    X: Matrix | None
    candidates: Candidates
    labeled: NDArray[np.intp]
    y_labeled: NDArray[Any]
    model: Any
    estimator: Any
    chunk_size: int
    random_sample: NDArray[np.intp] | None
    backend: ScoringBackend

    def __init__(
        self,
        X: Matrix | None,
        candidates: Candidates | ArrayLike,
        labeled: NDArray[np.intp],
        y_labeled: NDArray[Any],
        model: Any,
        estimator: Any = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        random_sample: NDArray[np.intp] | None = None,
        backend: ScoringBackend | None = None,
    ) -> None:
        if backend is None:
            if X is None:
                raise InvalidParameterError("a query context needs the pool (X) or a backend")
            backend = MatrixBackend(X, chunk_size)
        if not isinstance(candidates, Candidates):
            candidates = CandidateRows(candidates)
        fields = {
            "X": X,
            "candidates": candidates,
            "labeled": labeled,
            "y_labeled": y_labeled,
            "model": model,
            "estimator": estimator,
            "chunk_size": backend.chunk_size,
            "random_sample": random_sample,
            "backend": backend,
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def among(self, candidates: Candidates) -> QueryContext:
        """The same context with other candidates."""
        return replace(self, candidates=candidates)


@dataclass(frozen=True)
class Selection:
    """A strategy's picks, best first.

    Attributes
    ----------
    indices : int array of shape (k,)
        Pool indices.
    utilities : float array of shape (k,)
        Each pick's utility (NaN where the strategy has none, e.g. random sampling).
    details : tuple of dict
        Optional per-pick facts for the annotator (committee votes, distances), aligned.
    """

    indices: NDArray[np.intp]
    utilities: NDArray[np.float64]
    details: tuple[dict[str, Any], ...] = ()


class Strategy(Protocol):
    """A named way of choosing the next items to label.

    A strategy may also declare ``needs``: the backend capabilities it uses beyond the
    protocol (:data:`labelwise.strategies.backends.CAPABILITIES`); a backend without one of them
    refuses it, saying why (``bald`` on a cluster). None declared means it runs on every backend.
    """

    @property
    def name(self) -> str: ...

    @property
    def needs_model(self) -> bool: ...

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection: ...


class Selector(Protocol):
    """Chooses a batch among the candidates with the highest utilities.

    ``shortlist(n, k)`` says how many of the ``n`` candidates, best first, it looks at to
    choose ``k``; the backend scores the candidates and returns that many (:class:`Ranked`);
    ``choose`` returns positions into them, best first.
    """

    @property
    def name(self) -> str: ...

    def shortlist(self, n_candidates: int, k: int) -> int: ...

    def choose(
        self, ctx: QueryContext, top: Ranked, k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]: ...


def represent(ctx: QueryContext, rows: NDArray[np.intp]) -> Matrix:
    """The rows as the model's final step sees them (a pipeline's transforms applied, and the
    columns an ``auto`` model chose).

    Distances for diversity are then taken in the space the model learns in: scaled columns for
    a scaled pipeline, TF-IDF or embeddings for text, raw features for a bare estimator. A
    multi-label model (:class:`~labelwise.models.multilabel.LabelSetClassifier`) learns one
    classifier per label on the same rows: the space is that of its first fitted one.
    """
    model = ctx.model
    if isinstance(model, LabelSetClassifier):
        fitted = [e for e in model.model_.estimators_ if e is not None]
        if not fitted:  # every label constant so far: nothing learned, raw features
            return ctx.backend.rows(rows)
        model = fitted[0]
    views: list[Callable[[Matrix], Matrix]] = []
    if isinstance(model, AutoRepresentation):
        views.append(model.select)
        model = model.estimator_
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        views.append(model[:-1].transform)
    if not views:
        return ctx.backend.rows(rows)

    def view(block: Matrix) -> Matrix:
        for step in views:
            block = step(block)
        return block

    parts = [view(block) for block in ctx.backend.chunks(rows)]
    if not parts:
        return ctx.backend.rows(rows)
    return sp.vstack(parts).tocsr() if sp.issparse(parts[0]) else np.concatenate(parts)
