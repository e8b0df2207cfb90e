"""Cookies, CSRF, and project scoping: an id from another project is simply not found."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select, update

from labelwise.server.security import csrf_token
from labelwise.store.annotators import (
    authenticate,
    create_annotator,
    hash_token,
    reissue_token,
)
from labelwise.store.items import ItemRecord, add_items
from labelwise.store.models import SignIn
from labelwise.store.projects import create_project, get_project
from labelwise.store.sign_ins import new_link
from sessions import link_for, session_secret


def _cookie_value(response) -> str:
    return response.headers["set-cookie"].split(";")[0].partition("=")[2]


def test_signing_in_starts_a_session_whose_cookie_never_holds_the_token(served):
    s = served
    r = s.client.post("/login", data={"token": s.alice}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/p/{s.pid}/annotate"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    secret = _cookie_value(r)
    assert secret and secret != s.alice
    with s.project.db.read() as session:  # only the session's hash is stored
        stored = session.scalars(select(SignIn.secret_hash)).all()
    assert stored == [hash_token(secret)]
    bad = s.client.post("/login", data={"token": "nope"}, follow_redirects=False)
    assert bad.status_code == 401


def test_a_token_in_the_address_signs_nobody_in(served):
    s = served
    r = s.client.get(f"/login?token={s.alice}", follow_redirects=False)
    assert r.status_code == 400 and "set-cookie" not in r.headers
    assert "not accepted" in r.text and s.alice not in r.text


def test_a_cookie_holding_a_token_is_no_session(served):
    s = served
    s.client.cookies.set(s.cookie, s.alice)
    assert s.client.get(s.api("")).status_code == 401
    page = s.client.get(f"/p/{s.pid}/annotate", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"


def test_cookie_requests_need_the_csrf_header(served):
    s = served
    secret = session_secret(s.project.db, s.pid, s.alice)
    s.client.cookies.set(s.cookie, secret)
    assert s.client.get(s.api("")).status_code == 200  # reading is fine
    r = s.client.post(s.api("/next"), json={})
    assert r.status_code == 403
    assert "X-CSRF-Token" in r.json()["error"]
    r = s.client.post(s.api("/next"), json={}, headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403
    r = s.client.post(s.api("/next"), json={}, headers={"X-CSRF-Token": csrf_token(s.alice)})
    assert r.status_code == 403  # the token's value is not the session's
    r = s.client.post(s.api("/next"), json={}, headers={"X-CSRF-Token": csrf_token(secret)})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another site's page too
    ],
)
def test_a_sign_in_posted_from_another_site_is_refused(served, headers):
    # Another site's form would sign the browser in as someone else (login CSRF).
    s = served
    r = s.client.post("/login", data={"token": s.alice}, headers=headers, follow_redirects=False)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    assert "another site" in r.text
    code = link_for(s.project.db, s.pid, s.alice, "http://testserver").rpartition("/")[2]
    r = s.client.post("/login/link", data={"code": code}, headers=headers, follow_redirects=False)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    with s.project.db.read() as session:
        assert session.scalars(select(SignIn.kind)).all() == ["link"]  # unspent, no session


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
        {"Origin": "http://testserver"},  # a browser without Sec-Fetch-Site
        {},  # a script
    ],
)
def test_a_sign_in_from_the_servers_own_page_is_taken(served, headers):
    r = served.client.post(
        "/login", data={"token": served.alice}, headers=headers, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["set-cookie"].startswith(served.cookie)


def test_a_sign_in_link_is_shown_then_spent_once(served):
    s = served
    link = link_for(s.project.db, s.pid, s.bob, "http://testserver")
    assert link.startswith("http://testserver/login/link/") and s.bob not in link
    path = link.removeprefix("http://testserver")
    code = path.rpartition("/")[2]
    for _ in range(2):  # looking (a link scanner, a preview) spends nothing
        page = s.client.get(path)
        assert page.status_code == 200 and "bob" in page.text and "set-cookie" not in page.headers
    r = s.client.post("/login/link", data={"code": code}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/p/{s.pid}/annotate"
    s.client.cookies.set(s.cookie, _cookie_value(r))
    me = s.client.get(s.api("/stats"))
    assert me.status_code == 200
    s.client.cookies.clear()
    again = s.client.post("/login/link", data={"code": code}, follow_redirects=False)
    assert again.status_code == 401 and "set-cookie" not in again.headers
    assert s.client.get(path).status_code == 401


def test_an_expired_or_foreign_link_signs_nobody_in(served, tmp_path, db_url):
    s = served
    with s.project.db.write() as session:
        bob = authenticate(session, s.bob, project_id=s.pid)
        code = new_link(session, bob, minutes=1)
        session.execute(update(SignIn).values(expires_at=datetime(2000, 1, 1)))
    r = s.client.post("/login/link", data={"code": code}, follow_redirects=False)
    assert r.status_code == 401 and "expired" in r.text
    with s.project.db.write() as session:
        other = create_project(session, name="other", kind="text", labels=["a", "b"])
        _, theirs = create_annotator(session, other, name="mallory", role="admin")
        their_code = new_link(session, authenticate(session, theirs), minutes=5)
    r = s.client.post("/login/link", data={"code": their_code}, follow_redirects=False)
    assert r.status_code == 401 and "set-cookie" not in r.headers


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(served):
    s = served
    secret = session_secret(s.project.db, s.pid, s.alice)
    s.client.cookies.set(s.cookie, secret)
    assert s.client.get(s.api("/stats")).status_code == 200
    r = s.client.post(
        "/logout", headers={"X-CSRF-Token": csrf_token(secret)}, follow_redirects=False
    )
    assert r.status_code == 303
    s.client.cookies.clear()
    s.client.cookies.set(s.cookie, secret)  # a copy kept elsewhere
    assert s.client.get(s.api("/stats")).status_code == 401


def test_a_reissued_token_ends_the_annotators_sessions(served):
    s = served
    secret = session_secret(s.project.db, s.pid, s.alice)
    with s.project.db.write() as session:
        reissue_token(session, get_project(session, project_id=s.pid), name="alice")
    s.client.cookies.set(s.cookie, secret)
    assert s.client.get(s.api("/stats")).status_code == 401


def test_pages_redirect_to_login_without_a_session(served):
    r = served.client.get(f"/p/{served.pid}/annotate", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"


def test_ids_of_another_project_are_not_found(served):
    s = served
    with s.project.db.write() as session:
        other = create_project(session, name="other", kind="text", labels=["a", "b"])
        add_items(session, other, [ItemRecord("x1", "secret text of the other project")])
        _, other_token = create_annotator(session, other, name="mallory", role="admin")
        other_id = other.id
    from sqlalchemy import select

    from labelwise.store.models import Item

    with s.project.db.read() as session:
        other_item = session.scalar(select(Item.id).where(Item.project_id == other_id))
    # Our admin asks for the other project's routes and item: 404, never the content.
    for path in ("", "/stats", "/review", "/annotators", "/export"):
        r = s.client.get(f"/api/projects/{other_id}{path}", headers=s.h(s.admin))
        assert r.status_code == 404, path
    r = s.client.get(s.api(f"/items/{other_item}"), headers=s.h(s.admin))
    assert r.status_code == 404
    assert "secret" not in r.text
    r = s.client.post(
        s.api(f"/items/{other_item}/label"), json={"value": "ham"}, headers=s.h(s.admin)
    )
    assert r.status_code == 404
    # And their admin's token is unknown to this server: not ours, nor even theirs, is served.
    for path in (s.api("/stats"), f"/api/projects/{other_id}/stats"):
        r = s.client.get(path, headers=s.h(other_token))
        assert r.status_code == 401 and "secret" not in r.text


def test_each_project_signs_in_with_a_cookie_of_its_own(tmp_path, db_url):
    # Cookies ignore ports: two servers on one host share the browser's cookies. Each
    # project's sign-in cookie has its own name, and a server takes only its own.
    from server.conftest import make_served

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = make_served(tmp_path / "a", db_url)
    second = make_served(tmp_path / "b", f"sqlite:///{tmp_path / 'b.sqlite3'}")
    try:
        assert first.cookie != second.cookie and first.cookie.startswith("labelwise_token_")
        r = first.client.post("/login", data={"token": first.alice}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["set-cookie"].startswith(first.cookie + "=")
        secret = _cookie_value(r)
        # the other server neither reads that cookie nor takes the session under its own name
        second.client.cookies.set(first.cookie, secret)
        page = second.client.get(f"/p/{second.pid}/annotate", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        second.client.cookies.set(second.cookie, secret)
        api = second.client.get(second.api("/stats"))
        assert api.status_code == 401
    finally:
        for s in (first, second):
            s.client.close()
            s.project.db.dispose()


def test_a_request_with_a_body_is_authenticated_once(served, monkeypatch):
    # The credentials checked before the body is read are the route's: not looked up twice.
    from labelwise.server import deps

    calls = []
    real = deps.authenticate

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(deps, "authenticate", counted)
    r = served.client.post(served.api("/next"), json={}, headers=served.h(served.alice))
    assert r.status_code == 200 and calls == [served.alice]
    calls.clear()
    assert served.client.get(served.api("/stats"), headers=served.h(served.alice)).is_success
    assert calls == [served.alice]
