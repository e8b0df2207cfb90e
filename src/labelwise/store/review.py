"""Resolving what annotators said: the label each item trains with, conflicts, adjudication.

An item's training label is an admin's adjudication if there is one, else the value every
annotator with a standing label agrees on. Items whose annotators disagree are *conflicts*: they
stay out of training and wait in the admin's review queue.

In a multi-label project a value is a label set in its canonical form
(:mod:`labelwise.label_sets`), so two annotators disagree when their sets differ; the admin's
decision may be one annotator's set, their union, or any set of the project's labels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelwise.exceptions import NotFoundError
from labelwise.store.annotators import require_admin
from labelwise.store.models import Annotator, Item, Label, Project, utcnow
from labelwise.store.projects import answer_value

__all__ = [
    "Conflict",
    "adjudicate",
    "count_resolved_items",
    "list_conflicts",
    "resolved_labels",
]


@dataclass(frozen=True)
class Conflict:
    """An item whose annotators disagree.

    Attributes
    ----------
    item_id : int
        The item.
    votes : dict of str to list of str
        Each value given (a label, or a label set's canonical string) and who gave it.
    answers : dict of str to str
        Each annotator's standing value, by name, in the order they answered.
    """

    item_id: int
    votes: dict[str, list[str]]
    answers: dict[str, str] = field(default_factory=dict)


def _standing(session: Session, project: Project) -> list[tuple[int, str, str, str]]:
    return [
        (row.item_id, row.action, row.value, row.name)
        for row in session.execute(
            select(Label.item_id, Label.action, Label.value, Annotator.name)
            .join(Annotator, Annotator.id == Label.annotator_id)
            .where(
                Label.project_id == project.id,
                Label.is_current.is_(True),
                Label.action.in_(("label", "adjudicate")),
            )
            .order_by(Label.id)
        )
    ]


def resolved_labels(session: Session, project: Project) -> tuple[dict[int, str], list[Conflict]]:
    """(item id -> training label, conflicts)."""
    votes: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    given: dict[int, dict[str, str]] = defaultdict(dict)
    final: dict[int, str] = {}
    for item_id, action, value, name in _standing(session, project):
        if action == "adjudicate":
            final[item_id] = value
        else:
            votes[item_id][value].append(name)
            given[item_id][name] = value
    conflicts = []
    for item_id, by_value in votes.items():
        if item_id in final:
            continue
        if len(by_value) == 1:
            final[item_id] = next(iter(by_value))
        else:
            conflicts.append(
                Conflict(item_id, {k: list(v) for k, v in by_value.items()}, given[item_id])
            )
    return final, conflicts


def list_conflicts(session: Session, project: Project) -> list[Conflict]:
    return resolved_labels(session, project)[1]


def adjudicate(
    session: Session, project: Project, admin: Annotator, *, item_id: int, value: Any
) -> Label:
    """An admin's final word on an item (supersedes any earlier adjudication; every answer
    stays in its history). The item is closed: nobody is handed it again.

    ``value`` is a label, or in a multi-label project a label set as a list of names, a JSON
    list or names joined by ``;`` (stored in its canonical form,
    :func:`labelwise.store.projects.answer_value`); anything else raises
    :class:`~labelwise.exceptions.InvalidParameterError` naming what is wrong, and nothing is
    stored."""
    require_admin(admin)
    value = answer_value(project, value)
    item = session.scalar(select(Item).where(Item.id == item_id, Item.project_id == project.id))
    if item is None:
        raise NotFoundError(f"no item {item_id} in this project")
    previous = session.scalar(
        select(Label).where(
            Label.item_id == item.id, Label.action == "adjudicate", Label.is_current.is_(True)
        )
    )
    label = Label(
        project_id=project.id,
        item_id=item.id,
        annotator_id=admin.id,
        action="adjudicate",
        value=value,
        supersedes_id=previous.id if previous else None,
        is_current=True,
        created_at=utcnow(),
    )
    if previous is not None:
        previous.is_current = False
    item.done = True
    session.add(label)
    session.flush()
    return label


def count_resolved_items(session: Session, project: Project) -> int:
    """Items with a standing answer or adjudication: what the next fit's label count is
    measured against (approximate: agreeing answers on an overlap item count once, conflicts
    count too)."""
    n = session.scalar(
        select(func.count(func.distinct(Label.item_id))).where(
            Label.project_id == project.id,
            Label.action.in_(("label", "adjudicate")),
            Label.is_current.is_(True),
        )
    )
    return int(n or 0)
