"""Every strategy by name: the registry's names (:mod:`labelwise.strategies.registry`) and the
bandit, whose arms are registry names (so the registry cannot import it)."""

from __future__ import annotations

from labelwise.strategies.bandit import DEFAULT_ARMS, MULTI_LABEL_ARMS, StrategyBandit
from labelwise.strategies.base import Strategy
from labelwise.strategies.registry import EXPLORE_FRACTION, build_strategy
from labelwise.strategies.sampling import Explore

__all__ = ["make_strategy"]


def make_strategy(name: str, *, multi_label: bool | None = False) -> Strategy:
    """Build a strategy from its registry name (see
    :func:`~labelwise.strategies.registry.available_strategies`), ``bandit`` included.

    ``multi_label`` is the project's kind, as for
    :func:`~labelwise.strategies.registry.build_strategy`: ``default`` and ``bandit`` take the
    kind's own strategies, and a name of the other kind is refused.
    """
    return build_strategy(
        name, named={"bandit": lambda: _bandit(bool(multi_label))}, multi_label=multi_label
    )


def _bandit(multi_label: bool) -> Strategy:
    """``"bandit"``: the bandit over its default arms (the multi-label ones in a multi-label
    project), with random exploration picks."""
    arms = MULTI_LABEL_ARMS if multi_label else DEFAULT_ARMS
    return Explore(StrategyBandit(arms), EXPLORE_FRACTION, name="bandit")
