"""Choosing a batch from a partitioned pool on a Dask cluster: :func:`score_partitioned`.

The contract
------------
``score_partitioned(parts, model, client=c, labeled=L, y_labeled=y, **options)`` returns the
same :class:`~labelwise.query.Batch` as ``query(pool, model, **options)`` on one machine, where
``pool`` is a :class:`~labelwise.pool.Pool` over the matrix ``parts`` was written from, with
``y`` given to the rows ``L``: the same rows in the same order, with equal reasons (kinds,
utilities, ranks, class splits, committee votes). The options are ``strategy``, ``batch_size``,
``mix``, ``random_state`` (an int seed, or a generator in the same state), ``estimator``,
``candidates``, ``chunk_size`` and ``random_sample``; a stateful strategy (the bandit) given to
both in the same state ends in the same state. The model must predict as it would on one
machine (the same fitted object, unpickled; the same library versions on the workers).

How it stays equal
------------------
Every random draw is made on the client, in the single-machine order, from the same generator:
the batch mix's split, exploration and random picks (uniform over the whole candidate set,
drawn as positions: the client knows how many candidates there are, not which), committee
bootstraps, tie-breaks, k-means seeds, routine picks and the display order. The workers only
score: each shard scores exactly the blocks the single-machine path scores, so utilities agree
to the last bit (see :mod:`labelwise.scale.shards`), and keeps its top rows; the client merges
them into what :func:`~labelwise.selectors.top_k` would pick over the whole pool, ties included
(see :mod:`labelwise.scale.topk`). The diversity selectors (k-means, k-center, density) then
run on the client among those top candidates, on their feature rows fetched from the workers;
``coreset`` and ``badge`` run on the client on their random subsample of the candidates
(``max_candidates``, 50,000 by default).

Strategies: every ``scorer`` or ``scorer+selector`` of the registry (uncertainty and QBC with
top, kmeans, clusters, kcenter, density), ``+explore``, ``default``, ``random``, ``coreset``,
``badge`` and ``bandit`` (its reward, a few fits on the labeled rows, on the client; its arm's
selection as that strategy's); not ``bald`` (its dropout masks are seeded per block of the
single-machine path, or drawn in one call over the pool).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from labelwise.bandit import StrategyBandit
from labelwise.committee import Committee
from labelwise.exceptions import (
    InvalidDataError,
    InvalidParameterError,
    ModelCapabilityError,
    PoolExhaustedError,
)
from labelwise.models import DEFAULT_CHUNK_SIZE, ModelOutputs, model_outputs, read_in_place
from labelwise.pool import Matrix, as_indices, as_label_array
from labelwise.query import (
    Batch,
    BatchMix,
    Reason,
    as_generator,
    assemble_batch,
    confident_picks,
    describe_reason,
    routine_sample_size,
)
from labelwise.scale.partitions import PartitionedPool, take_grouped
from labelwise.scale.shards import Utility, read_partition_rows
from labelwise.scale.topk import CandidateSet, ShardedScores
from labelwise.selectors import density_weights, kcenter_greedy, top_k, weighted_kmeans
from labelwise.strategies import (
    Badge,
    CoreSet,
    DensityWeighted,
    Explore,
    KCenterAmongTop,
    KMeansAmongTop,
    QueryByCommittee,
    QueryContext,
    RandomSampling,
    Selection,
    Strategy,
    TopK,
    UncertaintySampling,
    _vote_counts,
    make_strategy,
    represent,
)

__all__ = ["score_partitioned", "supports"]

_SELECTORS = (TopK, KMeansAmongTop, KCenterAmongTop, DensityWeighted)
_SUPPORTED = (
    "uncertainty and QBC strategies with the top, kmeans, clusters, kcenter or density "
    "selector, +explore, default, random, coreset, badge and bandit (not bald)"
)


def supports(strategy: str | Strategy) -> bool:
    """Whether :func:`score_partitioned` can run ``strategy`` (a name or a strategy object)."""
    strat: Any = make_strategy(strategy) if isinstance(strategy, str) else strategy
    if type(strat) is Explore:
        return supports(strat.base)
    if type(strat) in (UncertaintySampling, QueryByCommittee):
        return type(strat.selector) in _SELECTORS
    if type(strat) is StrategyBandit:
        return all(supports(strat.strategy_of(arm)) for arm in strat.arms)
    return type(strat) in (RandomSampling, CoreSet, Badge)


@dataclass
class _Run:
    """One query's view of the cluster: the pool, the model, and the rows fetched so far."""

    client: Any
    pool: PartitionedPool
    model: Any
    estimator: Any
    labeled: NDArray[np.intp]
    y_labeled: NDArray[Any]
    chunk_size: int
    random_sample: NDArray[np.intp] | None = None
    passes: list[ShardedScores] = field(default_factory=list)
    _labeled_rows: Matrix | None = None

    def fetch(self, rows: NDArray[np.intp]) -> Matrix:
        """Feature rows, in the order given, read by the workers (one task per partition)."""
        parts = self.pool.partitions

        def read(asks: list[tuple[int, NDArray[np.intp]]]) -> list[Matrix]:
            futures = [
                self.client.submit(read_partition_rows, parts[n], local, pure=False)
                for n, local in asks
            ]
            return list(self.client.gather(futures))

        return take_grouped(self.pool, np.asarray(rows, dtype=np.intp), read)

    def labeled_rows(self) -> Matrix:
        if self._labeled_rows is None:
            self._labeled_rows = self.fetch(self.labeled)
        return self._labeled_rows

    def local(self, rows: NDArray[np.intp]) -> tuple[Matrix, NDArray[np.intp]]:
        """A fetched matrix and row numbers in it that the model scores in the same blocks as
        it scores ``rows`` of the whole pool: the span of ``rows`` when the single-machine
        path would read them in place, else just the rows."""
        dense_probe = np.empty((0, 0))  # read_in_place asks only whether the pool is dense
        if not self.pool.is_sparse and read_in_place(dense_probe, rows):
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            return self.fetch(np.arange(lo, hi, dtype=np.intp)), (rows - lo).astype(np.intp)
        return self.fetch(rows), np.arange(len(rows), dtype=np.intp)

    def outputs(self, rows: NDArray[np.intp]) -> ModelOutputs:
        """``model_outputs(model, X, rows)`` as on one machine."""
        X, local = self.local(rows)
        return model_outputs(self.model, X, local, chunk_size=self.chunk_size)

    def represent(self, rows: NDArray[np.intp] | None) -> Matrix:
        """:func:`~labelwise.strategies.represent` of pool rows (None: the labeled rows)."""
        X = self.labeled_rows() if rows is None else self.fetch(rows)
        return represent(self._context(X), np.arange(X.shape[0], dtype=np.intp))

    def _context(self, X: Matrix) -> QueryContext:
        empty = np.empty(0, np.intp)
        return QueryContext(
            X=X,
            candidates=empty,
            labeled=empty,
            y_labeled=self.y_labeled[:0],
            model=self.model,
            estimator=self.estimator,
            chunk_size=self.chunk_size,
        )

    def top(
        self, utility: Utility, cand: CandidateSet, k: int, rng: np.random.Generator
    ) -> tuple[NDArray[np.intp], NDArray[np.float64], ShardedScores]:
        """One scoring pass on the cluster, and its top ``k`` rows (best first)."""
        scores = ShardedScores(self.client, self.pool, cand, utility, k, self.chunk_size)
        self.passes.append(scores)
        rows, utilities = scores.top_k(k, rng)
        return rows, utilities, scores

    def release(self) -> None:
        for scores in self.passes:
            scores.release()


class _LabeledRows:
    """The pool as the bandit's reward reads it: ``X[rows]`` for labeled rows, fetched once."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def __getitem__(self, rows: NDArray[np.intp]) -> Matrix:
        rows = np.asarray(rows, dtype=np.intp)
        at = np.searchsorted(self.run.labeled, rows)  # labeled rows are ascending
        if not np.array_equal(self.run.labeled[np.minimum(at, len(self.run.labeled) - 1)], rows):
            raise InvalidParameterError("only labeled rows are fetched for the bandit's reward")
        return self.run.labeled_rows()[at]


def _among_top(
    run: _Run,
    selector: Any,
    utility: Utility,
    cand: CandidateSet,
    k: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.intp], NDArray[np.float64], ShardedScores]:
    """The selector's ``pick`` (see :mod:`labelwise.strategies`), with the pool-wide top
    candidates from the cluster: rows and utilities of the picks, best first."""
    n = len(cand)
    if type(selector) is TopK:
        rows, utilities, scores = run.top(utility, cand, k, rng)
        return rows, utilities, scores
    if type(selector) is DensityWeighted:
        m = min(n, max(selector.min_candidates, selector.prefilter * k))
    else:
        m = min(n, selector.prefilter * k)
    top, u, scores = run.top(utility, cand, m, rng)
    if type(selector) is KMeansAmongTop:
        positions = weighted_kmeans(
            run.represent(top), u, k, rng, representative=selector.representative
        )
    elif type(selector) is KCenterAmongTop:
        rep = run.represent(top)
        positions, _ = kcenter_greedy(rep, run.represent(None), k, rng)
    else:
        span = float(u.max() - u.min())
        scaled = (u - u.min()) / span * 0.99 + 0.01 if span > 0 else np.ones(len(u))
        density = density_weights(run.represent(top), rng)
        positions = top_k(scaled * density**selector.beta, k, rng)
    return top[positions], u[positions], scores


def _sampled(
    run: _Run, strategy: CoreSet | Badge, cand: CandidateSet, k: int, rng: np.random.Generator
) -> Selection:
    """Core-set or BADGE on the client, on their random subsample of the candidates."""
    limit = strategy.max_candidates
    if limit is not None and len(cand) > int(limit):
        sample = np.sort(cand.take(rng.choice(len(cand), size=int(limit), replace=False)))
    else:
        sample = cand.take(np.arange(len(cand)))
    X, local = run.local(sample)
    n_labeled = len(run.labeled)
    if type(strategy) is CoreSet and n_labeled:
        X = (
            sp.vstack([X, run.labeled_rows()], format="csr")
            if sp.issparse(X)
            else (np.concatenate([X, run.labeled_rows()]))
        )
        labeled_local = np.arange(X.shape[0] - n_labeled, X.shape[0], dtype=np.intp)
    else:
        labeled_local = np.empty(0, np.intp)
    ctx = QueryContext(
        X=X,
        candidates=local,
        labeled=labeled_local,
        y_labeled=run.y_labeled,
        model=run.model,
        estimator=run.estimator,
        chunk_size=run.chunk_size,
    )
    picked = strategy.select(ctx, k, rng)
    # Local candidate i stands for sample[i]: map the picks back to pool rows.
    back = np.empty(X.shape[0], dtype=np.intp)
    back[local] = sample
    return Selection(back[picked.indices], picked.utilities, picked.details)


def _select(
    run: _Run, strategy: Any, cand: CandidateSet, k: int, rng: np.random.Generator
) -> Selection:
    """``strategy.select`` (see :mod:`labelwise.strategies`), over a partitioned pool."""
    kind = type(strategy)
    if kind is Explore:
        n_random = int(np.count_nonzero(rng.random(k) < strategy.fraction))
        explore = cand.take(rng.choice(len(cand), size=n_random, replace=False))
        picked = Selection(np.empty(0, np.intp), np.empty(0))
        if k > n_random:
            picked = _select(run, strategy.base, cand.without(explore), k - n_random, rng)
        base_details = picked.details or tuple({} for _ in picked.indices)
        return Selection(
            np.concatenate([picked.indices, explore]).astype(np.intp),
            np.concatenate([picked.utilities, np.full(n_random, np.nan)]),
            base_details + tuple({"exploration": True} for _ in explore),
        )
    if kind is RandomSampling:
        picks = cand.take(rng.choice(len(cand), size=k, replace=False))
        return Selection(picks, np.full(k, np.nan))
    if kind is UncertaintySampling:
        utility = Utility(run.model, scorer=strategy.scorer)
        rows, utilities, _ = _among_top(run, strategy.selector, utility, cand, k, rng)
        return Selection(rows, utilities)
    if kind is QueryByCommittee:
        template = run.estimator if run.estimator is not None else run.model
        committee = Committee.bagged(
            template,
            run.labeled_rows(),
            np.asarray(run.y_labeled),
            n_members=strategy.n_members,
            rng=rng,
        )
        if strategy.disagreement == "kl" and not committee.has_proba:
            raise ModelCapabilityError(
                f"strategy {strategy.name!r} needs predict_proba; use 'qbc' (vote entropy) instead"
            )
        utility = Utility(committee, disagreement=strategy.disagreement)
        rows, utilities, scores = _among_top(run, strategy.selector, utility, cand, k, rng)
        votes = scores.votes(rows)
        details = tuple(
            {"votes": _vote_counts(votes[:, i], committee.classes_)} for i in range(len(rows))
        )
        return Selection(rows, utilities, details)
    if kind in (CoreSet, Badge):
        return _sampled(run, strategy, cand, k, rng)
    if kind is StrategyBandit:
        # Its reward needs the labeled rows only (one fit per fold): here, on the client.
        ctx = QueryContext(
            X=_LabeledRows(run),
            candidates=np.empty(0, np.intp),
            labeled=run.labeled,
            y_labeled=run.y_labeled,
            model=run.model,
            estimator=run.estimator,
            chunk_size=run.chunk_size,
            random_sample=run.random_sample,
        )
        arm = strategy.begin_round(ctx, rng)
        return strategy.end_round(arm, _select(run, strategy.strategy_of(arm), cand, k, rng))
    raise InvalidParameterError(
        f"strategy {strategy.name!r} cannot run on a cluster; supported: {_SUPPORTED}"
    )


def _routine_picks(
    run: _Run, remaining: CandidateSet, n: int, rng: np.random.Generator
) -> NDArray[np.intp]:
    """As :func:`labelwise.query.query` picks routine items: the same draws, made among the
    positions of the remaining set."""
    size = routine_sample_size(len(remaining))
    sample = np.sort(remaining.take(rng.choice(len(remaining), size=size, replace=False)))
    return confident_picks(sample, run.outputs(sample), n, rng)


def _labels(
    n_rows: int, labeled: ArrayLike | None, y_labeled: ArrayLike | None
) -> tuple[NDArray[np.intp], NDArray[Any]]:
    """Labeled rows (ascending) and their labels as a Pool holds them."""
    rows = as_indices(np.asarray([] if labeled is None else labeled), n_rows, name="labeled")
    values = [] if y_labeled is None else list(np.asarray(y_labeled, dtype=object))
    if len(values) != len(rows):
        raise InvalidParameterError(
            f"got {len(rows)} labeled rows but {len(values)} labels; they must pair up"
        )
    if len(np.unique(rows)) != len(rows):
        raise InvalidParameterError("labeled rows must be unique")
    for row, value in zip(rows, values, strict=True):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise InvalidParameterError(f"label for item {int(row)} is missing")
    order = np.argsort(rows, kind="stable")
    keys = [v.item() if isinstance(v, np.generic) else v for v in values]
    return rows[order].astype(np.intp), as_label_array(keys)[order]


def score_partitioned(
    pool: PartitionedPool,
    model: Any | None,
    *,
    client: Any,
    labeled: ArrayLike | None = None,
    y_labeled: ArrayLike | None = None,
    strategy: str | Strategy = "default",
    batch_size: int = 10,
    mix: BatchMix | None = None,
    random_state: int | np.random.Generator | None = None,
    estimator: Any = None,
    candidates: ArrayLike | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    random_sample: ArrayLike | None = None,
) -> Batch:
    """Choose the next ``batch_size`` items of a partitioned pool, scoring it on a cluster.

    Equal to :func:`labelwise.query.query` on one machine (see the module docstring for the
    exact contract).

    Parameters
    ----------
    pool : PartitionedPool
        From :func:`~labelwise.scale.open_partitioned` or
        :func:`~labelwise.scale.write_partitioned`; its folder visible to every worker.
    model : fitted classifier or None
        Trained on the labeled rows; shipped to the workers once. None (or fewer than two
        labeled classes) means a cold start: a random batch, as on one machine.
    client : distributed.Client
        Connected to the cluster (see :func:`~labelwise.scale.connect`).
    labeled : int array of shape (n_labeled,), optional
        Pool rows with known labels: never candidates; the committee of ``qbc`` fits on them,
        ``kcenter`` and ``coreset`` measure distances from them.
    y_labeled : array of shape (n_labeled,), optional
        Their labels, aligned with ``labeled``.
    strategy, batch_size, mix, random_state, estimator, candidates, chunk_size, random_sample
        As for :func:`labelwise.query.query` (``random_sample``: the bandit's reward).

    Raises
    ------
    PoolExhaustedError
        Fewer than ``batch_size`` candidates remain.
    InvalidParameterError
        A bad batch size, strategy (or one that cannot run on a cluster), labeled row or
        candidate.
    InvalidDataError
        The model was fitted on another number of features than the pool has.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise InvalidParameterError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise InvalidParameterError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise InvalidParameterError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if chunk_size < 1:
        raise InvalidParameterError(f"chunk_size must be at least 1, got {chunk_size}")
    if not isinstance(pool, PartitionedPool):
        raise InvalidParameterError(
            f"pool must be a PartitionedPool (open_partitioned), got {type(pool).__name__}"
        )
    rng = as_generator(random_state)
    strat = make_strategy(strategy) if isinstance(strategy, str) else strategy
    if not supports(strat):
        raise InvalidParameterError(
            f"strategy {strat.name!r} cannot run on a cluster; supported: {_SUPPORTED}"
        )
    mix = mix or BatchMix()
    n = pool.n_rows
    labeled_rows, y = _labels(n, labeled, y_labeled)

    if candidates is None:
        cand = CandidateSet(n, None, labeled_rows)
    else:
        rows = as_indices(candidates, n, name="candidates")
        if len(rows) > 1 and not bool(np.all(rows[1:] > rows[:-1])):  # usually sorted already
            rows = np.unique(rows)
        clash = np.isin(rows, labeled_rows)
        if clash.any():
            raise InvalidParameterError(
                f"candidate {int(rows[np.argmax(clash)])} is already labeled"
            )
        cand = CandidateSet.of(n, rows)
    if len(cand) == 0:
        raise PoolExhaustedError("no unlabeled items left to query")
    if batch_size > len(cand):
        raise PoolExhaustedError(
            f"asked for a batch of {batch_size} but only {len(cand)} unlabeled items remain"
        )
    n_features = getattr(model, "n_features_in_", None)
    if n_features is not None and n_features != pool.n_features:
        raise InvalidDataError(
            f"the model was fitted on {n_features} features but the pool has {pool.n_features}"
        )
    if model is None or len(np.unique(y)) < 2:
        picks = cand.take(rng.choice(len(cand), size=batch_size, replace=False))
        reason = Reason("cold-start", strat.name, describe_reason("cold-start", (), None, {}))
        return Batch(picks, (reason,) * batch_size)

    sample = None if random_sample is None else as_indices(random_sample, n, name="random_sample")
    run = _Run(client, pool, model, estimator, labeled_rows, y, int(chunk_size), sample)
    try:
        return _batch(run, strat, cand, batch_size, mix, rng)
    finally:
        run.release()


def _batch(
    run: _Run,
    strat: Strategy,
    cand: CandidateSet,
    batch_size: int,
    mix: BatchMix,
    rng: np.random.Generator,
) -> Batch:
    """The rest of :func:`labelwise.query.query`, step for step."""
    n_explore, n_strategy, n_routine = mix.split(batch_size, rng)
    explore = cand.take(rng.choice(len(cand), size=n_explore, replace=False))
    available = cand.without(explore)
    selection = Selection(np.empty(0, np.intp), np.empty(0))
    if n_strategy:
        selection = _select(run, strat, available, n_strategy, rng)
        available = available.without(selection.indices)
    routine = _routine_picks(run, available, n_routine, rng) if n_routine else np.empty(0, np.intp)

    return assemble_batch(strat.name, selection, explore, routine, run.outputs, rng)
