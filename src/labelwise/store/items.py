"""Items: adding them (all or nothing) and reading them back within one project."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    DateTime,
    Integer,
    Table,
    Text,
    false,
    func,
    insert,
    literal,
    literal_column,
    select,
    true,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError, InvalidParameterError, NotFoundError
from labelwise.store.annotators import system_annotator
from labelwise.store.models import Item, Label, Lease, Project, utcnow
from labelwise.store.projects import check_label, settings_of

__all__ = [
    "BATCH",
    "BULK_CACHE_MIB",
    "IdClashError",
    "ItemRecord",
    "ItemWriter",
    "add_items",
    "check_ids",
    "count_items",
    "get_item",
    "items_by_row",
    "row_count",
    "visible_to",
]

#: Items per INSERT batch.
BATCH = 10_000
#: SQLite page cache during a large import (MiB).
BULK_CACHE_MIB = 256

_ITEMS = cast(Table, Item.__table__)
_LABELS = cast(Table, Label.__table__)

#: Longest text accepted in one item (characters).
MAX_CONTENT = 1_000_000


class IdClashError(InvalidDataError):
    """Ids of new items that the project already holds."""


@dataclass(frozen=True)
class ItemRecord:
    """One item to add.

    Attributes
    ----------
    external_id : str
        The id the data gives it (unique within the project).
    content : str
        The text, or the image's path relative to the project folder. Tabular items keep their
        fields in the project's feature file (:func:`labelwise.services.transfer.import_tabular`)
        and have empty content; fields given here as a JSON object (as earlier releases stored
        them) are still read, and moved into the feature file when it is first needed.
    meta : dict
        Anything else worth keeping (source file, split, original fields).
    label : str or None
        A label that comes with the item; stored as a label by the ``import`` annotator. In a
        multi-label project, the canonical string of a set (:mod:`labelwise.label_sets`; ``""``
        for the empty set).
    """

    external_id: str
    content: str
    meta: dict[str, Any] = field(default_factory=dict)
    label: str | None = None


def add_items(
    session: Session,
    project: Project,
    records: Sequence[ItemRecord],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Add ``records`` to ``project`` inside the caller's transaction; returns how many.

    Everything is checked before anything is written, so a bad record leaves the project as it
    was: ids must be new and unique (an id already in the project is an :class:`IdClashError`),
    labels must belong to the label set, content must be non-empty and at most ``MAX_CONTENT``
    characters. Each item gets the next feature row, and with probability ``settings.overlap``
    a target of two labels. ``progress(inserted, total)`` is called after each batch.
    """
    if not records:
        raise InvalidDataError("nothing to import: the data holds no items")
    ids = [str(r.external_id) for r in records]
    check_ids(ids)
    labels = set(project.label_set)
    multi = settings_of(project).multi_label
    for r in records:
        if not r.content:
            raise InvalidDataError(f"item {r.external_id!r} has no content")
        if "\0" in r.content:
            # PostgreSQL cannot store U+0000 in text, and no text means it: refused on every
            # database alike.
            raise InvalidDataError(
                f"item {r.external_id!r} holds a NUL character (U+0000) at position "
                f"{r.content.index(chr(0))}"
            )
        if len(r.content) > MAX_CONTENT:
            raise InvalidDataError(
                f"item {r.external_id!r} is {len(r.content):,} characters long; the limit is "
                f"{MAX_CONTENT:,}"
            )
        if r.label is not None and multi:
            try:
                check_label(project, r.label)
            except InvalidParameterError as exc:
                raise InvalidDataError(f"item {r.external_id!r}: {exc}") from None
        elif r.label is not None and r.label not in labels:
            raise InvalidDataError(
                f"item {r.external_id!r} has label {r.label!r}, which is not one of the "
                f"project's labels ({', '.join(project.label_set)})"
            )
    clash = _existing_ids(session, project, ids)
    if clash:
        raise IdClashError(
            f"{len(clash)} item id(s) already exist in the project, e.g. {sorted(clash)[0]!r}"
        )

    writer = ItemWriter(session, project)
    writer.add(
        ids,
        contents=[r.content for r in records],
        metas=[r.meta for r in records],
        labels=[r.label for r in records],
        progress=progress,
    )
    return len(records)


def check_ids(ids: Sequence[str], *, first: int = 0) -> None:
    """Ids for new items: 1 to 300 characters, no NUL, none twice. ``first`` is the number of
    ``ids[0]`` in the data, for the messages. Vectorised: a million ids take a fraction of a
    second."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    bad = np.flatnonzero((lengths == 0) | (lengths > 300))
    if bad.size:
        raise InvalidDataError(f"item {first + int(bad[0])}: id must be 1 to 300 characters")
    if "\0" in "".join(ids):
        i = next(i for i, ext in enumerate(ids) if "\0" in ext)
        raise InvalidDataError(f"item {first + i}: id {ids[i][:80]!r} holds a NUL character")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for ext in ids:
            if ext in seen:
                raise InvalidDataError(f"item id {ext!r} appears twice in the data")
            seen.add(ext)


def _existing_ids(session: Session, project: Project, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 900):  # stay under SQLite's bound-parameter limit
        chunk = list(ids[start : start + 900])
        found.update(
            session.scalars(
                select(Item.external_id).where(
                    Item.project_id == project.id, Item.external_id.in_(chunk)
                )
            )
        )
    return found


class ItemWriter:
    """Adds items to a project, batch after batch, inside the caller's transaction.

    Rows continue from the project's last; each item needs two labels with probability
    ``settings.overlap``, drawn from one generator seeded by the project's seed and item count,
    so an import gets the same targets however its items are batched. Inserts are SQLAlchemy
    Core ``executemany`` batches of :data:`BATCH` rows with the values shared by every row
    written into the statement (no per-row conversion), about 8 µs an item on SQLite. Labels
    that come with items are recorded by the ``import`` annotator.

    The caller checks the items first (:func:`check_ids`, labels from the label set); an id
    already in the project is found by the database's unique constraint and reported as an
    :class:`InvalidDataError`.

    Parameters
    ----------
    meta : dict
        What every item's ``meta`` holds unless :meth:`add` gives one per item.
    """

    def __init__(self, session: Session, project: Project, *, meta: dict[str, Any] | None = None):
        self.session = session
        self.project = project
        settings = settings_of(project)
        self.next_row = row_count(session, project)
        base = session.scalar(select(func.count(Item.id)).where(Item.project_id == project.id))
        self._rng = np.random.default_rng([settings.seed, base or 0])
        self._overlap = settings.overlap
        self._meta = json.dumps(meta or {})
        self._now = utcnow()
        self._annotator_id: int | None = None
        self._cache: int | None = None

    def __enter__(self) -> ItemWriter:
        """For a large import on SQLite, a page cache of :data:`BULK_CACHE_MIB` until
        :meth:`__exit__`: the id index takes rows in no order, and with SQLite's default 2 MiB
        of cache each insert reads its index pages from disk again (measured: twice as slow
        at a million items)."""
        connection = self.session.connection()
        if connection.dialect.name == "sqlite":
            self._cache = int(connection.exec_driver_sql("PRAGMA cache_size").scalar() or 0)
            connection.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_MIB * 1024}")
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._cache is None:
            return
        cache, self._cache = self._cache, None
        try:
            self.session.connection().exec_driver_sql(f"PRAGMA cache_size={cache}")
        except SQLAlchemyError:
            if kind is None:
                raise  # otherwise the import's own error is the one to report

    def _inline(self, value: Any, type_: Any) -> Any:
        """``value`` written into the SQL statement as a literal (escaped by the dialect)."""
        dialect = self.session.get_bind().dialect
        text = literal(value, type_).compile(
            dialect=dialect, compile_kwargs={"literal_binds": True}
        )
        return literal_column(str(text))

    def add(
        self,
        ids: Sequence[str],
        *,
        contents: Sequence[str] | None = None,
        metas: Sequence[dict[str, Any]] | None = None,
        labels: Sequence[str | None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Insert items with ``ids`` at the next rows. ``contents`` default to ``""`` (tabular
        items, whose fields live in the feature file); ``labels`` (None for no label) are
        recorded by the ``import`` annotator. ``progress(inserted, len(ids))`` is called after
        each batch of :data:`BATCH`."""
        n = len(ids)
        targets = np.where(self._rng.random(n) < self._overlap, 2, 1)
        labeled = np.zeros(n, dtype=bool)
        if labels is not None:
            labeled = np.fromiter((v is not None for v in labels), dtype=bool, count=n)
        fixed: dict[str, Any] = {
            "project_id": self._inline(self.project.id, Integer()),
            "created_at": self._inline(self._now, DateTime()),
        }
        if contents is None:
            fixed["content"] = self._inline("", Text())
        if metas is None:
            fixed["meta"] = self._inline(self._meta, Text())
        for a in range(0, n, BATCH):
            b = min(a + BATCH, n)
            row0 = self.next_row
            has_labels = bool(labeled[a:b].any())
            stmt = insert(_ITEMS).values(
                fixed
                if has_labels
                else {**fixed, "n_labels": self._inline(0, Integer()), "done": false()}
            )
            columns: dict[str, Sequence[Any]] = {
                "external_id": ids[a:b],
                "row": range(row0, row0 + b - a),
                "target": targets[a:b].tolist(),
            }
            if contents is not None:
                columns["content"] = contents[a:b]
            if metas is not None:
                columns["meta"] = metas[a:b]
            if has_labels:
                columns["n_labels"] = labeled[a:b].astype(int).tolist()
                columns["done"] = (labeled[a:b] & (targets[a:b] <= 1)).tolist()
            try:
                with self.session.begin_nested():
                    self._insert(stmt, columns, raw=metas is None)
            except IntegrityError:
                clash = _existing_ids(self.session, self.project, ids[a:b])
                if not clash:
                    raise
                raise IdClashError(
                    f"{len(clash)} item id(s) already exist in the project (imported before, or "
                    f"earlier in the data), e.g. {sorted(clash)[0]!r}"
                ) from None
            self.next_row += b - a
            if has_labels:
                assert labels is not None
                self._add_labels(row0, [labels[i] for i in range(a, b)])
            if progress is not None:
                progress(b, n)

    def _insert(self, stmt: Any, columns: dict[str, Sequence[Any]], *, raw: bool) -> None:
        """``executemany`` of ``stmt`` with one row of ``columns`` per item.

        ``raw``: every value is a plain str, int or bool, so the statement, compiled by
        SQLAlchemy for the dialect, goes to the driver with the values as they are. SQLAlchemy's
        own per-row parameter handling costs as much as SQLite's insert itself (5 to 8 µs an
        item); JSON values (``meta`` per item) take that path.
        """
        keys = list(columns)
        if not raw:
            rows = [
                dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)
            ]
            self.session.execute(stmt, rows)
            return
        connection = self.session.connection()
        compiled = stmt.compile(dialect=connection.dialect, column_keys=keys)
        params: list[Any]
        if compiled.positional:
            order = compiled.positiontup or []
            params = list(zip(*(columns[k] for k in order), strict=True))
        else:
            params = [
                dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)
            ]
        connection.exec_driver_sql(str(compiled), params)

    def _add_labels(self, row0: int, values: list[str | None]) -> None:
        if self._annotator_id is None:
            self._annotator_id = system_annotator(self.session, self.project).id
        found = self.session.execute(
            select(Item.row, Item.id).where(
                Item.project_id == self.project.id,
                Item.row >= row0,
                Item.row < row0 + len(values),
            )
        ).all()
        item_of = {int(r.row): int(r.id) for r in found}
        stmt = insert(_LABELS).values(
            project_id=self._inline(self.project.id, Integer()),
            annotator_id=self._inline(self._annotator_id, Integer()),
            action=self._inline("label", Text()),
            reason_kind=self._inline("import", Text()),
            is_current=true(),
            created_at=self._inline(self._now, DateTime()),
        )
        self.session.execute(
            stmt,
            [
                {"item_id": item_of[row0 + k], "value": v}
                for k, v in enumerate(values)
                if v is not None
            ],
        )


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


def row_count(session: Session, project: Project) -> int:
    """The next free row: the number of items (rows run from 0 without gaps), read from the
    ``(project_id, row)`` index instead of counting."""
    last = session.scalar(select(func.max(Item.row)).where(Item.project_id == project.id))
    return 0 if last is None else int(last) + 1  # not `or`: row 0 is falsy


def visible_to(session: Session, item: Item, annotator_id: int) -> bool:
    """Whether an annotator (not an admin, who sees every item) may see ``item``: one they hold
    or answered, or one anybody labeled (the labels of neighbouring items shown in the "why"
    panel are public within the project)."""
    held = session.scalar(
        select(Lease.id).where(Lease.item_id == item.id, Lease.annotator_id == annotator_id)
    )
    answered = session.scalar(
        select(Label.id).where(Label.item_id == item.id, Label.annotator_id == annotator_id)
    )
    if held is not None or answered is not None:
        return True
    labeled = session.scalar(
        select(Label.id).where(Label.item_id == item.id, Label.action == "label")
    )
    return labeled is not None
