"""Finding items: the admin's data browser, filtered and paged on the server.

Filters (all optional, combined with AND; :class:`ItemFilter`):

- ``text``: a word or phrase in the item's text (case-insensitive) or in its id; for image and
  tabular items, in the id only;
- ``label``: the item's resolved label (see :func:`labelwise.store.review.resolved_labels`: an
  admin's decision, else the value every annotator agrees on), or ``"none"`` for items without;
- ``annotator``: items this annotator answered (their answer standing);
- ``status``: ``unlabeled`` (no answer, not in the served model's queue), ``queued`` (no answer,
  in that queue), ``labeled`` (a resolved label) or ``review`` (annotators disagree and no
  admin decided);
- ``disagreement``: items whose standing answers differ, decided by an admin or not;
- ``predicted``, ``min_confidence``, ``max_confidence``: the served model's prediction and its
  probability, from the predictions file the worker writes after each fit
  (:mod:`labelwise.store.prediction_cache`).

Pages go in row (import) order and are addressed by the last row of the previous page
(``after``), so a page costs the same at the start of a pool of a million items as at its end.
Filters that need an answer (a label, an annotator, labeled, review, disagreement) and the
prediction filters first narrow the rows with an index (answers are few next to the pool) or
the memory-mapped predictions; the rest is one query per block of candidate rows. A text search
without other filters reads the pool in row order until a page is full.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import and_, distinct, exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from labelwise import label_sets
from labelwise.exceptions import InvalidParameterError
from labelwise.store.models import Annotator, Item, Label, Project, QueueEntry
from labelwise.store.prediction_cache import predicted_labels, rows_predicting
from labelwise.store.projects import settings_of

__all__ = ["STATUSES", "BrowsedItem", "ItemFilter", "Page", "browse_items", "item_history"]

STATUSES = ("unlabeled", "queued", "labeled", "review")
#: Most items on one page.
MAX_PAGE = 200
#: Candidate rows checked per query when the rows were narrowed first.
_BLOCK = 2000
_ANSWERS = ("label", "adjudicate")


@dataclass(frozen=True)
class ItemFilter:
    """What to look for (see the module's docstring); every field optional."""

    text: str | None = None
    label: str | None = None
    annotator: str | None = None
    status: str | None = None
    disagreement: bool = False
    predicted: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None

    def check(self, project: Project) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise InvalidParameterError(
                f"status must be one of {', '.join(STATUSES)}, got {self.status!r}"
            )
        for name in ("label", "predicted"):
            value = getattr(self, name)
            allowed = [*project.label_set, "none"] if name == "label" else project.label_set
            if value is not None and value not in allowed:
                raise InvalidParameterError(
                    f"{name} must be one of {', '.join(allowed)}, got {value!r}"
                )
        for name in ("min_confidence", "max_confidence"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InvalidParameterError(f"{name} must be in [0, 1], got {value!r}")

    @property
    def uses_predictions(self) -> bool:
        return (
            self.predicted is not None
            or self.min_confidence is not None
            or self.max_confidence is not None
        )

    @property
    def needs_answers(self) -> bool:
        """Whether only items with a standing answer can match."""
        return (
            (self.label is not None and self.label != "none")
            or self.annotator is not None
            or self.status in ("labeled", "review")
            or self.disagreement
        )


@dataclass
class BrowsedItem:
    """One row of the browser."""

    id: int
    external_id: str
    row: int
    content: str
    status: str
    label: str | None
    answers: list[dict[str, Any]] = field(default_factory=list)
    predicted: str | None = None
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "external_id": self.external_id,
            "row": self.row,
            "status": self.status,
            "label": self.label,
            "answers": self.answers,
            "predicted": self.predicted,
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class Page:
    items: list[BrowsedItem]
    #: The ``after`` of the next page; None on the last page.
    next_after: int | None
    #: Whether the prediction filters could be applied (the served model's predictions exist).
    predictions: bool


def _current(*conditions: ColumnElement[bool]) -> Any:
    return exists().where(Label.item_id == Item.id, Label.is_current.is_(True), *conditions)


def _conditions(
    session: Session, project: Project, f: ItemFilter, queued_version: int | None
) -> list[ColumnElement[bool]]:
    """The SQL side of the filter (everything but the predictions)."""
    where: list[ColumnElement[bool]] = []
    adjudicated = _current(Label.action == "adjudicate")
    voted = _current(Label.action == "label")
    distinct_votes = (
        select(func.count(distinct(Label.value)))
        .where(Label.item_id == Item.id, Label.is_current.is_(True), Label.action == "label")
        .scalar_subquery()
    )
    if f.text:
        pattern = "%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        in_id = Item.external_id.ilike(pattern, escape="\\")
        where.append(
            or_(Item.content.ilike(pattern, escape="\\"), in_id)
            if project.kind == "text"
            else in_id
        )
    if f.label == "none":
        where.append(~adjudicated)
        where.append(~voted)
    elif f.label is not None:
        # In a multi-label project an answer matches when its set holds the label.
        matches = _holds(f.label) if settings_of(project).multi_label else Label.value == f.label
        where.append(
            or_(
                _current(Label.action == "adjudicate", matches),
                and_(
                    ~adjudicated,
                    _current(Label.action == "label", matches),
                    ~_current(Label.action == "label", ~matches),
                ),
            )
        )
    if f.annotator is not None:
        who = session.scalar(
            select(Annotator.id).where(
                Annotator.project_id == project.id, Annotator.name == f.annotator
            )
        )
        if who is None:
            raise InvalidParameterError(f"no annotator named {f.annotator!r} in this project")
        where.append(_current(Label.action.in_(_ANSWERS), Label.annotator_id == who))
    if f.disagreement:
        where.append(distinct_votes > 1)
    if f.status in ("unlabeled", "queued"):
        in_queue = exists().where(
            QueueEntry.item_id == Item.id, QueueEntry.model_version_id == queued_version
        )
        where += [~adjudicated, ~voted, in_queue if f.status == "queued" else ~in_queue]
    elif f.status == "labeled":
        where.append(or_(adjudicated, and_(voted, distinct_votes == 1)))
    elif f.status == "review":
        where += [~adjudicated, distinct_votes > 1]
    return where


def _holds(label: str) -> ColumnElement[bool]:
    """An answer's set (its stored form, :mod:`labelwise.label_sets`) holds ``label``."""
    sep = label_sets.SEPARATOR
    text = label.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(
        Label.value == label,
        Label.value.like(f"{text}{sep}%", escape="\\"),
        Label.value.like(f"%{sep}{text}", escape="\\"),
        Label.value.like(f"%{sep}{text}{sep}%", escape="\\"),
    )


def _answered_rows(session: Session, project: Project) -> NDArray[np.int64]:
    """The rows of items with a standing answer, in order."""
    rows = session.scalars(
        select(Item.row)
        .distinct()
        .join(Label, Label.item_id == Item.id)
        .where(
            Label.project_id == project.id,
            Label.is_current.is_(True),
            Label.action.in_(_ANSWERS),
        )
    ).all()
    return np.sort(np.asarray(rows, dtype=np.int64))


def _predicted_rows(f: ItemFilter, predictions: NDArray[Any], labels: list[str]) -> NDArray[Any]:
    keep = np.ones(len(predictions), dtype=bool)
    if f.predicted is not None and "labels" in (predictions.dtype.names or ()):
        # A multi-label prediction: the sets that hold the label.
        keep &= rows_predicting(predictions, labels.index(f.predicted))
    elif f.predicted is not None:
        keep &= predictions["label"] == labels.index(f.predicted)
    confidence = predictions["confidence"]
    if f.min_confidence is not None:
        keep &= confidence >= f.min_confidence
    if f.max_confidence is not None:
        keep &= confidence <= f.max_confidence
    return np.flatnonzero(keep).astype(np.int64)


def _blocks(rows: NDArray[np.int64], after: int | None) -> Iterator[list[int]]:
    start = 0 if after is None else int(np.searchsorted(rows, after, side="right"))
    for i in range(start, len(rows), _BLOCK):
        yield rows[i : i + _BLOCK].tolist()


def browse_items(
    session: Session,
    project: Project,
    f: ItemFilter,
    *,
    after: int | None = None,
    limit: int = 50,
    predictions: NDArray[Any] | None = None,
) -> Page:
    """One page of the items that match ``f``, after row ``after``.

    ``predictions`` are the served model's, from
    :func:`labelwise.store.prediction_cache.cached_predictions`; without them the prediction
    filters match nothing and no prediction is shown.
    """
    f.check(project)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidParameterError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
    if f.uses_predictions and predictions is None:
        return Page([], None, predictions=False)
    where = [
        Item.project_id == project.id,
        *_conditions(session, project, f, project.current_version_id),
    ]
    base = select(Item).order_by(Item.row)
    found: list[Item] = []
    narrowed: NDArray[np.int64] | None = None
    if f.needs_answers:
        narrowed = _answered_rows(session, project)
    if f.uses_predictions:
        assert predictions is not None
        by_model = _predicted_rows(f, predictions, list(project.label_set))
        narrowed = by_model if narrowed is None else np.intersect1d(narrowed, by_model)
    if narrowed is None:
        if after is not None:
            where.append(Item.row > after)
        found = list(session.scalars(base.where(*where).limit(limit + 1)))
    else:
        for block in _blocks(narrowed, after):
            found += session.scalars(
                base.where(*where, Item.row.in_(block)).limit(limit + 1 - len(found))
            )
            if len(found) > limit:
                break
    more = len(found) > limit
    found = found[:limit]
    items = _describe(session, project, found, predictions)
    return Page(items, found[-1].row if more and found else None, predictions is not None)


def _describe(
    session: Session, project: Project, found: list[Item], predictions: NDArray[Any] | None
) -> list[BrowsedItem]:
    answers: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if found:
        for item_id, action, value, name in session.execute(
            select(Label.item_id, Label.action, Label.value, Annotator.name)
            .join(Annotator, Annotator.id == Label.annotator_id)
            .where(
                Label.item_id.in_([i.id for i in found]),
                Label.is_current.is_(True),
                Label.action.in_(_ANSWERS),
            )
            .order_by(Label.id)
        ):
            answers[item_id].append({"annotator": name, "value": value, "action": action})
    queued: set[int] = set()
    if found and project.current_version_id is not None:
        queued = set(
            session.scalars(
                select(QueueEntry.item_id).where(
                    QueueEntry.model_version_id == project.current_version_id,
                    QueueEntry.item_id.in_([i.id for i in found]),
                )
            )
        )
    out = []
    for item in found:
        said = answers.get(item.id, [])
        decided = [a["value"] for a in said if a["action"] == "adjudicate"]
        votes = {a["value"] for a in said if a["action"] == "label"}
        if decided:
            status, label = "labeled", decided[-1]
        elif len(votes) == 1:
            status, label = "labeled", next(iter(votes))
        elif votes:
            status, label = "review", None
        else:
            status, label = ("queued" if item.id in queued else "unlabeled"), None
        browsed = BrowsedItem(
            item.id, item.external_id, item.row, item.content, status, label, said
        )
        if predictions is not None and 0 <= item.row < len(predictions):
            record = predictions[item.row]
            if "labels" in (predictions.dtype.names or ()):
                chosen = predicted_labels(record, list(project.label_set))
                browsed.predicted = label_sets.SEPARATOR.join(chosen)
            elif record["label"] >= 0:
                browsed.predicted = project.label_set[int(record["label"])]
            if browsed.predicted is not None:
                conf = float(record["confidence"])
                browsed.confidence = None if np.isnan(conf) else round(conf, 4)
        out.append(browsed)
    return out


def item_history(session: Session, item: Item) -> list[dict[str, Any]]:
    """Every answer, skip, undo and decision on an item, oldest first, standing or not."""
    rows = session.execute(
        select(Label, Annotator.name)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .where(Label.item_id == item.id)
        .order_by(Label.id)
    )
    return [
        {
            "annotator": name,
            "action": label.action,
            "value": label.value,
            "current": label.is_current,
            "duration_ms": label.duration_ms,
            "at": label.created_at.isoformat(timespec="seconds") + "Z",
        }
        for label, name in rows
    ]
