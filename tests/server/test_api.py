"""The labeling API end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from labelwise.services.worker import train_once
from labelwise.store.models import Lease


def truth(text):
    return (
        "spam"
        if any(
            w in text
            for w in ("win", "prize", "cash", "free", "claim", "urgent", "offer", "call now")
        )
        else "ham"
    )


def _next(s, token, exclude=()):
    r = s.client.post(s.api("/next"), json={"exclude": list(exclude)}, headers=s.h(token))
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def _label(s, token, item, value=None, request_id=None, duration_ms=1500):
    body = {
        "value": value or truth(item["item"]["text"]),
        "duration_ms": duration_ms,
        "request_id": request_id or uuid.uuid4().hex,
    }
    return s.client.post(s.api(f"/items/{item['item']['id']}/label"), json=body, headers=s.h(token))


def test_label_loop_then_retrain_serves_the_queue(served):
    s = served
    for _ in range(22):
        a = _next(s, s.alice)
        assert a["why"]["kind"] == "cold-start"
        assert _label(s, s.alice, a).status_code == 200
    outcome = train_once(s.project.folder, s.project.db)
    assert outcome.status == "trained"
    a = _next(s, s.alice)
    assert a["why"]["kind"] in {"strategy", "exploration", "routine"}
    assert a["model_version_id"] is not None
    assert a["guess"] is None  # show_guess="after": withheld until answered
    r = _label(s, s.alice, a)
    assert r.status_code == 200
    reveal = r.json()["reveal"]
    assert reveal["guess"]["label"] in {"spam", "ham"}
    stats = s.client.get(s.api("/stats"), headers=s.h(s.admin)).json()
    assert stats["progress"]["labels"] == 23
    assert stats["versions"][0]["status"] == "ready"


def test_reload_gets_the_same_item_and_prefetch_excludes(served):
    s = served
    first = _next(s, s.alice)
    again = _next(s, s.alice)
    assert again["item"]["id"] == first["item"]["id"]
    second = _next(s, s.alice, exclude=[first["item"]["id"]])
    assert second["item"]["id"] != first["item"]["id"]


def test_a_late_release_leaves_the_item_leased_again_since(served):
    """A release names the lease's token: arriving after the same item was handed to the
    annotator again (a retry, or a page closing as it reloads), it ends nothing."""
    s = served
    first = _next(s, s.alice)
    assert _label(s, s.alice, first).status_code == 200
    again = s.client.post(s.api("/undo"), headers=s.h(s.alice)).json()  # leased again
    assert again["item"]["id"] == first["item"]["id"]
    assert again["lease"] != first["lease"]
    late = {"leases": [first["lease"]]}
    r = s.client.post(s.api("/release"), json=late, headers=s.h(s.alice))
    assert r.json() == {"released": 0}
    assert _next(s, s.bob)["item"]["id"] != first["item"]["id"]
    r = s.client.post(s.api("/release"), json={"leases": [again["lease"]]}, headers=s.h(s.bob))
    assert r.json() == {"released": 0}  # not bob's
    r = s.client.post(s.api("/release"), json={"leases": [again["lease"]]}, headers=s.h(s.alice))
    assert r.json() == {"released": 1}
    bad = s.client.post(s.api("/release"), json={"leases": ["<x>"]}, headers=s.h(s.alice))
    assert bad.status_code == 422 and "leases" in bad.text


def test_a_reloaded_page_keeps_its_item_when_the_unloaded_page_releases_it_late(served):
    """A reload: the new page asks for its item before the old page's release (sent as it
    unloads) arrives. The item stays the annotator's and its content is still served."""
    s = served
    old = _next(s, s.alice)
    new = _next(s, s.alice)
    assert new["item"]["id"] == old["item"]["id"] and new["lease"] != old["lease"]
    late = s.client.post(s.api("/release"), json={"leases": [old["lease"]]}, headers=s.h(s.alice))
    assert late.json() == {"released": 0}
    shown = s.client.get(s.api(f"/items/{new['item']['id']}"), headers=s.h(s.alice))
    assert shown.status_code == 200, shown.text
    assert _next(s, s.bob)["item"]["id"] != new["item"]["id"]


def test_items_being_answered_stay_leased_while_the_page_asks_for_more(served):
    s = served
    sending: list[int] = []
    for _ in range(4):  # more than one annotator may hold, all with answers on their way
        body = {"exclude": [], "answering": sending}
        r = s.client.post(s.api("/next"), json=body, headers=s.h(s.alice))
        assert r.status_code == 200, r.text
        assert r.json()["item"]["id"] not in sending
        sending.append(r.json()["item"]["id"])
    with s.project.db.read() as session:
        held = session.scalars(select(Lease.item_id).where(Lease.item_id.in_(sending))).all()
    assert sorted(held) == sorted(sending)  # none given back to make room
    for item_id in sending:
        answered = _label(s, s.alice, {"item": {"id": item_id, "text": ""}}, value="ham")
        assert answered.status_code == 200, answered.text
    assert not answered.json()["replayed"]


def test_two_annotators_never_get_the_same_item(served):
    s = served
    seen_a = {_next(s, s.alice, exclude=[])["item"]["id"]}
    b = _next(s, s.bob)
    assert b["item"]["id"] not in seen_a


def test_submit_twice_is_idempotent(served):
    s = served
    a = _next(s, s.alice)
    r1 = _label(s, s.alice, a, request_id="same-request")
    r2 = _label(s, s.alice, a, request_id="same-request")
    assert r1.json()["label_id"] == r2.json()["label_id"]
    assert r2.json()["replayed"] is True
    stats = s.client.get(s.api("/stats"), headers=s.h(s.admin)).json()
    assert stats["progress"]["labels"] == 1


def test_undo_and_skip(served):
    s = served
    a = _next(s, s.alice)
    _label(s, s.alice, a, value="spam")
    back = s.client.post(s.api("/undo"), headers=s.h(s.alice)).json()
    assert back["item"]["id"] == a["item"]["id"]
    assert _next(s, s.alice)["item"]["id"] == a["item"]["id"]  # it is mine again
    skipped = s.client.post(
        s.api(f"/items/{a['item']['id']}/skip"), json={"request_id": "k1"}, headers=s.h(s.alice)
    )
    assert skipped.json()["action"] == "skip"
    assert _next(s, s.alice)["item"]["id"] != a["item"]["id"]
    assert s.client.post(s.api("/undo"), headers=s.h(s.bob)).status_code == 409


def test_bad_input_gets_a_clear_4xx(served):
    s = served
    a = _next(s, s.alice)
    r = s.client.post(
        s.api(f"/items/{a['item']['id']}/label"), json={"value": "maybe"}, headers=s.h(s.alice)
    )
    assert r.status_code == 422
    assert "not a label of this project" in r.json()["error"]
    r = s.client.post(
        s.api(f"/items/{a['item']['id']}/label"), json={"value": ""}, headers=s.h(s.alice)
    )
    assert r.status_code == 422
    assert r.json()["error"].startswith("invalid request: value")
    r = s.client.post(s.api("/items/999999/label"), json={"value": "ham"}, headers=s.h(s.alice))
    assert r.status_code == 404


def test_admin_routes_need_an_admin(served):
    s = served
    for method, path, body in [
        ("get", "/annotators", None),
        ("post", "/annotators", {"name": "eve"}),
        ("get", "/review", None),
        ("patch", "/settings", {"changes": {"retrain_every": 5}}),
        ("get", "/export", None),
    ]:
        r = getattr(s.client, method)(
            s.api(path), headers=s.h(s.alice), **({"json": body} if body else {})
        )
        assert r.status_code == 403, (path, r.text)
        r = getattr(s.client, method)(s.api(path), **({"json": body} if body else {}))
        assert r.status_code == 401, path


def test_every_api_route_needs_a_token(served):
    s = served
    for route in s.client.app.routes:
        path = getattr(route, "path", "")
        if not path.startswith("/api/projects"):
            continue
        url = path.replace("{project_id}", str(s.pid)).replace("{item_id}", "1")
        for method in route.methods - {"HEAD"}:
            r = s.client.request(method, url, json={})
            assert r.status_code == 401, (method, url, r.status_code)


def test_admin_makes_tokens_and_settings(served):
    s = served
    r = s.client.post(s.api("/annotators"), json={"name": "carol"}, headers=s.h(s.admin))
    assert r.status_code == 201
    carol = r.json()["token"]
    assert _next(s, carol) is not None
    r = s.client.patch(
        s.api("/settings"), json={"changes": {"retrain_every": 0}}, headers=s.h(s.admin)
    )
    assert r.status_code == 422
    assert "retrain_every" in r.json()["error"]
    r = s.client.patch(
        s.api("/settings"), json={"changes": {"show_guess": "before"}}, headers=s.h(s.admin)
    )
    assert r.json()["show_guess"] == "before"


def test_security_headers(served):
    r = served.client.get("/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in r.headers  # plain HTTP: it would be ignored
    # Behind a TLS proxy that says so (uvicorn trusts X-Forwarded-Proto from 127.0.0.1), or
    # with TLS of its own, the browser is told to keep to HTTPS and the cookie is Secure.
    tls = TestClient(served.client.app, base_url="https://testserver")
    r = tls.post("/login", data={"token": served.alice}, follow_redirects=False)
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert "secure" in r.headers["set-cookie"].lower()


def test_label_keys_are_one_to_n_unless_the_project_chooses():
    from labelwise.store.projects import RESERVED_KEYS, label_keys

    assert label_keys(["ham", "spam"]) == [("1", "ham"), ("2", "spam")]
    # One-character labels get 1..N too ("0" is not key 0 unless asked): the same everywhere.
    assert label_keys(["0", "1", "2"]) == [("1", "0"), ("2", "1"), ("3", "2")]
    assert label_keys(["0", "1", "2"], {"0": "0", "1": "1", "2": "2"}) == [
        ("0", "0"),
        ("1", "1"),
        ("2", "2"),
    ]
    # a chosen key is taken out of the defaults
    assert label_keys(["pos", "neg", "neu"], {"neu": "1"}) == [
        ("2", "pos"),
        ("3", "neg"),
        ("1", "neu"),
    ]
    many = [f"class {i}" for i in range(40)]
    keys = [k for k, _ in label_keys(many)]
    assert len(keys) == len(set(keys))
    assert not set(keys) & RESERVED_KEYS
    assert len(keys) < 40  # the rest are reached with the buttons


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"label_keys": {"ham": "s"}}, "command key"),
        ({"label_keys": {"ham": "x", "spam": "X"}}, "more than one label"),
        ({"label_keys": {"ham": "10"}}, "one letter or digit"),
        ({"label_keys": {"eggs": "e"}}, "not labels of this project"),
        ({"label_help": {"ham": "two\nlines"}}, "one line"),
        ({"label_help": {"bacon": "a meat"}}, "not labels of this project"),
        ({"guidelines": "x" * 100_001}, "at most 100,000"),
    ],
)
def test_label_settings_are_checked(served, changes, message):
    r = served.client.patch(
        served.api("/settings"), json={"changes": changes}, headers=served.h(served.admin)
    )
    assert r.status_code == 422 and message in r.json()["error"], r.text


def test_summary_tells_the_model_and_when_it_retrains(served):
    s = served
    summary = s.client.get(s.api(""), headers=s.h(s.alice)).json()
    assert summary["model"] is None
    assert summary["retrain_in"] == 20
    a = _next(s, s.alice)
    _label(s, s.alice, a)
    summary = s.client.get(s.api(""), headers=s.h(s.alice)).json()
    assert summary["retrain_in"] == 19
    assert summary["me"]["can_undo"] is True
    assert summary["me"]["fatigue"]["tired"] is False


def test_the_words_behind_the_model_follow_the_guess_setting(served):
    """Drivers reveal the model's leaning, so they are withheld exactly as the guess is."""
    s = served
    for _ in range(22):
        _label(s, s.alice, _next(s, s.alice))
    assert train_once(s.project.folder, s.project.db).status == "trained"

    a = _next(s, s.alice)
    assert "drivers" not in a["why"]  # show_guess="after"
    reveal = _label(s, s.alice, a).json()["reveal"]
    drivers = reveal["why"]["drivers"]
    assert {drivers["toward"], drivers["against"]} == {"spam", "ham"}
    assert drivers["terms"] and all(isinstance(w, float) for _, w in drivers["terms"])

    s.client.patch(
        s.api("/settings"), json={"changes": {"show_guess": "before"}}, headers=s.h(s.admin)
    )
    a = _next(s, s.alice)
    text = a["item"]["text"]
    spans = a["why"]["drivers"]["spans"]
    words = {w for term, _ in a["why"]["drivers"]["terms"] for w in term.split(" ")}
    assert spans and all(text[b:e].lower() in words for b, e, _ in spans)


def test_one_answer_for_a_confirmed_group_of_near_duplicates(served_with, tmp_path):
    from labelwise.services.transfer import import_file
    from labelwise.store.projects import ProjectSettings, get_project

    s = served_with(ProjectSettings(overlap=0.0, routine=0.0))
    # every message twice more, under new ids: copies that one answer may cover
    lines = (tmp_path / "messages.csv").read_text().splitlines()
    copies = [lines[0]] + [
        f"{line.split(',', 1)[0]}-copy{k},{line.split(',', 1)[1]}"
        for k in range(2)
        for line in lines[1:]
    ]
    (tmp_path / "copies.csv").write_text("\n".join(copies) + "\n")
    with s.project.db.write() as session:
        project = get_project(session, project_id=s.pid)
        import_file(session, project, s.project.folder, tmp_path / "copies.csv")
    for _ in range(22):
        _label(s, s.alice, _next(s, s.alice))
    assert train_once(s.project.folder, s.project.db).status == "trained"
    # The item handed out may be one whose copies were labeled already (the queue holds random
    # exploration items too): skipped until one comes with copies still open.
    for _ in range(10):
        a = _next(s, s.alice)
        group = [d["item_id"] for d in a["why"]["duplicates"]]
        if group:
            break
        skipped = s.client.post(
            s.api(f"/items/{a['item']['id']}/skip"), json={}, headers=s.h(s.alice)
        )
        assert skipped.status_code == 200, skipped.text
    assert group and a["item"]["id"] not in group
    assert all(d["similarity"] >= 0.9 and d["preview"] for d in a["why"]["duplicates"])
    body = {"value": "spam", "request_id": uuid.uuid4().hex, "group": group}
    r = s.client.post(s.api(f"/items/{a['item']['id']}/label"), json=body, headers=s.h(s.alice))
    assert r.status_code == 200, r.text
    assert sorted(r.json()["grouped"] + r.json()["group_skipped"]) == sorted(group)
    stats = s.client.get(s.api("/stats"), headers=s.h(s.admin)).json()
    assert stats["progress"]["labels"] == 23 + len(r.json()["grouped"])

    # an item that was not offered is refused, and the answer is not stored either
    b = _next(s, s.alice)
    stray = next(
        i
        for i in range(1, 10_000)
        if i not in {d["item_id"] for d in b["why"]["duplicates"]} and i != b["item"]["id"]
    )
    body = {"value": "ham", "request_id": uuid.uuid4().hex, "group": [stray]}
    r = s.client.post(s.api(f"/items/{b['item']['id']}/label"), json=body, headers=s.h(s.alice))
    assert r.status_code == 422 and str(stray) in r.json()["error"]
    again = s.client.get(s.api("/stats"), headers=s.h(s.admin)).json()
    assert again["progress"]["labels"] == stats["progress"]["labels"]


def test_triage_takes_a_batch_of_new_items_and_answers_what_it_decided(served, tmp_path):
    from sqlalchemy import select

    from labelwise.store.answers import submit_label
    from labelwise.store.models import Annotator, Item
    from labelwise.store.projects import get_project

    s = served
    with s.project.db.write() as session:
        project = get_project(session, project_id=s.pid)
        admin = session.scalars(select(Annotator).where(Annotator.role == "admin")).first()
        for item in session.scalars(select(Item).where(Item.project_id == s.pid)):
            n = int(item.external_id[1:])
            value = "spam" if n % 3 == 0 else "ham"
            submit_label(session, project, admin, item_id=item.id, value=value)
    lines = ["id,text"] + [
        f"new{i},{'win cash prize now' if i % 3 == 0 else 'see you at lunch tomorrow'} {i}"
        for i in range(30)
    ]
    body = "\n".join(lines).encode()

    def post(token, **params):
        return s.client.post(
            s.api("/triage"),
            params=params,
            files={"file": ("new.csv", body, "text/csv")},
            headers=s.h(token),
        )

    assert post(s.alice, precision=0.9).status_code == 403  # admins only
    r = post(s.admin, sensitivity=0.9, positive="spam", point_estimate=True, audit=0.2)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["items"] == 30 and out["accepted"] + out["routed_to_experts"] == 30
    assert set(out["accepted_by_label"]) <= {"ham"}
    assert out["policy"]["target"]["kind"] == "sensitivity"
    stats = s.client.get(s.api("/stats"), headers=s.h(s.admin)).json()
    assert stats["triage"]["items"] == 30
    s.client.post("/login", data={"token": s.admin}, follow_redirects=False)
    page = s.client.get(f"/p/{s.pid}/dashboard").text
    assert f"Triage decided {out['accepted']} of 30 new items automatically" in page
    both = post(s.admin, precision=0.9, sensitivity=0.9)
    assert both.status_code == 422 and "exactly one target" in both.text


def test_a_skip_reveals_nothing_an_annotator_was_not_handed(served):
    # Skipping any item by id, then reading it as "answered", copied the pool two requests an
    # item. A skip now needs the caller's lease; what they were not handed stays unreadable.
    s = served
    held_by_alice = _next(s, s.alice)["item"]["id"]
    never_handed = next(i for i in range(1, 60) if i != held_by_alice)
    for item_id in (held_by_alice, never_handed):
        r = s.client.post(s.api(f"/items/{item_id}/skip"), json={}, headers=s.h(s.bob))
        assert r.status_code == 409 and f"do not hold item {item_id}" in r.json()["error"]
        for path in (f"/items/{item_id}", f"/items/{item_id}/image"):
            r = s.client.get(s.api(path), headers=s.h(s.bob))
            assert r.status_code == 404 and "message" not in r.text
    r = s.client.post(s.api(f"/items/{held_by_alice}/skip"), json={}, headers=s.h(s.alice))
    assert r.status_code == 200


def test_the_openapi_document_shows_the_answers_shapes(served):
    s = served
    doc = s.client.get("/api/openapi.json", headers=s.h(s.alice)).json()
    schemas = doc["components"]["schemas"]
    paths = doc["paths"]

    def answer(path, method="get", status="200"):
        content = paths[path][method]["responses"][status]["content"]["application/json"]
        return content["schema"]

    base = "/api/projects/{project_id}"
    assert answer(base + "/stats") == {"$ref": "#/components/schemas/Dashboard"}
    assert answer(base)["$ref"].endswith("/Summary")
    assert answer(base + "/settings", "patch")["$ref"].endswith("/Settings")
    assert answer(base + "/items")["$ref"].endswith("/ItemPage")
    assert answer(base + "/items/{item_id}/history")["$ref"].endswith("/ItemHistory")
    assert answer(base + "/annotators", "post", "201")["$ref"].endswith("/AddedAnnotator")
    stopping = schemas["Stopping"]["properties"]
    assert {"verdict", "reasons", "expected_gain", "estimate"} <= set(stopping)
    assert {"stopping", "progress", "curve", "versions"} <= set(schemas["Dashboard"]["properties"])
    assert {"retrain_every", "show_guess", "label_keys"} <= set(schemas["Settings"]["properties"])
    assert {"items", "next_after", "predictions"} <= set(schemas["ItemPage"]["properties"])
    # the answers themselves still carry every figure
    figures = s.client.get(s.api("/stats"), headers=s.h(s.admin)).json()
    assert figures["stopping"]["verdict"] == "no model yet"
    assert figures["progress"]["labels"] == 0
