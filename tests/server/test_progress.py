"""One "done" figure: the annotate page's summary, the dashboard and ``labelwise status`` count
the same items done, and say how many wait for a second opinion (overlap items answered once)."""

from __future__ import annotations

import re
import uuid
from typing import Any
from unittest import mock

from sqlalchemy import update
from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.services import setup
from labelwise.store.models import Annotator
from labelwise.store.projects import ProjectSettings
from sessions import session_secret

runner = CliRunner()


def _answer(s: Any, token: str, n: int) -> list[int]:
    done = []
    for _ in range(n):
        r = s.client.post(s.api("/next"), json={"exclude": []}, headers=s.h(token))
        assert r.status_code == 200, r.text
        item = r.json()["item"]
        body = {"value": "ham", "duration_ms": 900, "request_id": uuid.uuid4().hex}
        r = s.client.post(s.api(f"/items/{item['id']}/label"), json=body, headers=s.h(token))
        assert r.status_code == 200, r.text
        done.append(item["id"])
    return done


def _status(s: Any, db_url: str) -> str:
    """``labelwise status`` in this process, its connection pool closed afterwards."""
    opened: list[Any] = []

    def tracked(*a: Any, **k: Any) -> Any:
        opened.append(setup_open(*a, **k))
        return opened[-1]

    setup_open = setup.open_project
    with mock.patch.object(setup, "open_project", tracked):
        result = runner.invoke(app, ["status", str(s.project.folder.root), "--db", db_url])
    for project in opened:
        project.db.dispose()
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def _everywhere(s: Any, db_url: str) -> tuple[dict[str, Any], str, str]:
    """The summary's progress, the dashboard page and the status output."""
    summary = s.client.get(s.api(""), headers=s.h(s.alice)).json()["progress"]
    figures = s.client.get(s.api("/stats"), headers=s.h(s.alice)).json()["progress"]
    for key in ("items", "done", "waiting_second_opinion", "text"):
        assert summary[key] == figures[key], key
    s.client.cookies.set(s.cookie, session_secret(s.project.db, s.pid, s.alice))
    page = s.client.get(f"/p/{s.pid}/dashboard").text
    s.client.cookies.clear()
    return summary, page, _status(s, db_url)


def _kpi(page: str) -> int:
    found = re.search(r'id="kpi-done">([\d,]+)<', page)
    assert found, "no done figure on the dashboard"
    return int(found.group(1).replace(",", ""))


def test_the_done_count_and_the_second_opinions_agree_on_every_page(served_with, db_url):
    s = served_with(ProjectSettings(overlap=1.0, routine=0.0))  # every item needs two answers
    first = _answer(s, s.alice, 3)
    progress, page, status = _everywhere(s, db_url)
    assert (progress["items"], progress["done"], progress["waiting_second_opinion"]) == (60, 0, 3)
    assert progress["text"] == "0 of 60 items done (0%), 3 waiting for a second opinion"
    assert _kpi(page) == 0 and "3 waiting for a second opinion" in page
    assert f"{progress['text']}; 3 answers" in status

    # bob answers until alice's three items have their second opinion
    answered: set[int] = set()
    while not set(first) <= answered:
        answered |= set(_answer(s, s.bob, 1))
    progress, page, status = _everywhere(s, db_url)
    done = progress["done"]
    assert done >= 3 and done + progress["waiting_second_opinion"] == len(answered | set(first))
    assert _kpi(page) == done
    assert progress["text"].startswith(f"{done} of 60 items done")
    assert progress["text"] in status


def test_with_one_annotator_able_to_label_the_waiting_items_say_who_they_wait_for(
    served_with, db_url
):
    s = served_with(ProjectSettings(overlap=1.0, routine=0.0))
    _answer(s, s.alice, 2)
    with s.project.db.write() as session:  # alice alone may label: the admin and bob leave
        session.execute(update(Annotator).where(Annotator.name != "alice").values(disabled=True))
    progress, page, status = _everywhere(s, db_url)
    said = "2 waiting for a second opinion from another annotator (none yet)"
    assert progress["text"] == f"0 of 60 items done (0%), {said}"
    assert said in page and said in status


def test_a_model_without_a_score_is_not_called_no_model(served, db_url):
    """The accuracy card of a served model that has no score yet (too few labels of a class to
    cross-validate, no random item answered) says so, instead of "no model yet"."""
    from sqlalchemy import select

    from labelwise.services import worker
    from labelwise.store.models import ModelVersion

    s = served
    for k in range(10):  # nine of one class, one of the other: too few to cross-validate
        r = s.client.post(s.api("/next"), json={"exclude": []}, headers=s.h(s.alice))
        item = r.json()["item"]
        body = {"value": "spam" if k == 0 else "ham", "request_id": uuid.uuid4().hex}
        r = s.client.post(s.api(f"/items/{item['id']}/label"), json=body, headers=s.h(s.alice))
        assert r.status_code == 200, r.text
    assert worker.train_once(s.project.folder, s.project.db).status == "trained"
    with s.project.db.read() as session:
        served_version = session.scalars(
            select(ModelVersion).where(ModelVersion.status != "cold-start")
        ).one()
        assert not (served_version.metrics or {}).get("cv")
    _, page, _ = _everywhere(s, db_url)
    card = page.split("Estimated accuracy", 1)[1].split('class="card kpi"', 1)[0]
    assert f"model v{served_version.version} has no score yet" in card
    assert "no model yet" not in card


def test_before_the_first_model_the_dashboard_says_cold_start_not_a_failed_fit(served):
    from labelwise.services import worker

    s = served
    outcome = worker.train_once(s.project.folder, s.project.db)
    assert outcome.status == "cold-start"
    s.client.cookies.set(s.cookie, session_secret(s.project.db, s.pid, s.alice))
    page = s.client.get(f"/p/{s.pid}/dashboard").text
    s.client.cookies.clear()
    assert "every fit so far failed" not in page
    assert "trained on 0 labels" not in page
    assert "typical items queued (cold start)" in page


def test_before_the_first_model_the_dashboard_says_what_the_first_fit_waits_for(served_with):
    """Two classes labeled but fewer labels than the first fit needs: the dashboard counts down
    to it, instead of saying the model waits for two classes."""
    from labelwise.services import worker
    from labelwise.services.training import labels_for_next_fit

    settings = ProjectSettings(overlap=0.0, routine=0.0, retrain_every=20)
    s = served_with(settings)
    needed = labels_for_next_fit(settings, fitted=False)
    assert worker.train_once(s.project.folder, s.project.db).status == "cold-start"

    def label(values: list[str]) -> str:
        for value in values:
            item = s.client.post(s.api("/next"), json={"exclude": []}, headers=s.h(s.alice))
            body = {"value": value, "request_id": uuid.uuid4().hex}
            r = s.client.post(
                s.api(f"/items/{item.json()['item']['id']}/label"), json=body, headers=s.h(s.alice)
            )
            assert r.status_code == 200, r.text
        s.client.cookies.set(s.cookie, session_secret(s.project.db, s.pid, s.alice))
        page = s.client.get(f"/p/{s.pid}/dashboard").text
        s.client.cookies.clear()
        return page

    page = label(["ham", "ham"])
    assert f"two classes have labels and {needed} items are labeled (2 so far)" in page
    page = label(["spam", "ham"])
    assert (
        f"The first model trains once {needed} items are labeled: {needed - 4} more to go" in page
    )
    assert "two classes have labels" not in page
    assert "cross-validated</span>" not in page  # the cold-start queue is no model
    page = label(["ham"] * (needed - 4))
    assert "The worker is training the first model now" in page
