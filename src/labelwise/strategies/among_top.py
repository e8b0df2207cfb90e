"""Selectors: how a utility strategy turns its scoring pass into a batch.

Every selector looks only at the candidates with the highest utilities (its shortlist, as
:func:`labelwise.strategies.selectors.top_k` ranks them): ``top`` takes them as they are, ``kmeans``
and ``clusters`` spread the batch over k-means clusters of the shortlist, ``kcenter`` over the
space left uncovered by the labeled set, ``density`` weighs the utilities by how typical an item
is. The backend scores the candidates and hands over the shortlist (with its feature rows on
request), so a selector is the same on one machine and on a cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from labelwise.pool import Matrix
from labelwise.strategies.backends import Ranked, Utility
from labelwise.strategies.base import QueryContext, Selector, represent
from labelwise.strategies.selectors import density_weights, kcenter_greedy, top_k, weighted_kmeans

__all__ = [
    "SELECTORS",
    "DensityWeighted",
    "KCenterAmongTop",
    "KMeansAmongTop",
    "TopK",
    "select_among_top",
]


def select_among_top(
    ctx: QueryContext, selector: Selector, utility: Utility, k: int, rng: np.random.Generator
) -> tuple[Ranked, NDArray[np.intp]]:
    """One scoring pass of ``utility`` over the candidates, and the selector's ``k`` picks:
    the shortlist (best first) and positions into it, best first."""
    top = ctx.backend.top(utility, ctx.candidates, selector.shortlist(len(ctx.candidates), k), rng)
    return top, selector.choose(ctx, top, k, rng)


@dataclass(frozen=True)
class TopK:
    """The highest utilities."""

    name: str = "top"

    def shortlist(self, n_candidates: int, k: int) -> int:
        return k

    def choose(
        self, ctx: QueryContext, top: Ranked, k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        return np.arange(k, dtype=np.intp)


@dataclass(frozen=True)
class _SpreadAmongTop:
    """A selector that spreads its ``k`` picks over the ``prefilter × k`` most useful
    candidates, as :meth:`spread` places them in the candidates' representation."""

    prefilter: int = 10

    def shortlist(self, n_candidates: int, k: int) -> int:
        return min(n_candidates, self.prefilter * k)

    def choose(
        self, ctx: QueryContext, top: Ranked, k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        return self.spread(ctx, represent(ctx, top.rows), top, k, rng)

    def spread(
        self, ctx: QueryContext, rep: Matrix, top: Ranked, k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        """Positions of the ``k`` picks in ``top``, the shortlist, whose rows are ``rep``."""
        raise NotImplementedError


@dataclass(frozen=True)
class KMeansAmongTop(_SpreadAmongTop):
    """Weighted k-means over the ``prefilter × k`` most useful candidates, one pick per cluster.

    ``representative="centroid"`` takes the member nearest each centroid (Zhdanov 2019);
    ``"utility"`` the most useful member, so a batch of one is exactly the top candidate.
    """

    representative: Literal["centroid", "utility"] = "centroid"
    name: str = "kmeans"

    def spread(
        self, ctx: QueryContext, rep: Matrix, top: Ranked, k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        return weighted_kmeans(rep, top.utilities, k, rng, representative=self.representative)


@dataclass(frozen=True)
class KCenterAmongTop(_SpreadAmongTop):
    """Greedy k-center among the top candidates: each pick farthest from the labeled set and
    from earlier picks."""

    name: str = "kcenter"

    def spread(
        self, ctx: QueryContext, rep: Matrix, top: Ranked, k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        covered = represent(ctx, ctx.labeled)
        positions, _ = kcenter_greedy(rep, covered, k, rng)
        return positions


@dataclass(frozen=True)
class DensityWeighted:
    """Utility times typicality (information density), among the top candidates.

    ``utility' = u × density^beta`` with ``u`` the utility rescaled into (0, 1] and the density
    the mean Gaussian similarity to a random reference sample of the candidates.
    """

    beta: float = 1.0
    prefilter: int = 20
    min_candidates: int = 1000
    name: str = "density"

    def shortlist(self, n_candidates: int, k: int) -> int:
        return min(n_candidates, max(self.min_candidates, self.prefilter * k))

    def choose(
        self, ctx: QueryContext, top: Ranked, k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        u = top.utilities
        span = float(u.max() - u.min())
        scaled = (u - u.min()) / span * 0.99 + 0.01 if span > 0 else np.ones(len(u))
        density = density_weights(represent(ctx, top.rows), rng)
        return top_k(scaled * density**self.beta, k, rng)


#: Selector names, as the part after ``+`` in a strategy name.
SELECTORS: dict[str, Callable[[], Any]] = {
    "top": TopK,
    "kmeans": KMeansAmongTop,
    "clusters": lambda: KMeansAmongTop(representative="utility", name="clusters"),
    "kcenter": KCenterAmongTop,
    "coreset": KCenterAmongTop,
    "density": DensityWeighted,
}
