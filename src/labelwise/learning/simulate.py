"""Simulation: replay a fully labeled dataset to compare strategies before paying for labels.

For every seed the data is split once (stratified) into a pool and a holdout; every strategy then
starts from the same random initial set of that seed, queries with its own choices, gets its
answers from a :class:`~labelwise.learning.loop.GroundTruthOracle` and is evaluated on the holdout
after each batch. The same model fitted on the *whole* pool gives the reference score that learning
curves are measured against ("labels needed to reach 99 % of the full-pool macro-F1").

With ``multi_label`` each item carries a set of labels (possibly empty): the answers are label
sets in any form :func:`~labelwise.learning.multilabel_eval.canonical_sets` reads, the label set
is the union of the names they use (sorted) unless given, the split is a plain random one (label
sets are too many and too rare to stratify on), the model is a
:class:`~labelwise.models.multilabel.LabelSetClassifier` over ``config.model`` and the curves
hold macro-F1, micro-F1 and subset accuracy (:data:`MULTI_LABEL_CURVE_METRICS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import NDArray
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.features.scaling import fit_to_pool
from labelwise.io.load import Dataset
from labelwise.learning.evaluate import METRIC_NAMES, Metrics, aubc, evaluate
from labelwise.learning.learner import ActiveLearner
from labelwise.learning.loop import GroundTruthOracle, run_active_learning
from labelwise.learning.multilabel_eval import canonical_sets, evaluate_label_sets, label_names_of
from labelwise.learning.multilabel_metrics import MULTI_LABEL_METRIC_NAMES, MultiLabelMetrics
from labelwise.learning.stopping import Budget
from labelwise.models.multilabel import LabelSetClassifier
from labelwise.models.registry import make_model
from labelwise.pool import check_matrix, take_rows
from labelwise.strategies.factory import make_strategy

__all__ = [
    "CURVE_METRICS",
    "MULTI_LABEL_CURVE_METRICS",
    "SeedRun",
    "SimulationConfig",
    "SimulationResult",
    "simulate",
    "simulate_dataset",
]

CURVE_METRICS = ("accuracy", "macro_f1", "balanced_accuracy")
#: What a multi-label run's curves record after every round.
MULTI_LABEL_CURVE_METRICS = ("macro_f1", "micro_f1", "subset_accuracy")


@dataclass(frozen=True)
class SimulationConfig:
    """What to compare and how.

    Attributes
    ----------
    strategies : tuple of str
        Registry names.
    seeds : tuple of int
        Each seed fixes one split, one initial set and one oracle noise stream.
    initial : int
        Random labels to start from.
    batch_size : int
        Items queried per round.
    budget : int or None
        Total labels, initial set included; default ``min(pool size, 500)``.
    model : str
        Registry name of the model (see :func:`labelwise.models.registry.available_models`).
    test_size : float
        Share of the data held out for evaluation.
    noise : float
        Chance that the oracle answers a wrong class.
    metric : str
        The metric AUBC and the "labels to reach" figures use.
    n_jobs : int
        Parallel processes over (strategy, seed) runs; 1 runs in this process.
    initial_method : {"random", "typical"}
        How the initial labels are chosen: a uniform sample, or the most typical item of each
        of ``initial`` k-means clusters (TypiClust). Either way the same for every strategy of
        a seed.
    features : str or None
        The representation :func:`simulate_dataset` builds (a ``features`` word, see
        :func:`labelwise.features.parse_features`; the kind's default when None).
        :func:`simulate`, given a matrix, only records it.
    multi_label : bool
        Items carry label sets: strategies are multi-label names and ``metric`` one of
        ``MULTI_LABEL_METRIC_NAMES`` (macro_f1, micro_f1, subset_accuracy).
    """

    strategies: tuple[str, ...] = ("random", "margin", "default")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    initial: int = 20
    batch_size: int = 10
    budget: int | None = None
    model: str = "logreg"
    test_size: float = 0.3
    noise: float = 0.0
    metric: str = "macro_f1"
    n_jobs: int = 1
    initial_method: str = "random"
    features: str | None = None
    multi_label: bool = False

    def __post_init__(self) -> None:
        if not self.strategies:
            raise InvalidParameterError("give at least one strategy")
        if len(set(self.strategies)) != len(self.strategies):
            raise InvalidParameterError(f"strategies {self.strategies!r} repeats a name")
        for name in self.strategies:
            # Raises on an unknown name (or one of the other kind) before any work starts.
            if self.multi_label:
                make_strategy(name, multi_label=True)
            else:
                make_strategy(name)
        make_model(self.model)
        if not self.seeds:
            raise InvalidParameterError("give at least one seed")
        if self.initial < 1:
            raise InvalidParameterError(f"initial must be at least 1, got {self.initial}")
        if self.batch_size < 1:
            raise InvalidParameterError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.budget is not None and self.budget <= self.initial:
            raise InvalidParameterError(
                f"budget ({self.budget}) must exceed the initial set ({self.initial})"
            )
        if self.initial_method not in ("random", "typical"):
            raise InvalidParameterError(
                f"initial_method must be 'random' or 'typical', got {self.initial_method!r}"
            )
        if not 0.0 < self.test_size < 1.0:
            raise InvalidParameterError(f"test_size must be in (0, 1), got {self.test_size}")
        if not 0.0 <= self.noise < 1.0:
            raise InvalidParameterError(f"noise must be in [0, 1), got {self.noise}")
        names = MULTI_LABEL_METRIC_NAMES if self.multi_label else METRIC_NAMES
        if self.metric not in names:
            kind = "multi-label " if self.multi_label else ""
            raise InvalidParameterError(
                f"unknown {kind}metric {self.metric!r}; expected one of {', '.join(names)}"
            )

    @property
    def curve_metrics(self) -> tuple[str, ...]:
        """The scores every round records: :data:`CURVE_METRICS`, or
        :data:`MULTI_LABEL_CURVE_METRICS` for a multi-label run."""
        return MULTI_LABEL_CURVE_METRICS if self.multi_label else CURVE_METRICS


@dataclass(frozen=True)
class SeedRun:
    """One strategy's learning curve for one seed."""

    strategy: str
    seed: int
    labels: tuple[int, ...]
    scores: dict[str, tuple[float, ...]]
    stopped_because: str
    seconds: float

    def curve_points(self) -> list[dict[str, float]]:
        """``[{labels, accuracy, macro_f1, balanced_accuracy}, ...]``, one per round (for a
        multi-label run ``{labels, macro_f1, micro_f1, subset_accuracy}``)."""
        return [
            {"labels": n, **{m: values[i] for m, values in self.scores.items()}}
            for i, n in enumerate(self.labels)
        ]


@dataclass(frozen=True)
class SimulationResult:
    """Learning curves of every (strategy, seed) and the full-pool reference per seed."""

    config: SimulationConfig
    runs: dict[str, tuple[SeedRun, ...]]
    full_pool: dict[int, Metrics | MultiLabelMetrics]
    n_items: int
    n_pool: int
    classes: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def aubc(self, strategy: str, metric: str | None = None) -> list[float]:
        """Area under each seed's curve (over labels), in seed order."""
        m = metric or self.config.metric
        return [aubc(run.scores[m], run.labels) for run in self.runs[strategy]]

    def labels_to_reach(
        self, strategy: str, fraction: float, metric: str | None = None
    ) -> list[int | None]:
        """Per seed, the first label count whose score reaches ``fraction`` × the full-pool score
        (None when the budget ran out first)."""
        m = metric or self.config.metric
        out: list[int | None] = []
        for run in self.runs[strategy]:
            target = fraction * self.full_pool[run.seed].get(m)
            hits = [n for n, s in zip(run.labels, run.scores[m], strict=True) if s >= target]
            out.append(hits[0] if hits else None)
        return out

    def to_json(self) -> dict[str, Any]:
        """The contract of ``results.json``: per strategy, ``aubc`` (one per seed) and
        ``curves`` (per seed, a list of ``{labels, accuracy, macro_f1, balanced_accuracy}``)."""
        return {
            name: {
                "aubc": self.aubc(name),
                "curves": [run.curve_points() for run in runs],
                "seeds": [run.seed for run in runs],
                "labels_to_95": self.labels_to_reach(name, 0.95),
                "labels_to_99": self.labels_to_reach(name, 0.99),
            }
            for name, runs in self.runs.items()
        }

    def run_info(self) -> dict[str, Any]:
        """Configuration and reference scores (``run.json``)."""
        return {
            "config": asdict(self.config),
            "n_items": self.n_items,
            "n_pool": self.n_pool,
            "classes": list(self.classes),
            "full_pool": {
                str(seed): {
                    m: metrics.get(m)
                    for m in (MULTI_LABEL_METRIC_NAMES if self.config.multi_label else METRIC_NAMES)
                }
                for seed, metrics in self.full_pool.items()
            },
            **self.extra,
        }


def _split(
    y: NDArray[Any], test_size: float, seed: int, *, stratify: bool = True
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    idx = np.arange(len(y))
    train, test = train_test_split(
        idx, test_size=test_size, random_state=seed, stratify=y if stratify else None
    )
    return np.sort(train).astype(np.intp), np.sort(test).astype(np.intp)


@dataclass(frozen=True)
class _Holdout:
    """One seed's replay data: the dataset split into the pool (``train``) and the test rows,
    with the estimator and the labels every run on it shares."""

    estimator: Any
    X: Any
    y: NDArray[Any]
    train: NDArray[np.intp]
    test: NDArray[np.intp]
    labels: list[Any]
    multi_label: bool = False


def _full_pool(data: _Holdout) -> Metrics | MultiLabelMetrics:
    X, y, train, test = data.X, data.y, data.train, data.test
    X_pool = take_rows(X, train)
    estimator = data.estimator
    if data.multi_label and not getattr(estimator, "multi_label", False):
        estimator = LabelSetClassifier(estimator, data.labels)
    with threadpool_limits(limits=1):
        # Scaled by the pool's statistics, as the active learner's models are.
        model = clone(fit_to_pool(estimator, X_pool)).fit(X_pool, y[train])
    if data.multi_label:
        return evaluate_label_sets(model, take_rows(X, test), y[test], data.labels)
    return evaluate(model, take_rows(X, test), y[test], labels=data.labels)


def _one_run(data: _Holdout, strategy: str, seed: int, config: SimulationConfig) -> SeedRun:
    import time

    X, y, train, test = data.X, data.y, data.train, data.test
    start = time.perf_counter()
    X_pool, X_test = take_rows(X, train), take_rows(X, test)
    learner = ActiveLearner(
        data.estimator,
        X_pool,
        strategy=strategy,
        batch_size=config.batch_size,
        classes=data.labels,
        multi_label=data.multi_label,
        random_state=seed,
    )
    oracle = GroundTruthOracle(y[train], noise=config.noise, random_state=seed + 1_000_003)
    budget = config.budget if config.budget is not None else min(len(train), 500)
    result = run_active_learning(
        learner,
        oracle,
        initial=config.initial,
        initial_method=config.initial_method,
        X_test=X_test,
        y_test=y[test],
        stopping=[Budget(min(budget, len(train)))],
    )
    rounds = [r for r in result.rounds if r.metrics is not None]
    return SeedRun(
        strategy=strategy,
        seed=seed,
        labels=tuple(r.n_labels for r in rounds),
        scores={
            m: tuple(r.metrics.get(m) for r in rounds if r.metrics) for m in config.curve_metrics
        },
        stopped_because=result.stopped_because,
        seconds=time.perf_counter() - start,
    )


def simulate(
    X: Any,
    y: Sequence[Any] | NDArray[Any],
    config: SimulationConfig | None = None,
    *,
    estimator: Any = None,
    labels: Sequence[str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Replay ``(X, y)`` for every strategy and seed of ``config``.

    Parameters
    ----------
    X : matrix of shape (n_items, n_features)
    y : array-like of shape (n_items,)
        The ground truth the oracle answers from; for a multi-label run, each item's label set
        (a ``;``-joined string, a JSON list or a list of names; None or ``""``: the empty set).
    config : SimulationConfig
    estimator : classifier, optional
        Overrides ``config.model`` (for a multi-label run, the per-label model).
    labels : sequence of str, optional
        Multi-label: the labels, in order (default: every name in ``y``, sorted).
    on_progress : callable(done, total), optional
        Called as runs finish.
    """
    config = config or SimulationConfig()
    X = check_matrix(X)
    if config.multi_label:
        names = tuple(labels) if labels is not None else label_names_of(y)
        if not names:
            raise InvalidDataError("the label sets name no label: every item's set is empty")
        y_arr = canonical_sets(y, names)
    else:
        y_arr = np.asarray(y)
    if y_arr.ndim != 1 or len(y_arr) != X.shape[0]:
        raise InvalidDataError(
            f"X has {X.shape[0]} rows but y has shape {y_arr.shape}; they must match"
        )
    if config.multi_label:
        return _run_all(X, y_arr, config, estimator, list(names), on_progress)
    classes, counts = np.unique(y_arr, return_counts=True)
    if len(classes) < 2:
        raise InvalidDataError(
            f"simulation needs at least two classes; the labels hold only {classes.tolist()!r}"
        )
    if counts.min() < 2:
        rare = classes[np.argmin(counts)]
        raise InvalidDataError(
            f"class {rare!r} has a single item; a stratified holdout needs at least two per class"
        )
    return _run_all(X, y_arr, config, estimator, sorted(classes.tolist()), on_progress)


def _run_all(
    X: Any,
    y_arr: NDArray[Any],
    config: SimulationConfig,
    estimator: Any,
    labels: list[Any],
    on_progress: Callable[[int, int], None] | None,
) -> SimulationResult:
    """Every (strategy, seed) run and the full-pool references, on checked data."""
    est = estimator if estimator is not None else make_model(config.model)
    multi = config.multi_label
    if multi and len(set(y_arr.tolist())) < 2:
        raise InvalidDataError(
            f"simulation needs at least two different label sets; every item has {y_arr[0]!r}"
        )
    holdouts = {
        seed: _Holdout(
            est, X, y_arr, *_split(y_arr, config.test_size, seed, stratify=not multi), labels, multi
        )
        for seed in config.seeds
    }

    tasks = [
        delayed(_one_run)(holdouts[seed], name, seed, config)
        for name in config.strategies
        for seed in config.seeds
    ]
    references = [delayed(_full_pool)(holdouts[seed]) for seed in config.seeds]
    total = len(tasks)
    runs: dict[str, list[SeedRun]] = {name: [] for name in config.strategies}
    parallel = Parallel(n_jobs=config.n_jobs, return_as="generator_unordered")
    for done, run in enumerate(parallel(tasks), start=1):
        runs[run.strategy].append(run)
        if on_progress is not None:
            on_progress(done, total)
    full = Parallel(n_jobs=config.n_jobs)(references)
    return SimulationResult(
        config=config,
        runs={name: tuple(sorted(r, key=lambda run: run.seed)) for name, r in runs.items()},
        full_pool=dict(zip(config.seeds, full, strict=True)),
        n_items=len(y_arr),
        n_pool=len(holdouts[config.seeds[0]].train),
        classes=tuple(str(c) for c in labels),
    )


def simulate_dataset(
    dataset: Dataset,
    config: SimulationConfig | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Replay a labeled :class:`~labelwise.io.load.Dataset` in ``config.features``.

    The items are featurized once, on the whole dataset (no featurizer sees a label), and the
    model is ``config.model`` -- for ``auto`` features wrapped to choose its representation at
    every fit (:func:`labelwise.features.model_for_features`). ``run.json`` records the
    representation. A multi-label run reads the label column as label sets, a missing or empty
    cell as the empty set.
    """
    from labelwise.features import feature_blocks, featurize, parse_features
    from labelwise.models.auto import model_for_features

    config = config or SimulationConfig()
    spec = parse_features(dataset.kind, config.features)
    if config.multi_label:
        if dataset.labels is None:
            raise InvalidDataError(
                f"{dataset.source} has no label column to read label sets from; "
                "name it with label_column="
            )
        y = dataset.labels
    else:
        y = dataset.require_labels()
    X, featurizer = featurize(dataset, features=spec.name)
    blocks = feature_blocks(featurizer, X.shape[1])
    estimator = model_for_features(make_model(config.model), spec, blocks)
    result = simulate(
        X, y, replace(config, features=spec.name), estimator=estimator, on_progress=on_progress
    )
    result.extra.update(
        {
            "features": spec.name,
            "n_features": int(X.shape[1]),
            "blocks": {name: list(span) for name, span in blocks.items()},
        }
    )
    return result
