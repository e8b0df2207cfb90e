"""What one worker cycle trains on, read in one transaction: the training snapshot.

The worker's cycle (:func:`labelwise.services.worker.train_once`) reads the database once, here, and
then fits, ranks and explains (:mod:`labelwise.services.cycle`) on that moment alone: the labels it
fits on, the items it leaves out of the queue as answered, the second opinions and audits it
mixes in, and the served version it compares with all belong to one state of the project.
Answers given meanwhile wait for the next cycle. On PostgreSQL the read runs at ``REPEATABLE
READ``, so its statements share one view of the data; a SQLite read transaction has one view
by nature.

The read is in two steps within the transaction: first what decides whether to fit (the
resolved labels and the served version; a poll that decides not to fit stops there and stays
cheap), then what a fit or a cold-start queue needs of the pool (which items are answered,
the rows of the labeled ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from labelwise.services.triage import audit_item_ids
from labelwise.store.db import Database
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import count_items, row_count
from labelwise.store.models import Item, Label, ModelVersion, Project
from labelwise.store.projects import ProjectSettings, get_project, settings_of
from labelwise.store.review import resolved_labels
from labelwise.store.versions import COLD_START, served_version
from labelwise.strategies.reasons import Kind

__all__ = [
    "FIRST_FIT",
    "PoolItem",
    "ServedModel",
    "TrainingSnapshot",
    "labels_for_next_fit",
    "read_snapshot",
]

#: Labels the first fit waits for (fewer if ``retrain_every`` is smaller): a model of three
#: labels ranks the pool no better than chance and its "reasons" would mislead annotators.
FIRST_FIT = 10

_IN = 900  # ids per IN list, under SQLite's bound-parameter limit


def labels_for_next_fit(settings: ProjectSettings, *, fitted: bool) -> int:
    """New labels the next fit waits for: ``retrain_every``; for the first fit
    :data:`FIRST_FIT`, or fewer if ``retrain_every`` is smaller."""
    return settings.retrain_every if fitted else min(FIRST_FIT, settings.retrain_every)


@dataclass(frozen=True)
class ServedModel:
    """The version whose queue was served when the snapshot was read.

    Attributes
    ----------
    id, version : int
        Its row id and its number.
    status : str
        ``"ready"``, or ``"cold-start"`` for a queue chosen before any model.
    n_labels : int
        The labels it was fitted on: the next fit waits for ``retrain_every`` more.
    artefact : str or None
        Its model file, relative to the project folder (None for a cold-start queue).
    n_items : int or None
        The pool's size when it was published (a cold-start queue is redone when it grows).
    bandit_state : dict or None
        A bandit strategy's state, which the next fit goes on from.
    """

    id: int
    version: int
    status: str
    n_labels: int
    artefact: str | None
    n_items: int | None
    bandit_state: dict[str, Any] | None = None

    @property
    def fitted(self) -> bool:
        """Whether a model stands behind it (a cold-start queue has none to build on)."""
        return self.status != COLD_START


@dataclass(frozen=True)
class PoolItem:
    """An item the cycle names apart from the ranking: its id and its feature row."""

    id: int
    row: int


@dataclass(frozen=True)
class TrainingSnapshot:
    """One moment of a project, as a worker cycle sees it (see the module docstring).

    Attributes
    ----------
    project_id : int
    label_set : tuple of str
        The project's classes.
    settings : ProjectSettings
    plan : {"fit", "cold-start", "idle"}
        What the cycle does: fit a model, publish a cold-start queue (no model yet), or
        nothing (``idle_detail`` says why).
    idle_detail : str
    labels : dict
        Item id to its training label (adjudications, else agreeing answers).
    n_conflicts : int
        Items whose answers disagree, left out until an admin decides.
    random_ids : frozenset of int
        Labeled items that were uniformly random picks (exploration, cold start): an
        unbiased sample for the accuracy estimate and the bandit's reward.
    served : ServedModel or None
    new_labels, needed : int
        Labels since the served model, and how many the fit waits for.
    next_version : int
        The number the version of this cycle will get (it seeds the cycle's random draws).
    n_items : int
        Items in the project.
    The rest is read only when the cycle fits or publishes a cold-start queue:
    n_rows : int
        Rows of the feature matrix (items numbered from 0).
    rows : dict
        Item id to feature row, for the labeled and the random items.
    answered_rows : tuple of int
        Rows of the items with an answer (done, or labeled once): not open for the queue.
    second_opinions : tuple of int
        Ids of the items answered once that need another answer (overlap), in id order.
    audits : tuple of PoolItem
        Automatic triage decisions waiting for their blind check, oldest first.
    """

    project_id: int
    label_set: tuple[str, ...]
    settings: ProjectSettings
    plan: str
    idle_detail: str = ""
    labels: dict[int, str] = field(default_factory=dict)
    n_conflicts: int = 0
    random_ids: frozenset[int] = frozenset()
    served: ServedModel | None = None
    new_labels: int = 0
    needed: int = 0
    next_version: int = 1
    n_items: int = 0
    n_rows: int = 0
    rows: dict[int, int] = field(default_factory=dict)
    answered_rows: tuple[int, ...] = ()
    second_opinions: tuple[int, ...] = ()
    audits: tuple[PoolItem, ...] = ()

    @property
    def fitted(self) -> ServedModel | None:
        """The served version when a model stands behind it, else None."""
        return self.served if self.served is not None and self.served.fitted else None

    @property
    def bandit_state(self) -> dict[str, Any] | None:
        return self.fitted.bandit_state if self.fitted is not None else None


def read_snapshot(db: Database, folder: ProjectFolder, *, force: bool = False) -> TrainingSnapshot:
    """The folder's project as one cycle sees it, read in one transaction (see the module
    docstring). ``force``: fit whatever the number of new labels (still with two classes)."""
    with db.read() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        project = get_project(session, name=folder.project_name)
        return _read(session, project, force=force)


def _read(session: Session, project: Project, *, force: bool) -> TrainingSnapshot:
    settings = settings_of(project)
    final, conflicts = resolved_labels(session, project)
    served = _served(session, project)
    fitted = served if served is not None and served.fitted else None
    random_ids = _random_sample_ids(session, project)
    new = len(final) - (fitted.n_labels if fitted else 0)
    needed = labels_for_next_fit(settings, fitted=fitted is not None)
    n_items = count_items(session, project)
    base: dict[str, Any] = {
        "project_id": project.id,
        "label_set": tuple(project.label_set),
        "settings": settings,
        "labels": final,
        "n_conflicts": len(conflicts),
        "random_ids": frozenset(random_ids),
        "served": served,
        "new_labels": new,
        "needed": needed,
        "n_items": n_items,
    }
    two_classes = len(set(final.values())) >= 2
    if not two_classes or (not force and new < needed):
        stale = served is None or served.n_items != n_items
        if fitted is not None or not n_items or not stale:
            detail = (
                "fewer than two classes labeled"
                if not two_classes
                else f"{new} new labels of {needed} needed"
            )
            return TrainingSnapshot(plan="idle", idle_detail=detail, **base)
        plan = COLD_START  # no model yet: publish the cold-start queue instead
    else:
        plan = "fit"
    answered = session.execute(
        select(Item.id, Item.row, Item.done, Item.n_labels)
        .where(Item.project_id == project.id, or_(Item.done.is_(True), Item.n_labels > 0))
        .order_by(Item.id)
    ).all()
    audit_ids = audit_item_ids(session, project)[: settings.queue_size]
    audit_rows = _rows_of(session, project, audit_ids)
    last = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project.id)
    )
    return TrainingSnapshot(
        plan=plan,
        next_version=int(last or 0) + 1,
        n_rows=row_count(session, project),
        rows=_rows_of(session, project, [*final, *random_ids]),
        answered_rows=tuple(int(r.row) for r in answered),
        second_opinions=tuple(
            int(r.id) for r in answered if not r.done and r.n_labels > 0 and r.id in final
        ),
        audits=tuple(PoolItem(i, audit_rows[i]) for i in audit_ids if i in audit_rows),
        **base,
    )


def _served(session: Session, project: Project) -> ServedModel | None:
    version = served_version(session, project)
    if version is None:
        return None
    metrics = version.metrics or {}
    return ServedModel(
        id=version.id,
        version=version.version,
        status=version.status,
        n_labels=version.n_labels,
        artefact=version.artefact,
        n_items=metrics.get("n_items"),
        bandit_state=(metrics.get("bandit") or {}).get("state"),
    )


def _random_sample_ids(session: Session, project: Project) -> set[int]:
    """Items whose standing label was given to a uniformly random pick (exploration, cold start)."""
    return set(
        session.scalars(
            select(Label.item_id).where(
                Label.project_id == project.id,
                Label.is_current.is_(True),
                Label.action == "label",
                Label.reason_kind.in_((Kind.EXPLORATION.value, Kind.COLD_START.value)),
            )
        )
    )


def _rows_of(session: Session, project: Project, item_ids: Any) -> dict[int, int]:
    """Feature row of each of ``item_ids`` (ids of other projects are left out)."""
    ids = sorted(set(item_ids))
    out: dict[int, int] = {}
    for start in range(0, len(ids), _IN):
        found = session.execute(
            select(Item.id, Item.row).where(
                Item.project_id == project.id, Item.id.in_(ids[start : start + _IN])
            )
        )
        out.update((int(r.id), int(r.row)) for r in found)
    return out
