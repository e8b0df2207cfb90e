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
from labelwise.strategies.kinds import MULTI_LABEL_ONLY, SINGLE_LABEL_ONLY, working_strategies
from labelwise.strategies.multilabel_scorers import MULTI_LABEL_SCORERS
from labelwise.strategies.sampling import Badge, CoreSet, Explore, RandomSampling
from labelwise.strategies.utility import (
    Bald,
    MultiLabelUncertainty,
    QueryByCommittee,
    UncertaintySampling,
)

__all__ = [
    "DEFAULT_MULTI_LABEL_STRATEGY",
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

#: What ``"default"`` resolves to in a multi-label project: mean-margin uncertainty (the
#: per-label margins averaged), the most uncertain item of each k-means cluster of the top
#: candidates, and 10 % uniformly random exploration picks (the unbiased holdout).
DEFAULT_MULTI_LABEL_STRATEGY = "mean-margin+clusters+explore"

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
    "mean-margin": "mean_margin",
    "mean_margin": "mean_margin",
    "min-margin": "min_margin",
    "min_margin": "min_margin",
    "mmc": "mmc",
    "lci": "lci",
}

_MULTI_LABEL_DESCRIPTIONS: dict[str, str] = {
    "random": "uniform random sampling (the baseline)",
    "mean-margin": "1 - the per-label margins |2p - 1| averaged over the labels",
    "min-margin": "1 - the smallest per-label margin: the most uncertain label decides",
    "mmc": "expected loss reduction of the predicted label set, its size predicted from the "
    "sorted probabilities (Yang et al. 2009)",
    "lci": "how far the number of predicted labels is from the labeled set's mean (Li & Guo 2013)",
    "qbc": "label-set vote entropy of a bagged committee of 5 clones",
    "mean-margin+clusters": "mean-margin, then the most uncertain item of each k-means cluster "
    "of the top",
    "mean-margin+kmeans": "mean-margin, then weighted k-means over the top candidates",
    "mean-margin+kcenter": "mean-margin, then greedy k-center among the top candidates",
    "mean-margin+density": "mean-margin times information density (typical items first)",
    "mean-margin+explore": "mean-margin, with 10 % uniformly random exploration picks",
    "coreset": "greedy k-center over the pool (coverage, no uncertainty)",
    "bandit": "learns which of mean-margin+clusters, mean-margin+density and random helps this "
    "project (rewarded on the random exploration items), with 10 % random exploration",
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


def available_strategies(multi_label: bool = False) -> dict[str, str]:
    """Strategy names with a description each, for single-label projects or (``multi_label``)
    for multi-label ones; any ``scorer+selector`` pair of the kind is also accepted."""
    if multi_label:
        names = dict(_MULTI_LABEL_DESCRIPTIONS)
        names["default"] = (
            f"currently {DEFAULT_MULTI_LABEL_STRATEGY!r}: mean-margin, most uncertain item per "
            "cluster of the top candidates, 10 % random exploration"
        )
        return dict(sorted(names.items()))
    names = dict(_DESCRIPTIONS)
    names["default"] = (
        f"currently {DEFAULT_STRATEGY!r}: margin, most uncertain item per cluster of the top "
        "candidates, 10 % random exploration"
    )
    return dict(sorted(names.items()))


def _check_kind(name: str, base: str, multi_label: bool | None) -> None:
    """Refuse a name written for the other kind of project (when the kind is known)."""
    if multi_label is None:
        return
    wrong = SINGLE_LABEL_ONLY if multi_label else MULTI_LABEL_ONLY
    if base in wrong:
        kind, other = (
            ("multi-label", "single-label") if multi_label else ("single-label", "multi-label")
        )
        raise InvalidParameterError(
            f"strategy {name!r} is for {other} projects; a {kind} project can use: "
            f"{working_strategies(multi_label)} (any with a selector such as +clusters, and "
            "+explore), or 'default'"
        )


def build_strategy(
    name: str,
    *,
    named: Mapping[str, Callable[[], Strategy]] | None = None,
    multi_label: bool | None = False,
) -> Strategy:
    """Build a strategy from its registry name (see :func:`available_strategies`).

    ``named`` adds whole strategies by name (``{"bandit": ...}``), usable with ``+explore``.
    ``multi_label`` is the project's kind: ``default`` resolves to
    :data:`DEFAULT_MULTI_LABEL_STRATEGY` for a multi-label project, and a name written for the
    other kind (``margin`` for multi-label, ``mean-margin`` for single-label) raises
    :class:`InvalidParameterError`; None (kind unknown) builds any name and lets the strategy
    refuse a model of the wrong kind when it runs.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError(f"strategy name must be a non-empty string, got {name!r}")
    named = named or {}
    key = name.strip().lower()
    if key == "default":
        default = DEFAULT_MULTI_LABEL_STRATEGY if multi_label else DEFAULT_STRATEGY
        strategy = build_strategy(default, named=named, multi_label=multi_label)
        return dataclasses.replace(strategy, name="default")  # type: ignore[type-var]
    if key in named:
        return named[key]()
    if key.endswith("+explore"):
        base = build_strategy(key.removesuffix("+explore"), named=named, multi_label=multi_label)
        return Explore(base, EXPLORE_FRACTION, name=key)
    if key == "coreset":
        return CoreSet()
    if key == "badge":
        _check_kind(name, "badge", multi_label)
        return Badge()
    sampled = _SAMPLED_NAME.fullmatch(key)
    if sampled:
        _check_kind(name, sampled["base"], multi_label)
        cls: type[CoreSet] | type[Badge] = CoreSet if sampled["base"] == "coreset" else Badge
        return cls(max_candidates=_parse_max_candidates(sampled["value"], name), name=key)
    scorer_part, _, selector_part = key.partition("+")
    scorer = _SCORER_ALIASES.get(scorer_part)
    selector_factory = SELECTORS.get(selector_part or "top")
    if scorer is None or selector_factory is None or (scorer == "random" and selector_part):
        known = ", ".join(available_strategies(bool(multi_label)))
        raise InvalidParameterError(
            f"unknown strategy {name!r}; expected one of: {known} "
            "(or scorer+selector with selector in top, kmeans, clusters, kcenter, density; "
            "a final +explore adds 10 % random picks)"
        )
    _check_kind(
        name, scorer.replace("_", "-") if scorer in MULTI_LABEL_SCORERS else scorer, multi_label
    )
    selector = selector_factory()
    if scorer in MULTI_LABEL_SCORERS:
        return MultiLabelUncertainty(scorer=scorer, selector=selector, name=key)  # type: ignore[arg-type]
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
