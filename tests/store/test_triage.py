"""Triage in a project: decisions stored apart from labels, audits queued blind, error measured."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from labelwise import InvalidDataError, InvalidParameterError
from labelwise.cli import app
from labelwise.datasets import bundled_path
from labelwise.io.load import load_dataset
from labelwise.learning.triage import TriageTarget
from labelwise.services import worker
from labelwise.services.dashboard import dashboard
from labelwise.services.export import export_project
from labelwise.services.setup import init_project
from labelwise.services.triage import import_and_triage, triage_items, triage_report
from labelwise.store.answers import submit_label
from labelwise.store.models import Annotator, Item, Label, QueueEntry, TriageDecision
from labelwise.store.projects import ProjectSettings, get_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """Labeled SMS messages to start from, and a batch of new ones (with their truth)."""
    data = load_dataset(bundled_path("sms-spam"))
    wanted = {"ham": 100, "spam": 50}
    picked: dict[str, list[str]] = {"ham": [], "spam": []}
    seen: set[str] = set()
    for text, label in zip(data.items, data.labels, strict=True):
        if len(picked[label]) < wanted[label] and text not in seen:
            picked[label].append(text)
            seen.add(text)
    root = tmp_path_factory.mktemp("triage")
    labeled, new, truth = root / "labeled.csv", root / "new.csv", {}
    with labeled.open("w", newline="") as a, new.open("w", newline="") as b:
        wa, wb = csv.writer(a), csv.writer(b)
        wa.writerow(["id", "text", "label"])
        wb.writerow(["id", "text"])
        for label, texts in picked.items():
            cut = len(texts) * 2 // 3
            wa.writerows([f"{label}-{i}", t, label] for i, t in enumerate(texts[:cut]))
            for i, t in enumerate(texts[cut:]):
                wb.writerow([f"new-{label}-{i}", t])
                truth[f"new-{label}-{i}"] = label
    return labeled, new, truth


def _project(root: Path, labeled: Path, db_url: str | None):
    settings = ProjectSettings(retrain_every=5, queue_size=20, overlap=0.0)
    op, _ = init_project(root, labeled, db_url=db_url, settings=settings, with_labels=True)
    return op


TARGET = TriageTarget("sensitivity", 0.9, "spam", conservative=False)


def test_triage_decides_routes_and_audits_a_new_batch(tmp_path, files, db_url):
    labeled, new, truth = files
    op = _project(tmp_path / "p", labeled, db_url)
    try:
        with op.db.read() as s:
            labels_before = s.scalar(select(func.count(Label.id)))
        summary = import_and_triage(op.db, op.folder, op.project_id, new, TARGET, audit=0.5)
        assert summary.items == len(truth) == summary.accepted + summary.routed
        assert summary.accepted > 0 and summary.routed > 0
        assert summary.by_label == {"ham": summary.accepted}  # spam is never decided
        assert summary.audit == round(0.5 * summary.accepted)

        with op.db.read() as s:
            decisions = s.scalars(select(TriageDecision)).all()
            items = {i.id: i for i in s.scalars(select(Item))}
            assert s.scalar(select(func.count(Label.id))) == labels_before  # no label written
        assert len(decisions) == len(truth)
        for d in decisions:
            item = items[d.item_id]
            assert item.external_id in truth
            settled = d.accepted and not d.audit
            assert item.done is settled and (item.target == 0) is settled
        missed = [
            d for d in decisions if d.accepted and truth[items[d.item_id].external_id] == "spam"
        ]
        assert len(missed) <= 3  # sensitivity 0.9 of ~17 spam messages, up to noise

        # The worker queues every open audit item, blind, and never a settled one.
        assert worker.train_once(op.folder, op.db, force=True).status == "trained"
        with op.db.read() as s:
            queue = s.scalars(select(QueueEntry)).all()
        audits = {d.item_id: d for d in decisions if d.audit}
        queued_audits = [q for q in queue if q.kind == "audit"]
        assert {q.item_id for q in queued_audits} == set(audits)
        assert all(q.predicted is None and "decision" not in q.reason for q in queued_audits)
        settled_ids = {d.item_id for d in decisions if d.accepted and not d.audit}
        assert not settled_ids & {q.item_id for q in queue}

        # An expert disagrees with one audited decision: the measured error says so.
        first = next(iter(audits.values()))
        wrong = "spam" if first.label == "ham" else "ham"
        with op.db.write() as s:
            project = get_project(s, project_id=op.project_id)
            submit_label(s, project, s.get_one(Annotator, 1), item_id=first.item_id, value=wrong)
        with op.db.read() as s:
            project = get_project(s, project_id=op.project_id)
            report = triage_report(s, project)
            figures = dashboard(s, project)
        assert report is not None
        assert (report["audited"], report["errors"], report["error_rate"]) == (1, 1, 1.0)
        assert report["error_interval"][0] > 0.0
        assert figures["triage"] == report

        # The export gives the automatic decisions, marked as such, beside people's labels.
        out = io.StringIO()
        with op.db.read() as s:
            export_project(s, get_project(s, project_id=op.project_id), "jsonl", out)
        records = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}
        for d in decisions:
            record = records[items[d.item_id].external_id]
            if d.item_id == first.item_id:  # the expert's answer replaces the decision
                assert (record["status"], record["label"]) == ("labeled", wrong)
            elif d.accepted:  # audits not yet answered included
                assert (record["status"], record["label"]) == ("automatic", d.label)
                assert record["annotations"][0]["action"] == "automatic"
            else:
                assert record["status"] == "unlabeled"

        # Routed items nobody answered yet may be triaged again; settled ones are not.
        again = triage_items(
            op.db, op.folder, op.project_id, [d.item_id for d in decisions], TARGET
        )
        assert again.items == summary.routed
        with op.db.read() as s:
            assert s.scalar(select(func.count(TriageDecision.id))) == len(truth)
        with pytest.raises(InvalidDataError, match="no open items to triage"):
            triage_items(op.db, op.folder, op.project_id, list(settled_ids), TARGET)
    finally:
        op.db.dispose()


def test_a_triage_that_cannot_run_imports_nothing(tmp_path, files, db_url):
    labeled, new, _ = files
    op = _project(tmp_path / "p", labeled, db_url)
    try:
        with op.db.read() as s:
            n_before = s.scalar(select(func.count(Item.id)))
        bad = TriageTarget("sensitivity", 0.9, "phishing")
        with pytest.raises(InvalidParameterError, match="'phishing' is not one of"):
            import_and_triage(op.db, op.folder, op.project_id, new, bad)
        with op.db.read() as s:
            assert s.scalar(select(func.count(Item.id))) == n_before
            assert s.scalar(select(func.count(TriageDecision.id))) == 0
    finally:
        op.db.dispose()


def test_the_triage_command(tmp_path, files):
    labeled, new, truth = files
    op = _project(tmp_path / "p", labeled, None)
    op.db.dispose()
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "triage",
            str(tmp_path / "p"),
            str(new),
            "--sensitivity",
            "0.9",
            "--positive",
            "spam",
            "--point-estimate",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"triaged {len(truth)} items for sensitivity 0.9 for spam" in result.output
    # Without a file: the open items, here the ones routed to experts a moment ago.
    again = runner.invoke(app, ["triage", str(tmp_path / "p"), "--precision", "0.9", "--json"])
    assert again.exit_code == 0, again.output
    assert 0 < json.loads(again.output)["items"] < len(truth)
    unknown = runner.invoke(
        app, ["triage", str(tmp_path / "p"), "--sensitivity", "0.9", "--positive", "nope"]
    )
    assert unknown.exit_code != 0 and "'nope' is not one of the project's labels" in unknown.output
    both = runner.invoke(
        app, ["triage", str(tmp_path / "p"), "--precision", "0.9", "--sensitivity", "0.9"]
    )
    assert both.exit_code != 0 and "exactly one target" in both.output
