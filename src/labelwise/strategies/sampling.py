"""Strategies that look at the candidates themselves rather than rank a utility over all of them.

- :class:`RandomSampling`: uniform picks, the baseline;
- :class:`Explore`: a share of uniform picks mixed into another strategy's batch (``+explore``);
- :class:`CoreSet`: greedy k-center over (a random sample of) the candidates: coverage;
- :class:`Badge`: k-means++ on gradient embeddings of (a random sample of) the candidates.

Random picks are drawn as positions in the candidate set (``candidates.take``), which draws the
same rows as ``rng.choice`` over the rows themselves, so the candidates need never be listed;
core-set and BADGE read their sample's rows and outputs through the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from labelwise.strategies.backends import Candidates, strategy_needs
from labelwise.strategies.base import QueryContext, Selection, represent
from labelwise.strategies.kinds import check_model_kind
from labelwise.strategies.selectors import kcenter_greedy, kmeans_pp_factored

__all__ = [
    "MIN_CANDIDATES_PER_PICK",
    "Badge",
    "CoreSet",
    "Explore",
    "RandomSampling",
    "subsample_candidates",
]

#: A fractional ``max_candidates`` still keeps at least this many candidates per batch item.
MIN_CANDIDATES_PER_PICK = 10


@dataclass(frozen=True)
class RandomSampling:
    """Uniform random sampling: the baseline every strategy must beat."""

    name: str = "random"
    needs_model: bool = False

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        cand = ctx.candidates
        picks = cand.take(rng.choice(len(cand), size=batch_size, replace=False))
        return Selection(picks, np.full(batch_size, np.nan))


@dataclass(frozen=True)
class Explore:
    """A share of uniformly random picks mixed into another strategy's batch.

    Each of the ``batch_size`` slots is random with probability ``fraction`` (so batches of one
    explore too); random picks are drawn first, uniformly from all candidates, and carry
    ``{"exploration": True}`` in their details, so they count as an unbiased sample of the pool.
    They are listed after the base strategy's picks.
    """

    base: Any
    fraction: float = 0.1
    name: str = "explore"

    @property
    def needs_model(self) -> bool:
        return bool(self.base.needs_model)

    @property
    def needs(self) -> frozenset[str]:
        """What the base strategy needs of the backend."""
        return strategy_needs(self.base)

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        n_random = int(np.count_nonzero(rng.random(batch_size) < self.fraction))
        cand = ctx.candidates
        explore = cand.take(rng.choice(len(cand), size=n_random, replace=False))
        picked = Selection(np.empty(0, np.intp), np.empty(0))
        if batch_size > n_random:
            rest = ctx.among(cand.without(explore))
            picked = self.base.select(rest, batch_size - n_random, rng)
        base_details = picked.details or tuple({} for _ in picked.indices)
        return Selection(
            np.concatenate([picked.indices, explore]).astype(np.intp),
            np.concatenate([picked.utilities, np.full(n_random, np.nan)]),
            base_details + tuple({"exploration": True} for _ in explore),
        )


def subsample_candidates(
    candidates: NDArray[np.intp] | Candidates,
    max_candidates: int | float | None,
    batch_size: int,
    rng: np.random.Generator,
) -> NDArray[np.intp]:
    """A uniform random subsample of the candidates (sorted rows), bounding a selector's cost.

    ``max_candidates`` is a number of candidates (an ``int``), a share of them (a ``float`` in
    (0, 1]: the subsample keeps its ratio to the pool as the pool grows, yet never falls below
    ``MIN_CANDIDATES_PER_PICK × batch_size``), or ``None`` for every candidate. ``candidates``
    is an array of rows (returned as is when every one is kept) or a candidate set.
    """
    n = len(candidates)
    keep = _sample_size(n, max_candidates, batch_size)
    if isinstance(candidates, np.ndarray):  # given as an array: the same array when all kept
        if keep is None:
            return candidates
        return np.sort(candidates[rng.choice(n, size=keep, replace=False)])
    if keep is None:
        return candidates.rows()
    return np.sort(candidates.take(rng.choice(n, size=keep, replace=False)))


def _sample_size(n: int, max_candidates: int | float | None, batch_size: int) -> int | None:
    """How many of ``n`` candidates :func:`subsample_candidates` keeps (None: every one)."""
    if max_candidates is None:
        return None
    if isinstance(max_candidates, float):
        keep = max(int(np.ceil(max_candidates * n)), MIN_CANDIDATES_PER_PICK * batch_size)
    else:
        keep = int(max_candidates)
    return None if n <= keep else keep


@dataclass(frozen=True)
class CoreSet:
    """Greedy k-center over the candidates: cover the pool, ignoring the model's uncertainty.

    ``max_candidates`` bounds the cost on huge pools by running on a random subsample (see
    :func:`subsample_candidates`).
    """

    max_candidates: int | float | None = 50_000
    name: str = "coreset"
    needs_model: bool = False

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        cand = subsample_candidates(ctx.candidates, self.max_candidates, batch_size, rng)
        rep = represent(ctx, cand)
        covered = represent(ctx, ctx.labeled)
        positions, gaps = kcenter_greedy(rep, covered, batch_size, rng)
        details = tuple({"distance_to_labeled": float(g)} for g in gaps)
        return Selection(cand[positions], gaps, details)


@dataclass(frozen=True)
class Badge:
    """BADGE: k-means++ on gradient embeddings ``(p - onehot(argmax p)) ⊗ h(x)``.

    Uncertain items have long gradients, and k-means++ spreads the picks over directions, so the
    batch is both uncertain and diverse. Needs probabilities. Utility = gradient norm.

    ``max_candidates`` bounds the cost on huge pools by running on a random subsample of the
    candidates (as :class:`CoreSet` does).
    """

    max_candidates: int | float | None = 50_000
    name: str = "badge"
    needs_model: bool = True

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        check_model_kind(self.name, ctx.model, multi_label=False)
        cand = subsample_candidates(ctx.candidates, self.max_candidates, batch_size, rng)
        P = ctx.backend.map_outputs(ctx.model, cand, lambda o: o.values, prefer="proba").astype(
            np.float64
        )
        A = P.copy()
        A[np.arange(len(A)), np.argmax(P, axis=1)] -= 1.0
        H = represent(ctx, cand)
        positions = kmeans_pp_factored(A, H, batch_size, rng)
        picked: Any = H[positions]
        sq_h = (
            np.asarray(picked.multiply(picked).sum(axis=1)).ravel()
            if sp.issparse(picked)
            else np.einsum("ij,ij->i", picked, picked)
        )
        norms = np.sqrt(np.einsum("ij,ij->i", A[positions], A[positions]) * sq_h)
        return Selection(cand[positions], norms)
