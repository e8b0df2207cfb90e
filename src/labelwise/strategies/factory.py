"""Every strategy by name: the registry's names (:mod:`labelwise.strategies.registry`) and the
bandit, whose arms are registry names (so the registry cannot import it)."""

from __future__ import annotations

from labelwise.strategies.bandit import StrategyBandit
from labelwise.strategies.base import Strategy
from labelwise.strategies.registry import EXPLORE_FRACTION, build_strategy
from labelwise.strategies.sampling import Explore

__all__ = ["make_strategy"]


def make_strategy(name: str) -> Strategy:
    """Build a strategy from its registry name (see
    :func:`~labelwise.strategies.registry.available_strategies`), ``bandit`` included."""
    return build_strategy(name, named={"bandit": _bandit})


def _bandit() -> Strategy:
    """``"bandit"``: the bandit over its default arms, with random exploration picks."""
    return Explore(StrategyBandit(), EXPLORE_FRACTION, name="bandit")
