"""JSON shapes the API returns: items, assignments (item + why), and the post-answer reveal.

The model's guess is withheld until the annotator has answered unless the project says
``show_guess="before"``: a guess shown first anchors experts. Withheld, the "why" panel still
says *why* the item was chosen, in words that do not give the guess away
(:meth:`labelwise.strategies.reasons.Reason.withheld_summary`).

In a multi-label project the guess is a set: ``{"labels": [...]}``, the labels the model
predicts (each label's probability at or above its threshold), and the answers taken back after
an undo come as lists too (``previous_labels``).
"""

from __future__ import annotations

from typing import Any

from labelwise import label_sets
from labelwise.store.features import item_fields
from labelwise.store.folder import ProjectFolder
from labelwise.store.leasing import Assignment
from labelwise.store.models import Item, Project
from labelwise.store.projects import settings_of
from labelwise.strategies.reasons import WORDING, Reason

__all__ = ["assignment_view", "guess_view", "item_view", "reveal_view"]


def item_view(item: Item, project: Project, folder: ProjectFolder) -> dict[str, Any]:
    """What the page needs to show an item (content as data; the page escapes it). A tabular
    item's fields are read from the project's feature file."""
    view: dict[str, Any] = {"id": item.id, "external_id": item.external_id, "kind": project.kind}
    if project.kind == "text":
        view["text"] = item.content
    elif project.kind == "tabular":
        view["fields"] = item_fields(folder, [item])[0]
    else:
        view["image_url"] = f"/api/projects/{project.id}/items/{item.id}/image"
    return view


def _why(reason: Reason, *, with_guess: bool) -> dict[str, Any]:
    why: dict[str, Any] = {
        "kind": reason.type.value,
        "strategy": reason.strategy,
        "rank": reason.rank,
        "neighbors": list(reason.neighbors or ()),
        "far_from_labeled": bool(reason.far_from_labeled),
        "duplicates": list(reason.duplicates or ()),
    }
    if with_guess:
        why["summary"] = reason.summary or WORDING[reason.type].neutral
        why["class_split"] = [[label, value] for label, value in reason.class_split]
        why["output_kind"] = reason.output_kind
        why["utility"] = reason.utility
        why["details"] = reason.details
        # They show the model's leaning, like the guess.
        if reason.drivers:
            why["drivers"] = reason.drivers
        if reason.occlusion:
            why["occlusion"] = reason.occlusion
    else:
        why["summary"] = reason.withheld_summary()
    return why


def guess_view(reason: Reason, project: Project, predicted: str | None) -> dict[str, Any] | None:
    """The model's guess as the page shows it: the reason's (a label, with its probability), or
    in a multi-label project the predicted set as a list: the labels of the reason's split at or
    above their thresholds (what the why-panel shows), else ``predicted``, the stored one."""
    if not settings_of(project).multi_label:
        return reason.guess
    shown = reason.predicted if "thresholds" in reason.details else predicted
    return None if shown is None else {"labels": label_sets.decode(shown)}


def assignment_view(a: Assignment, project: Project, folder: ProjectFolder) -> dict[str, Any]:
    """An item handed to an annotator: the item, why it was chosen, the model's guess where
    the project shows it before the answer, and the lease."""
    before = (project.settings or {}).get("show_guess", "after") == "before"
    view = {
        "item": item_view(a.item, project, folder),
        "why": _why(a.reason, with_guess=before),
        "guess": guess_view(a.reason, project, a.predicted) if before else None,
        "model_version_id": a.model_version_id,
        "previous": a.previous,
        "lease_expires_at": a.expires_at.isoformat() + "Z" if a.expires_at else None,
        "lease": a.lease,
    }
    if a.previous is not None and settings_of(project).multi_label:
        view["previous_labels"] = label_sets.decode(a.previous)
    return view


def reveal_view(
    reason: Reason, project: Project, predicted: str | None = None
) -> dict[str, Any] | None:
    """After an answer: the model's guess and the full reason, unless the project says never
    (``predicted``: what the model predicted for the item, a multi-label project's guess)."""
    if (project.settings or {}).get("show_guess", "after") == "never":
        return None
    return {"guess": guess_view(reason, project, predicted), "why": _why(reason, with_guess=True)}
