"""Model versions and queues: a new version and its queue replace the old ones together."""

import pytest
from sqlalchemy import select

from labelwise.store.models import ModelVersion, QueueEntry
from labelwise.store.projects import get_project
from labelwise.store.versions import QueuedItem, list_versions, record_failure, record_version


def _queue_of(db, pid):
    with db.read() as s:
        return [
            (q.model_version_id, q.item_id, q.rank)
            for q in s.scalars(
                select(QueueEntry).where(QueueEntry.project_id == pid).order_by(QueueEntry.rank)
            )
        ]


def test_record_version_serves_the_new_queue_and_drops_the_old_one(db, store):
    pid = store.project(4)
    ids = store.item_ids(pid)
    v1 = store.queue(pid, ids[:3])
    assert store.project_row(pid).current_version_id == v1
    assert _queue_of(db, pid) == [(v1, ids[0], 0), (v1, ids[1], 1), (v1, ids[2], 2)]
    v2 = store.queue(pid, [ids[3], ids[0]], n_labels=7)
    assert store.project_row(pid).current_version_id == v2
    assert _queue_of(db, pid) == [(v2, ids[3], 0), (v2, ids[0], 1)]
    with db.read() as s:
        versions = list_versions(s, get_project(s, project_id=pid))
    assert [(v.id, v.version, v.status, v.n_labels) for v in versions] == [
        (v1, 1, "ready", 0),
        (v2, 2, "ready", 7),
    ]


def test_queue_entries_keep_their_reasons(db, store):
    pid = store.project(2)
    ids = store.item_ids(pid)
    reason = {"kind": "routine", "summary": "confident", "neighbors": [{"item_id": ids[1]}]}
    with db.write() as s:
        record_version(
            s,
            get_project(s, project_id=pid),
            n_labels=2,
            label_counts={"ham": 1, "spam": 1},
            metrics={"cv": {"accuracy": 0.5}},
            strategy="margin",
            model_name="logreg",
            artefact="models/v00001.joblib",
            fit_seconds=0.25,
            queue=[QueuedItem(ids[0], 0, "routine", 0.1, "ham", reason)],
        )
    with db.read() as s:
        entry = s.scalars(select(QueueEntry)).one()
        version = s.scalars(select(ModelVersion)).one()
    assert (entry.kind, entry.utility, entry.predicted, entry.reason) == (
        "routine",
        0.1,
        "ham",
        reason,
    )
    assert version.label_counts == {"ham": 1, "spam": 1}
    assert version.metrics == {"cv": {"accuracy": 0.5}}


def test_a_version_and_its_queue_land_in_one_transaction(db, store):
    pid = store.project(3)
    ids = store.item_ids(pid)
    v1 = store.queue(pid, ids[:2])

    def crash_after_writing():
        with db.write() as s:
            record_version(
                s,
                get_project(s, project_id=pid),
                n_labels=3,
                label_counts={},
                metrics={},
                strategy="default",
                model_name="logreg",
                artefact="models/x.joblib",
                fit_seconds=0.0,
                queue=[QueuedItem(ids[2], 0, "strategy")],
            )
            raise RuntimeError("crash after writing, before the commit")

    with pytest.raises(RuntimeError, match="crash after writing"):
        crash_after_writing()
    assert store.project_row(pid).current_version_id == v1
    assert _queue_of(db, pid) == [(v1, ids[0], 0), (v1, ids[1], 1)]
    assert store.count(ModelVersion) == 1


def test_an_empty_queue_is_allowed(db, store):
    pid = store.project(2)
    store.queue(pid, store.item_ids(pid))
    v2 = store.queue(pid, [])
    assert store.project_row(pid).current_version_id == v2
    assert _queue_of(db, pid) == []


def test_record_failure_leaves_the_served_version_and_queue_alone(db, store):
    pid = store.project(3)
    ids = store.item_ids(pid)
    v1 = store.queue(pid, ids)
    before = _queue_of(db, pid)
    with db.write() as s:
        failed = record_failure(
            s,
            get_project(s, project_id=pid),
            n_labels=9,
            strategy="default",
            model_name="logreg",
            error="ValueError: " + "x" * 5000,
        )
        failed_id = failed.id
    assert store.project_row(pid).current_version_id == v1
    assert _queue_of(db, pid) == before
    with db.read() as s:
        row = s.get_one(ModelVersion, failed_id)
    assert (row.version, row.status, row.n_labels, row.artefact) == (2, "failed", 9, None)
    assert row.error.startswith("ValueError: ") and len(row.error) == 4000
    assert store.queue(pid, ids[:1]) != v1  # the next success is version 3
    with db.read() as s:
        assert [v.version for v in list_versions(s, get_project(s, project_id=pid))] == [1, 2, 3]


def test_versions_are_numbered_per_project(db, store):
    one, two = store.project(1, name="one"), store.project(1, name="two")
    store.queue(one, store.item_ids(one))
    store.queue(one, store.item_ids(one))
    store.queue(two, store.item_ids(two))
    with db.read() as s:
        assert [v.version for v in list_versions(s, get_project(s, project_id=two))] == [1]
    assert _queue_of(db, one)[0][0] == store.project_row(one).current_version_id  # untouched
