"""Why an item is put in front of an annotator: one type from the ranking to the page.

A :class:`Reason` is made where an item is picked (:func:`labelwise.strategies.query.query`, the
worker's second opinions and audits, the labeling service's random fallback), grows the
"why this item" facts the worker adds (nearest labeled items, what drives the prediction,
near-duplicates: :mod:`labelwise.services.why`), is stored as JSON with the queue and the lease, and
is read back by the labeling service and the views. Its kinds are :class:`Kind`; what each
kind says to the annotator is :data:`WORDING`, the one place for those sentences.

:meth:`Reason.to_dict` writes the JSON stored in ``queue.reason`` and ``leases.reason``;
:meth:`Reason.from_dict` reads it back, including what earlier releases stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Literal

from labelwise.label_sets import SEPARATOR

__all__ = [
    "WORDING",
    "Kind",
    "Reason",
    "ReasonKind",
    "Wording",
    "neutral_summary",
    "percent",
]


class Kind(StrEnum):
    """What put an item in the queue (or in an annotator's hands).

    Members are strings (``Kind.OVERLAP == "overlap"``), stored as such in
    ``queue.kind``, ``labels.reason_kind`` and the reason's JSON.
    """

    #: The strategy's pick: the model learns most from this item.
    STRATEGY = "strategy"
    #: A uniformly random item: keeps the accuracy estimate unbiased.
    EXPLORATION = "exploration"
    #: An item the model is confident about, for a tired annotator (and a check on them).
    ROUTINE = "routine"
    #: A uniformly random pick before any model (fewer than two classes labeled).
    COLD_START = "cold-start"
    #: The most typical item of a region of the pool, chosen before any model.
    TYPICAL = "typical"
    #: An item answered once, queued again for a second annotator (agreement).
    OVERLAP = "overlap"
    #: An automatic triage decision checked blind by an expert.
    AUDIT = "audit"
    #: A random open item handed out while the ranked queue is used up.
    FALLBACK = "fallback"
    #: An answer given along with a near-duplicate's (only ever a label's reason kind).
    GROUP = "group"


#: The kinds as a type for code that names them as strings (``Reason("exploration", ...)``).
ReasonKind = Literal[
    "strategy",
    "exploration",
    "routine",
    "cold-start",
    "typical",
    "overlap",
    "audit",
    "fallback",
    "group",
]

#: Why an item of a first batch chosen by typicality (before any model) is shown.
TYPICAL_SUMMARY = (
    "a typical item of its part of the pool: chosen before any model, so the first labels "
    "cover the pool (cold start)"
)


def labels_on(split: tuple[tuple[str, float], ...], thresholds: Mapping[str, float]) -> list[str]:
    """A multi-label model's predicted labels from its class split (every label with its
    probability) and ``thresholds``: those at or above their own threshold, in split order."""
    return [
        str(label)
        for label, value in split
        if label in thresholds and float(value) >= float(thresholds[label])
    ]


@dataclass(frozen=True)
class Wording:
    """What a kind says to the annotator.

    Attributes
    ----------
    summary : str
        The sentence an item of this kind carries when nothing more particular is said of it
        (strategy and routine items get theirs from the model's outputs instead, see
        :func:`labelwise.strategies.query.describe_reason`).
    neutral : str
        The sentence shown while the model's guess is withheld: it says why the item was
        chosen without giving the guess away ("" where the kind shows nothing then).
    """

    summary: str
    neutral: str


#: The sentences of each kind: the one place they are written.
WORDING: dict[Kind, Wording] = {
    Kind.STRATEGY: Wording("chosen by the strategy", "the model is unsure about this item"),
    Kind.EXPLORATION: Wording(
        "random exploration pick: keeps the accuracy estimate unbiased",
        "a random item: it keeps the accuracy estimate honest",
    ),
    Kind.ROUTINE: Wording(
        "routine check: the model is confident about this item",
        "a routine item, mixed in to keep the pace comfortable",
    ),
    Kind.COLD_START: Wording(
        "random pick: fewer than two classes are labeled so far (cold start)",
        "random pick: no model yet (fewer than two classes labeled)",
    ),
    # No model has spoken yet, so the whole reason can be said before the answer.
    Kind.TYPICAL: Wording(TYPICAL_SUMMARY, TYPICAL_SUMMARY),
    Kind.OVERLAP: Wording(
        "second opinion: this item is labeled twice to measure agreement",
        "second opinion: this item is labeled twice to measure agreement",
    ),
    # Blind: neither the model's guess nor the automatic decision is said before the answer.
    Kind.AUDIT: Wording(
        "a random check of the automatic decisions: your answer measures their error", ""
    ),
    Kind.FALLBACK: Wording(
        "the ranked queue is used up: a random open item while the model retrains",
        "the ranked queue is used up: a random open item while the model retrains",
    ),
    # Never handed out: the answer given to a near-duplicate along with its item's.
    Kind.GROUP: Wording("labeled with the same answer as its near-duplicate", ""),
}

#: The summary of an item leased back to the annotator who undid its answer, when the queue
#: that chose it is no longer served.
BACK_AFTER_UNDO = "back after undo"

#: The keys of a strategy's reason (:func:`labelwise.strategies.query.query`), written together.
_RANKING_KEYS = ("strategy", "utility", "rank", "class_split", "output_kind", "details")
#: The "why this item" facts the worker adds (:mod:`labelwise.services.why`), written when present.
_ADDED_KEYS = (
    "neighbors",
    "neighbors_floor",
    "far_from_labeled",
    "drivers",
    "occlusion",
    "duplicates",
)


def neutral_summary(kind: str) -> str:
    """The sentence of ``kind`` while the guess is withheld ("" for a kind not known here)."""
    try:
        return WORDING[Kind(kind)].neutral
    except ValueError:
        return ""


@dataclass(frozen=True)
class Reason:
    """Why an item was put in front of an annotator.

    Attributes
    ----------
    kind : Kind
        What chose the item (a string naming a kind is taken too).
    strategy : str or None
        The strategy that built the batch; None for items queued apart from it (second
        opinions, audits, typical and fallback picks).
    summary : str
        One sentence for the annotator ("the model gives 51% to spam and 49% to ham"): its
        percentages are the class split's, each rounded as the annotate page rounds them
        (:func:`percent`). :meth:`of` gives the kind's own sentence
        (:data:`WORDING`).
    utility : float or None
        The strategy's utility for this item (higher = more informative).
    rank : int or None
        1 for the strategy's top pick, 2 for the next, ...; once leased, the item's place in
        the served queue (0 first).
    class_split : tuple of (label, value)
        The model's view, best class first: probabilities, or decision values for models
        without probabilities (``output_kind`` says which).
    output_kind : {"proba", "decision"} or None
    details : dict
        Strategy-specific facts (committee votes, distance to the labeled set).
    neighbors : tuple of dict or None
        The nearest labeled items close enough to show (``item_id``, ``label``,
        ``similarity``, ``preview``, a table's ``fields``); None where none were looked for.
    neighbors_floor : float or None
        The similarity a shown neighbour had to reach in its space.
    far_from_labeled : bool or None
        Whether the item is unlike anything labeled so far.
    drivers, occlusion : dict or None
        What drives the prediction: words or fields with their weights, or an image's
        occlusion map (:func:`labelwise.services.drivers.explanations`).
    duplicates : tuple of dict or None
        Open near-duplicates the annotator may give the same answer.
    extra : dict
        Keys of a stored reason this release does not know, written back as they were.
    """

    kind: Kind | ReasonKind
    strategy: str | None = None
    summary: str = ""
    utility: float | None = None
    rank: int | None = None
    class_split: tuple[tuple[str, float], ...] = ()
    output_kind: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    neighbors: tuple[dict[str, Any], ...] | None = None
    neighbors_floor: float | None = None
    far_from_labeled: bool | None = None
    drivers: dict[str, Any] | None = None
    occlusion: dict[str, Any] | None = None
    duplicates: tuple[dict[str, Any], ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        for name in ("neighbors", "duplicates"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    @classmethod
    def of(cls, kind: Kind | ReasonKind, **fields: Any) -> Reason:
        """A reason of ``kind`` saying the kind's own sentence (:data:`WORDING`)."""
        fields.setdefault("summary", WORDING[Kind(kind)].summary)
        return cls(kind, **fields)

    @property
    def type(self) -> Kind:
        """:attr:`kind` as the enum (what it always holds once made)."""
        return Kind(self.kind)

    @property
    def predicted(self) -> str | None:
        """The class the model leans to (the class split's first), None without a model. A
        multi-label model's (its split every label in label order, its thresholds in
        ``details["thresholds"]``): the set of labels at or above their thresholds, in its
        stored form (:mod:`labelwise.label_sets`)."""
        if not self.class_split:
            return None
        thresholds = self.details.get("thresholds")
        if isinstance(thresholds, Mapping):
            return SEPARATOR.join(labels_on(self.class_split, thresholds))
        return str(self.class_split[0][0])

    @property
    def guess(self) -> dict[str, Any] | None:
        """The model's guess as the page shows it: the label, and its probability when the
        model gives probabilities."""
        if not self.class_split:
            return None
        label, value = self.class_split[0]
        out: dict[str, Any] = {"label": label}
        if self.output_kind == "proba":
            out["confidence"] = round(float(value), 4)
        return out

    def withheld_summary(self) -> str:
        """The sentence shown while the guess is withheld: why the item was chosen, in words
        that do not give the guess away."""
        if "votes" in self.details:
            n = sum(self.details["votes"].values())
            return f"the committee of {n} models disagrees about this item"
        if "distance_to_labeled" in self.details:
            return self.summary or WORDING[self.type].neutral
        return WORDING[self.type].neutral

    def with_rank(self, rank: int) -> Reason:
        """This reason at place ``rank`` of the served queue (what a lease carries)."""
        return replace(self, rank=rank)

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored with the queue and the lease: ``kind`` and ``summary``; a strategy's
        ``strategy``, ``utility``, ``rank``, ``class_split`` (as ``[label, value]`` pairs),
        ``output_kind`` and ``details`` (an item queued apart from the strategy: ``rank``
        alone, once it has one); then each "why" fact the worker added."""
        out: dict[str, Any] = {"kind": str(self.type.value)}
        if self.strategy is not None:
            out["strategy"] = self.strategy
        if self.summary or self.strategy is not None:
            out["summary"] = self.summary
        if self.strategy is not None:
            out.update(
                utility=self.utility,
                rank=self.rank,
                class_split=[[label, value] for label, value in self.class_split],
                output_kind=self.output_kind,
                details=self.details,
            )
        elif self.rank is not None:
            out["rank"] = self.rank
        for key in _ADDED_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, kind: str = Kind.STRATEGY) -> Reason:
        """A reason read back from its JSON (any release's): ``kind`` when it names none."""
        data = dict(data or {})
        known = {"kind", "summary", *_RANKING_KEYS, *_ADDED_KEYS}
        split = data.get("class_split") or ()
        details = data.get("details")
        return cls(
            kind=Kind(str(data.get("kind") or kind)),
            strategy=data.get("strategy"),
            summary=str(data.get("summary") or ""),
            utility=data.get("utility"),
            rank=data.get("rank"),
            class_split=tuple((str(label), value) for label, value in split),
            output_kind=data.get("output_kind"),
            details=dict(details) if isinstance(details, Mapping) else {},
            neighbors=_tuple(data.get("neighbors")),
            neighbors_floor=data.get("neighbors_floor"),
            far_from_labeled=data.get("far_from_labeled"),
            drivers=data.get("drivers"),
            occlusion=data.get("occlusion"),
            duplicates=_tuple(data.get("duplicates")),
            extra={k: v for k, v in data.items() if k not in known},
        )


def _tuple(value: Any) -> tuple[dict[str, Any], ...] | None:
    return None if value is None else tuple(value)


def percent(p: float) -> int:
    """A probability as a whole percentage, rounded half up as JavaScript's ``toFixed(0)``
    rounds (the annotate page's bars): a sentence and the bars beside it show one number."""
    return int(Decimal(100 * float(p)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
