"""What the cluster's workers run: score a shard of the pool, keep its top candidates.

A :class:`Shard` is a run of consecutive *blocks*: the row blocks the single-machine path hands
to the model in one call (:func:`labelwise.models.registry.map_outputs`,
:meth:`Committee.disagreement`). The client plans the shards so that every block is exactly a block
of the single-machine path, because a BLAS product may round a row's score differently with the size
of its block and the row's place in it (a binary logistic regression's matrix-vector product does,
measured): the same blocks give the same utilities to the last bit, and hence the same batch.

Blocks come in the two forms the single-machine path uses:

- *in place* (most of a dense pool is wanted): consecutive rows ``start + j × block``, scored
  whole, the wanted rows kept;
- *gathered*: the wanted rows, ``block`` at a time.

A worker keeps a :class:`ShardTop` (the rows above its ``keep``-th largest utility, and every row
tied with it) in its memory; the client asks it for a :class:`TopSummary` (the rows strictly
above, and only a count of the tied ones), then for the few tied rows it draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelwise.pool import Matrix
from labelwise.scale.partitions import Partition, PartitionedPool, PoolReader
from labelwise.strategies.backends import Utility
from labelwise.strategies.selectors import _kth_largest

__all__ = [
    "Shard",
    "ShardTop",
    "TopSummary",
    "Utility",
    "read_partition_rows",
    "score_shard",
    "summarize",
    "tie_rows",
    "votes_of",
]


@dataclass(frozen=True)
class Shard:
    """Rows ``start … stop - 1`` of the pool, scored in blocks of ``block`` rows.

    The wanted rows are ``include`` (local row numbers, or every row when None) minus
    ``exclude`` (local). ``in_place``: blocks are consecutive row ranges from ``start``;
    otherwise consecutive runs of ``block`` wanted rows.
    """

    start: int
    stop: int
    include: NDArray[np.intp] | None
    exclude: NDArray[np.intp]
    block: int
    in_place: bool

    def wanted(self) -> NDArray[np.intp]:
        """Local numbers of the wanted rows, ascending."""
        keep = np.zeros(self.stop - self.start, dtype=bool)
        if self.include is None:
            keep[:] = True
        else:
            keep[self.include] = True
        keep[self.exclude] = False
        return np.flatnonzero(keep)

    def blocks(
        self, reader: PoolReader
    ) -> Iterator[tuple[Matrix, NDArray[np.intp], NDArray[np.intp]]]:
        """Each block with any wanted row: its rows, the wanted positions in it, their rows."""
        wanted = self.wanted()
        if self.in_place:
            for a in range(0, self.stop - self.start, self.block):
                b = min(a + self.block, self.stop - self.start)
                i, j = np.searchsorted(wanted, [a, b])
                if i < j:
                    # A view of a memory map, copied only for a block across two partitions.
                    X = reader.range(self.start + a, self.start + b)
                    yield X, wanted[i:j] - a, self.start + wanted[i:j]
            return
        for i in range(0, len(wanted), self.block):
            rows = self.start + wanted[i : i + self.block]
            yield reader.take(rows), np.arange(len(rows), dtype=np.intp), rows


@dataclass(frozen=True)
class TopSummary:
    """What the client learns of a shard at first: the rows strictly above its threshold with
    their utilities (ascending rows), the threshold, and how many rows sit exactly on it."""

    above_rows: NDArray[np.intp]
    above_utilities: NDArray[np.float64]
    threshold: float
    n_ties: int


@dataclass(frozen=True)
class ShardTop:
    """A shard's top candidates, kept in the worker's memory until the client is done.

    ``threshold`` is the shard's ``keep``-th largest utility (minus infinity when the shard
    holds no more than ``keep`` rows: all are then above it): every row above it and every row
    on it are kept (rows ascending), with the committee's votes for them when there are any.
    """

    above_rows: NDArray[np.intp]
    above_utilities: NDArray[np.float64]
    threshold: float
    tie_rows: NDArray[np.intp]
    kept_rows: NDArray[np.intp]
    kept_votes: NDArray[Any] | None


def score_shard(
    shard: Shard, pool: PartitionedPool, utility: Utility, keep: int
) -> ShardTop | None:
    """Score every wanted row of ``shard``; keep the rows at or above its ``keep``-th largest
    utility (None when the shard has no wanted row)."""
    reader = pool.reader()
    rows_parts, util_parts, vote_parts = [], [], []
    for X, positions, rows in shard.blocks(reader):
        utilities, votes = utility.block(X)
        rows_parts.append(rows)
        util_parts.append(utilities[positions])
        if votes is not None:
            vote_parts.append(votes[:, positions])
    if not rows_parts:
        return None
    rows = np.concatenate(rows_parts)
    utilities = np.concatenate(util_parts)
    # A shard of at most ``keep`` rows keeps them all as known rows: its own smallest utility
    # may lie above the pool's k-th largest, and a threshold there would hide its tied rows
    # from the client, which takes every shard's threshold to be at or below the pool's.
    threshold = -np.inf if len(utilities) <= keep else _kth_largest(utilities, keep)
    above = utilities > threshold
    kept = utilities >= threshold
    votes = np.concatenate(vote_parts, axis=1)[:, kept] if vote_parts else None
    return ShardTop(
        above_rows=rows[above],
        above_utilities=utilities[above],
        threshold=threshold,
        tie_rows=rows[utilities == threshold],
        kept_rows=rows[kept],
        kept_votes=votes,
    )


def summarize(top: ShardTop | None) -> TopSummary | None:
    """The part of a shard's top the client needs first."""
    if top is None:
        return None
    return TopSummary(top.above_rows, top.above_utilities, top.threshold, len(top.tie_rows))


def tie_rows(top: ShardTop, positions: NDArray[np.intp]) -> NDArray[np.intp]:
    """The rows at ``positions`` of the shard's (ascending) list of tied rows."""
    return top.tie_rows[positions]


def votes_of(top: ShardTop, rows: NDArray[np.intp]) -> NDArray[Any]:
    """Committee votes (members × rows) for kept rows of the shard."""
    assert top.kept_votes is not None  # only asked of committee shards
    return top.kept_votes[:, np.searchsorted(top.kept_rows, rows)]


def read_partition_rows(partition: Partition, local_rows: NDArray[np.intp]) -> Matrix:
    """Rows of one partition (local numbers, in the order given)."""
    X = partition.open()
    return X[local_rows]
