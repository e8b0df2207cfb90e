"""The client's side of one scoring pass: which rows are candidates, how the pass is cut into
shards, and the top ``k`` merged from the shards exactly as
:func:`labelwise.strategies.selectors.top_k` would have chosen them from the whole pool.

Exactness rests on three facts:

- the shards score the very blocks the single-machine path scores (see
  :mod:`labelwise.scale.shards`), so every utility is the same to the last bit;
- the ``k``-th largest utility ``t`` of the pool is at most every shard's own ``k``-th largest,
  so the rows above ``t`` all sit in the shards' summaries, and the rows *on* ``t`` are, shard
  after shard, exactly the pool's tied rows in ascending order;
- ``rng.choice(tied, m, replace=False)`` draws the same positions as ``rng.choice(len(tied), m,
  replace=False)`` and consumes the generator alike, so the client draws positions in the tied
  list knowing only how many rows each shard has on ``t``, and asks the shards for those rows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelwise.models.registry import linear_form
from labelwise.scale.partitions import PartitionedPool
from labelwise.scale.shards import (
    Shard,
    TopSummary,
    Utility,
    score_shard,
    summarize,
    tie_rows,
    votes_of,
)
from labelwise.strategies.selectors import rank_order

__all__ = ["CandidateSet", "ShardedScores", "plan_shards"]


class CandidateSet:
    """Ascending pool rows a query may pick: ``base`` (every row when None) minus ``excluded``;
    the :class:`~labelwise.strategies.backends.Candidates` of a partitioned pool.

    Never materialised: position ``p`` in the set maps to its row by a binary search over the
    excluded rows, so a pool of millions of rows with a few thousand labeled costs the client
    memory for the few thousand only.

    Parameters
    ----------
    n_rows : int
    base : sorted unique int array, or None for ``0 … n_rows - 1``
    excluded : sorted unique int array, a subset of the base
    """

    def __init__(
        self, n_rows: int, base: NDArray[np.intp] | None, excluded: NDArray[np.intp]
    ) -> None:
        self.n_rows = n_rows
        self.base = base
        self.excluded = excluded
        positions = excluded if base is None else np.searchsorted(base, excluded)
        # Position p of the set is base position p + #{excluded at base position - rank <= p}.
        self._shift = (positions - np.arange(len(positions))).astype(np.intp)
        self._len = (n_rows if base is None else len(base)) - len(excluded)

    @classmethod
    def of(cls, n_rows: int, rows: NDArray[np.intp]) -> CandidateSet:
        """The set of ``rows`` (sorted, unique), stored as its complement when that is smaller."""
        if len(rows) > n_rows // 2:
            keep = np.ones(n_rows, dtype=bool)
            keep[rows] = False
            return cls(n_rows, None, np.flatnonzero(keep).astype(np.intp))
        return cls(n_rows, rows.astype(np.intp), np.empty(0, np.intp))

    def __len__(self) -> int:
        return self._len

    def take(self, positions: Any) -> NDArray[np.intp]:
        """The rows at ``positions`` of the set (what ``candidates[positions]`` would be)."""
        p = np.asarray(positions, dtype=np.intp)
        base_positions = p + np.searchsorted(self._shift, p, side="right")
        return (base_positions if self.base is None else self.base[base_positions]).astype(np.intp)

    def without(self, rows: NDArray[np.intp]) -> CandidateSet:
        """The set less ``rows`` (which must be in it)."""
        return CandidateSet(self.n_rows, self.base, np.union1d(self.excluded, rows).astype(np.intp))

    def rows(self) -> NDArray[np.intp]:
        """Every row of the set, ascending (materialised: core-set's and BADGE's whole set)."""
        return self.take(np.arange(len(self), dtype=np.intp))

    def span(self) -> tuple[int, int]:
        """The first and the last row of the set (which must not be empty)."""
        first, last = self.take([0, len(self) - 1])
        return int(first), int(last)

    def within(self, start: int, stop: int) -> tuple[NDArray[np.intp] | None, NDArray[np.intp]]:
        """The set restricted to rows ``start … stop - 1``, as local row numbers: the included
        rows (None for all) and the excluded ones."""
        e = self.excluded
        excluded = e[np.searchsorted(e, start) : np.searchsorted(e, stop)] - start
        if self.base is None:
            return None, excluded.astype(np.intp)
        b = self.base
        included = b[np.searchsorted(b, start) : np.searchsorted(b, stop)] - start
        return included.astype(np.intp), excluded.astype(np.intp)


def _scores_in_place(pool: PartitionedPool, cand: CandidateSet, utility: Utility) -> bool:
    """Whether the single-machine path would score this pass in place (consecutive slices)."""
    if pool.is_sparse or len(cand) < 2:
        return False
    first, last = cand.span()
    # labelwise.models.registry.read_in_place, on the candidate set.
    if len(cand) < 0.75 * (last - first + 1):
        return False
    if utility.disagreement is None:
        return True
    # Committee.disagreement reads in place only for stacked linear votes on float features.
    return (
        utility.disagreement == "vote"
        and all(linear_form(m) is not None for m in utility.model.members)
        and np.dtype(pool.dtype).kind == "f"
    )


def plan_shards(
    pool: PartitionedPool, cand: CandidateSet, utility: Utility, chunk_size: int
) -> list[Shard]:
    """Cut one scoring pass into shards of whole single-machine blocks, each starting at the
    first block that starts in a new partition (so a shard mostly reads one file)."""
    if len(cand) == 0:
        return []
    first, last = cand.span()
    if _scores_in_place(pool, cand, utility):
        lo, hi = first, last + 1
        cuts = {lo, hi}
        for offset in pool.offsets[1:-1].tolist():
            if lo < offset < hi:
                cut = lo + -(-(offset - lo) // chunk_size) * chunk_size
                if cut < hi:
                    cuts.add(cut)
        bounds = sorted(cuts)
        return [
            Shard(a, b, *cand.within(a, b), block=chunk_size, in_place=True)
            for a, b in itertools.pairwise(bounds)
        ]
    # Gathered: block j holds candidate positions j × chunk_size onwards.
    block_starts = np.arange(0, len(cand), chunk_size)
    owner = pool.locate(cand.take(block_starts))
    new = np.flatnonzero(np.diff(owner) != 0) + 1
    groups = np.concatenate([[0], new, [len(block_starts)]])
    shards = []
    for j0, j1 in itertools.pairwise(groups.tolist()):
        p0, p1 = int(j0) * chunk_size, min(int(j1) * chunk_size, len(cand))
        start, end = cand.take([p0, p1 - 1])
        shards.append(
            Shard(
                int(start),
                int(end) + 1,
                *cand.within(int(start), int(end) + 1),
                block=chunk_size,
                in_place=False,
            )
        )
    return shards


@dataclass
class _Segment:
    """Part of the pool's list of rows tied at the threshold: a shard's, either known rows or a
    count of rows the shard holds."""

    shard: int
    rows: NDArray[np.intp] | None
    count: int


class ShardedScores:
    """One scoring pass over the candidates on the cluster, each shard's top kept by a worker.

    Parameters
    ----------
    client : distributed.Client
    pool : PartitionedPool
    cand : CandidateSet
    utility : Utility
        Shipped to every worker once (``client.scatter``).
    keep : int
        How many top rows the client will ask for (each shard keeps that many, ties included).
    chunk_size : int
        Rows per block, as in the single-machine path.
    """

    def __init__(
        self,
        client: Any,
        pool: PartitionedPool,
        cand: CandidateSet,
        utility: Utility,
        keep: int,
        chunk_size: int,
    ) -> None:
        self.client = client
        self.shards = plan_shards(pool, cand, utility, chunk_size)
        shipped, shipped_pool = client.scatter([utility, pool], broadcast=True, hash=False)
        self.futures = client.map(
            score_shard, self.shards, pool=shipped_pool, utility=shipped, keep=keep, pure=False
        )
        self._shipped = [shipped, shipped_pool]
        try:
            self.summaries: list[TopSummary | None] = client.gather(
                client.map(summarize, self.futures, pure=False)
            )
        except BaseException:  # a worker's error (a model without probabilities...) surfaces
            self.release()
            raise
        self._starts = np.asarray([s.start for s in self.shards], dtype=np.intp)

    def top_k(
        self, k: int, rng: np.random.Generator
    ) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """Rows of the ``k`` highest utilities, best first, and their utilities: what
        :func:`~labelwise.strategies.selectors.top_k` returns over the whole candidate set (as
        rows)."""
        if k == 0:
            return np.empty(0, np.intp), np.empty(0)
        present = [(i, s) for i, s in enumerate(self.summaries) if s is not None]
        values = np.concatenate(
            [s.above_utilities for _, s in present] + [[s.threshold for _, s in present]]
        )
        weights = np.concatenate(
            [np.ones(len(s.above_utilities), np.int64) for _, s in present]
            + [[s.n_ties for _, s in present]]
        )
        order = np.argsort(-values, kind="stable")
        threshold = float(values[order][np.searchsorted(np.cumsum(weights[order]), k)])

        above_rows, above_utilities, segments = [], [], []
        for i, s in present:
            over = s.above_utilities > threshold
            above_rows.append(s.above_rows[over])
            above_utilities.append(s.above_utilities[over])
            if s.threshold == threshold:
                segments.append(_Segment(i, None, s.n_ties))
            else:  # the shard's threshold is lower: its rows on ours are among its known rows
                on = s.above_rows[s.above_utilities == threshold]
                if len(on):
                    segments.append(_Segment(i, on, len(on)))
        above = np.concatenate(above_rows).astype(np.intp)
        counts = np.asarray([seg.count for seg in segments], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        # Positions in the pool's ascending list of tied rows, as top_k draws them.
        drawn = rng.choice(int(starts[-1]), size=k - len(above), replace=False)
        owner = np.searchsorted(starts, drawn, side="right") - 1
        picked = np.empty(len(drawn), dtype=np.intp)
        remote = {}
        for number in np.unique(owner):
            seg = segments[int(number)]
            where = np.flatnonzero(owner == number)
            local = drawn[where] - starts[number]
            if seg.rows is not None:
                picked[where] = seg.rows[local]
            else:
                remote[int(number)] = (
                    where,
                    self.client.submit(tie_rows, self.futures[seg.shard], local, pure=False),
                )
        for where, future in remote.values():
            picked[where] = future.result()
        chosen = np.concatenate([above, picked])
        utilities = np.concatenate(
            [np.concatenate(above_utilities), np.full(len(picked), threshold)]
        )
        ranked = rank_order(utilities, rng)
        return chosen[ranked], utilities[ranked]

    def votes(self, rows: NDArray[np.intp]) -> NDArray[Any]:
        """The committee's votes (members × rows, or members × rows × labels) for rows of the
        top."""
        shard = np.searchsorted(self._starts, rows, side="right") - 1
        futures = {
            int(s): (
                np.flatnonzero(shard == s),
                self.client.submit(votes_of, self.futures[int(s)], rows[shard == s], pure=False),
            )
            for s in np.unique(shard)
        }
        parts = {s: (where, f.result()) for s, (where, f) in futures.items()}
        first = next(iter(parts.values()))[1]
        # Members × rows, and × labels for a committee voting on label sets.
        out = np.empty((first.shape[0], len(rows), *first.shape[2:]), dtype=first.dtype)
        for where, block in parts.values():
            out[:, where] = block
        return out

    def release(self) -> None:
        """Free the workers' memory held for this pass."""
        self.client.cancel(self.futures + self._shipped)
