"""JSON shapes the API returns: items, assignments (item + why), and the post-answer reveal.

The model's guess is withheld until the annotator has answered unless the project says
``show_guess="before"``: a guess shown first anchors experts. Withheld, the "why" panel still
says *why* the item was chosen, in words that do not give the guess away.
"""

from __future__ import annotations

from typing import Any

from labelwise.store.features import item_fields
from labelwise.store.folder import ProjectFolder
from labelwise.store.labeling import COLD_START_REASON, FALLBACK_REASON, Assignment
from labelwise.store.models import Item, Project

__all__ = ["assignment_view", "item_view", "reveal_view"]

_NEUTRAL = {
    "strategy": "the model is unsure about this item",
    "exploration": "a random item: it keeps the accuracy estimate honest",
    "routine": "a routine item, mixed in to keep the pace comfortable",
    "overlap": "second opinion: this item is labeled twice to measure agreement",
    # One wording for these, the one their leases carry.
    "fallback": FALLBACK_REASON["summary"],
    "cold-start": COLD_START_REASON["summary"],
}


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


def _guess(reason: dict[str, Any]) -> dict[str, Any] | None:
    split = reason.get("class_split") or []
    if not split:
        return None
    label, value = split[0]
    guess: dict[str, Any] = {"label": label}
    if reason.get("output_kind") == "proba":
        guess["confidence"] = round(float(value), 4)
    return guess


def _why(reason: dict[str, Any], *, with_guess: bool) -> dict[str, Any]:
    kind = str(reason.get("kind", "strategy"))
    why: dict[str, Any] = {
        "kind": kind,
        "strategy": reason.get("strategy"),
        "rank": reason.get("rank"),
        "neighbors": reason.get("neighbors", []),
        "far_from_labeled": bool(reason.get("far_from_labeled", False)),
        "duplicates": reason.get("duplicates", []),
    }
    if with_guess:
        why["summary"] = reason.get("summary") or _NEUTRAL.get(kind, "")
        why["class_split"] = reason.get("class_split", [])
        why["output_kind"] = reason.get("output_kind")
        why["utility"] = reason.get("utility")
        why["details"] = reason.get("details", {})
        for key in ("drivers", "occlusion"):  # they show the model's leaning, like the guess
            if reason.get(key):
                why[key] = reason[key]
    else:
        details = reason.get("details") or {}
        if "votes" in details:
            n = sum(details["votes"].values())
            why["summary"] = f"the committee of {n} models disagrees about this item"
        elif "distance_to_labeled" in details:
            why["summary"] = reason.get("summary") or _NEUTRAL[kind]
        else:
            why["summary"] = _NEUTRAL.get(kind, "")
    return why


def assignment_view(a: Assignment, project: Project, folder: ProjectFolder) -> dict[str, Any]:
    mode = (project.settings or {}).get("show_guess", "after")
    reason = dict(a.reason)
    return {
        "item": item_view(a.item, project, folder),
        "why": _why(reason, with_guess=mode == "before"),
        "guess": _guess(reason) if mode == "before" else None,
        "model_version_id": a.model_version_id,
        "previous": a.previous,
        "lease_expires_at": a.expires_at.isoformat() + "Z" if a.expires_at else None,
        "lease": a.lease,
    }


def reveal_view(reason: dict[str, Any], project: Project) -> dict[str, Any] | None:
    """After an answer: the model's guess and the full reason, unless the project says never."""
    if (project.settings or {}).get("show_guess", "after") == "never":
        return None
    return {"guess": _guess(reason), "why": _why(reason, with_guess=True)}
