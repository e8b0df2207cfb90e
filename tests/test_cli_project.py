"""The project commands end to end on SQLite: init, token, import, status, export."""

from __future__ import annotations

import csv
import io
import json
import re

from typer.testing import CliRunner

from labelwise.cli import app
from labelwise.datasets import bundled_path
from labelwise.io.load import load_dataset
from labelwise.services.dashboard import dashboard
from labelwise.services.setup import open_project
from labelwise.services.worker import train_once
from labelwise.store.answers import submit_label
from labelwise.store.leasing import next_item
from labelwise.store.models import Annotator
from labelwise.store.projects import get_project

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _sms_csv(path, start, stop):
    data = load_dataset(bundled_path("sms-spam"))
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "text", "label"])
        for i in range(start, stop):
            out.writerow([f"m{i}", data.items[i], data.labels[i]])
    return path, dict(zip(data.items[start:stop], data.labels[start:stop], strict=True))


def test_a_project_from_init_to_status_and_export(tmp_path):
    first, truth = _sms_csv(tmp_path / "a.csv", 0, 150)
    more, truth_more = _sms_csv(tmp_path / "b.csv", 150, 200)
    truth |= truth_more
    proj = tmp_path / "proj"

    result = _run("init", proj, "--data", first)
    assert result.exit_code == 0, result.output
    link = _run(
        "token", proj, "--name", "ana", "--role", "annotator", "--url", "https://lw.example/"
    )
    assert link.exit_code == 0, link.output
    assert re.fullmatch(r"https://lw\.example/login/link/[\w-]{20,}\n", link.stdout)
    again = _run("token", proj, "--name", "ana")  # another link, same annotator
    assert again.exit_code == 0 and again.stdout.startswith("http://127.0.0.1:8000/login/link/")
    assert again.stdout != link.stdout and "valid 30 minutes" in again.stderr
    no_token = _run("token", proj, "--name", "ana", "--api")  # shown once, when made
    assert no_token.exit_code != 0 and "--reissue" in no_token.output
    token = _run("token", proj, "--name", "ana", "--reissue", "--api")
    assert token.exit_code == 0 and re.fullmatch(r"[\w-]{40,}\n", token.stdout)
    reissued = _run("token", proj, "--name", "ana", "--reissue", "--api")
    assert reissued.exit_code == 0
    assert reissued.stdout.strip() not in ("", token.stdout.strip())
    bad_url = _run("token", proj, "--name", "ana", "--url", "lw.example")
    assert bad_url.exit_code != 0 and "--url" in bad_url.output
    result = _run("import", proj, more)
    assert result.exit_code == 0 and "imported 50 items" in result.stdout

    result = _run("status", proj)
    assert result.exit_code == 0, result.output
    assert "0 of 200 items done (0%); 0 answers" in result.stdout
    assert "model: none yet" in result.stdout
    assert result.stdout.strip().endswith("verdict: no model yet")

    # Label 60 items through the store, as the app would, and let the worker fit.
    opened = open_project(proj)
    for _ in range(60):
        with opened.db.write() as s:
            project = get_project(s, project_id=opened.project_id)
            annotator = s.get_one(Annotator, 1)
            got = next_item(s, project, annotator)
            submit_label(s, project, annotator, item_id=got.item.id, value=truth[got.item.content])
    assert train_once(opened.folder, opened.db).status == "trained"
    opened.db.dispose()

    result = _run("status", proj)
    assert result.exit_code == 0, result.output
    assert "model: v1 (logreg, 60 labels)" in result.stdout
    assert "verdict: keep labeling" in result.stdout
    figures = json.loads(_run("status", proj, "--json").stdout)
    assert figures["progress"]["labeled_items"] == 60
    # an overlap item answered once is not done: it waits for a second opinion, and says so
    progress = figures["progress"]
    assert progress["done"] + progress["waiting_second_opinion"] == 60
    assert f"{progress['text']}; 60 answers" in result.stdout
    assert set(figures["stopping"]) >= {"verdict", "estimate", "expected_gain", "reasons"}
    # status and the dashboard say the same: one verdict, from the same figures
    reopened = open_project(proj)
    with reopened.db.read() as s:
        shown = dashboard(s, get_project(s, project_id=reopened.project_id))["stopping"]
    reopened.db.dispose()
    assert json.loads(json.dumps(shown)) == figures["stopping"]
    assert f"verdict: {shown['verdict']}" in result.stdout
    for reason in shown["reasons"]:
        assert f"- {reason}" in result.stdout

    exported = _run("export", proj, "--format", "csv", "--labeled-only")
    assert exported.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 60


def test_project_commands_name_what_is_wrong(tmp_path):
    result = _run("init", tmp_path / "p", "--data", tmp_path / "missing.csv")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "missing.csv" in result.stderr
    result = _run("status", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_the_worker_yields_the_cpu_to_the_server(tmp_path, monkeypatch):
    """On a small machine a fit must not slow "next": the worker runs at a lower priority."""
    from labelwise.server import runtime
    from labelwise.services import worker

    data, _ = _sms_csv(tmp_path / "a.csv", 0, 30)
    assert _run("init", tmp_path / "p", "--data", data).exit_code == 0
    niced, ran = [], []
    monkeypatch.setattr(runtime.os, "nice", lambda n: niced.append(n) or n)
    monkeypatch.setattr(worker, "run_worker", lambda *a, **k: ran.append(True))
    runtime.run_worker_forever(str(tmp_path / "p"), None)
    assert niced == [runtime.WORKER_NICENESS] and ran == [True]


def test_serve_hands_the_scheduler_to_its_worker(tmp_path, monkeypatch):
    """`serve --scheduler` reaches the worker child, which scores on that cluster."""
    from labelwise.server import runtime

    served, forever = [], []
    monkeypatch.setattr(
        runtime, "serve_project", lambda *a, **k: served.append(k) or k["listening"].close()
    )
    monkeypatch.setattr(runtime, "run_worker_forever", lambda *a, **k: forever.append(k))
    result = _run("serve", tmp_path, "--scheduler", "local:2", "--port", "0")
    assert result.exit_code == 0, result.output
    assert served[0]["scheduler"] == "local:2" and served[0]["with_worker"]
    supervisor = runtime.WorkerSupervisor(str(tmp_path), None, served[0]["scheduler"])
    runtime._worker_child(*supervisor.args)  # what the child process runs
    assert forever[0]["scheduler"] == "local:2"

    result = _run("serve", tmp_path, "--scheduler", "local:2", "--no-worker")
    assert result.exit_code == 2 and "--scheduler is for the worker" in result.output
    result = _run("serve", tmp_path, "--scheduler", "nowhere")
    assert result.exit_code == 2 and "--scheduler must be local" in result.output
    assert len(served) == 1


def test_serve_on_a_port_in_use_is_one_line(tmp_path):
    import socket

    data, _ = _sms_csv(tmp_path / "a.csv", 0, 30)
    assert _run("init", tmp_path / "p", "--data", data).exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("serve", tmp_path / "p", "--port", port)
    assert result.exit_code == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.output
    assert "choose another with --port" in result.output


def test_a_worker_child_that_will_not_stop_is_killed_with_the_server(tmp_path, monkeypatch):
    # SIGTERM of `serve` left its worker fitting (9.6 GB) until killed by hand: a fit does not
    # look up from SIGTERM. The supervisor kills what has not stopped in time.
    import time

    from labelwise.server import runtime
    from stubborn_worker import run

    monkeypatch.setattr(runtime, "WORKER_STOP_S", 0.5)
    supervisor = runtime.WorkerSupervisor(str(tmp_path), None, target=run)
    supervisor.start()
    for _ in range(200):
        if (tmp_path / "started").exists():
            break
        time.sleep(0.1)
    assert (tmp_path / "started").exists()
    began = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - began < 10
    assert not supervisor._thread.is_alive()
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.name == "labelwise-worker"]


def test_serve_says_where_it_listens_with_a_sign_in_link_that_works(tmp_path):
    import subprocess
    import sys
    import urllib.request

    data, _ = _sms_csv(tmp_path / "a.csv", 0, 30)
    assert _run("init", tmp_path / "p", "--data", data).exit_code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelwise.cli", "serve", str(tmp_path / "p"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        said = []
        for line in proc.stdout:  # type: ignore[union-attr]
            said.append(line)
            if "/login/link/" in line:
                break
        text = "".join(said)
        address = re.search(r" at (http://127\.0\.0\.1:\d+)\n", text)
        link = re.search(r"(http://127\.0\.0\.1:\d+/login/link/[\w-]+)", text)
        assert address and link, text
        assert link.group(1).startswith(address.group(1))
        with urllib.request.urlopen(link.group(1), timeout=10) as page:
            assert page.status == 200 and "Sign in as admin" in page.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]


def test_a_port_out_of_range_or_in_use_is_one_line_before_anything_is_made(tmp_path):
    import socket

    data, _ = _sms_csv(tmp_path / "a.csv", 0, 30)
    assert _run("init", tmp_path / "p", "--data", data).exit_code == 0
    result = _run("serve", tmp_path / "p", "--port", "99999")
    assert result.exit_code == 2 and "--port must be 0 to 65535" in result.stderr
    assert len(result.output.strip().splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("demo", "--port", port, "--dir", tmp_path / "demo")
        assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
        assert "/login/link/" not in result.output and len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "demo").exists()


def test_config_shows_checks_and_changes_settings(tmp_path):
    data, _ = _sms_csv(tmp_path / "a.csv", 0, 30)
    proj = tmp_path / "p"
    assert _run("init", proj, "--data", data).exit_code == 0
    listed = _run("config", proj)
    assert listed.exit_code == 0
    assert re.search(r"^strategy +default +How the next items are chosen", listed.stdout, re.M)
    assert re.search(r"^show_guess +after +When annotators see", listed.stdout, re.M)
    changed = _run("config", proj, "strategy", "margin")
    assert changed.exit_code == 0 and "strategy: default -> margin" in changed.stdout
    assert _run("config", proj, "strategy").stdout == "margin\n"
    (tmp_path / "guide.md").write_text("# Spam\n\nAnything *unsolicited*.\n")
    assert _run("config", proj, "guidelines", f"@{tmp_path / 'guide.md'}").exit_code == 0
    assert _run("config", proj, "label_help.spam", "unsolicited advertising").exit_code == 0
    assert _run("config", proj, "label_keys.spam", "p").exit_code == 0
    for args, message in [
        (("retrain_every", "abc"), "retrain_every must be an integer"),
        (("retrain_every", "0"), "from 1 to 1,000,000"),
        (("label_keys.spam", "s"), "command key"),
        (("label_help.eggs", "x"), "not labels of this project"),
        (("nope", "1"), "unknown setting 'nope'"),
        (("show_guess", "sometimes"), "show_guess must be one of"),
    ]:
        refused = _run("config", proj, *args)
        assert refused.exit_code == 2 and message in refused.stderr, (args, refused.output)
    opened = open_project(proj)
    settings = opened.project().settings
    opened.db.dispose()
    assert settings["strategy"] == "margin" and settings["retrain_every"] == 20
    assert settings["guidelines"].startswith("# Spam")
    assert settings["label_help"] == {"spam": "unsolicited advertising"}
    assert settings["label_keys"] == {"spam": "p"}
    assert _run("config", proj, "label_keys.spam", "").exit_code == 0  # empty removes it
    assert _run("config", proj, "label_keys").stdout == "{}\n"


def test_init_takes_settings_as_config_sets_them(tmp_path):
    data, _ = _sms_csv(tmp_path / "a.csv", 0, 30)
    (tmp_path / "guide.md").write_text("Label **spam** when unsolicited.\n")
    proj = tmp_path / "p"
    made = _run(
        "init",
        proj,
        "--data",
        data,
        "--set",
        "strategy=margin",
        "--set",
        "show_guess=never",
        "--set",
        "retrain_every=5",
        "--set",
        f"guidelines=@{tmp_path / 'guide.md'}",
        "--set",
        "label_help.spam=Ads, scams",
    )
    assert made.exit_code == 0, made.output
    opened = open_project(proj)
    settings = opened.project().settings
    opened.db.dispose()
    assert settings["strategy"] == "margin" and settings["show_guess"] == "never"
    assert settings["retrain_every"] == 5
    assert settings["guidelines"] == "Label **spam** when unsolicited.\n"
    assert settings["label_help"] == {"spam": "Ads, scams"}
    for args, message in [
        (("--set", "strategy"), "--set takes KEY=VALUE"),
        (("--set", "retrain_every=0"), "from 1 to 1,000,000"),
        (("--set", "label_help.eggs=x"), "not labels of this project"),
    ]:
        other = tmp_path / f"q{len(message)}"
        refused = _run("init", other, "--data", data, *args)
        assert refused.exit_code == 2 and message in refused.stderr, (args, refused.output)
        assert not (other / "labelwise.db").exists()  # nothing made
