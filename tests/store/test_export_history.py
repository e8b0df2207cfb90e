"""Exporting items whose answers changed (:func:`labelwise.services.export.export_project`):
undone, answered again, relabeled by their annotator, adjudicated and relabeled by an admin (the
data browser's relabel is an adjudication, ``POST /review/{item_id}``).

An export carries each item's resolved label and its *standing* answers: an undone answer, or
one its annotator or an admin replaced, is in the item's history (:func:`item_history`) but
neither counts as the label nor appears in the export. Every expected record is written out
by hand below, for CSV and JSONL alike.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from sqlalchemy import select

from labelwise.services.export import export_project
from labelwise.store.annotators import create_annotator
from labelwise.store.browse import item_history
from labelwise.store.models import Annotator, Item, Label
from labelwise.store.projects import get_project
from labelwise.store.review import adjudicate


def _relabel(db: Any, pid: int, admin_id: int, item_id: int, value: str) -> None:
    """An admin's relabel, as the data browser and the review page send it."""
    with db.write() as s:
        adjudicate(
            s, get_project(s, project_id=pid), s.get_one(Annotator, admin_id), item_id=item_id,
            value=value,
        )  # fmt: skip


@pytest.fixture
def history(db: Any, store: Any) -> tuple[int, list[int]]:
    """Seven items, each with a story (annotators a0 and a1, admin ``boss``; durations tell
    the answers apart):

    0. a0 says ham (1100 ms), undoes it, then says spam (1200 ms);
    1. a0 says ham (1400), a1 spam (1500), boss adjudicates ham;
    2. a0 says spam (1600), boss relabels it ham, then spam;
    3. a0 says ham (1300) and undoes it: nothing stands;
    4. a0 says ham (1700), changes it to spam (1800), then undoes the change: ham stands again;
    5. nobody answers;
    6. a1 says spam (1900), a0 ham (2000): a conflict nobody settled.
    """
    pid = store.project(7, overlap=1.0)
    ids = store.item_ids(pid)
    a0, a1 = store.annotators(pid, 2)
    with db.write() as s:
        boss, _ = create_annotator(s, get_project(s, project_id=pid), name="boss", role="admin")
        boss_id = boss.id
    store.submit(pid, a0, ids[0], "ham", duration_ms=1100)
    assert store.undo(pid, a0).item.id == ids[0]
    store.submit(pid, a0, ids[0], "spam", duration_ms=1200)
    store.submit(pid, a0, ids[3], "ham", duration_ms=1300)
    assert store.undo(pid, a0).item.id == ids[3]
    store.submit(pid, a0, ids[1], "ham", duration_ms=1400)
    store.submit(pid, a1, ids[1], "spam", duration_ms=1500)
    _relabel(db, pid, boss_id, ids[1], "ham")
    store.submit(pid, a0, ids[2], "spam", duration_ms=1600)
    _relabel(db, pid, boss_id, ids[2], "ham")
    _relabel(db, pid, boss_id, ids[2], "spam")
    store.submit(pid, a0, ids[4], "ham", duration_ms=1700)
    store.submit(pid, a0, ids[4], "spam", duration_ms=1800)
    assert store.undo(pid, a0).item.id == ids[4]
    store.submit(pid, a1, ids[6], "spam", duration_ms=1900)
    store.submit(pid, a0, ids[6], "ham", duration_ms=2000)
    return pid, ids


def _answer(name: str, label: str, action: str, duration_ms: int | None) -> dict[str, Any]:
    return {"annotator": name, "label": label, "action": action, "duration_ms": duration_ms}


# (id, label, status, standing answers: the adjudication first, then in the order given)
EXPECTED: list[tuple[str, str | None, str, list[dict[str, Any]]]] = [
    ("demo-0", "spam", "labeled", [_answer("a0", "spam", "label", 1200)]),
    (
        "demo-1",
        "ham",
        "labeled",
        [
            _answer("boss", "ham", "adjudicate", None),
            _answer("a0", "ham", "label", 1400),
            _answer("a1", "spam", "label", 1500),
        ],
    ),
    (
        "demo-2",
        "spam",
        "labeled",
        [_answer("boss", "spam", "adjudicate", None), _answer("a0", "spam", "label", 1600)],
    ),
    ("demo-3", None, "unlabeled", []),
    ("demo-4", "ham", "labeled", [_answer("a0", "ham", "label", 1700)]),
    ("demo-5", None, "unlabeled", []),
    (
        "demo-6",
        None,
        "conflict",
        [_answer("a1", "spam", "label", 1900), _answer("a0", "ham", "label", 2000)],
    ),
]


def _times(db: Any, pid: int) -> dict[tuple[str, str, str], str]:
    """The stored time of each standing answer, by (external id, annotator, action), as the
    export writes times (UTC, milliseconds, ``Z``)."""
    with db.read() as s:
        rows = s.execute(
            select(Item.external_id, Annotator.name, Label.action, Label.created_at)
            .join(Item, Item.id == Label.item_id)
            .join(Annotator, Annotator.id == Label.annotator_id)
            .where(Label.project_id == pid, Label.is_current.is_(True))
        ).all()
    return {
        (ext, name, action): at.isoformat(timespec="milliseconds") + "Z"
        for ext, name, action, at in rows
    }


def _expected(db: Any, pid: int, *, labeled_only: bool = False) -> list[dict[str, Any]]:
    times = _times(db, pid)
    return [
        {
            "id": ext,
            "text": f"message number {ext.split('-')[1]}",
            "label": label,
            "status": status,
            "annotations": [
                a | {"created_at": times[(ext, a["annotator"], a["action"])]} for a in answers
            ],
        }
        for ext, label, status, answers in EXPECTED
        if not labeled_only or status != "unlabeled"
    ]


def _export(db: Any, pid: int, fmt: str, **kwargs: Any) -> str:
    out = io.StringIO(newline="")
    with db.read() as s:
        export_project(s, get_project(s, project_id=pid), fmt, out, **kwargs)
    return out.getvalue()


def test_jsonl_shows_final_labels_and_standing_answers_only(
    db: Any, history: tuple[int, list[int]]
) -> None:
    pid, _ = history
    records = [json.loads(line) for line in _export(db, pid, "jsonl").splitlines()]
    assert records == _expected(db, pid)


def test_csv_shows_final_labels_and_standing_answers_only(
    db: Any, history: tuple[int, list[int]]
) -> None:
    pid, _ = history
    rows = list(csv.DictReader(io.StringIO(_export(db, pid, "csv"), newline="")))
    assert list(rows[0]) == ["id", "text", "label", "status", "annotations"]
    expected = [
        {
            "id": r["id"],
            "text": r["text"],
            "label": r["label"] or "",  # no label: an empty cell
            "status": r["status"],
            "annotations": r["annotations"],
        }
        for r in _expected(db, pid)
    ]
    got = [r | {"annotations": json.loads(r["annotations"])} for r in rows]
    assert got == expected
    # Compact JSON in the cell, as documented: no label at all is an empty list.
    assert rows[3]["annotations"] == "[]"
    assert rows[0]["annotations"] == json.dumps(
        expected[0]["annotations"], separators=(",", ":"), ensure_ascii=False
    )


def test_labeled_only_keeps_labeled_items_and_conflicts(
    db: Any, history: tuple[int, list[int]]
) -> None:
    pid, _ = history
    records = [
        json.loads(line) for line in _export(db, pid, "jsonl", labeled_only=True).splitlines()
    ]
    assert [r["id"] for r in records] == ["demo-0", "demo-1", "demo-2", "demo-4", "demo-6"]
    assert records == _expected(db, pid, labeled_only=True)


def test_the_history_keeps_what_the_export_leaves_out(
    db: Any, history: tuple[int, list[int]]
) -> None:
    pid, ids = history

    def story(item_id: int) -> list[tuple[str, str, str | None, bool, int | None]]:
        with db.read() as s:
            found = item_history(s, s.get_one(Item, item_id))
        return [
            (h["annotator"], h["action"], h["value"], h["current"], h["duration_ms"]) for h in found
        ]

    assert story(ids[0]) == [
        ("a0", "label", "ham", False, 1100),
        ("a0", "undo", None, False, None),
        ("a0", "label", "spam", True, 1200),
    ]
    assert story(ids[2]) == [
        ("a0", "label", "spam", True, 1600),
        ("boss", "adjudicate", "ham", False, None),
        ("boss", "adjudicate", "spam", True, None),
    ]
    assert story(ids[3]) == [("a0", "label", "ham", False, 1300), ("a0", "undo", None, False, None)]
    assert story(ids[4]) == [
        ("a0", "label", "ham", True, 1700),  # current again: the change to spam was undone
        ("a0", "label", "spam", False, 1800),
        ("a0", "undo", None, False, None),
    ]
