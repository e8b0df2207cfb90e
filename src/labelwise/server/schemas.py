"""The shapes of the JSON API's answers, as pydantic models.

The routes of :mod:`labelwise.server.routes.projects` and :mod:`labelwise.server.routes.items`
name these as their ``response_model``, so ``/openapi.json`` (and the ``/docs`` page) shows what
each answer holds. Every model lets through keys it does not declare (``extra="allow"``): the
figures come from the store and the services as plain data, and a key added there reaches the
client before it is described here. Numbers that may be whole or not are
:data:`Number` (``int | float``), so a whole number stays one on the wire.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "AddedAnnotator",
    "AnnotatorRow",
    "Dashboard",
    "ImportResult",
    "ItemHistory",
    "ItemPage",
    "ItemView",
    "Resolution",
    "ReviewEntry",
    "Settings",
    "Summary",
    "TriageResult",
]

#: A figure that may be whole or not (pydantic keeps an int an int in this union).
Number = int | float


class _Open(BaseModel):
    """A model that keeps keys it does not declare."""

    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------------------------ progress


class Progress(_Open):
    """How far the project is (:func:`labelwise.store.stats.item_progress`)."""

    items: int
    done: int
    waiting_second_opinion: int
    labelers: int
    percent_done: str
    waiting_text: str | None = None
    text: str


class DashboardProgress(Progress):
    """Progress with the answers behind it: items with a training label, conflicts, answers
    and skips."""

    labeled_items: int
    conflicts: int
    labels: int
    skips: int


# ------------------------------------------------------------------------------------- summary


class Me(_Open):
    """The signed-in annotator: who, how many answers, whether undo has something to undo."""

    name: str
    role: str
    labels: int
    can_undo: bool
    fatigue: dict[str, Any]


class ServedModel(_Open):
    """The model version whose queue is served."""

    version: int
    labels: int
    created_at: str


class Settings(_Open):
    """A project's settings (:class:`labelwise.store.projects.ProjectSettings`)."""

    strategy: str
    model: str
    retrain_every: int
    queue_size: int
    exploration: Number
    routine: Number
    overlap: Number
    lease_seconds: int
    show_guess: str
    seed: int
    duplicate_similarity: Number
    max_group: int
    features: str | None = None
    guidelines: str
    label_help: dict[str, str]
    label_keys: dict[str, str]


class Summary(_Open):
    """The project as the annotate page needs it."""

    id: int
    name: str
    kind: str
    labels: list[str]
    show_guess: str
    me: Me
    progress: Progress
    model: ServedModel | None = None
    retrain_in: int
    settings: Settings | None = None


# ----------------------------------------------------------------------------------- dashboard


class ProjectInfo(_Open):
    id: int
    name: str
    kind: str
    labels: list[str]


class LiveEstimate(_Open):
    """Accuracy and macro-F1 on a version's exploration items, with 95 % intervals; in a
    multi-label project ``accuracy`` is the subset accuracy (the whole set right), with micro-F1,
    the Hamming loss and every score (``scores``) beside it."""

    n: int
    accuracy: Number
    accuracy_low: Number
    accuracy_high: Number
    macro_f1: Number
    macro_f1_low: Number
    macro_f1_high: Number
    micro_f1: Number | None = None
    micro_f1_low: Number | None = None
    micro_f1_high: Number | None = None
    hamming_loss: Number | None = None
    scores: dict[str, Any] | None = None


class CurvePoint(_Open):
    """One model version on the learning curve."""

    version: int
    labels: int
    created_at: str
    cv_accuracy: Number | None = None
    cv_macro_f1: Number | None = None
    agreement_with_previous: Number | None = None
    live: LiveEstimate | None = None


class AnnotatorFigures(_Open):
    """One annotator's answers, pace and fatigue."""

    name: str
    role: str
    labels: int
    skips: int
    median_seconds: Number | None = None
    last_hour: int
    fatigue: dict[str, Any]


class Agreement(_Open):
    """Agreement on items labeled by more than one annotator; in a multi-label project
    Krippendorff's alpha with the MASI distance between sets and each label's Cohen's kappa."""

    items: int
    percent_agreement: Number | None = None
    fleiss_kappa: Number | None = None
    pairwise: list[dict[str, Any]]
    per_annotator: dict[str, Number]
    alpha_masi: Number | None = None
    per_label_kappa: dict[str, Number | None] | None = None


class VersionRow(_Open):
    """One model version as the dashboard lists it."""

    version: int
    status: str
    labels: int
    created_at: str
    fit_seconds: Number | None = None
    strategy: str | None = None
    model: str | None = None
    cv_accuracy: Number | None = None
    error: str | None = None
    current: bool


class ExpectedGainFigures(_Open):
    """What the fitted learning curve says the next labels bring."""

    more: int
    gain: Number
    at: int
    asymptote: Number
    source: str
    points: int


class Stopping(_Open):
    """Whether to stop labeling, and why (the core's stopping criteria on the versions)."""

    verdict: str
    plateau: bool
    stable: bool
    flattening: bool
    expected_gain: ExpectedGainFigures | None = None
    estimate: dict[str, Any] | None = None
    reasons: list[str]
    rule: dict[str, Number]


class MultiLabelFigures(_Open):
    """A multi-label project's figures beside the others: items whose training set is empty,
    and the served version's cross-validated scores (micro/macro F1, per label, Hamming loss,
    subset accuracy)."""

    empty_sets: int
    cv: dict[str, Any] | None = None


class Dashboard(_Open):
    """Every figure of the dashboard (:func:`labelwise.services.dashboard.dashboard`)."""

    project: ProjectInfo
    progress: DashboardProgress
    distribution: dict[str, int]
    curve: list[CurvePoint]
    per_class: dict[str, Any]
    pseudo_labels: Any = None
    bandit: Any = None
    representation: dict[str, Any]
    triage: Any = None
    annotators: list[AnnotatorFigures]
    agreement: Agreement
    versions: list[VersionRow]
    stopping: Stopping
    multi_label: MultiLabelFigures | None = None


# ---------------------------------------------------------------------------- items and admin


class ItemView(_Open):
    """An item's content: ``text``, ``fields`` (tabular) or ``image_url``, by kind."""

    id: int
    external_id: str
    kind: str


class AnnotatorRow(_Open):
    id: int
    name: str
    role: str
    token_hint: str | None = None
    disabled: bool


class AddedAnnotator(_Open):
    """A new annotator with their token: shown in this answer and nowhere else."""

    id: int
    name: str
    role: str
    token: str


class ReviewAnswer(_Open):
    """One annotator's answer to a conflicting item (a multi-label set also as ``labels``)."""

    annotator: str
    value: str
    labels: list[str] | None = None


class ReviewEntry(_Open):
    """A conflict: the item, each value given with who gave it, and every annotator's answer."""

    item: ItemView
    votes: dict[str, list[str]]
    answers: list[ReviewAnswer] = []


class Resolution(_Open):
    """The decision stored (a multi-label set also as ``labels``)."""

    item_id: int
    value: str | None = None
    label_id: int
    labels: list[str] | None = None


class ImportResult(_Open):
    imported: int
    file: str


class TriageResult(_Open):
    """What triage of an uploaded batch decided (:class:`labelwise.services.triage.
    TriageSummary`)."""

    file: str
    batch: str
    items: int
    accepted: int
    routed_to_experts: int
    audit: int
    skipped: int
    accepted_by_label: dict[str, int]
    policy: dict[str, Any]


class BrowsedRow(_Open):
    """One row of the data browser; ``text``, ``image_url`` or ``fields`` by kind."""

    id: int
    external_id: str
    row: int
    status: str
    label: str | None = None
    answers: list[dict[str, Any]]
    predicted: str | None = None
    confidence: Number | None = None


class ItemPage(_Open):
    """A page of the data browser."""

    items: list[BrowsedRow]
    next_after: int | None = None
    predictions: bool


class HistoryEntry(_Open):
    annotator: str | None = None
    action: str
    value: str | None = None
    current: bool
    duration_ms: int | None = None
    at: str


class ItemHistory(_Open):
    item_id: int
    history: list[HistoryEntry]
