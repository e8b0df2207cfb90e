"""Utility strategies: score every candidate, then let a selector choose among the best.

- :class:`UncertaintySampling`: the model's own uncertainty (``least_confident``, ``margin``,
  ``entropy``);
- :class:`QueryByCommittee`: the disagreement of a bagged committee of clones (``qbc``,
  ``qbc-kl``), each pick with the members' votes;
- :class:`Bald`: mutual information over Monte Carlo dropout samples (``bald``);
- :class:`MultiLabelUncertainty`: a multi-label model's uncertainty over its labels
  (``mean-margin``, ``min-margin``, ``mmc``, ``lci``).

Each builds a :class:`~labelwise.strategies.backends.Utility` and hands it, with its selector, to
the backend (:func:`~labelwise.strategies.among_top.select_among_top`): the scoring pass runs
wherever the pool is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from labelwise import label_sets
from labelwise.exceptions import ModelCapabilityError
from labelwise.strategies.among_top import TopK, select_among_top
from labelwise.strategies.backends import DRAWS_WHILE_SCORING, ScorerName, Utility
from labelwise.strategies.base import QueryContext, Selection
from labelwise.strategies.committee import Committee
from labelwise.strategies.kinds import check_model_kind
from labelwise.strategies.multilabel_scorers import MultiLabelScorer, fit_cardinality

__all__ = ["Bald", "MultiLabelUncertainty", "QueryByCommittee", "UncertaintySampling"]


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
        check_model_kind(self.name or self.scorer, ctx.model, multi_label=False)
        utility = Utility(ctx.model, scorer=self.scorer)
        top, positions = select_among_top(ctx, self.selector, utility, batch_size, rng)
        return Selection(top.rows[positions], top.utilities[positions])


@dataclass(frozen=True)
class MultiLabelUncertainty:
    """Score every candidate by a multi-label model's uncertainty over its labels, then select.

    ``mean_margin`` and ``min_margin`` measure each label's probability from the model's threshold
    for that label (its F1 threshold, 0.5 before it has one); ``mmc`` predicts
    each candidate's number of labels with a logistic regression fitted on the labeled set's
    sorted probabilities (Yang et al. 2009); ``lci`` compares each candidate's number of
    predicted labels with the labeled set's mean (Li & Guo 2013). A single-label model is refused
    with a :class:`~labelwise.exceptions.ModelCapabilityError` naming the strategies that fit it.
    """

    scorer: MultiLabelScorer
    selector: Any = field(default_factory=TopK)
    name: str = ""
    needs_model: bool = True

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        model = ctx.model
        check_model_kind(self.name or self.scorer, model, multi_label=True)
        cardinality, mean_cardinality = None, None
        if self.scorer in ("mmc", "lci") and len(ctx.labeled):
            labels = [str(c) for c in model.classes_]
            Y = label_sets.to_indicator([str(v) for v in ctx.y_labeled], labels)
            mean_cardinality = float(Y.sum(axis=1).mean())
            if self.scorer == "mmc":
                P = ctx.backend.map_outputs(model, ctx.labeled, _values, prefer="proba")
                cardinality = fit_cardinality(P, Y)
        utility = Utility(
            model,
            scorer=self.scorer,
            cardinality=cardinality,
            mean_cardinality=mean_cardinality,
        )
        top, positions = select_among_top(ctx, self.selector, utility, batch_size, rng)
        return Selection(top.rows[positions], top.utilities[positions])


def _values(out: Any) -> NDArray[np.float64]:
    return np.asarray(out.values, dtype=np.float64)


@dataclass(frozen=True)
class QueryByCommittee:
    """Disagreement of a bagged committee of clones of the estimator.

    ``disagreement="vote"`` is the vote entropy (works with any classifier); ``"kl"`` the mean KL
    divergence of the members from their consensus (needs probabilities, single-label models
    only). With a multi-label model the members vote on each label, present or not, and the
    utility is the label-set vote entropy; each pick's details then give, per label, how many
    members predict it present (``label_votes``, in the model's label order).
    """

    n_members: int = 5
    disagreement: Literal["vote", "kl"] = "vote"
    selector: Any = field(default_factory=TopK)
    name: str = "qbc"
    needs_model: bool = True

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        template = ctx.estimator if ctx.estimator is not None else ctx.model
        if self.disagreement == "kl":
            check_model_kind(self.name, ctx.model, multi_label=False)
        X_lab = ctx.backend.rows(ctx.labeled)
        committee = Committee.bagged(
            template, X_lab, np.asarray(ctx.y_labeled), n_members=self.n_members, rng=rng
        )
        if self.disagreement == "kl" and not committee.has_proba:
            raise ModelCapabilityError(
                f"strategy {self.name!r} needs predict_proba; use 'qbc' (vote entropy) instead"
            )
        utility = Utility(committee, disagreement=self.disagreement)
        top, positions = select_among_top(ctx, self.selector, utility, batch_size, rng)
        votes = top.votes(positions)
        if committee.multi_label:
            n_members = len(committee.members)
            details = tuple(
                {"label_votes": _label_votes(votes[:, i], committee.classes_), "members": n_members}
                for i in range(len(positions))
            )
            return Selection(top.rows[positions], top.utilities[positions], details)
        details = tuple(
            {"votes": _vote_counts(votes[:, i], committee.classes_)} for i in range(len(positions))
        )
        return Selection(top.rows[positions], top.utilities[positions], details)


@dataclass(frozen=True)
class Bald:
    """BALD over Monte Carlo dropout samples: ``H(mean p) - mean H(p)`` per candidate, then select.

    Needs a model that draws the samples (:class:`~labelwise.models.registry.MCDropoutModel`, e.g.
    the ``"mlp-torch"`` model); any other raises :class:`ModelCapabilityError` naming it. The
    dropout masks are seeded from the query's generator, one seed per block of candidates in
    scoring order: same seed, same batch. That needs the blocks scored in order in one process
    (``needs``), so BALD does not run on a cluster.
    """

    n_samples: int = 20
    selector: Any = field(default_factory=TopK)
    name: str = "bald"
    needs_model: bool = True
    needs: ClassVar[frozenset[str]] = frozenset({DRAWS_WHILE_SCORING})

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        check_model_kind(self.name, ctx.model, multi_label=False)
        utility = Utility(ctx.model, mc_samples=self.n_samples)
        top, positions = select_among_top(ctx, self.selector, utility, batch_size, rng)
        return Selection(top.rows[positions], top.utilities[positions])


def _vote_counts(member_votes: NDArray[np.intp], classes: NDArray[Any]) -> dict[str, int]:
    counts = np.bincount(member_votes, minlength=len(classes))
    order = np.argsort(-counts, kind="stable")
    return {str(classes[i]): int(counts[i]) for i in order if counts[i] > 0}


def _label_votes(member_votes: NDArray[np.int8], labels: NDArray[Any]) -> dict[str, int]:
    """Per label, in label order, how many members predict it present (members × labels)."""
    counts = np.asarray(member_votes, dtype=np.int64).sum(axis=0)
    return {str(label): int(n) for label, n in zip(labels, counts, strict=True)}
