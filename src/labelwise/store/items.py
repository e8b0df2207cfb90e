"""Items: adding them (all or nothing) and reading them back within one project."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError, NotFoundError
from labelwise.store.annotators import system_annotator
from labelwise.store.models import Item, Label, Project
from labelwise.store.projects import settings_of

__all__ = ["ItemRecord", "add_items", "count_items", "get_item", "items_by_row"]

#: Longest text accepted in one item (characters).
MAX_CONTENT = 1_000_000


@dataclass(frozen=True)
class ItemRecord:
    """One item to add.

    Attributes
    ----------
    external_id : str
        The id the data gives it (unique within the project).
    content : str
        The text; the image's path relative to the project folder; or the tabular fields as JSON.
    meta : dict
        Anything else worth keeping (source file, split, original fields).
    label : str or None
        A label that comes with the item; stored as a label by the ``import`` annotator.
    """

    external_id: str
    content: str
    meta: dict[str, Any] = field(default_factory=dict)
    label: str | None = None


def add_items(session: Session, project: Project, records: Sequence[ItemRecord]) -> int:
    """Add ``records`` to ``project`` inside the caller's transaction; returns how many.

    Everything is checked before anything is written, so a bad record leaves the project as it
    was: ids must be new and unique, labels must belong to the label set, content must be
    non-empty and at most ``MAX_CONTENT`` characters. Each item gets the next feature row, and
    with probability ``settings.overlap`` a target of two labels.
    """
    if not records:
        raise InvalidDataError("nothing to import: the data holds no items")
    ids = [str(r.external_id) for r in records]
    seen: set[str] = set()
    for i, ext in enumerate(ids):
        if not ext or len(ext) > 300:
            raise InvalidDataError(f"item {i}: id must be 1 to 300 characters")
        if ext in seen:
            raise InvalidDataError(f"item id {ext!r} appears twice in the data")
        seen.add(ext)
    labels = set(project.label_set)
    for r in records:
        if not r.content:
            raise InvalidDataError(f"item {r.external_id!r} has no content")
        if len(r.content) > MAX_CONTENT:
            raise InvalidDataError(
                f"item {r.external_id!r} is {len(r.content):,} characters long; the limit is "
                f"{MAX_CONTENT:,}"
            )
        if r.label is not None and r.label not in labels:
            raise InvalidDataError(
                f"item {r.external_id!r} has label {r.label!r}, which is not one of the "
                f"project's labels ({', '.join(project.label_set)})"
            )
    clash = _existing_ids(session, project, ids)
    if clash:
        raise InvalidDataError(
            f"{len(clash)} item id(s) already exist in the project, e.g. {sorted(clash)[0]!r}"
        )

    settings = settings_of(project)
    last_row = session.scalar(select(func.max(Item.row)).where(Item.project_id == project.id))
    start_row = 0 if last_row is None else last_row + 1  # not `or -1`: row 0 is falsy
    base_id = session.scalar(select(func.count(Item.id)).where(Item.project_id == project.id)) or 0
    rng = np.random.default_rng([settings.seed, base_id])
    targets = np.where(rng.random(len(records)) < settings.overlap, 2, 1)
    session.execute(
        insert(Item),
        [
            {
                "project_id": project.id,
                "external_id": ids[i],
                "row": start_row + i,
                "content": r.content,
                "meta": r.meta,
                "target": int(targets[i]),
                "n_labels": 0,
                "done": False,
            }
            for i, r in enumerate(records)
        ],
    )
    labeled = [(i, r.label) for i, r in enumerate(records) if r.label is not None]
    if labeled:
        _import_labels(session, project, [(start_row + i, label) for i, label in labeled])
    return len(records)


def _existing_ids(session: Session, project: Project, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 900):  # stay under SQLite's bound-parameter limit
        chunk = ids[start : start + 900]
        found.update(
            session.scalars(
                select(Item.external_id).where(
                    Item.project_id == project.id, Item.external_id.in_(chunk)
                )
            )
        )
    return found


def _import_labels(session: Session, project: Project, rows_labels: list[tuple[int, str]]) -> None:
    annotator = system_annotator(session, project)
    by_row = dict(rows_labels)
    items = items_by_row(session, project, list(by_row))
    session.execute(
        insert(Label),
        [
            {
                "project_id": project.id,
                "item_id": item.id,
                "annotator_id": annotator.id,
                "action": "label",
                "value": by_row[item.row],
                "reason_kind": "import",
                "is_current": True,
            }
            for item in items
        ],
    )
    for item in items:
        item.n_labels = 1
        item.done = item.n_labels >= item.target
    session.flush()


def items_by_row(session: Session, project: Project, rows: Sequence[int]) -> list[Item]:
    out: list[Item] = []
    for start in range(0, len(rows), 900):
        out.extend(
            session.scalars(
                select(Item).where(
                    Item.project_id == project.id, Item.row.in_(list(rows[start : start + 900]))
                )
            )
        )
    return out


def get_item(session: Session, project: Project, item_id: int) -> Item:
    """An item of this project, or :class:`NotFoundError` (also for another project's item)."""
    item = session.scalar(select(Item).where(Item.id == item_id, Item.project_id == project.id))
    if item is None:
        raise NotFoundError(f"no item {item_id} in this project")
    return item


def count_items(session: Session, project: Project) -> int:
    return session.scalar(select(func.count(Item.id)).where(Item.project_id == project.id)) or 0
