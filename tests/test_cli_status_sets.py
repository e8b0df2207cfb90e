"""``labelwise status`` of a multi-label project: the estimate on random items (micro and macro
F1, subset accuracy with intervals, Hamming loss) and the agreement (alpha with MASI), the same
figures as the dashboard's."""

from __future__ import annotations

import json
import re

from sqlalchemy import select
from typer.testing import CliRunner

from explored import explored_version
from labelwise.cli import app
from labelwise.services.dashboard import dashboard
from labelwise.services.setup import init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.leasing import next_item
from labelwise.store.models import Annotator, Item
from labelwise.store.projects import ProjectSettings, get_project

runner = CliRunner()

# Exploration items: (answer, predicted). Worked by hand: items 1, 3, 4 exactly right, so the
# subset accuracy is 3/6 = 0.500. Wrong cells: item 2 spam, item 5 ham and spam, item 6 ham and
# spam, 5 of 12: Hamming loss 0.417. ham: TP 2 (1, 2), FP 2 (5, 6), FN 0, F1 4/6; spam: TP 1
# (4), FP 1 (6), FN 2 (2, 5), F1 2/5. Macro-F1 (2/3 + 2/5) / 2 = 8/15 = 0.533; micro-F1
# 2*3 / (2*3 + 3 + 2) = 6/11 = 0.545.
EXPLORED = [
    ("ham", "ham"),
    ("ham;spam", "ham"),
    ("", ""),
    ("spam", "spam"),
    ("spam", "ham"),
    ("", "ham;spam"),
]


def _project(tmp_path):
    data = tmp_path / "texts.csv"
    data.write_text("id,text\n" + "".join(f"t{i},text number {i}\n" for i in range(20)))
    opened, admin = init_project(
        tmp_path / "p",
        data,
        labels=["ham", "spam"],
        settings=ProjectSettings(multi_label=True, overlap=1.0, routine=0.0),
    )
    return opened


def test_status_prints_the_multi_label_figures(tmp_path):
    opened = _project(tmp_path)
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        alice, _ = create_annotator(s, project, name="alice", role="annotator")
        bob, _ = create_annotator(s, project, name="bob", role="annotator")
        ids = list(
            s.scalars(select(Item.id).where(Item.project_id == project.id).order_by(Item.row))
        )
        explored_version(s, project, [(ids[i], guess) for i, (_, guess) in enumerate(EXPLORED)])
        answer_of = {ids[i]: value for i, (value, _) in enumerate(EXPLORED)}
        for _ in EXPLORED:
            offered = next_item(s, project, alice, exclude=set(), answering=frozenset())
            submit_label(
                s, project, alice, item_id=offered.item.id, value=answer_of[offered.item.id]
            )
        who = (alice.id, bob.id)
    before = runner.invoke(app, ["status", str(tmp_path / "p")])
    assert before.exit_code == 0, before.output
    assert "agreement (0 items answered by two or more): alpha (MASI) not yet" in before.stdout
    # Five items both answered: four identical sets and one {ham} against {ham, spam}.
    with opened.db.write() as s:
        project = get_project(s, project_id=opened.project_id)
        alice, bob = (s.get_one(Annotator, i) for i in who)
        for i, (x, y) in enumerate(
            [("ham", "ham")] * 2 + [("spam", "spam"), ("", ""), ("ham", "ham;spam")]
        ):
            submit_label(s, project, alice, item_id=ids[10 + i], value=x)
            submit_label(s, project, bob, item_id=ids[10 + i], value=y)
    result = runner.invoke(app, ["status", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    estimate = re.search(
        r"estimate \(model v1, 6 random items\): micro-F1 (\S+) \[\S+, \S+\], macro-F1 (\S+) "
        r"\[\S+, \S+\], subset accuracy (\S+) \[(\S+), (\S+)\], Hamming loss (\S+)",
        out,
    )
    assert estimate is not None, out
    assert estimate.group(1) == "0.545" and estimate.group(2) == "0.533"
    assert estimate.group(3) == "0.500" and estimate.group(6) == "0.417"
    assert float(estimate.group(4)) < 0.5 < float(estimate.group(5))
    # Counted in the items' training sets: ham in t0, t1, t10, t11; spam in t1, t3, t4, t12;
    # empty t2, t5, t13 (t14 is a conflict, out of training).
    assert "labels: ham 4, spam 4, none of them 3" in out
    with opened.db.read() as s:
        figures = dashboard(s, get_project(s, project_id=opened.project_id))
    alpha = figures["agreement"]["alpha_masi"]
    assert f"agreement (5 items answered by two or more): alpha (MASI) {alpha:.3f}" in out
    assert f"verdict: {figures['stopping']['verdict']}" in out
    shown = json.loads(runner.invoke(app, ["status", str(tmp_path / "p"), "--json"]).stdout)
    assert shown["multi_label"]["empty_sets"] == 3
    assert shown["agreement"]["alpha_masi"] == alpha
    assert shown["stopping"]["estimate"]["hamming_loss"] == 5 / 12
