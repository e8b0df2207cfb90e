"""Strategy names: ``scorer`` or ``scorer+selector``, whole strategies, ``+explore``.

:func:`build_strategy` turns a name into a strategy object. It knows every strategy of
:mod:`labelwise.strategies.utility` and :mod:`labelwise.strategies.sampling`; strategies built
on top of the registry (the bandit, whose arms are registry names) are handed to it by name in
``named``, so that this module imports none of them:
:func:`labelwise.strategies.factory.make_strategy` is this function with the bandit added.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Literal

from labelwise.exceptions import InvalidParameterError
from labelwise.strategies.among_top import SELECTORS
from labelwise.strategies.base import Strategy
from labelwise.strategies.sampling import Badge, CoreSet, Explore, RandomSampling
from labelwise.strategies.utility import Bald, QueryByCommittee, UncertaintySampling

__all__ = [
    "DEFAULT_STRATEGY",
    "EXPLORE_FRACTION",
    "available_strategies",
    "build_strategy",
]

#: What ``"default"`` resolves to: the strategy the label-efficiency benchmark shows best overall
#: (see ``benchmarks/results/``): margin sampling, one pick per k-means cluster of the top
#: candidates (diverse batches), and 10 % uniformly random exploration picks (against the
#: sampling bias that makes pure margin sampling lose to random on noisy data).
DEFAULT_STRATEGY = "margin+clusters+explore"

#: Share of random picks the ``+explore`` suffix adds.
EXPLORE_FRACTION = 0.1

_SCORER_ALIASES: dict[str, str] = {
    "lc": "least_confident",
    "least-confident": "least_confident",
    "least_confident": "least_confident",
    "uncertainty": "least_confident",
    "margin": "margin",
    "entropy": "entropy",
    "qbc": "qbc",
    "qbc-kl": "qbc-kl",
    "bald": "bald",
    "random": "random",
}

_DESCRIPTIONS: dict[str, str] = {
    "random": "uniform random sampling (the baseline)",
    "least_confident": "1 - probability of the top class",
    "margin": "smallest gap between the top two classes (works from decision values too)",
    "entropy": "entropy of the predicted class distribution",
    "qbc": "vote entropy of a bagged committee of 5 clones",
    "qbc-kl": "KL divergence of 5 bagged clones from their consensus",
    "bald": "mutual information over 20 Monte Carlo dropout passes (needs a model that draws "
    "them: mlp-torch)",
    "margin+kmeans": "margin, then weighted k-means over the top candidates (diverse batches)",
    "margin+clusters": "margin, then the most uncertain item of each k-means cluster of the top",
    "margin+explore": "margin, with 10 % uniformly random exploration picks",
    "entropy+kmeans": "entropy, then weighted k-means over the top candidates",
    "margin+kcenter": "margin, then greedy k-center among the top candidates",
    "margin+density": "margin times information density (typical items first)",
    "coreset": "greedy k-center over the pool (coverage, no uncertainty)",
    "badge": "k-means++ on gradient embeddings (uncertain and diverse)",
    "bandit": "learns which of margin+clusters, margin+density and random helps this project "
    "(rewarded on the random exploration items), with 10 % random exploration",
}


def available_strategies() -> dict[str, str]:
    """Strategy names with a description each; any ``scorer+selector`` pair is also accepted."""
    names = dict(_DESCRIPTIONS)
    names["default"] = (
        f"currently {DEFAULT_STRATEGY!r}: margin, most uncertain item per cluster of the top "
        "candidates, 10 % random exploration"
    )
    return dict(sorted(names.items()))


def build_strategy(
    name: str, *, named: Mapping[str, Callable[[], Strategy]] | None = None
) -> Strategy:
    """Build a strategy from its registry name (see :func:`available_strategies`).

    ``named`` adds whole strategies by name (``{"bandit": ...}``), usable with ``+explore``.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError(f"strategy name must be a non-empty string, got {name!r}")
    named = named or {}
    key = name.strip().lower()
    if key == "default":
        strategy = build_strategy(DEFAULT_STRATEGY, named=named)
        return dataclasses.replace(strategy, name="default")  # type: ignore[type-var]
    if key in named:
        return named[key]()
    if key.endswith("+explore"):
        base = build_strategy(key.removesuffix("+explore"), named=named)
        return Explore(base, EXPLORE_FRACTION, name=key)
    if key == "coreset":
        return CoreSet()
    if key == "badge":
        return Badge()
    sampled = _SAMPLED_NAME.fullmatch(key)
    if sampled:
        cls: type[CoreSet] | type[Badge] = CoreSet if sampled["base"] == "coreset" else Badge
        return cls(max_candidates=_parse_max_candidates(sampled["value"], name), name=key)
    scorer_part, _, selector_part = key.partition("+")
    scorer = _SCORER_ALIASES.get(scorer_part)
    selector_factory = SELECTORS.get(selector_part or "top")
    if scorer is None or selector_factory is None or (scorer == "random" and selector_part):
        known = ", ".join(available_strategies())
        raise InvalidParameterError(
            f"unknown strategy {name!r}; expected one of: {known} "
            "(or scorer+selector with selector in top, kmeans, clusters, kcenter, density; "
            "a final +explore adds 10 % random picks)"
        )
    selector = selector_factory()
    if scorer == "random":
        return RandomSampling()
    if scorer == "bald":
        return Bald(selector=selector, name=key)
    if scorer in ("qbc", "qbc-kl"):
        kind: Literal["vote", "kl"] = "kl" if scorer == "qbc-kl" else "vote"
        return QueryByCommittee(disagreement=kind, selector=selector, name=key)
    return UncertaintySampling(scorer=scorer, selector=selector, name=key)  # type: ignore[arg-type]


_SAMPLED_NAME = re.compile(r"(?P<base>coreset|badge)\(max_candidates=(?P<value>[^()]*)\)")


def _parse_max_candidates(value: str, name: str) -> int | float | None:
    """``max_candidates`` of a name like ``badge(max_candidates=0.05)``: count, share or none."""
    text = value.strip()
    if text in ("none", "all"):
        return None
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if "." not in text and number.is_integer() and number >= 1:
        return int(number)
    if 0 < number <= 1:
        return number
    raise InvalidParameterError(
        f"in strategy {name!r}: max_candidates must be a whole number of candidates (>= 1), "
        f"a share in (0, 1] such as 0.05, or 'all'; got {value!r}"
    )
