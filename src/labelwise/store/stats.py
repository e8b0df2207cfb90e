"""How far a project is: the counts the annotate page, the dashboard and ``labelwise status``
all show (the dashboard's other figures are :mod:`labelwise.services.dashboard`'s)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from labelwise.store.items import count_items
from labelwise.store.models import Annotator, Item, Project

__all__ = ["item_progress"]


def item_progress(session: Session, project: Project) -> dict[str, Any]:
    """How far the project is, in the figures and words the annotate page, the dashboard and
    ``labelwise status`` all show.

    ``done`` counts the items with every answer they need; an overlap item needs two, from two
    annotators, so one answered once is not done but ``waiting_second_opinion`` (its answer
    already trains the model). ``labelers`` is how many annotators may label (not disabled):
    with one, a second opinion waits for a colleague, and ``waiting_text`` says so.
    """
    n_items = count_items(session, project)
    by_done = {
        bool(is_done): int(n)
        for is_done, n in session.execute(
            select(Item.done, func.count(Item.id))
            .where(Item.project_id == project.id, or_(Item.done.is_(True), Item.n_labels > 0))
            .group_by(Item.done)
        )
    }
    done, waiting = int(by_done.get(True, 0)), int(by_done.get(False, 0))
    labelers = int(
        session.scalar(
            select(func.count(Annotator.id)).where(
                Annotator.project_id == project.id, Annotator.disabled.is_(False)
            )
        )
        or 0
    )
    share = done / n_items if n_items else 0.0
    # Whole percents rounded down, so "100%" means every item.
    percent_done = "<1%" if 0 < share < 0.01 else f"{int(100 * share)}%"
    waiting_text = None
    if waiting:
        waiting_text = f"{waiting:,} waiting for a second opinion"
        if labelers < 2:
            waiting_text += " from another annotator (none yet)"
    text = f"{done:,} of {n_items:,} items done ({percent_done})"
    return {
        "items": n_items,
        "done": done,
        "waiting_second_opinion": waiting,
        "labelers": labelers,
        "percent_done": percent_done,
        "waiting_text": waiting_text,
        "text": text + (f", {waiting_text}" if waiting_text else ""),
    }
