"""The admin's data browser API: items found by text, label, annotator, prediction and status,
a page at a time, and an item's whole history. Relabeling is the review route's decision
(``POST /review/{item_id}``): an admin's final word, with every earlier answer kept.

In a multi-label project each answer of an item's history comes with its set as a list
(``labels``) beside its stored form (``value``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from labelwise import label_sets
from labelwise.server.deps import Admin, ItemId, ProjectId, State, project_session
from labelwise.server.schemas import ItemHistory, ItemPage
from labelwise.store.browse import MAX_PAGE, ItemFilter, browse_items, item_history
from labelwise.store.features import item_fields
from labelwise.store.items import get_item
from labelwise.store.prediction_cache import served_predictions
from labelwise.store.projects import get_project, settings_of

router = APIRouter(prefix="/api/projects/{project_id}", tags=["items"])

#: Characters of an item's text shown in the list.
PREVIEW = 300


@router.get("/items", response_model=ItemPage)
def list_items(
    project_id: ProjectId,
    state: State,
    admin: Admin,
    text: Annotated[
        str | None, Query(max_length=200, description="Words in the text or id.")
    ] = None,
    label: Annotated[
        str | None, Query(max_length=200, description="Resolved label, or none.")
    ] = None,
    annotator: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[
        str | None, Query(description="unlabeled, queued, labeled or review.")
    ] = None,
    disagreement: bool = False,
    predicted: Annotated[str | None, Query(max_length=200)] = None,
    min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    after: Annotated[int | None, Query(ge=-1, le=2**31 - 1, description="Last row shown.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """A page of the items that match every filter given, in import order."""
    admin.check_project(project_id)
    found = ItemFilter(
        text=text.strip() if text and text.strip() else None,
        label=label or None,
        annotator=annotator or None,
        status=status or None,
        disagreement=disagreement,
        predicted=predicted or None,
        min_confidence=min_confidence,
        max_confidence=max_confidence,
    )
    with state.db.read() as session:
        project = get_project(session, project_id=project_id)
        predictions = served_predictions(session, state.folder, project)
        page = browse_items(
            session, project, found, after=after, limit=limit, predictions=predictions
        )
        fields = item_fields(state.folder, page.items) if project.kind == "tabular" else None
    rows = []
    for i, browsed in enumerate(page.items):
        row = browsed.to_dict()
        if project.kind == "text":
            row["text"] = browsed.content[:PREVIEW]
            row["truncated"] = len(browsed.content) > PREVIEW
        elif project.kind == "image":
            row["image_url"] = f"/api/projects/{project_id}/items/{browsed.id}/image"
        elif fields is not None:
            row["fields"] = fields[i]
        rows.append(row)
    return {"items": rows, "next_after": page.next_after, "predictions": page.predictions}


@router.get("/items/{item_id}/history", response_model=ItemHistory)
def history(project_id: ProjectId, item_id: ItemId, state: State, admin: Admin) -> dict[str, Any]:
    """Every answer, skip, undo and decision on the item, oldest first."""
    with project_session(state, admin, project_id) as (session, project):
        found = get_item(session, project, item_id)
        entries = item_history(session, found)
        if settings_of(project).multi_label:
            for entry in entries:
                if entry["action"] != "skip" and entry["value"] is not None:
                    entry["labels"] = label_sets.decode(entry["value"])
        return {"item_id": found.id, "history": entries}
