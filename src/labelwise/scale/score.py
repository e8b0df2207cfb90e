"""Choosing a batch from a partitioned pool on a Dask cluster: :func:`score_partitioned`.

The contract
------------
``score_partitioned(parts, model, client=c, labeled=L, y_labeled=y, **options)`` returns the
same :class:`~labelwise.strategies.query.Batch` as ``query(pool, model, **options)`` on one machine,
where ``pool`` is a :class:`~labelwise.pool.Pool` over the matrix ``parts`` was written
from, with ``y`` given to the rows ``L``: the same rows in the same order, with equal reasons
(kinds, utilities, ranks, class splits, committee votes). The options are ``strategy``,
``batch_size``, ``mix``, ``random_state`` (an int seed, or a generator in the same state),
``estimator``, ``candidates``, ``chunk_size`` and ``random_sample``; a stateful strategy (the
bandit) given to both in the same state ends in the same state. The model must predict as it would
on one machine (the same fitted object, unpickled; the same library versions on the workers).

How it stays equal
------------------
It *is* ``query``: the one :func:`labelwise.strategies.query.query`, with the strategies of
:mod:`labelwise.strategies`, run over a :class:`~labelwise.scale.backend.PartitionedBackend`
instead of a matrix in memory. Every random draw is made on the client, in the single-machine
order, from the same generator: the batch mix's split, exploration and random picks (uniform
over the whole candidate set, drawn as positions: the client knows how many candidates there
are, not which), committee bootstraps, tie-breaks, k-means seeds, routine picks and the display
order. The workers only score: each shard scores exactly the blocks the single-machine path
scores, so utilities agree to the last bit (see :mod:`labelwise.scale.shards`), and keeps its top
rows; the client merges them into what :func:`~labelwise.strategies.selectors.top_k` would pick over
the whole pool, ties included (see :mod:`labelwise.scale.topk`). The diversity selectors (k-means,
k-center, density) then run on the client among those top candidates, on their feature rows
fetched from the workers; ``coreset`` and ``badge`` run on the client on their random subsample
of the candidates (``max_candidates``, 50,000 by default).

Strategies: every strategy of the registry, and any strategy written against the backend,
except those that declare a need the cluster does not provide (:func:`supports`): ``bald``
draws its dropout masks from the query's generator block by block as it scores, which shards
scored in parallel cannot reproduce, and is refused saying so.
"""

from __future__ import annotations

from typing import Any, Unpack

from numpy.typing import ArrayLike

from labelwise.exceptions import InvalidParameterError
from labelwise.scale.backend import PartitionedBackend, PartitionedSource
from labelwise.scale.partitions import PartitionedPool
from labelwise.strategies.backends import unsupported
from labelwise.strategies.base import Strategy
from labelwise.strategies.factory import make_strategy
from labelwise.strategies.query import Batch, QueryOptions, query

__all__ = ["score_partitioned", "supports"]


def supports(strategy: str | Strategy) -> bool:
    """Whether :func:`score_partitioned` can run ``strategy`` (a name or a strategy object):
    whether the cluster provides all the strategy declares it needs."""
    strat = make_strategy(strategy, multi_label=None) if isinstance(strategy, str) else strategy
    return unsupported(strat, PartitionedBackend) is None


def score_partitioned(
    pool: PartitionedPool,
    model: Any | None,
    *,
    client: Any,
    labeled: ArrayLike | None = None,
    y_labeled: ArrayLike | None = None,
    **options: Unpack[QueryOptions],
) -> Batch:
    """Choose the next ``batch_size`` items of a partitioned pool, scoring it on a cluster.

    Equal to :func:`labelwise.strategies.query.query` on one machine (see the module docstring for
    the exact contract).

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
    **options
        ``strategy``, ``batch_size``, ``mix``, ``random_state``, ``estimator``, ``candidates``,
        ``chunk_size`` and ``random_sample``, as for :func:`labelwise.strategies.query.query`
        (``random_sample``: the bandit's reward).

    Raises
    ------
    PoolExhaustedError
        Fewer than ``batch_size`` candidates remain.
    InvalidParameterError
        A bad batch size, strategy (or one that cannot run on a cluster, saying why), labeled
        row or candidate.
    InvalidDataError
        The model was fitted on another number of features than the pool has.
    """
    if not isinstance(pool, PartitionedPool):
        raise InvalidParameterError(
            f"pool must be a PartitionedPool (open_partitioned), got {type(pool).__name__}"
        )
    return query(
        PartitionedSource(client, pool, labeled, y_labeled),
        model,
        **options,
    )
