"""Annotator fatigue: signs that someone is tired, from what their answers already record.

Two signals, each against the annotator's own history (people differ in pace and in how they
read the guidelines, so a threshold shared by everyone would flag the careful ones):

- **slowing down**: the median time of their latest answers is well above their earlier median;
- **missing easy ones**: on *routine* items (the model is confident; they are mixed into every
  queue for this purpose) they disagree with the model much more often than they used to.

A long unbroken stretch of work is reported as well. The response is in
:func:`labelwise.store.leasing.next_item` (more routine items while tired: easier, and each
one also measures attention) and in the pages (a suggested break, the dashboard's flag).
Time per item also grows as active learning moves to harder items; comparing an annotator with
themselves over a short window keeps that drift small, but it is a hint, not a verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from labelwise.store.models import Label

__all__ = ["Fatigue", "assess", "recent_answers"]

#: Latest answers compared with the ones before them.
RECENT = 20
#: Earlier answers needed before slowing down can be judged.
BASELINE = 20
#: Slower than this many times the earlier median counts as slowing down.
SLOWER = 1.5
#: Latest routine answers looked at, how many are needed, and the disagreement rate that flags.
ROUTINE_RECENT, ROUTINE_MIN, ROUTINE_MISSES = 10, 5, 0.3
#: A pause this long ends a stretch of work; a stretch this long is reported.
GAP, LONG_STRETCH = timedelta(minutes=10), timedelta(minutes=45)
#: How far back the assessment reads.
HISTORY = 400


@dataclass(frozen=True)
class Answer:
    """What the assessment needs of one answer."""

    created_at: datetime
    duration_ms: int | None
    reason_kind: str | None
    value: str | None
    predicted: str | None


@dataclass(frozen=True)
class Fatigue:
    """The assessment of one annotator."""

    tired: bool
    signals: list[str] = field(default_factory=list)
    recent_median_s: float | None = None
    baseline_median_s: float | None = None
    routine_recent: int = 0
    routine_misses: int = 0
    stretch_minutes: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recent_answers(session: Session, annotator_id: int, limit: int = HISTORY) -> list[Answer]:
    """The annotator's latest standing answers, oldest first (one indexed query)."""
    rows = session.execute(
        select(Label.created_at, Label.duration_ms, Label.reason_kind, Label.value, Label.predicted)
        .where(
            Label.annotator_id == annotator_id,
            Label.action == "label",
            Label.is_current.is_(True),
        )
        .order_by(Label.id.desc())
        .limit(limit)
    ).all()
    return [Answer(*r) for r in reversed(rows)]


def assess(answers: list[Answer], now: datetime) -> Fatigue:
    """Judge fatigue from an annotator's answers (oldest first); pure, for tests and reuse."""
    signals: list[str] = []
    timed = [
        a.duration_ms for a in answers if a.duration_ms is not None and a.reason_kind != "group"
    ]
    recent_s = baseline_s = None
    if len(timed) >= RECENT + BASELINE:
        recent_s = float(np.median(timed[-RECENT:])) / 1000
        baseline_s = float(np.median(timed[:-RECENT])) / 1000
        if baseline_s > 0 and recent_s >= SLOWER * baseline_s:
            signals.append(
                f"slowing down: {recent_s:.1f} s per item lately, {baseline_s:.1f} s before"
            )
    routine = [a for a in answers if a.reason_kind == "routine" and a.predicted is not None]
    latest = routine[-ROUTINE_RECENT:]
    misses = sum(a.value != a.predicted for a in latest)
    if len(latest) >= ROUTINE_MIN and misses / len(latest) >= ROUTINE_MISSES:
        earlier = routine[:-ROUTINE_RECENT]
        before = sum(a.value != a.predicted for a in earlier) / len(earlier) if earlier else 0.0
        if misses / len(latest) >= 2 * before:
            signals.append(
                f"missing easy ones: disagreed with {misses} of the last {len(latest)} items "
                "the model was confident about"
            )
    stretch = timedelta(0)
    if answers and now - answers[-1].created_at < GAP:
        start = answers[-1].created_at
        for earlier_answer, later in zip(answers[-2::-1], answers[::-1], strict=False):
            if later.created_at - earlier_answer.created_at >= GAP:
                break
            start = earlier_answer.created_at
        stretch = now - start
    long_stretch = stretch >= LONG_STRETCH
    if long_stretch:
        signals.append(f"labeling for {stretch.total_seconds() / 60:.0f} minutes without a break")
    return Fatigue(
        tired=bool(signals),
        signals=signals,
        recent_median_s=recent_s,
        baseline_median_s=baseline_s,
        routine_recent=len(latest),
        routine_misses=misses,
        stretch_minutes=round(stretch.total_seconds() / 60, 1),
    )
