"""What a strategy reads of a pool, whichever machine holds it: the scoring backend.

A strategy (see :mod:`labelwise.strategies`) never reads the feature matrix itself: it asks a
:class:`ScoringBackend` for what it needs, so that one implementation of every strategy serves
both a pool held by this process and a pool partitioned over a cluster:

- :meth:`~ScoringBackend.top`: one scoring pass of a :class:`Utility` over the candidates and
  its ``k`` best rows, with exactly the ties :func:`labelwise.strategies.selectors.top_k` breaks and
  the draws it makes (the utility selectors shortlist from);
- :meth:`~ScoringBackend.map_outputs` and :meth:`~ScoringBackend.model_outputs`: the model's
  outputs on given rows, computed in the blocks the single-machine path uses (BADGE's
  probabilities, the routine items, each pick's class split);
- :meth:`~ScoringBackend.rows` and :meth:`~ScoringBackend.chunks`: feature rows by index (the
  labeled set a committee or the bandit fits on, the shortlist the diversity selectors spread);
- :meth:`~ScoringBackend.candidates`: the candidate set in the form the backend keeps it
  (:class:`Candidates`: an array here, a never-materialised complement on a cluster).

:class:`MatrixBackend` is the one for a dense, memory-mapped or sparse matrix in memory (the
:class:`~labelwise.pool.Pool`); :class:`labelwise.scale.backend.PartitionedBackend` is the
one for a partitioned pool scored on a Dask cluster.

Capabilities
------------
A backend lists in ``provides`` what it can do beyond the protocol, and a strategy lists in an
optional ``needs`` attribute what it uses of it; :func:`unsupported` compares them, so what runs
where is derived from the strategies themselves. One capability exists:
:data:`DRAWS_WHILE_SCORING`, for a utility that draws from the query's generator block by block
as the candidates are scored (BALD's dropout masks): only a backend that scores the blocks in
order, in one process, reproduces those draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.pipeline import Pipeline

from labelwise.exceptions import ModelCapabilityError
from labelwise.models.registry import (
    DEFAULT_CHUNK_SIZE,
    MCDropoutModel,
    ModelOutputs,
    OutputKind,
    final_step,
    iter_chunks,
    map_outputs,
    model_outputs,
    read_in_place,
)
from labelwise.pool import Matrix, take_rows
from labelwise.strategies import scorers
from labelwise.strategies.kinds import check_outputs_kind
from labelwise.strategies.multilabel_scorers import (
    MULTI_LABEL_SCORERS,
    CardinalityPredictor,
    multilabel_utility,
)
from labelwise.strategies.selectors import top_k

__all__ = [
    "CAPABILITIES",
    "DRAWS_WHILE_SCORING",
    "CandidateRows",
    "Candidates",
    "LabeledSource",
    "MatrixBackend",
    "Ranked",
    "ScorerName",
    "ScoringBackend",
    "Utility",
    "bald_utilities",
    "strategy_needs",
    "unsupported",
]

#: A utility that draws from the query's generator block by block as it scores (BALD).
DRAWS_WHILE_SCORING = "draws-while-scoring"

#: Each capability, as the reason a backend without it gives for refusing a strategy.
CAPABILITIES: dict[str, str] = {
    DRAWS_WHILE_SCORING: (
        "its utilities draw from the query's generator block by block as the candidates are "
        "scored (the dropout masks of BALD), and only a pool scored block after block in one "
        "process reproduces those draws"
    ),
}

ScorerName = Literal[
    "least_confident", "margin", "entropy", "mean_margin", "min_margin", "mmc", "lci"
]


# --- candidates ------------------------------------------------------------------------------


@runtime_checkable
class Candidates(Protocol):
    """Pool rows a strategy may pick from, addressed by position (``len``, ``take``) as
    ``rng.choice`` draws them: ``take(rng.choice(len(c), m))`` is ``rng.choice(rows, m)``."""

    def __len__(self) -> int: ...

    def take(self, positions: ArrayLike) -> NDArray[np.intp]:
        """The rows at ``positions`` of the set."""
        ...

    def without(self, rows: NDArray[np.intp]) -> Candidates:
        """The set less ``rows`` (which must be in it), in the same order."""
        ...

    def rows(self) -> NDArray[np.intp]:
        """Every row of the set, in order (materialised)."""
        ...


class CandidateRows:
    """Candidates held as an array of pool rows (in the order given, usually ascending)."""

    def __init__(self, rows: ArrayLike) -> None:
        self._rows = np.asarray(rows, dtype=np.intp)

    def __len__(self) -> int:
        return len(self._rows)

    def take(self, positions: ArrayLike) -> NDArray[np.intp]:
        return self._rows[np.asarray(positions, dtype=np.intp)]

    def without(self, rows: NDArray[np.intp]) -> CandidateRows:
        rows = np.asarray(rows, dtype=np.intp)
        if len(rows) == 0 or len(self._rows) == 0:
            return self
        # A mask over the rows' range: one pass, where np.isin would sort the candidates.
        drop = np.zeros(max(int(self._rows.max()), int(rows.max())) + 1, dtype=bool)
        drop[rows] = True
        return CandidateRows(self._rows[~drop[self._rows]])

    def rows(self) -> NDArray[np.intp]:
        return self._rows


# --- utilities -------------------------------------------------------------------------------


def _utility_function(utility: Utility) -> Callable[[ModelOutputs], NDArray[np.float64]]:
    scorer = utility.scorer
    multi = scorer in MULTI_LABEL_SCORERS

    def score(out: ModelOutputs) -> NDArray[np.float64]:
        name = scorer.replace("_", "-") if multi else scorer
        check_outputs_kind(name, out.multi_label, multi_label=multi)
        if multi:
            return multilabel_utility(
                scorer,
                out.values,
                thresholds=out.thresholds,
                cardinality=utility.cardinality,
                mean_cardinality=utility.mean_cardinality,
            )
        if out.kind == "decision":
            return scorers.decision_margin(out.values)
        return {
            "least_confident": scorers.least_confident,
            "margin": scorers.margin,
            "entropy": scorers.entropy,
        }[scorer](out.values)

    return score


@dataclass(frozen=True)
class Utility:
    """What a scoring pass computes for each candidate row (higher = more informative).

    Attributes
    ----------
    model : fitted classifier, or :class:`~labelwise.strategies.committee.Committee`
    scorer : {"least_confident", "margin", "entropy", "mean_margin", "min_margin", "mmc", "lci"}
        For a classifier: the uncertainty scorer (margin also from decision values, the
        others need probabilities); the last four score a multi-label model's per-label
        probabilities (:func:`~labelwise.strategies.multilabel_scorers.multilabel_utility`),
        the first three a single-label model's; the other kind is refused.
    disagreement : {"vote", "kl"} or None
        For a committee: vote entropy or KL divergence to the consensus (the pass also keeps
        each member's vote, for the reasons).
    mc_samples : int or None
        For a model drawing Monte Carlo dropout samples: BALD over that many passes, each
        block's masks seeded from the query's generator (see :data:`DRAWS_WHILE_SCORING`).
    cardinality : CardinalityPredictor or None
        For ``mmc``: each row's number of labels, fitted on the labeled set (shipped with the
        utility wherever the pool is scored).
    mean_cardinality : float or None
        For ``lci``: the labeled set's mean number of labels.
    """

    model: Any
    scorer: ScorerName = "margin"
    disagreement: Literal["vote", "kl"] | None = None
    mc_samples: int | None = None
    cardinality: CardinalityPredictor | None = None
    mean_cardinality: float | None = None

    @property
    def draws(self) -> bool:
        """Whether scoring draws from the query's generator (see :data:`DRAWS_WHILE_SCORING`)."""
        return self.mc_samples is not None

    def score(
        self,
        X: Matrix,
        rows: NDArray[np.intp],
        chunk_size: int,
        rng: np.random.Generator | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[Any] | None]:
        """Utilities of ``rows`` of ``X``, scored in the single-machine path's blocks of
        ``chunk_size``, and the committee's votes (members × rows) where there is one."""
        if self.disagreement is not None:
            return self.model.disagreement(X, rows, kind=self.disagreement, chunk_size=chunk_size)
        if self.mc_samples is not None:
            if rng is None:
                raise ValueError("a BALD utility draws its dropout masks from a generator")
            utilities = bald_utilities(
                self.model, X, rows, n_samples=self.mc_samples, rng=rng, chunk_size=chunk_size
            )
            return utilities, None
        prefer: OutputKind | None = None if self.scorer == "margin" else "proba"
        fn = _utility_function(self)
        return map_outputs(self.model, X, rows, fn, prefer=prefer, chunk_size=chunk_size), None

    def block(self, X: Matrix) -> tuple[NDArray[np.float64], NDArray[Any] | None]:
        """Utilities of every row of ``X``, scored as one block (a cluster worker's unit)."""
        rows = np.arange(X.shape[0], dtype=np.intp)
        return self.score(X, rows, max(1, len(rows)))


class Ranked:
    """The top candidates of one scoring pass, best first: their rows and utilities, and the
    committee's votes for any of them (when the utility is a committee's)."""

    def __init__(
        self,
        rows: NDArray[np.intp],
        utilities: NDArray[np.float64],
        votes: Callable[[NDArray[np.intp]], NDArray[Any]] | None = None,
    ) -> None:
        self.rows = rows
        self.utilities = utilities
        self._votes = votes

    def __len__(self) -> int:
        return len(self.rows)

    def votes(self, positions: NDArray[np.intp]) -> NDArray[Any]:
        """Each member's vote (members × positions) for the rows at ``positions``."""
        if self._votes is None:
            raise ValueError("only a committee's scoring pass keeps votes")
        return self._votes(np.asarray(positions, dtype=np.intp))


# --- the protocol ----------------------------------------------------------------------------


class ScoringBackend(Protocol):
    """A pool's rows as strategies read them (see the module docstring).

    Attributes
    ----------
    where : str
        Where it scores, for messages ("one machine", "a cluster").
    provides : frozenset of str
        Capabilities beyond the protocol (:data:`CAPABILITIES`).
    n_rows, n_features : int
    chunk_size : int
        Rows handed to the model at once, as in the single-machine path.
    """

    where: str
    provides: frozenset[str]
    n_rows: int
    n_features: int
    chunk_size: int

    def candidates(self, rows: NDArray[np.intp] | None, labeled: NDArray[np.intp]) -> Candidates:
        """The candidate set: ``rows`` (sorted, unique, unlabeled), or every row not in
        ``labeled`` (ascending) when None."""
        ...

    def rows(self, rows: NDArray[np.intp]) -> Matrix:
        """Feature rows, in the order given."""
        ...

    def chunks(self, rows: NDArray[np.intp]) -> Iterator[Matrix]:
        """The same rows, ``chunk_size`` at a time (a transform applied block by block)."""
        ...

    def scoring_matrix(self, rows: NDArray[np.intp]) -> tuple[Matrix, NDArray[np.intp]]:
        """A matrix and the row numbers in it that the model scores in the same blocks as it
        scores ``rows`` (sorted) of the whole pool (what the two methods below read)."""
        ...

    def map_outputs(
        self,
        model: Any,
        rows: NDArray[np.intp],
        fn: Callable[[ModelOutputs], NDArray[Any]],
        *,
        prefer: OutputKind | None = None,
    ) -> NDArray[Any]:
        """:func:`labelwise.models.registry.map_outputs` on ``rows`` (sorted) of the pool."""
        X, local = self.scoring_matrix(rows)
        return map_outputs(model, X, local, fn, prefer=prefer, chunk_size=self.chunk_size)

    def model_outputs(self, model: Any, rows: NDArray[np.intp]) -> ModelOutputs:
        """:func:`labelwise.models.registry.model_outputs` on ``rows`` of the pool."""
        X, local = self.scoring_matrix(rows)
        return model_outputs(model, X, local, chunk_size=self.chunk_size)

    def top(
        self, utility: Utility, candidates: Candidates, k: int, rng: np.random.Generator
    ) -> Ranked:
        """Score every candidate; the ``k`` best, as :func:`~labelwise.strategies.selectors.top_k`
        picks them (ties and draws included)."""
        ...

    def close(self) -> None:
        """Free what the scoring passes hold (a cluster's memory)."""
        ...


class LabeledSource(Protocol):
    """A pool as :func:`labelwise.strategies.query.query` reads it besides a
    :class:`~labelwise.pool.Pool`: the labels known so far and a backend over its rows."""

    @property
    def labeled(self) -> NDArray[np.intp]:
        """Labeled rows, ascending."""
        ...

    @property
    def y_labeled(self) -> NDArray[Any]:
        """Their labels, aligned."""
        ...

    def scoring_backend(self, chunk_size: int) -> ScoringBackend:
        """A backend over the pool's rows for one query."""
        ...


def strategy_needs(strategy: Any) -> frozenset[str]:
    """The capabilities a strategy declares it needs (its ``needs``; none when it declares
    nothing)."""
    return frozenset(getattr(strategy, "needs", frozenset()))


def unsupported(strategy: Any, backend: Any) -> str | None:
    """Why ``backend`` (an instance or its class) cannot run ``strategy``, or None when it can."""
    missing = sorted(strategy_needs(strategy) - frozenset(backend.provides))
    if not missing:
        return None
    why = "; ".join(CAPABILITIES.get(need, f"it needs {need!r}") for need in missing)
    return f"strategy {strategy.name!r} cannot run on {backend.where}: {why}"


# --- a matrix in memory ----------------------------------------------------------------------


class MatrixBackend(ScoringBackend):
    """The backend of a matrix held by this process: dense, memory-mapped or sparse CSR.

    Parameters
    ----------
    X : matrix of shape (n_rows, n_features)
        Read in place, never copied whole.
    chunk_size : int
    """

    where = "one machine"
    provides: frozenset[str] = frozenset({DRAWS_WHILE_SCORING})

    def __init__(self, X: Matrix, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.X = X
        self.n_rows = int(X.shape[0])
        self.n_features = int(X.shape[1])
        self.chunk_size = int(chunk_size)

    def candidates(self, rows: NDArray[np.intp] | None, labeled: NDArray[np.intp]) -> CandidateRows:
        if rows is not None:
            return CandidateRows(rows)
        unlabeled = np.ones(self.n_rows, dtype=bool)
        unlabeled[labeled] = False
        return CandidateRows(np.flatnonzero(unlabeled))

    def rows(self, rows: NDArray[np.intp]) -> Matrix:
        return take_rows(self.X, rows)

    def chunks(self, rows: NDArray[np.intp]) -> Iterator[Matrix]:
        for chunk in iter_chunks(rows, self.chunk_size):
            yield take_rows(self.X, chunk)

    def scoring_matrix(self, rows: NDArray[np.intp]) -> tuple[Matrix, NDArray[np.intp]]:
        return self.X, rows

    def top(
        self, utility: Utility, candidates: Candidates, k: int, rng: np.random.Generator
    ) -> Ranked:
        rows = candidates.rows()
        utilities, votes = utility.score(self.X, rows, self.chunk_size, rng)
        best = top_k(utilities, k, rng)
        if votes is None:
            return Ranked(rows[best], utilities[best])
        kept = votes
        return Ranked(rows[best], utilities[best], lambda p: kept[:, best[p]])

    def close(self) -> None:
        """Nothing to free: the matrix belongs to the caller."""


def _mc_dropout_scorer(model: Any, n_samples: int) -> Callable[[Matrix, int], NDArray[np.float64]]:
    """``(block, seed) -> BALD utilities`` for ``model`` (or a pipeline ending in such a model)."""
    final = final_step(model)
    if not isinstance(final, MCDropoutModel):
        raise ModelCapabilityError(
            f"strategy 'bald' needs a model that draws Monte Carlo dropout samples "
            f"(predict_proba_samples); {type(final).__name__} does not. Use the 'mlp-torch' "
            "model, or another strategy"
        )
    head = model[:-1] if isinstance(model, Pipeline) and len(model.steps) > 1 else None
    direct = getattr(final, "bald_scores", None)

    def score(block: Matrix, seed: int) -> NDArray[np.float64]:
        if head is not None:
            block = head.transform(block)
        if direct is not None:
            return np.asarray(direct(block, n_samples, random_state=seed), dtype=np.float64)
        return scorers.bald(final.predict_proba_samples(block, n_samples, random_state=seed))

    return score


def bald_utilities(
    model: Any,
    X: Matrix,
    rows: NDArray[np.intp],
    *,
    n_samples: int,
    rng: np.random.Generator,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> NDArray[np.float64]:
    """BALD utility (:func:`labelwise.strategies.scorers.bald`) of ``rows`` of ``X``, shape
    (n_rows,).

    Parameters
    ----------
    model : fitted :class:`~labelwise.models.registry.MCDropoutModel`, or a pipeline ending in one
        Anything else raises :class:`ModelCapabilityError` naming the model.
    X : matrix of shape (n_pool, n_features)
    rows : sorted int array of shape (n_rows,)
    n_samples : int
        Monte Carlo passes per row.
    rng : numpy Generator
        Draws the seed of each call's dropout masks: same generator state, same utilities.
    chunk_size : int
        Rows per call when the model returns its samples (``n_samples`` probability tables of
        that many rows are in memory at once). A model that reduces the samples itself
        (``bald_scores``) is given a dense pool's whole span of ``rows`` in one call (a view,
        not a copy), so it can stream the pool at its own pace (large chunks on a GPU).
    """
    score = _mc_dropout_scorer(model, n_samples)
    if len(rows) == 0:
        return np.empty(0)
    final = final_step(model)
    in_one_call = hasattr(final, "bald_scores") and not isinstance(model, Pipeline)
    if in_one_call and read_in_place(X, rows):
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        out = score(X[lo:hi], int(rng.integers(2**63)))
        return out if hi - lo == len(rows) else out[rows - lo]
    parts = [
        score(take_rows(X, chunk), int(rng.integers(2**63)))
        for chunk in iter_chunks(rows, chunk_size)
    ]
    return np.concatenate(parts)
