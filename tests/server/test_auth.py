"""Cookies, CSRF, and project scoping: an id from another project is simply not found."""

from __future__ import annotations

from labelwise.server.security import csrf_token
from labelwise.store.annotators import create_annotator
from labelwise.store.items import ItemRecord, add_items
from labelwise.store.projects import create_project


def test_login_sets_an_httponly_strict_cookie_and_drops_the_token_from_the_url(served):
    s = served
    r = s.client.get(f"/login?token={s.alice}", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/p/{s.pid}/annotate"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    bad = s.client.get("/login?token=nope", follow_redirects=False)
    assert bad.status_code == 401


def test_cookie_requests_need_the_csrf_header(served):
    s = served
    s.client.cookies.set(s.cookie, s.alice)
    assert s.client.get(s.api("")).status_code == 200  # reading is fine
    r = s.client.post(s.api("/next"), json={})
    assert r.status_code == 403
    assert "X-CSRF-Token" in r.json()["error"]
    r = s.client.post(s.api("/next"), json={}, headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403
    r = s.client.post(s.api("/next"), json={}, headers={"X-CSRF-Token": csrf_token(s.alice)})
    assert r.status_code == 200


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
        # the other server neither reads that cookie nor takes the token under its own name
        second.client.cookies.set(first.cookie, first.alice)
        page = second.client.get(f"/p/{second.pid}/annotate", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        second.client.cookies.set(second.cookie, first.alice)
        api = second.client.get(second.api("/stats"))
        assert api.status_code == 401
    finally:
        for s in (first, second):
            s.client.close()
            s.project.db.dispose()
