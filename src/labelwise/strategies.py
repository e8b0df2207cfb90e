"""Query strategies: a utility (scorer or committee) composed with a selector, named in a registry.

A strategy receives a :class:`QueryContext` (the pool's features, the candidate indices, the labeled
set and a fitted model) and returns a :class:`Selection`: pool indices, best first, with their
utilities. Strategies never fit or modify the caller's model; a committee fits clones.

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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from labelwise import scorers
from labelwise.committee import Committee
from labelwise.exceptions import InvalidParameterError, ModelCapabilityError
from labelwise.features.auto import AutoRepresentation
from labelwise.models import (
    DEFAULT_CHUNK_SIZE,
    ModelOutputs,
    OutputKind,
    bald_utilities,
    iter_chunks,
    map_outputs,
)
from labelwise.pool import Matrix, take_rows
from labelwise.selectors import (
    density_weights,
    kcenter_greedy,
    kmeans_pp_factored,
    top_k,
    weighted_kmeans,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "EXPLORE_FRACTION",
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
]

#: What ``"default"`` resolves to: the strategy the label-efficiency benchmark shows best overall
#: (see ``benchmarks/results/``): margin sampling, one pick per k-means cluster of the top
#: candidates (diverse batches), and 10 % uniformly random exploration picks (against the
#: sampling bias that makes pure margin sampling lose to random on noisy data).
DEFAULT_STRATEGY = "margin+clusters+explore"

#: Share of random picks the ``+explore`` suffix adds.
EXPLORE_FRACTION = 0.1


@dataclass(frozen=True)
class QueryContext:
    """Everything a strategy may look at.

    Attributes
    ----------
    X : matrix of shape (n_items, n_features)
        The whole pool (dense, memory-mapped or sparse), never copied.
    candidates : int array of shape (n_candidates,)
        Pool indices the strategy may pick from (the unlabeled items, or a subset).
    labeled : int array of shape (n_labeled,)
        Pool indices with known labels.
    y_labeled : array of shape (n_labeled,)
        Their labels, aligned with ``labeled``.
    model : fitted classifier
        Trained on the labeled set; the strategy reads it and never refits it.
    estimator : unfitted classifier, optional
        The template ``model`` was cloned from; committees fit further clones of it.
    chunk_size : int
        Rows predicted at once when scoring the pool.
    random_sample : int array, optional
        Labeled pool indices that were drawn uniformly at random (seed set, exploration picks):
        an unbiased sample the adaptive strategy measures itself on.
    """

    X: Matrix
    candidates: NDArray[np.intp]
    labeled: NDArray[np.intp]
    y_labeled: NDArray[Any]
    model: Any
    estimator: Any = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    random_sample: NDArray[np.intp] | None = None


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
    """A named way of choosing the next items to label."""

    @property
    def name(self) -> str: ...

    @property
    def needs_model(self) -> bool: ...

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection: ...


class Selector(Protocol):
    """Turns candidate utilities into positions (into ``ctx.candidates``), best first."""

    @property
    def name(self) -> str: ...

    def pick(
        self,
        ctx: QueryContext,
        utilities: NDArray[np.float64],
        k: int,
        rng: np.random.Generator,
    ) -> NDArray[np.intp]: ...


def represent(ctx: QueryContext, rows: NDArray[np.intp]) -> Matrix:
    """The rows as the model's final step sees them (a pipeline's transforms applied, and the
    columns an ``auto`` model chose).

    Distances for diversity are then taken in the space the model learns in: scaled columns for
    a scaled pipeline, TF-IDF or embeddings for text, raw features for a bare estimator.
    """
    model = ctx.model
    views: list[Callable[[Matrix], Matrix]] = []
    if isinstance(model, AutoRepresentation):
        views.append(model.select)
        model = model.estimator_
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        views.append(model[:-1].transform)
    if not views:
        return take_rows(ctx.X, rows)

    def view(block: Matrix) -> Matrix:
        for step in views:
            block = step(block)
        return block

    parts = [view(take_rows(ctx.X, c)) for c in iter_chunks(rows, ctx.chunk_size)]
    if not parts:
        return take_rows(ctx.X, rows)
    return sp.vstack(parts).tocsr() if sp.issparse(parts[0]) else np.concatenate(parts)


# --- selectors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopK:
    """The highest utilities."""

    name: str = "top"

    def pick(
        self, ctx: QueryContext, utilities: NDArray[np.float64], k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        return top_k(utilities, k, rng)


@dataclass(frozen=True)
class KMeansAmongTop:
    """Weighted k-means over the ``prefilter × k`` most useful candidates, one pick per cluster.

    ``representative="centroid"`` takes the member nearest each centroid (Zhdanov 2019);
    ``"utility"`` the most useful member, so a batch of one is exactly the top candidate.
    """

    prefilter: int = 10
    representative: Literal["centroid", "utility"] = "centroid"
    name: str = "kmeans"

    def pick(
        self, ctx: QueryContext, utilities: NDArray[np.float64], k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        top = top_k(utilities, min(len(utilities), self.prefilter * k), rng)
        rep = represent(ctx, ctx.candidates[top])
        return top[weighted_kmeans(rep, utilities[top], k, rng, representative=self.representative)]


@dataclass(frozen=True)
class KCenterAmongTop:
    """Greedy k-center among the top candidates: each pick farthest from the labeled set and
    from earlier picks."""

    prefilter: int = 10
    name: str = "kcenter"

    def pick(
        self, ctx: QueryContext, utilities: NDArray[np.float64], k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        top = top_k(utilities, min(len(utilities), self.prefilter * k), rng)
        rep = represent(ctx, ctx.candidates[top])
        covered = represent(ctx, ctx.labeled)
        positions, _ = kcenter_greedy(rep, covered, k, rng)
        return top[positions]


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

    def pick(
        self, ctx: QueryContext, utilities: NDArray[np.float64], k: int, rng: np.random.Generator
    ) -> NDArray[np.intp]:
        m = min(len(utilities), max(self.min_candidates, self.prefilter * k))
        top = top_k(utilities, m, rng)
        u = utilities[top]
        span = float(u.max() - u.min())
        scaled = (u - u.min()) / span * 0.99 + 0.01 if span > 0 else np.ones(len(u))
        density = density_weights(represent(ctx, ctx.candidates[top]), rng)
        return top[top_k(scaled * density**self.beta, k, rng)]


_SELECTORS: dict[str, Callable[[], Any]] = {
    "top": TopK,
    "kmeans": KMeansAmongTop,
    "clusters": lambda: KMeansAmongTop(representative="utility", name="clusters"),
    "kcenter": KCenterAmongTop,
    "coreset": KCenterAmongTop,
    "density": DensityWeighted,
}


# --- strategies ------------------------------------------------------------------------------

ScorerName = Literal["least_confident", "margin", "entropy"]


def _utility_function(scorer: ScorerName) -> Callable[[ModelOutputs], NDArray[np.float64]]:
    def utility(out: ModelOutputs) -> NDArray[np.float64]:
        if out.kind == "decision":
            return scorers.decision_margin(out.values)
        return {
            "least_confident": scorers.least_confident,
            "margin": scorers.margin,
            "entropy": scorers.entropy,
        }[scorer](out.values)

    return utility


@dataclass(frozen=True)
class UncertaintySampling:
    """Score every candidate by the model's uncertainty, then select.

    ``margin`` also works from decision values (``-|f(x)|``, or the gap between the top two
    one-vs-rest scores); ``least_confident`` and ``entropy`` need probabilities.
    """

    scorer: ScorerName
    selector: Any = field(default_factory=TopK)
    name: str = ""
    needs_model: bool = True

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        prefer: OutputKind | None = None if self.scorer == "margin" else "proba"
        utilities = map_outputs(
            ctx.model,
            ctx.X,
            ctx.candidates,
            _utility_function(self.scorer),
            prefer=prefer,
            chunk_size=ctx.chunk_size,
        )
        positions = self.selector.pick(ctx, utilities, batch_size, rng)
        return Selection(ctx.candidates[positions], utilities[positions])


@dataclass(frozen=True)
class RandomSampling:
    """Uniform random sampling: the baseline every strategy must beat."""

    name: str = "random"
    needs_model: bool = False

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        picks = rng.choice(ctx.candidates, size=batch_size, replace=False)
        return Selection(picks.astype(np.intp), np.full(batch_size, np.nan))


@dataclass(frozen=True)
class QueryByCommittee:
    """Disagreement of a bagged committee of clones of the estimator.

    ``disagreement="vote"`` is the vote entropy (works with any classifier); ``"kl"`` the mean KL
    divergence of the members from their consensus (needs probabilities).
    """

    n_members: int = 5
    disagreement: Literal["vote", "kl"] = "vote"
    selector: Any = field(default_factory=TopK)
    name: str = "qbc"
    needs_model: bool = True

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        template = ctx.estimator if ctx.estimator is not None else ctx.model
        X_lab = take_rows(ctx.X, ctx.labeled)
        committee = Committee.bagged(
            template, X_lab, np.asarray(ctx.y_labeled), n_members=self.n_members, rng=rng
        )
        if self.disagreement == "kl" and not committee.has_proba:
            raise ModelCapabilityError(
                f"strategy {self.name!r} needs predict_proba; use 'qbc' (vote entropy) instead"
            )
        utilities, votes = committee.disagreement(
            ctx.X, ctx.candidates, kind=self.disagreement, chunk_size=ctx.chunk_size
        )
        positions = self.selector.pick(ctx, utilities, batch_size, rng)
        details = tuple({"votes": _vote_counts(votes[:, p], committee.classes_)} for p in positions)
        return Selection(ctx.candidates[positions], utilities[positions], details)


@dataclass(frozen=True)
class Bald:
    """BALD over Monte Carlo dropout samples: ``H(mean p) - mean H(p)`` per candidate, then select.

    Needs a model that draws the samples (:class:`~labelwise.models.MCDropoutModel`, e.g. the
    ``"mlp-torch"`` model); any other raises :class:`ModelCapabilityError` naming it. The
    dropout masks are seeded from the query's generator: same seed, same batch.
    """

    n_samples: int = 20
    selector: Any = field(default_factory=TopK)
    name: str = "bald"
    needs_model: bool = True

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        utilities = bald_utilities(
            ctx.model,
            ctx.X,
            ctx.candidates,
            n_samples=self.n_samples,
            rng=rng,
            chunk_size=ctx.chunk_size,
        )
        positions = self.selector.pick(ctx, utilities, batch_size, rng)
        return Selection(ctx.candidates[positions], utilities[positions])


def _vote_counts(member_votes: NDArray[np.intp], classes: NDArray[Any]) -> dict[str, int]:
    counts = np.bincount(member_votes, minlength=len(classes))
    order = np.argsort(-counts, kind="stable")
    return {str(classes[i]): int(counts[i]) for i in order if counts[i] > 0}


#: A fractional ``max_candidates`` still keeps at least this many candidates per batch item.
MIN_CANDIDATES_PER_PICK = 10


def subsample_candidates(
    candidates: NDArray[np.intp],
    max_candidates: int | float | None,
    batch_size: int,
    rng: np.random.Generator,
) -> NDArray[np.intp]:
    """A uniform random subsample of the candidates (sorted), bounding a selector's cost.

    ``max_candidates`` is a number of candidates (an ``int``), a share of them (a ``float`` in
    (0, 1]: the subsample keeps its ratio to the pool as the pool grows, yet never falls below
    ``MIN_CANDIDATES_PER_PICK × batch_size``), or ``None`` for every candidate.
    """
    n = len(candidates)
    if max_candidates is None:
        return candidates
    if isinstance(max_candidates, float):
        keep = max(int(np.ceil(max_candidates * n)), MIN_CANDIDATES_PER_PICK * batch_size)
    else:
        keep = int(max_candidates)
    if n <= keep:
        return candidates
    return np.sort(rng.choice(candidates, size=keep, replace=False))


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
        rep = represent(ctx, cand) if ctx.model is not None else take_rows(ctx.X, cand)
        covered = (
            represent(ctx, ctx.labeled) if ctx.model is not None else take_rows(ctx.X, ctx.labeled)
        )
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
        cand = subsample_candidates(ctx.candidates, self.max_candidates, batch_size, rng)
        if len(cand) < len(ctx.candidates):
            ctx = replace(ctx, candidates=cand)
        P = map_outputs(
            ctx.model,
            ctx.X,
            ctx.candidates,
            lambda o: o.values,
            prefer="proba",
            chunk_size=ctx.chunk_size,
        ).astype(np.float64)
        A = P.copy()
        A[np.arange(len(A)), np.argmax(P, axis=1)] -= 1.0
        H = represent(ctx, ctx.candidates)
        positions = kmeans_pp_factored(A, H, batch_size, rng)
        picked: Any = H[positions]
        sq_h = (
            np.asarray(picked.multiply(picked).sum(axis=1)).ravel()
            if sp.issparse(picked)
            else np.einsum("ij,ij->i", picked, picked)
        )
        norms = np.sqrt(np.einsum("ij,ij->i", A[positions], A[positions]) * sq_h)
        return Selection(ctx.candidates[positions], norms)


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

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        n_random = int(np.count_nonzero(rng.random(batch_size) < self.fraction))
        explore = rng.choice(ctx.candidates, size=n_random, replace=False).astype(np.intp)
        rest = ctx.candidates[~np.isin(ctx.candidates, explore)]
        picked = Selection(np.empty(0, np.intp), np.empty(0))
        if batch_size > n_random:
            picked = self.base.select(replace(ctx, candidates=rest), batch_size - n_random, rng)
        base_details = picked.details or tuple({} for _ in picked.indices)
        return Selection(
            np.concatenate([picked.indices, explore]).astype(np.intp),
            np.concatenate([picked.utilities, np.full(n_random, np.nan)]),
            base_details + tuple({"exploration": True} for _ in explore),
        )


# --- registry --------------------------------------------------------------------------------

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


def make_strategy(name: str) -> Strategy:
    """Build a strategy from its registry name (see :func:`available_strategies`)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError(f"strategy name must be a non-empty string, got {name!r}")
    key = name.strip().lower()
    if key == "default":
        strategy = make_strategy(DEFAULT_STRATEGY)
        return _renamed(strategy, "default")
    if key == "bandit":
        from labelwise.bandit import StrategyBandit  # the bandit builds on this module

        return Explore(StrategyBandit(), EXPLORE_FRACTION, name="bandit")
    if key.endswith("+explore"):
        base = make_strategy(key.removesuffix("+explore"))
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
    selector_factory = _SELECTORS.get(selector_part or "top")
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


def _renamed(strategy: Strategy, name: str) -> Strategy:
    import dataclasses

    return dataclasses.replace(strategy, name=name)  # type: ignore[type-var]
