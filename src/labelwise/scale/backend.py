"""The scoring backend of a partitioned pool on a Dask cluster (see
:mod:`labelwise.strategies.backends`).

:class:`PartitionedBackend` answers what strategies ask of a pool with the cluster doing the
reading and the scoring:

- a scoring pass (:meth:`~PartitionedBackend.top`) runs on the workers, each shard scoring
  exactly the blocks the single-machine path scores (see :mod:`labelwise.scale.shards`) and
  keeping its top rows; the client merges them into what
  :func:`~labelwise.strategies.selectors.top_k` picks over the whole pool, ties and draws included
  (see :mod:`labelwise.scale.topk`);
- feature rows (the shortlist a diversity selector spreads, the labeled rows a committee or the
  bandit fits on, core-set's and BADGE's sample) are read by the workers and sent to the client;
- model outputs on a few rows (BADGE's sample, routine items, the batch's class splits) are
  computed on the client from rows so fetched, in the single-machine path's blocks.

Every random draw stays on the client, made by the strategy in the single-machine order.
:class:`PartitionedSource` is the pool :func:`labelwise.strategies.query.query` is given: the
labels, and this backend over the partitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidParameterError
from labelwise.models.registry import (
    iter_chunks,
    read_in_place,
)
from labelwise.pool import Matrix, as_label_array, check_labels, take_rows
from labelwise.scale.partitions import PartitionedPool, take_grouped
from labelwise.scale.shards import read_partition_rows
from labelwise.scale.topk import CandidateSet, ShardedScores
from labelwise.strategies.backends import Candidates, Ranked, ScoringBackend, Utility

__all__ = ["PartitionedBackend", "PartitionedSource"]


class PartitionedBackend(ScoringBackend):
    """A partitioned pool's rows, read and scored by a Dask cluster.

    Parameters
    ----------
    client : distributed.Client
    pool : PartitionedPool
        Its folder visible to every worker.
    chunk_size : int
        Rows per block, as in the single-machine path.
    resident : sorted int array, optional
        Rows fetched once, on first need, and kept on the client for the query (the labeled
        rows: a committee, the k-center selector and the bandit read them again and again).
    """

    where = "a cluster"
    provides: frozenset[str] = frozenset()

    def __init__(
        self,
        client: Any,
        pool: PartitionedPool,
        chunk_size: int,
        *,
        resident: NDArray[np.intp] | None = None,
    ) -> None:
        self.client = client
        self.pool = pool
        self.n_rows = pool.n_rows
        self.n_features = pool.n_features
        self.chunk_size = int(chunk_size)
        self._resident_rows = resident
        self._resident: Matrix | None = None
        self._passes: list[ShardedScores] = []

    def candidates(self, rows: NDArray[np.intp] | None, labeled: NDArray[np.intp]) -> CandidateSet:
        if rows is None:
            return CandidateSet(self.n_rows, None, labeled)
        return CandidateSet.of(self.n_rows, rows)

    def _fetch(self, rows: NDArray[np.intp]) -> Matrix:
        """Feature rows, in the order given, read by the workers (one task per partition)."""
        parts = self.pool.partitions

        def read(asks: list[tuple[int, NDArray[np.intp]]]) -> list[Matrix]:
            futures = [
                self.client.submit(read_partition_rows, parts[n], local, pure=False)
                for n, local in asks
            ]
            return list(self.client.gather(futures))

        return take_grouped(self.pool, rows, read)

    def rows(self, rows: NDArray[np.intp]) -> Matrix:
        rows = np.asarray(rows, dtype=np.intp)
        kept = self._resident_rows
        if kept is not None and len(kept) and len(rows):
            at = np.minimum(np.searchsorted(kept, rows), len(kept) - 1)
            if np.array_equal(kept[at], rows):
                if self._resident is None:
                    self._resident = self._fetch(kept)
                return self._resident[at]
        return self._fetch(rows)

    def chunks(self, rows: NDArray[np.intp]) -> Iterator[Matrix]:
        X = self.rows(rows)
        for chunk in iter_chunks(np.arange(X.shape[0], dtype=np.intp), self.chunk_size):
            yield take_rows(X, chunk)

    def scoring_matrix(self, rows: NDArray[np.intp]) -> tuple[Matrix, NDArray[np.intp]]:
        """A fetched matrix and row numbers in it that the model scores in the same blocks as
        it scores ``rows`` of the whole pool: the span of ``rows`` when the single-machine
        path would read them in place, else just the rows."""
        rows = np.asarray(rows, dtype=np.intp)
        dense_probe = np.empty((0, 0))  # read_in_place asks only whether the pool is dense
        if not self.pool.is_sparse and read_in_place(dense_probe, rows):
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            return self._fetch(np.arange(lo, hi, dtype=np.intp)), (rows - lo).astype(np.intp)
        return self._fetch(rows), np.arange(len(rows), dtype=np.intp)

    def top(
        self, utility: Utility, candidates: Candidates, k: int, rng: np.random.Generator
    ) -> Ranked:
        if utility.draws:  # strategies needing this are refused before they run (`needs`)
            raise InvalidParameterError(
                "a utility that draws while it scores cannot be scored on a cluster"
            )
        cand = (
            candidates
            if isinstance(candidates, CandidateSet)
            else CandidateSet.of(self.n_rows, candidates.rows())
        )
        scores = ShardedScores(self.client, self.pool, cand, utility, k, self.chunk_size)
        self._passes.append(scores)
        rows, utilities = scores.top_k(k, rng)
        if utility.disagreement is None:
            return Ranked(rows, utilities)
        return Ranked(rows, utilities, lambda p: scores.votes(rows[p]))

    def close(self) -> None:
        """Free the workers' memory held for the query's scoring passes."""
        for scores in self._passes:
            scores.release()
        self._passes.clear()


class PartitionedSource:
    """A partitioned pool and the labels known so far, as :func:`labelwise.strategies.query.query`
    reads a pool held elsewhere (:class:`~labelwise.strategies.backends.LabeledSource`).

    Parameters
    ----------
    client : distributed.Client
    pool : PartitionedPool
    labeled : int array, optional
        Pool rows with known labels (any order, each once).
    y_labeled : array, optional
        Their labels, aligned with ``labeled``.
    """

    def __init__(
        self,
        client: Any,
        pool: PartitionedPool,
        labeled: ArrayLike | None = None,
        y_labeled: ArrayLike | None = None,
    ) -> None:
        rows, values = check_labels(
            [] if labeled is None else labeled,
            [] if y_labeled is None else list(np.asarray(y_labeled, dtype=object)),
            pool.n_rows,
            name="labeled",
            noun="labeled rows",
            repeated="labeled rows must be unique",
        )
        order = np.argsort(rows, kind="stable")
        keys = [v.item() if isinstance(v, np.generic) else v for v in values]
        self.client = client
        self.pool = pool
        self._labeled = rows[order].astype(np.intp)
        self._y_labeled = as_label_array(keys)[order]

    @property
    def labeled(self) -> NDArray[np.intp]:
        """Labeled rows, ascending."""
        return self._labeled

    @property
    def y_labeled(self) -> NDArray[Any]:
        """Their labels, as a :class:`~labelwise.pool.Pool` holds them."""
        return self._y_labeled

    def scoring_backend(self, chunk_size: int) -> PartitionedBackend:
        return PartitionedBackend(self.client, self.pool, chunk_size, resident=self.labeled)
