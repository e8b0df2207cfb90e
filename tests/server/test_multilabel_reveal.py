"""After the worker has fitted a multi-label model, an answer's reveal gives the guessed set as
the why-panel shows it (the labels at or above their thresholds, every label in label order)
and the answer keeps the same set as what the model predicted."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from labelwise.services.worker import train_once
from labelwise.store.answers import submit_label
from labelwise.store.models import Annotator, Item, Label
from labelwise.store.projects import get_project
from server.test_multilabel_api import LABELS, make_multilabel

SETS = ["sports;politics", "politics;tech", "sports", "tech", "", "sports;politics;tech"]


def test_the_reveal_after_a_fit_gives_the_set_the_thresholds_give(tmp_path: Path) -> None:
    s = make_multilabel(tmp_path, f"sqlite:///{tmp_path / 'ml.sqlite3'}")
    try:
        with s.project.db.write() as session:
            project = get_project(session, project_id=s.pid)
            admin = session.get_one(Annotator, 1)
            for k, item in enumerate(session.scalars(select(Item).order_by(Item.id)).all()[:18]):
                submit_label(session, project, admin, item_id=item.id, value=SETS[k % len(SETS)])
        assert train_once(s.project.folder, s.project.db, force=True).status == "trained"
        h = s.h(s.alice)
        for _ in range(3):
            got = s.client.post(s.api("/next"), json={}, headers=h).json()
            assert got["why"]["kind"] == "strategy" and "class_split" not in got["why"]
            r = s.client.post(
                s.api(f"/items/{got['item']['id']}/label"), json={"labels": ["tech"]}, headers=h
            ).json()
            why = r["reveal"]["why"]
            assert [label for label, _ in why["class_split"]] == LABELS
            thresholds = why["details"]["thresholds"]
            over = [label for label, p in why["class_split"] if p >= thresholds[label]]
            assert r["reveal"]["guess"] == {"labels": over}
            with s.project.db.read() as session:
                stored = session.get_one(Label, r["label_id"])
                assert stored.predicted == ";".join(over)
    finally:
        s.client.close()
        s.project.db.dispose()
