"""Fatigue: judged against the annotator's own history, answered with easier items."""

from __future__ import annotations

from datetime import datetime, timedelta

from labelwise.store.fatigue import Answer, assess
from labelwise.store.models import QueueEntry

T0 = datetime(2026, 1, 1, 9, 0)


def _answers(durations, *, routine=(), start=T0, step=timedelta(seconds=20)):
    """Answers ``step`` apart; ``routine`` is a list of (index, agrees) for routine items."""
    kinds = dict(routine)
    out = []
    for i, ms in enumerate(durations):
        is_routine = i in kinds
        out.append(
            Answer(
                start + i * step,
                ms,
                "routine" if is_routine else "strategy",
                "spam" if not is_routine or kinds[i] else "ham",
                "spam" if is_routine else None,
            )
        )
    return out


def test_a_steady_annotator_is_not_tired():
    answers = _answers([3000] * 60, routine=[(i, True) for i in range(0, 60, 5)])
    f = assess(answers, answers[-1].created_at)
    assert not f.tired and f.signals == []
    assert f.recent_median_s == f.baseline_median_s == 3.0


def test_slowing_down_against_ones_own_pace():
    answers = _answers([2000] * 40 + [3500] * 20)
    f = assess(answers, answers[-1].created_at)
    assert f.tired and "slowing down" in f.signals[0]
    # a slow but steady colleague is not flagged
    steady = _answers([3500] * 60)
    assert not assess(steady, steady[-1].created_at).tired


def test_missing_the_confident_ones():
    routine = [(i, True) for i in range(0, 40, 4)]
    routine += [(i, k % 2 == 0) for k, i in enumerate(range(40, 60, 2))]
    answers = _answers([3000] * 60, routine=routine)
    f = assess(answers, answers[-1].created_at)
    assert f.tired and any("missing easy ones" in s for s in f.signals)
    assert f.routine_recent == 10 and f.routine_misses == 5


def test_an_annotator_who_always_disagrees_with_the_model_is_not_tired():
    routine = [(i, i % 2 == 0) for i in range(0, 60, 2)]  # half the time, from the start
    answers = _answers([3000] * 60, routine=routine)
    assert not assess(answers, answers[-1].created_at).tired


def test_a_long_stretch_without_a_break():
    answers = _answers([3000] * 200, step=timedelta(seconds=15))  # 50 minutes
    f = assess(answers, answers[-1].created_at)
    assert f.tired and "without a break" in f.signals[-1]
    after_pause = assess(answers, answers[-1].created_at + timedelta(minutes=20))
    assert after_pause.stretch_minutes == 0 and not after_pause.tired


def test_a_tired_annotator_gets_routine_items_every_other_time(store):
    pid = store.project(200)
    ana = store.annotator(pid, "ana")
    ids = store.item_ids(pid)
    # the queue: 100 strategy items, routine ones at the end of the ranking
    version = store.queue(pid, ids[:100])
    with store.db.write() as s:
        for entry in s.query(QueueEntry).filter(QueueEntry.model_version_id == version):
            if entry.rank >= 90:
                entry.kind = "routine"
                entry.reason = {"kind": "routine", "summary": "routine check"}
    # 40 quick answers, then 20 slow ones
    for n in range(60):
        got = store.next(pid, ana)
        if n < 45:  # not tired yet: the ranking as it is
            assert got.kind == "strategy", n
        store.submit(pid, ana, got.item.id, "ham", duration_ms=2000 if n < 40 else 4000)
    kinds = []
    for _ in range(6):
        got = store.next(pid, ana)
        kinds.append(got.kind)
        store.submit(pid, ana, got.item.id, "ham", duration_ms=4000)
    assert kinds.count("routine") == 3 and kinds.count("strategy") == 3
