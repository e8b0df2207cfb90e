"""A project's items as the worker needs them, without loading every one.

A cycle of the worker touches few items by name (the labeled ones, the queued ones, their
nearest neighbours) and all the others only as rows of the feature matrix. :class:`PoolItems`
answers both without building a Python object per item, so a pool of ten million items costs
arrays (a byte or eight per item), not ten million ORM objects:

- :meth:`~PoolItems.rows_of` maps item ids to feature rows;
- :meth:`~PoolItems.open_rows` is the array of rows nobody has labeled yet, read as its
  complement (the few items with an answer), not item by item;
- ``items[row]`` fetches an item by row on first use and keeps it (:meth:`~PoolItems.prefetch`
  fetches many in one query), with :meth:`~PoolItems.preview` for the "why" panel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import or_, select

from labelwise.store.db import Database
from labelwise.store.features import field_names, item_fields, item_preview
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import items_by_row, row_count
from labelwise.store.models import Item, Project
from labelwise.store.row_file import shown

__all__ = ["PoolItems"]

_IN = 900  # ids per IN list, under SQLite's bound-parameter limit


class PoolItems:
    """The items of ``project``, read on demand through ``db`` (see the module docstring)."""

    def __init__(self, db: Database, project: Project, folder: ProjectFolder) -> None:
        self.db = db
        self.project = project
        self.folder = folder
        self._by_row: dict[int, Item] = {}
        self._answered_rows: list[Any] | None = None
        with db.read() as session:
            self.n_items = row_count(session, project)

    def rows_of(self, item_ids: Iterable[int]) -> dict[int, int]:
        """Feature row of each of ``item_ids`` (ids of other projects are left out)."""
        ids = sorted(set(item_ids))
        out: dict[int, int] = {}
        with self.db.read() as session:
            for start in range(0, len(ids), _IN):
                found = session.execute(
                    select(Item.id, Item.row).where(
                        Item.project_id == self.project.id, Item.id.in_(ids[start : start + _IN])
                    )
                )
                out.update((int(r.id), int(r.row)) for r in found)
        return out

    def by_id(self, item_ids: Iterable[int]) -> list[Item]:
        """The items with ``item_ids``, in that order (ids not in the project left out)."""
        ids = list(item_ids)
        found: dict[int, Item] = {}
        with self.db.read() as session:
            for start in range(0, len(ids), _IN):
                found.update(
                    (i.id, i)
                    for i in session.scalars(
                        select(Item).where(
                            Item.project_id == self.project.id,
                            Item.id.in_(ids[start : start + _IN]),
                        )
                    )
                )
        for item in found.values():
            self._by_row.setdefault(item.row, item)
        return [found[i] for i in ids if i in found]

    def _answered(self) -> list[Any]:
        """(id, row, done, n_labels) of the items with an answer: done, or labeled once. One
        scan of the items table, made once per cycle (the few rows it returns are kept)."""
        if self._answered_rows is None:
            with self.db.read() as session:
                self._answered_rows = list(
                    session.execute(
                        select(Item.id, Item.row, Item.done, Item.n_labels)
                        .where(
                            Item.project_id == self.project.id,
                            or_(Item.done.is_(True), Item.n_labels > 0),
                        )
                        .order_by(Item.id)
                    ).all()
                )
        return self._answered_rows

    def open_rows(self, exclude_rows: Iterable[int] = ()) -> NDArray[np.intp]:
        """Rows of the items nobody has answered (not done, no label), ascending, less
        ``exclude_rows``. Read as the complement of the few items with an answer."""
        mask = np.ones(self.n_items, dtype=bool)
        mask[np.asarray([r.row for r in self._answered()], dtype=np.intp)] = False
        mask[np.asarray(list(exclude_rows), dtype=np.intp)] = False
        return np.flatnonzero(mask)

    def waiting_for_second(self, resolved: Iterable[int]) -> list[Item]:
        """Items answered once that need another answer (overlap), among ``resolved`` ids, in
        id order (the worker draws from them by position)."""
        keep = set(resolved)
        ids = [r.id for r in self._answered() if not r.done and r.n_labels > 0 and r.id in keep]
        return self.by_id(ids)

    def prefetch(self, rows: Iterable[int]) -> None:
        """Fetch the items of ``rows`` not fetched yet, in one query per 900."""
        missing = sorted({int(r) for r in rows} - self._by_row.keys())
        if not missing:
            return
        with self.db.read() as session:
            for item in items_by_row(session, self.project, missing):
                self._by_row[item.row] = item

    def __getitem__(self, row: int) -> Item:
        row = int(row)
        if row not in self._by_row:
            self.prefetch([row])
        try:
            return self._by_row[row]
        except KeyError:
            raise KeyError(f"no item at row {row}") from None

    def preview(self, row: int, limit: int) -> str:
        """The item at ``row`` in a line of at most ``limit`` characters: the start of a text,
        an image's path, or a tabular item's fields as JSON."""
        item = self[row]
        if self.project.kind != "tabular":
            return item.content[:limit]
        return item_preview(item_fields(self.folder, [item])[0], limit)

    def fields(self, row: int) -> dict[str, float]:
        """A tabular item's fields by name, in column order, each value as the data had it."""
        return {k: shown(v) for k, v in item_fields(self.folder, [self[row]])[0].items()}

    def field_names(self) -> tuple[str, ...]:
        """A tabular project's field names, in column order."""
        with self.db.read() as session:
            return field_names(session, self.project, self.folder)

    def __repr__(self) -> str:
        return f"PoolItems({self.project.name!r}, {self.n_items} items, {len(self._by_row)} read)"
