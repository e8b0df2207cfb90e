"""Building the batch an annotator receives: strategy picks, exploration and routine items.

:func:`query` is the one entry point the learner, the simulation and the labeling worker share.
A :class:`BatchMix` decides how a batch of ``b`` items splits into

- **exploration** items, drawn uniformly at random from the unlabeled pool *before* the strategy
  picks: they guard against sampling bias and, labeled, give an unbiased accuracy estimate;
- **strategy** items, the strategy's most informative picks among the rest;
- **routine** items, ones the model is confident about: easy for a tired annotator, and a quality
  check on the annotator.

Fractions are honoured in expectation: ``b × fraction`` is rounded up or down at random, so a mix
of 10 % exploration still explores with batches of one. Every item carries a :class:`Reason`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError, PoolExhaustedError
from labelwise.models.registry import DEFAULT_CHUNK_SIZE, ModelOutputs
from labelwise.pool import Pool, as_indices
from labelwise.strategies.backends import (
    Candidates,
    LabeledSource,
    MatrixBackend,
    ScoringBackend,
    unsupported,
)
from labelwise.strategies.base import QueryContext, Selection, Strategy
from labelwise.strategies.factory import make_strategy
from labelwise.strategies.kinds import is_multi_label
from labelwise.strategies.multilabel_reasons import (
    COLD_START_SUMMARY,
    describe_multi_label,
    label_split,
    label_thresholds,
)
from labelwise.strategies.multilabel_scorers import min_margin_uncertainty
from labelwise.strategies.reasons import TYPICAL_SUMMARY, Reason, ReasonKind, percent
from labelwise.strategies.scorers import decision_margin, least_confident

__all__ = [
    "TYPICAL_SUMMARY",
    "Batch",
    "BatchMix",
    "QueryOptions",
    "Reason",
    "as_generator",
    "assemble_batch",
    "percent",
    "query",
]

# Routine items are drawn from the most confident tenth of a random sample of this many items.
_ROUTINE_SAMPLE = 2000
_ROUTINE_QUANTILE = 0.1


def as_generator(random_state: int | np.random.Generator | None) -> np.random.Generator:
    """A NumPy generator from a seed, an existing generator (used as is) or ``None``."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is not None and not isinstance(random_state, (int, np.integer)):
        raise InvalidParameterError(
            f"random_state must be an int, a numpy Generator or None, got {random_state!r}"
        )
    return np.random.default_rng(random_state)


@dataclass(frozen=True)
class BatchMix:
    """Fractions of each batch given to random exploration and to routine items.

    Parameters
    ----------
    exploration : float in [0, 1]
        Expected share of uniformly random items.
    routine : float in [0, 1]
        Expected share of high-confidence items. ``exploration + routine`` must not exceed 1.
    """

    exploration: float = 0.0
    routine: float = 0.0

    def __post_init__(self) -> None:
        for name in ("exploration", "routine"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InvalidParameterError(f"{name} must be a fraction in [0, 1], got {value!r}")
        if self.exploration + self.routine > 1.0:
            raise InvalidParameterError(
                f"exploration + routine must be at most 1, got {self.exploration} + {self.routine}"
            )

    def split(self, batch_size: int, rng: np.random.Generator) -> tuple[int, int, int]:
        """(exploration, strategy, routine) counts for one batch, rounded at random."""

        def draw(fraction: float) -> int:
            whole, part = divmod(batch_size * fraction, 1.0)
            return int(whole) + int(rng.random() < part)

        n_explore = draw(self.exploration) if self.exploration else 0
        n_routine = min(draw(self.routine), batch_size - n_explore) if self.routine else 0
        return n_explore, batch_size - n_explore - n_routine, n_routine


@dataclass(frozen=True)
class Batch:
    """Pool indices to label next, in the order to show them, each with its reason."""

    indices: NDArray[np.intp]
    reasons: tuple[Reason, ...]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(r.kind for r in self.reasons)


def _class_split(out: ModelOutputs, row: int, top: int = 3) -> tuple[tuple[str, float], ...]:
    values = out.values[row]
    if out.kind == "decision" and np.ndim(values) == 0:
        # Binary decision value: positive means classes_[1].
        v = float(values)
        first, second = (1, 0) if v > 0 else (0, 1)
        return ((str(out.classes[first]), abs(v)), (str(out.classes[second]), -abs(v)))
    order = np.argsort(-values, kind="stable")[:top]
    return tuple((str(out.classes[i]), float(values[i])) for i in order)


def _shares(split: tuple[tuple[str, float], ...]) -> str:
    """ "42% to positive, 31% to neutral and 27% to negative": every class of the split with
    its own probability (never renormalised over the first two), then what the classes left
    out of the split share, when that rounds to 1% or more."""
    parts = [f"{percent(p)}% to {label}" for label, p in split]
    rest = percent(max(0.0, 1.0 - sum(float(p) for _, p in split)))
    if rest:
        parts.append(f"{rest}% to the other classes")
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def describe_reason(
    kind: ReasonKind,
    split: tuple[tuple[str, float], ...],
    output_kind: str | None,
    details: dict[str, Any],
) -> str:
    if kind == "cold-start":
        return "random pick: fewer than two classes are labeled so far (cold start)"
    if kind == "typical":
        return TYPICAL_SUMMARY
    if kind == "exploration":
        return "random exploration pick: keeps the accuracy estimate unbiased"
    confident = split[0] if split else None
    if kind == "routine":
        if confident and output_kind == "proba":
            share = percent(confident[1])
            return f"routine check: the model is confident ({share}% {confident[0]})"
        return "routine check: the model is confident about this item"
    if "votes" in details:
        votes = ", ".join(f"{n} say {label}" for label, n in details["votes"].items())
        return f"the committee disagrees: {votes}"
    if "distance_to_labeled" in details:
        return (
            f"unlike anything labeled so far: nearest labeled item at distance "
            f"{details['distance_to_labeled']:.3g}"
        )
    if len(split) >= 2 and output_kind == "proba":
        return "the model gives " + _shares(split)
    if len(split) >= 2:
        return (
            f"close to the boundary between {split[0][0]} and {split[1][0]} "
            f"(decision gap {split[0][1] - split[1][1]:.3g})"
        )
    return "chosen by the strategy"


def routine_sample_size(n_remaining: int) -> int:
    """How many of the remaining items to score when looking for routine ones."""
    return min(n_remaining, _ROUTINE_SAMPLE)


def confident_picks(
    sample: NDArray[np.intp], out: ModelOutputs, n: int, rng: np.random.Generator
) -> NDArray[np.intp]:
    """Routine items: ``n`` rows drawn at random among the most confident tenth of ``sample``
    (rows in ascending order; ``out`` the model's outputs on them)."""
    if out.thresholds is not None:  # multi-label: the least sure label decision decides
        uncertainty = min_margin_uncertainty(out.values, out.thresholds)
    elif out.kind == "proba":
        uncertainty = least_confident(out.values)
    else:
        uncertainty = decision_margin(out.values)
    n_confident = max(n, int(np.ceil(len(sample) * _ROUTINE_QUANTILE)))
    confident = sample[np.argsort(uncertainty, kind="stable")[:n_confident]]
    return rng.choice(confident, size=n, replace=False).astype(np.intp)


def _routine_picks(
    backend: ScoringBackend,
    model: Any,
    remaining: Candidates,
    n: int,
    rng: np.random.Generator,
) -> NDArray[np.intp]:
    size = routine_sample_size(len(remaining))
    sample = np.sort(remaining.take(rng.choice(len(remaining), size=size, replace=False)))
    return confident_picks(sample, backend.model_outputs(model, sample), n, rng)


class QueryOptions(TypedDict, total=False):
    """The options of :func:`query` a caller may pass on as they are (each one's default is
    :func:`query`'s); :func:`labelwise.scale.score_partitioned` takes the same."""

    strategy: str | Strategy
    batch_size: int
    mix: BatchMix | None
    random_state: int | np.random.Generator | None
    estimator: Any
    candidates: ArrayLike | None
    chunk_size: int
    random_sample: ArrayLike | None


def query(
    pool: Pool | LabeledSource,
    model: Any | None,
    *,
    strategy: str | Strategy = "default",
    batch_size: int = 10,
    mix: BatchMix | None = None,
    random_state: int | np.random.Generator | None = None,
    estimator: Any = None,
    candidates: ArrayLike | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    random_sample: ArrayLike | None = None,
) -> Batch:
    """Choose the next ``batch_size`` items to label.

    Parameters
    ----------
    pool : Pool or LabeledSource
        Features and the labels known so far: a :class:`~labelwise.pool.Pool`, or the
        labels and a scoring backend of a pool held elsewhere (a partitioned pool on a cluster, see
        :func:`labelwise.scale.score_partitioned`). The batch is the same either way.
    model : fitted classifier or None
        Trained on the labeled set. ``None`` (or fewer than two labeled classes) means a cold
        start: the batch is drawn at random and says so.
    strategy : str or Strategy
        A registry name (see :func:`labelwise.available_strategies`) or a strategy object.
    batch_size : int
    mix : BatchMix, optional
        Exploration and routine shares; none by default.
    random_state : int, Generator or None
        Same seed, same batch.
    estimator : unfitted classifier, optional
        The template ``model`` was cloned from (committees clone it again).
    candidates : int array, optional
        Pool indices to choose from; all unlabeled items by default. Must all be unlabeled.
    chunk_size : int
        Rows scored at once.
    random_sample : int array, optional
        Labeled pool indices drawn uniformly at random (seed set, exploration items), for
        strategies that measure themselves on an unbiased sample (``"bandit"``).

    Raises
    ------
    PoolExhaustedError
        Fewer than ``batch_size`` candidates remain.
    InvalidParameterError
        A bad batch size or chunk size, a strategy name (or a strategy the pool's backend
        cannot run, saying why), a candidate index.
    InvalidDataError
        The model was fitted on another number of features than the pool has.
    """
    _check_count("batch_size", batch_size)
    _check_count("chunk_size", chunk_size)
    rng = as_generator(random_state)
    multi_label = None if model is None else is_multi_label(model)
    strat = (
        make_strategy(strategy, multi_label=multi_label) if isinstance(strategy, str) else strategy
    )
    mix = mix or BatchMix()
    if isinstance(pool, Pool):
        backend: ScoringBackend = MatrixBackend(pool.X, int(chunk_size))
        labeled = pool.labeled
        y_labeled = pool.labels_of(labeled) if len(labeled) else np.empty(0, dtype=object)
    else:
        backend = pool.scoring_backend(int(chunk_size))
        labeled, y_labeled = pool.labeled, pool.y_labeled
    refusal = unsupported(strat, backend)
    if refusal is not None:
        raise InvalidParameterError(refusal)

    cand = _candidates(backend, labeled, candidates)
    if len(cand) == 0:
        raise PoolExhaustedError("no unlabeled items left to query")
    if batch_size > len(cand):
        raise PoolExhaustedError(
            f"asked for a batch of {batch_size} but only {len(cand)} unlabeled items remain"
        )
    n_features = getattr(model, "n_features_in_", None)
    if n_features is not None and n_features != backend.n_features:
        raise InvalidDataError(
            f"the model was fitted on {n_features} features but the pool has {backend.n_features}"
        )
    if model is None or len(np.unique(y_labeled)) < 2:
        picks = cand.take(rng.choice(len(cand), size=batch_size, replace=False))
        summary = COLD_START_SUMMARY if multi_label else describe_reason("cold-start", (), None, {})
        reason = Reason("cold-start", strat.name, summary)
        return Batch(picks, (reason,) * batch_size)

    n_explore, n_strategy, n_routine = mix.split(batch_size, rng)
    explore = cand.take(rng.choice(len(cand), size=n_explore, replace=False))
    available = cand.without(explore)
    selection = Selection(np.empty(0, np.intp), np.empty(0))
    try:
        if n_strategy:
            ctx = QueryContext(
                X=pool.X if isinstance(pool, Pool) else None,
                candidates=available,
                labeled=labeled,
                y_labeled=y_labeled,
                model=model,
                estimator=estimator,
                random_sample=(
                    None
                    if random_sample is None
                    else as_indices(random_sample, backend.n_rows, name="random_sample")
                ),
                backend=backend,
            )
            selection = strat.select(ctx, n_strategy, rng)
            available = available.without(selection.indices)
        routine = (
            _routine_picks(backend, model, available, n_routine, rng)
            if n_routine
            else np.empty(0, np.intp)
        )
        return assemble_batch(
            strat.name,
            selection,
            explore,
            routine,
            lambda indices: backend.model_outputs(model, indices),
            rng,
        )
    finally:
        backend.close()


def _candidates(
    backend: ScoringBackend, labeled: NDArray[np.intp], candidates: ArrayLike | None
) -> Candidates:
    """The candidate set: ``candidates`` (checked to be unlabeled rows), or every unlabeled
    row, in the form the backend keeps it."""
    if candidates is None:
        return backend.candidates(None, labeled)
    rows = _sorted_unique(as_indices(candidates, backend.n_rows, name="candidates"))
    is_labeled = np.zeros(backend.n_rows, dtype=bool)
    is_labeled[labeled] = True
    if is_labeled[rows].any():
        first = int(rows[np.flatnonzero(is_labeled[rows])[0]])
        raise InvalidParameterError(f"candidate {first} is already labeled")
    return backend.candidates(rows, labeled)


def _check_count(name: str, value: Any) -> None:
    """``value`` must be a whole number of at least 1 (a batch size, a chunk size)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise InvalidParameterError(f"{name} must be at least 1, got {value}")


def _sorted_unique(indices: NDArray[np.intp]) -> NDArray[np.intp]:
    """``np.unique`` of an index array, by sorting and comparing neighbours: NumPy 2's
    ``unique`` hashes first and takes seconds on a million indices; candidates usually come
    sorted already, and then this is one pass."""
    if len(indices) > 1 and not bool(np.all(indices[1:] > indices[:-1])):
        indices = np.sort(indices)
        indices = indices[np.concatenate(([True], indices[1:] != indices[:-1]))]
    return indices


def assemble_batch(
    strategy_name: str,
    selection: Selection,
    explore: NDArray[np.intp],
    routine: NDArray[np.intp],
    outputs: Callable[[NDArray[np.intp]], ModelOutputs],
    rng: np.random.Generator,
) -> Batch:
    """The batch from its picks, each with its reason: strategy picks first (in rank order),
    then every random or routine item, in the display order drawn from ``rng``. ``outputs``
    gives the model's outputs for the batch's rows (one machine or a cluster)."""
    details = selection.details or tuple({} for _ in selection.indices)
    ranked = [i for i, d in enumerate(details) if not d.get("exploration")]
    inner_explore = [i for i, d in enumerate(details) if d.get("exploration")]
    indices = np.concatenate(
        [selection.indices[ranked], selection.indices[inner_explore], explore, routine]
    ).astype(np.intp)
    kinds: list[ReasonKind] = []
    kinds += ["strategy"] * len(ranked)
    kinds += ["exploration"] * (len(inner_explore) + len(explore))
    kinds += ["routine"] * len(routine)
    out = outputs(indices)
    shared = {"thresholds": label_thresholds(out)} if out.multi_label else {}
    reasons = []
    for row, kind in enumerate(kinds):
        split = label_split(out, row) if out.multi_label else _class_split(out, row)
        if kind == "strategy":
            utility = float(selection.utilities[ranked[row]])
            extra = {**details[ranked[row]], **shared}
            reasons.append(
                Reason(
                    kind,
                    strategy_name,
                    _describe(kind, split, out, extra, scored=not np.isnan(utility)),
                    utility=None if np.isnan(utility) else utility,
                    rank=row + 1,
                    class_split=split,
                    output_kind=out.kind,
                    details=extra,
                )
            )
        else:
            reasons.append(
                Reason(
                    kind,
                    strategy_name,
                    _describe(kind, split, out, dict(shared)),
                    class_split=split,
                    output_kind=out.kind,
                    details=dict(shared),
                )
            )
    order = _interleave(len(ranked), len(indices) - len(ranked), rng)
    return Batch(indices[order], tuple(reasons[i] for i in order))


def _describe(
    kind: ReasonKind,
    split: tuple[tuple[str, float], ...],
    out: ModelOutputs,
    details: dict[str, Any],
    *,
    scored: bool = True,
) -> str:
    """A pick's sentence: a multi-label model's strategy and routine picks name labels (see
    :mod:`labelwise.strategies.multilabel_reasons`); everything else as :func:`describe_reason`."""
    if out.multi_label and kind in ("strategy", "routine"):
        return describe_multi_label(kind, split, details, scored=scored)
    return describe_reason(kind, split, out.kind, details)


def _interleave(n_strategy: int, n_other: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """Display order: strategy picks keep their rank order; the others are spread among them.

    Annotators should not be able to tell exploration or routine items by their position.
    """
    total = n_strategy + n_other
    others = np.arange(n_strategy, total)
    slots = np.sort(rng.choice(total, size=len(others), replace=False))
    order = np.empty(total, dtype=np.intp)
    is_other = np.zeros(total, dtype=bool)
    is_other[slots] = True
    order[is_other] = rng.permutation(others)
    order[~is_other] = np.arange(n_strategy)
    return order
