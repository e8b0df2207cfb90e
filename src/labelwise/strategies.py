"""Query strategies: a utility (scorer or committee) composed with a selector, named in a registry.

A strategy receives a :class:`QueryContext` (the candidates, the labeled set, a fitted model and
the backend over the pool's rows) and returns a :class:`Selection`: pool indices, best first,
with their utilities. Strategies never fit or modify the caller's model; a committee fits clones.
They read the pool only through the backend (:mod:`labelwise.backends`), so each is written
once and runs on a matrix in memory or on a partitioned pool on a cluster alike.

Names (see :func:`available_strategies`) are ``scorer`` or ``scorer+selector``:

- scorers: ``random``, ``least_confident`` (alias ``lc``), ``margin``, ``entropy``, ``qbc`` (vote
  entropy of a bagged committee), ``qbc-kl`` (KL divergence to the committee's consensus),
  ``bald`` (mutual information over Monte Carlo dropout samples, for models that draw them);
- selectors: ``top`` (implicit), ``kmeans`` (utility-weighted k-means over the top candidates),
  ``kcenter`` (greedy k-center among the top candidates), ``density`` (utility × typicality);
- whole strategies: ``coreset`` (greedy k-center over the pool, no utility), ``badge`` (k-means++
  on gradient embeddings; both run on a random 50,000 of the candidates, changed by a name such as
  ``badge(max_candidates=0.05)`` (a share) or ``coreset(max_candidates=all)``), ``bandit``
  (learns which strategy helps, see :mod:`labelwise.bandit`), and ``default``.

This module gathers the names of the modules that define them: :mod:`labelwise.strategy_base`
(context, selection, protocols), :mod:`labelwise.among_top` (selectors),
:mod:`labelwise.utility_strategies`, :mod:`labelwise.sampling_strategies` and
:mod:`labelwise.registry` (names); it adds the bandit to the registry.
"""

from __future__ import annotations

from labelwise.among_top import DensityWeighted, KCenterAmongTop, KMeansAmongTop, TopK
from labelwise.bandit import StrategyBandit
from labelwise.registry import (
    DEFAULT_STRATEGY,
    EXPLORE_FRACTION,
    available_strategies,
    build_strategy,
)
from labelwise.sampling_strategies import (
    MIN_CANDIDATES_PER_PICK,
    Badge,
    CoreSet,
    Explore,
    RandomSampling,
    subsample_candidates,
)
from labelwise.strategy_base import QueryContext, Selection, Selector, Strategy, represent
from labelwise.utility_strategies import Bald, QueryByCommittee, UncertaintySampling

__all__ = [
    "DEFAULT_STRATEGY",
    "EXPLORE_FRACTION",
    "MIN_CANDIDATES_PER_PICK",
    "Badge",
    "Bald",
    "CoreSet",
    "DensityWeighted",
    "Explore",
    "KCenterAmongTop",
    "KMeansAmongTop",
    "QueryByCommittee",
    "QueryContext",
    "RandomSampling",
    "Selection",
    "Selector",
    "Strategy",
    "TopK",
    "UncertaintySampling",
    "available_strategies",
    "make_strategy",
    "represent",
    "subsample_candidates",
]


def _bandit() -> Strategy:
    """``"bandit"``: the bandit over its default arms, with random exploration picks."""
    return Explore(StrategyBandit(), EXPLORE_FRACTION, name="bandit")


def make_strategy(name: str) -> Strategy:
    """Build a strategy from its registry name (see :func:`available_strategies`)."""
    return build_strategy(name, named={"bandit": _bandit})
