"""Triage in a project: decide confident new items automatically, route the rest to experts.

:func:`triage_items` takes open items (typically a batch just imported), fits the project's model
on the labels so far with calibrated probabilities, and applies a
:class:`~labelwise.learning.triage. TriagePolicy` (see :mod:`labelwise.learning.triage`). It works
in three steps so that annotators never wait on it: read the labels and features; fit and decide
with no transaction open; then write the decisions in one short transaction, skipping any item a
person answered meanwhile.

- an **accepted** item gets a decision row and needs no human label any more (``target`` 0, so
  it is done and never queued); the decision is not a label and never trains a model;
- a **routed** item stays open: experts label it like any other (the worker ranks it); until
  someone answers it, a later triage may decide it after all;
- an **audit** item is accepted *and* stays open: the worker puts it in front of an expert
  without the model's decision, and the expert's answer measures the decisions' error
  (:func:`triage_report`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.learning.evaluate import wilson_interval
from labelwise.learning.triage import TriageTarget, check_audit, triage
from labelwise.services.transfer import import_file
from labelwise.store.db import Database
from labelwise.store.features import model_template, project_features
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Item, Project, TriageDecision, utcnow
from labelwise.store.projects import get_project, settings_of
from labelwise.store.review import resolved_labels

__all__ = [
    "TriageSummary",
    "audit_item_ids",
    "import_and_triage",
    "open_item_ids",
    "triage_items",
    "triage_report",
]


@dataclass(frozen=True)
class TriageSummary:
    """What one triage run did."""

    batch: str
    items: int
    accepted: int
    routed: int
    audit: int
    skipped: int
    by_label: dict[str, int]
    policy: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "items": self.items,
            "accepted": self.accepted,
            "routed_to_experts": self.routed,
            "audit": self.audit,
            "skipped": self.skipped,
            "accepted_by_label": self.by_label,
            "policy": self.policy,
        }


def _open_undecided(session: Session, project: Project, item_ids: Sequence[int]) -> list[Item]:
    wanted = sorted(set(item_ids))
    items = list(
        session.scalars(
            select(Item).where(Item.project_id == project.id, Item.id.in_(wanted)).order_by(Item.id)
        )
    )
    # Items routed to experts earlier and still unanswered may be triaged again (a model with
    # more labels may be sure of them now); accepted ones are settled.
    decided = set(
        session.scalars(
            select(TriageDecision.item_id).where(
                TriageDecision.item_id.in_(wanted), TriageDecision.accepted.is_(True)
            )
        )
    )
    return [i for i in items if not i.done and i.n_labels == 0 and i.id not in decided]


def triage_items(
    db: Database,
    folder: ProjectFolder,
    project_id: int,
    item_ids: Sequence[int],
    target: TriageTarget,
    *,
    audit: float = 0.05,
    calibration: str = "sigmoid",
    seed: int | None = None,
) -> TriageSummary:
    """Decide or route ``item_ids`` (open items of the project); see the module docstring."""
    check_audit(audit)
    with db.read() as session:
        project = get_project(session, project_id=project_id)
        settings = settings_of(project)
        if settings.multi_label:
            raise InvalidParameterError(
                f"project {project.name!r} is multi-label: triage decides one calibrated label "
                "per item and does not decide label sets; its items are labeled by people"
            )
        final, _ = resolved_labels(session, project)
        _check_ready(project, final, target)
        items = _open_undecided(session, project, item_ids)
        if not items:
            raise InvalidDataError(
                "no open items to triage (answered by someone, or decided automatically already)"
            )
        labeled = list(
            session.execute(select(Item.id, Item.row).where(Item.id.in_(list(final)))).all()
        )
        features = project_features(session, project, folder)
    X = features.X
    labeled.sort(key=lambda r: r.row)
    rows = np.asarray([r.row for r in labeled], dtype=np.intp)
    y = np.asarray([final[r.id] for r in labeled], dtype=object).astype(str)
    new_rows = np.asarray([i.row for i in items], dtype=np.intp)
    rng_seed = settings.seed if seed is None else seed
    decisions = triage(
        model_template(settings, features),
        X[rows],
        y,
        X[new_rows],
        target,
        audit=audit,
        method=calibration,
        random_state=np.random.default_rng([rng_seed, len(rows), len(new_rows)]),
    )
    policy = decisions.policy.to_dict()
    batch = uuid.uuid4().hex
    skipped = 0
    with db.write() as session:
        project = get_project(session, project_id=project_id)
        still_open = {i.id for i in _open_undecided(session, project, [i.id for i in items])}
        earlier = {  # routed before and still unanswered: decided anew now
            d.item_id: d
            for d in session.scalars(
                select(TriageDecision).where(TriageDecision.item_id.in_(list(still_open)))
            )
        }
        for k, item in enumerate(items):
            if item.id not in still_open:
                skipped += 1  # answered by a person meanwhile: their answer stands
                continue
            accepted = bool(decisions.accepted[k])
            row = earlier.get(item.id)
            if row is None:
                row = TriageDecision(project_id=project.id, item_id=item.id)
                session.add(row)
            row.batch, row.accepted, row.audit = batch, accepted, bool(decisions.audit[k])
            row.label, row.confidence = str(decisions.labels[k]), float(decisions.confidence[k])
            row.policy, row.created_at = policy, utcnow()
            if accepted and not decisions.audit[k]:
                stored = session.get_one(Item, item.id)
                stored.target = 0  # needs no human answer: done, never queued
                stored.done = True
    taken = [k for k, item in enumerate(items) if item.id in still_open]
    accepted_mask = decisions.accepted[taken]
    return TriageSummary(
        batch=batch,
        items=len(taken),
        accepted=int(accepted_mask.sum()),
        routed=int((~accepted_mask).sum()),
        audit=int(decisions.audit[taken].sum()),
        skipped=skipped,
        by_label=dict(Counter(str(v) for v in decisions.labels[taken][accepted_mask])),
        policy=policy,
    )


def audit_item_ids(session: Session, project: Project) -> list[int]:
    """Audit items still waiting for an expert's answer."""
    return list(
        session.scalars(
            select(TriageDecision.item_id)
            .join(Item, Item.id == TriageDecision.item_id)
            .where(
                TriageDecision.project_id == project.id,
                TriageDecision.audit.is_(True),
                Item.done.is_(False),
                Item.n_labels == 0,
            )
            .order_by(TriageDecision.id)
        )
    )


def triage_report(session: Session, project: Project) -> dict[str, Any] | None:
    """Totals of the automatic decisions and their audited error (None if triage never ran)."""
    decisions = list(
        session.scalars(select(TriageDecision).where(TriageDecision.project_id == project.id))
    )
    if not decisions:
        return None
    final, _ = resolved_labels(session, project)
    audited = [d for d in decisions if d.audit and d.item_id in final]
    errors = sum(final[d.item_id] != d.label for d in audited)
    low, high = wilson_interval(errors, len(audited))
    latest = max(decisions, key=lambda d: d.id)
    return {
        "items": len(decisions),
        "accepted": sum(d.accepted for d in decisions),
        "routed": sum(not d.accepted for d in decisions),
        "audit": sum(d.audit for d in decisions),
        "audited": len(audited),
        "errors": errors,
        "error_rate": errors / len(audited) if audited else None,
        "error_interval": [low, high] if audited else None,
        "batches": len({d.batch for d in decisions}),
        "target": latest.policy.get("target"),
        "expected": latest.policy.get("expected"),
    }


def open_item_ids(session: Session, project: Project) -> list[int]:
    """Every item nobody answered yet and triage has not decided automatically."""
    decided = select(TriageDecision.item_id).where(
        TriageDecision.project_id == project.id, TriageDecision.accepted.is_(True)
    )
    return list(
        session.scalars(
            select(Item.id).where(
                Item.project_id == project.id,
                Item.done.is_(False),
                Item.n_labels == 0,
                Item.id.not_in(decided),
            )
        )
    )


def _check_ready(project: Project, final: dict[int, str], target: TriageTarget) -> None:
    """Fail early (before any import or fit) when triage could not run on these labels."""
    label_set = [str(c) for c in project.label_set]
    if target.kind == "sensitivity" and target.positive not in label_set:
        raise InvalidParameterError(
            f"positive class {target.positive!r} is not one of the project's labels: "
            f"{', '.join(label_set)}"
        )
    counts = Counter(final.values())
    if len(counts) < 2 or min(counts.values()) < 3:
        raise InvalidDataError(
            "triage needs at least 3 labeled items of each of two classes to calibrate on; "
            f"labeled so far: {dict(counts) or 'none'}"
        )
    if target.kind == "sensitivity" and counts.get(str(target.positive), 0) < 3:
        raise InvalidDataError(
            f"triage needs labeled {target.positive!r} items to measure the sensitivity on; "
            f"labeled so far: {dict(counts)}"
        )


def import_and_triage(
    db: Database,
    folder: ProjectFolder,
    project_id: int,
    path: Any,
    target: TriageTarget,
    *,
    audit: float = 0.05,
    calibration: str = "sigmoid",
    text_column: str | None = None,
    image_column: str | None = None,
) -> TriageSummary:
    """Import a file of new items (all or nothing), then triage exactly those items.

    Everything that can be checked is checked before the import. Should the triage itself
    fail afterwards, the items stay imported and open, so experts see them; ``labelwise triage``
    without a file decides them later.
    """
    with db.read() as session:
        project = get_project(session, project_id=project_id)
        _check_ready(project, resolved_labels(session, project)[0], target)
    with db.write() as session:
        project = get_project(session, project_id=project_id)
        before = set(session.scalars(select(Item.id).where(Item.project_id == project.id)))
        import_file(
            session, project, folder, path, text_column=text_column, image_column=image_column
        )
        session.flush()
        new = sorted(
            set(session.scalars(select(Item.id).where(Item.project_id == project.id))) - before
        )
    db.analyze()
    return triage_items(db, folder, project_id, new, target, audit=audit, calibration=calibration)
