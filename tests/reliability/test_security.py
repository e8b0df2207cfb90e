"""Security: what every route of the app must refuse, checked from the app's own route list.

The routes are read from the FastAPI app object, so a route added later is covered without
anyone remembering to add it here; where a check needs to know something about a route (a body
to send, an id of another project for a path parameter, whether annotators may use it), a table
below says it, and a route the table does not know fails the test with a message saying what to
add. The checks:

- every route needs a token (401 for the API, a redirect to the sign-in page for pages), except
  the short allow-list ``PUBLIC``, which is asserted to be exactly what answers without one;
- an annotator's token reaches no admin route (403);
- every id in a URL is scoped: an id of another project, with a token valid for this one, is
  "not found" (404), leaks nothing and changes nothing of the other project;
- security headers (CSP and the rest) on every response: pages, JSON, errors, redirects,
  static files, and a crash (500);
- tokens are stored hashed (nowhere in the database or the project folder in clear) and
  compared in constant time;
- nothing fetches a user-supplied URL (no network client in the package; URLs and paths out of
  the folder in an import are refused without a connection being made);
- model artefacts are unpickled only from the project's own folder;
- script payloads in every kind of user content render inert in a real browser (Chromium,
  as tests/browser/test_demo_flow.py drives it), with and without the CSP's help.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, func, select

import labelwise
from labelwise.exceptions import InvalidDataError
from labelwise.server import ServerConfig, create_app
from labelwise.server.deps import get_admin
from labelwise.server.security import CSP, csrf_token
from labelwise.services.setup import OpenProject
from labelwise.store import answers, leasing
from labelwise.store.annotators import create_annotator, hash_token
from labelwise.store.db import Database
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import ItemRecord, add_items
from labelwise.store.models import (
    Annotator,
    Item,
    Label,
    Lease,
    ModelVersion,
    SignIn,
)
from labelwise.store.projects import ProjectSettings, create_project, get_project
from labelwise.store.sign_ins import new_link
from sessions import link_for, session_secret, sign_in_page
from threaded_server import ThreadedServer

# ------------------------------------------------------------------------------------ tables

#: The routes that answer without a token: what they answer a stranger, and why they may.
PUBLIC: dict[tuple[str, str], tuple[int, str]] = {
    ("GET", "/login"): (200, "the sign-in form"),
    ("POST", "/login"): (401, "signing in (a wrong token gets the form again, with the error)"),
    ("GET", "/login/link/{code}"): (401, "a sign-in link's page (an unknown code: the form)"),
    ("POST", "/login/link"): (401, "confirming a sign-in link (an unknown code: the form)"),
    ("GET", "/api/health"): (200, "load balancers probe it; it says only 'ok' and the version"),
    ("GET", "/static/{path}"): (200, "stylesheets, scripts and icons: no project data"),
}

#: The routes an annotator may use. Every other route that needs a token is for admins, and
#: must answer an annotator's token with 403: a new route is presumed to be for admins until
#: it is listed here.
ANNOTATOR_ROUTES: set[tuple[str, str]] = {
    ("GET", "/"),
    ("POST", "/logout"),
    ("GET", "/api/openapi.json"),
    ("GET", "/p/{project_id}/annotate"),
    ("GET", "/p/{project_id}/dashboard"),
    ("GET", "/api/projects/{project_id}"),
    ("GET", "/api/projects/{project_id}/stats"),
    ("GET", "/api/projects/{project_id}/items/{item_id}"),
    ("GET", "/api/projects/{project_id}/items/{item_id}/image"),
    ("POST", "/api/projects/{project_id}/next"),
    ("POST", "/api/projects/{project_id}/items/{item_id}/label"),
    ("POST", "/api/projects/{project_id}/items/{item_id}/skip"),
    ("POST", "/api/projects/{project_id}/undo"),
    ("POST", "/api/projects/{project_id}/release"),
}

_UPLOAD = {"file": ("more.csv", b"id,text\nnew-1,one more message to label\n", "text/csv")}

#: A valid request body (or form, or upload) for every route that reads one, so that what the
#: test sees is the answer to the token or the id, never to a malformed request.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/login"): {"data": {"token": "not-a-token"}},
    ("POST", "/login/link"): {"data": {"code": "not-a-code"}},
    ("POST", "/api/projects/{project_id}/next"): {"json": {}},
    ("POST", "/api/projects/{project_id}/items/{item_id}/label"): {"json": {"value": "ham"}},
    ("POST", "/api/projects/{project_id}/items/{item_id}/skip"): {"json": {}},
    ("POST", "/api/projects/{project_id}/undo"): {"json": {}},
    ("POST", "/api/projects/{project_id}/release"): {"json": {"items": []}},
    ("PATCH", "/api/projects/{project_id}/settings"): {
        "json": {"changes": {"show_guess": "after"}}
    },
    ("POST", "/api/projects/{project_id}/annotators"): {"json": {"name": "newcomer"}},
    ("POST", "/api/projects/{project_id}/review/{item_id}"): {"json": {"value": "ham"}},
    ("POST", "/api/projects/{project_id}/import"): {"files": _UPLOAD},
    ("POST", "/api/projects/{project_id}/triage"): {
        "files": _UPLOAD,
        "params": {"precision": 0.9},
    },
}

#: Security headers every response carries (the values the app promises).
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


# ---------------------------------------------------------------------------- the route list


@dataclass(frozen=True)
class Endpoint:
    """One method of one route, as the app declares it."""

    method: str
    path: str
    admin_only: bool = False
    has_body: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)

    @property
    def is_api(self) -> bool:
        return self.path.startswith("/api/")

    def url(self, ids: dict[str, Any]) -> str:
        return re.sub(r"{(\w+)(?::\w+)?}", lambda m: str(ids[m.group(1)]), self.path)


def _calls(dependant: Any) -> Iterator[Any]:
    yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def app_endpoints(app: Any) -> list[Endpoint]:
    """Every method of every route of ``app`` (HEAD left out: it mirrors GET)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy inclusion: included routes sit in app.routes
        entries = [(route, route) for route in app.routes]
    else:
        entries = [(ctx, ctx.original_route) for ctx in iter_route_contexts(app.routes)]
    found = []
    for ctx, route in entries:
        path = ctx.path
        if getattr(route, "app", None) is not None and not getattr(route, "methods", None):
            found.append(Endpoint("GET", path.rstrip("/") + "/{path}"))  # a mount: static
            continue
        dependant = getattr(route, "dependant", None)
        calls = set(_calls(dependant)) if dependant is not None else set()
        for method in sorted(set(ctx.methods or ()) - {"HEAD"}):
            found.append(
                Endpoint(
                    method,
                    path,
                    admin_only=get_admin in calls,
                    has_body=bool(dependant is not None and dependant.body_params),
                )
            )
    return found


# ------------------------------------------------------------------------------- the world


@dataclass
class World:
    """Our project (served) and another project in the same database."""

    client: TestClient
    app: Any
    opened: OpenProject
    admin: str
    alice: str
    disabled: str
    own: dict[str, int]
    other: dict[str, int]
    other_admin: str
    other_secret: str = "THEIRS-SECRET"
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.opened.db

    @property
    def pid(self) -> int:
        return self.opened.project_id

    @property
    def cookie(self) -> str:
        """The name of our project's sign-in cookie."""
        return str(self.app.state.labelwise.cookie)


def _messages(n: int, prefix: str = "") -> list[ItemRecord]:
    words = ["win", "prize", "cash", "lunch", "meeting", "thanks", "call", "dinner"]
    return [
        ItemRecord(f"{prefix}m{i}", f"{prefix}{words[i % 8]} {words[(3 * i + 1) % 8]} message {i}")
        for i in range(n)
    ]


def make_world(root: Path, db_url: str) -> World:
    folder = ProjectFolder.create(root / "ours", "ours", db_url)
    db = folder.connect(db_url)
    with db.write() as session:
        ours = create_project(
            session,
            name="ours",
            kind="text",
            labels=["ham", "spam"],
            settings=ProjectSettings(overlap=0.0, routine=0.0),
        )
        add_items(session, ours, _messages(30))
        _, admin = create_annotator(session, ours, name="admin", role="admin")
        alice_row, alice = create_annotator(session, ours, name="alice", role="annotator")
        off, disabled = create_annotator(session, ours, name="gone", role="annotator")
        off.disabled = True

        theirs = create_project(
            session,
            name="theirs",
            kind="text",
            labels=["x", "y"],
            settings=ProjectSettings(overlap=0.0, routine=0.0),
        )
        add_items(session, theirs, _messages(6, prefix="THEIRS-SECRET "))
        mallory, other_admin = create_annotator(session, theirs, name="mallory", role="admin")
        eve_row, _ = create_annotator(session, theirs, name="eve", role="annotator")
        # Their project has history: an answer, a lease, a model version.
        first = leasing.next_item(session, theirs, eve_row)
        assert first is not None
        answers.submit_label(session, theirs, eve_row, item_id=first.item.id, value="x")
        held = leasing.next_item(session, theirs, eve_row)
        assert held is not None
        session.add(
            ModelVersion(
                project_id=theirs.id,
                version=1,
                status="ready",
                n_labels=1,
                strategy="margin",
                model_name="logreg",
                artefact="models/v00001.joblib",
            )
        )
        # Alice holds one of ours and has answered another.
        mine = leasing.next_item(session, ours, alice_row)
        assert mine is not None
        answers.submit_label(session, ours, alice_row, item_id=mine.item.id, value="ham")
        held_by_alice = leasing.next_item(session, ours, alice_row)
        assert held_by_alice is not None
        own = {
            "project_id": ours.id,
            "item_id": held_by_alice.item.id,
            "path": "style.css",
            "code": "not-a-code",
        }
        # Their admin's unspent sign-in link.
        their_link = new_link(session, session.get(Annotator, mallory.id))
        other = {"project_id": theirs.id, "item_id": held.item.id, "code": their_link}
    opened = OpenProject(folder, db, own["project_id"])
    app = create_app(ServerConfig(opened))
    client = TestClient(app, raise_server_exceptions=False)
    return World(
        client,
        app,
        opened,
        admin,
        alice,
        disabled,
        own,
        other,
        other_admin,
        endpoints=app_endpoints(app),
    )


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[World]:
    """On SQLite and PostgreSQL: for the checks whose outcome depends on the queries."""
    w = make_world(tmp_path, db_url)
    yield w
    w.client.close()
    w.db.dispose()


@pytest.fixture
def lite_world(tmp_path: Path) -> Iterator[World]:
    """On SQLite only: for the checks that do not depend on the database."""
    w = make_world(tmp_path, f"sqlite:///{tmp_path / 'world.sqlite3'}")
    yield w
    w.client.close()
    w.db.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def check_headers(response: Any, where: str) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (
            f"{where}: {name} is {response.headers.get(name)!r}"
        )
    if not response.request.url.path.startswith("/static/"):
        assert response.headers.get("cache-control") == "no-store", where


def call(
    w: World,
    endpoint: Endpoint,
    ids: dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    html: bool = False,
) -> Any:
    """One request to ``endpoint`` with its table body; its security headers are checked."""
    if endpoint.has_body and endpoint.key not in BODIES:
        pytest.fail(
            f"{endpoint.method} {endpoint.path} reads a request body but BODIES has no valid "
            "one for it: add one, so that the security checks reach the route"
        )
    missing = [p for p in endpoint.params if p not in ids]
    assert not missing, f"no id for {missing} of {endpoint.path}"
    extra = dict(headers or {})
    if html:
        extra["Accept"] = "text/html"
    response = w.client.request(
        endpoint.method,
        endpoint.url(ids),
        headers=extra,
        follow_redirects=False,
        **BODIES.get(endpoint.key, {}),
    )
    check_headers(response, f"{endpoint.method} {endpoint.path}")
    return response


def refused_unauthenticated(response: Any, endpoint: Endpoint, html: bool) -> bool:
    if endpoint.is_api or not html:
        if response.status_code == 401:
            return "error" in response.json()
        return response.status_code == 303 and response.headers["location"] == "/login"
    return response.status_code == 303 and response.headers["location"] == "/login"


# ------------------------------------------------------------------------------ token checks


def test_the_route_list_is_complete_and_the_api_is_described(lite_world: World) -> None:
    w = lite_world
    keys = {e.key for e in w.endpoints}
    # The enumeration sees the routes of every router, the mount and the app's own routes.
    for expected in [*PUBLIC, *ANNOTATOR_ROUTES, ("GET", "/api/projects/{project_id}/export")]:
        assert expected in keys, expected
    assert {e.key for e in w.endpoints if e.admin_only} >= {
        ("GET", "/api/projects/{project_id}/annotators"),
        ("POST", "/api/projects/{project_id}/import"),
    }
    # No interactive API docs: they would load script from a CDN, which the CSP forbids.
    assert not [k for k in keys if "docs" in k[1] or "redoc" in k[1]]
    # Every /api/ route but the probe and the description itself is in the OpenAPI description,
    # so the schema-driven fuzz run (test_fuzz.py) reaches it.
    paths = w.app.openapi()["paths"]
    described = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    api = {e.key for e in w.endpoints if e.is_api} - {
        ("GET", "/api/health"),
        ("GET", "/api/openapi.json"),
    }
    assert api == described


def test_every_route_needs_a_token_but_the_allow_list(
    lite_world: World, record: Callable[..., None]
) -> None:
    w = lite_world
    assert set(PUBLIC) <= {e.key for e in w.endpoints}, "PUBLIC names a route that is gone"
    open_routes = set()
    requests = 0
    bad_credentials: list[dict[str, str]] = [
        {},
        bearer("not-a-token"),
        bearer(w.disabled),
        bearer(""),
        {"Authorization": f"Basic {w.admin}"},
        {"Cookie": f"{w.cookie}=forged"},
        {"Cookie": f"{w.cookie}={w.admin}"},  # a token is no session
    ]
    for endpoint in w.endpoints:
        for headers in bad_credentials:
            for html in (False, True):
                response = call(w, endpoint, w.own, headers, html=html)
                requests += 1
                if endpoint.key in PUBLIC:
                    assert response.status_code == PUBLIC[endpoint.key][0], endpoint
                    open_routes.add(endpoint.key)
                    continue
                assert refused_unauthenticated(response, endpoint, html), (
                    f"{endpoint.method} {endpoint.path} with {headers or 'no token'} "
                    f"(html={html}): {response.status_code} {response.text[:200]!r}"
                )
    assert open_routes == set(PUBLIC)
    # The allow-list is short, and none of it shows project data.
    assert len(PUBLIC) <= 6
    health = w.client.get("/api/health").json()
    assert set(health) == {"status", "version"}
    record(
        "security",
        check="every route needs a token (allow-list: "
        + ", ".join(" ".join(k) for k in PUBLIC)
        + ")",
        routes=len(w.endpoints),
        requests=requests,
        passed=True,
    )


def test_an_annotator_reaches_no_admin_route(
    lite_world: World, record: Callable[..., None]
) -> None:
    w = lite_world
    unknown = ANNOTATOR_ROUTES - {e.key for e in w.endpoints}
    assert not unknown, f"ANNOTATOR_ROUTES names routes that are gone: {unknown}"
    declared_admin = {e.key for e in w.endpoints if e.admin_only}  # they depend on get_admin
    assert not declared_admin & ANNOTATOR_ROUTES
    admin_routes = [e for e in w.endpoints if e.key not in PUBLIC and e.key not in ANNOTATOR_ROUTES]
    assert len(admin_routes) >= 8
    for endpoint in admin_routes:
        for html in (False, True):
            response = call(w, endpoint, w.own, bearer(w.alice), html=html)
            assert response.status_code == 403, (
                f"annotator reached {endpoint.method} {endpoint.path}: "
                f"{response.status_code} {response.text[:200]!r}"
            )
    # Cookie sessions too (the way the browser asks), with a valid CSRF header.
    alice = session_secret(w.db, w.pid, w.alice)
    cookie = {"Cookie": f"{w.cookie}={alice}", "X-CSRF-Token": csrf_token(alice)}
    for endpoint in admin_routes:
        assert call(w, endpoint, w.own, cookie).status_code == 403, endpoint
    # The same requests with the admin's token, and the annotator's own routes, get through.
    for endpoint in w.endpoints:
        if endpoint.key in PUBLIC or endpoint.key == ("POST", "/logout"):
            continue
        token = w.admin if endpoint in admin_routes else w.alice
        response = call(w, endpoint, w.own, bearer(token))
        assert response.status_code not in (401, 403), (endpoint, response.text[:200])
    record(
        "security",
        check="annotator token refused on every admin route (403)",
        routes=len(admin_routes),
        passed=True,
    )


def test_cookie_sessions_need_the_csrf_header_on_every_state_change(lite_world: World) -> None:
    w = lite_world
    changing = [
        e for e in w.endpoints if e.method not in ("GET", "HEAD", "OPTIONS") and e.key not in PUBLIC
    ]
    assert changing
    admin = session_secret(w.db, w.pid, w.admin)
    for endpoint in changing:
        good = csrf_token(admin)
        one_off = good[:-1] + ("1" if good[-1] == "0" else "0")  # never the valid token
        for csrf in (None, "wrong", one_off):
            headers = {"Cookie": f"{w.cookie}={admin}"}
            if csrf is not None:
                headers["X-CSRF-Token"] = csrf
            response = call(w, endpoint, w.own, headers)
            assert response.status_code == 403, (endpoint, csrf, response.status_code)


# ------------------------------------------------------------------------- project scoping


def _their_state(w: World) -> dict[str, Any]:
    pid = w.other["project_id"]
    with w.db.read() as session:
        counts = {
            model.__tablename__: session.scalar(
                select(func.count()).select_from(model).where(model.project_id == pid)
            )
            for model in (Item, Label, Lease, Annotator, ModelVersion)
        }
        project = get_project(session, project_id=pid)
        counts["settings"] = json.dumps(project.settings, sort_keys=True)
        counts["labels_of_items"] = sorted(
            session.execute(
                select(Item.id, Item.n_labels, Item.done).where(Item.project_id == pid)
            ).all()
        )
    return counts


def test_ids_of_another_project_are_not_found(world: World, record: Callable[..., None]) -> None:
    w = world
    before = _their_state(w)
    scoped = [
        e
        for e in w.endpoints
        if e.params and not e.path.startswith("/static/") and e.key not in PUBLIC
    ]
    assert len(scoped) >= 15
    requests = 0
    for endpoint in scoped:
        unmapped = [p for p in endpoint.params if p not in w.other]
        assert not unmapped, (
            f"{endpoint.method} {endpoint.path} takes {unmapped}: add an id of the other "
            "project for it to the world's `other` table, so the route's scoping is tested"
        )
        variants = [{**w.own, p: w.other[p]} for p in endpoint.params]
        if len(endpoint.params) > 1:
            variants.append({**w.own, **w.other})
        tokens = [w.admin] + ([w.alice] if endpoint.key in ANNOTATOR_ROUTES else [])
        for ids in variants:
            for token in tokens:
                for html in (False, True):
                    response = call(w, endpoint, ids, bearer(token), html=html)
                    requests += 1
                    assert response.status_code == 404, (
                        f"{endpoint.method} {endpoint.url(ids)}: {response.status_code} "
                        f"{response.text[:200]!r}"
                    )
                    assert w.other_secret not in response.text
                    assert "theirs" not in response.text
    # Ids inside bodies are scoped too: their item is neither labeled as part of a group, nor
    # released from their annotator's lease.
    api = f"/api/projects/{w.pid}"
    r = w.client.post(
        f"{api}/items/{w.own['item_id']}/label",
        json={"value": "ham", "group": [w.other["item_id"]]},
        headers=bearer(w.alice),
    )
    assert r.status_code == 422, r.text
    r = w.client.post(
        f"{api}/release", json={"items": [w.other["item_id"]]}, headers=bearer(w.admin)
    )
    assert r.status_code == 200
    assert r.json()["released"] == 0
    # Their token is not even a token here: this server serves our project only, so it is
    # refused (401) on every route, theirs and ours alike, and no sign-in takes it.
    for endpoint in scoped:
        for ids in (w.own, w.other):
            response = call(w, endpoint, ids, bearer(w.other_admin))
            if endpoint.path.startswith("/p/"):  # a page sends the browser to sign in
                assert response.status_code == 303, (endpoint, response.status_code)
                assert response.headers["location"] == "/login"
            else:
                assert response.status_code == 401, (endpoint, response.status_code)
            assert w.other_secret not in response.text
    signed = w.client.post("/login", data={"token": w.other_admin}, follow_redirects=False)
    assert signed.status_code == 401 and w.cookie not in signed.headers.get("set-cookie", "")
    # Nor does their sign-in link: not shown, not spent, no session.
    code = w.other["code"]
    shown = w.client.get(f"/login/link/{code}", follow_redirects=False)
    assert shown.status_code == 401 and "mallory" not in shown.text
    signed = w.client.post("/login/link", data={"code": code}, follow_redirects=False)
    assert signed.status_code == 401 and "set-cookie" not in signed.headers
    with w.db.read() as session:
        assert session.execute(select(SignIn.kind, SignIn.used_at)).all() == [("link", None)]
    assert _their_state(w) == before
    record(
        "security",
        check="ids of another project answered 404, nothing of theirs changed",
        database=w.db.engine.dialect.name,
        routes=len(scoped),
        requests=requests,
        passed=True,
    )


# --------------------------------------------------------------------------------- headers


def test_security_headers_on_every_kind_of_response(
    lite_world: World, record: Callable[..., None]
) -> None:
    w = lite_world
    c = w.client
    c.cookies.set(w.cookie, session_secret(w.db, w.pid, w.admin))
    seen: dict[str, Any] = {
        "page": c.get(f"/p/{w.pid}/annotate", headers={"Accept": "text/html"}),
        "dashboard": c.get(f"/p/{w.pid}/dashboard", headers={"Accept": "text/html"}),
        "error page": c.get(
            f"/p/{w.other['project_id']}/annotate", headers={"Accept": "text/html"}
        ),
        "json": c.get(f"/api/projects/{w.pid}"),
        "json 404": c.get(f"/api/projects/{w.pid}/items/999999"),
        "json 422": c.get(f"/api/projects/{w.pid}/items/not-a-number"),
        "unknown route": c.get("/no/such/route"),
        "wrong method": c.delete(f"/api/projects/{w.pid}"),
        "redirect": c.get("/", follow_redirects=False),
        "csv export": c.get(f"/api/projects/{w.pid}/export"),
        "static css": c.get("/static/style.css"),
        "static js": c.get("/static/common.js"),
        "static svg": c.get("/static/favicon.svg"),
        "static missing": c.get("/static/nothing-here.js"),
    }
    c.cookies.clear()
    seen["login"] = c.get("/login")
    seen["401"] = c.get(f"/api/projects/{w.pid}")

    # A crash: an unhandled exception inside a handler still answers with every header.
    def explode() -> None:
        raise RuntimeError("boom")

    w.app.add_api_route("/api/test-crash", explode, methods=["GET"])
    seen["500"] = c.get("/api/test-crash")
    assert seen["500"].status_code == 500
    assert "boom" not in seen["500"].text  # no traceback or message leaks to the client
    for what, response in seen.items():
        check_headers(response, what)
    assert seen["page"].status_code == 200
    assert seen["error page"].status_code == 404
    assert "text/html" in seen["error page"].headers["content-type"]
    # Static files keep their own caching; everything else is never stored.
    assert seen["static css"].status_code == 200
    assert "no-store" not in seen["static css"].headers.get("cache-control", "")
    record(
        "security",
        check="security headers on every kind of response",
        responses=len(seen),
        passed=True,
    )


def test_static_files_refuse_path_traversal(lite_world: World) -> None:
    c = lite_world.client
    for path in (
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/%2e%2e%2fapp.py",
        "/static/..%2f..%2fstore%2fdb.py",
        "/static/%2e%2e/%2e%2e/store/models.py",
        "/static//etc/passwd",
        "/static/..%5capp.py",
    ):
        response = c.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "import" not in response.text and "root:" not in response.text


# ---------------------------------------------------------------------------------- tokens


def test_tokens_are_stored_hashed_and_nowhere_in_clear(
    lite_world: World, record: Callable[..., None]
) -> None:
    w = lite_world
    r = w.client.post(
        f"/api/projects/{w.pid}/annotators", json={"name": "carol"}, headers=bearer(w.admin)
    )
    assert r.status_code == 201
    carol = r.json()["token"]
    assert w.client.get(f"/api/projects/{w.pid}", headers=bearer(carol)).status_code == 200
    tokens = {"admin": w.admin, "alice": w.alice, "carol": carol, "mallory": w.other_admin}
    with w.db.read() as session:
        rows = {a.name: a for a in session.scalars(select(Annotator))}
        for name, token in tokens.items():
            assert (
                rows[name].token_hash
                == hash_token(token)
                == hashlib.sha256(token.encode()).hexdigest()
            )
            assert len(rows[name].token_hint) <= 4
        # No column of any table holds a token in clear.
        metadata = MetaData()
        metadata.reflect(bind=session.connection())
        cells = 0
        for table in metadata.tables.values():
            for row in session.execute(select(table)):
                for value in row:
                    cells += 1
                    assert not any(t in str(value) for t in tokens.values()), table.name
    assert cells > 100
    # Nor any file of the project folder (the SQLite database and its journal included).
    w.db.dispose()
    files = [p for p in w.opened.folder.root.parent.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite3" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not any(t.encode() in data for t in tokens.values()), path
    # The listing shows a hint, never the token or its hash.
    listing = w.client.get(f"/api/projects/{w.pid}/annotators", headers=bearer(w.admin)).text
    assert carol not in listing and hash_token(carol) not in listing
    record(
        "security",
        check="tokens stored hashed (sha256), none in clear in the database or folder",
        passed=True,
    )


def test_tokens_and_csrf_values_are_compared_in_constant_time(
    lite_world: World, monkeypatch: pytest.MonkeyPatch, record: Callable[..., None]
) -> None:
    w = lite_world
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    r = w.client.get(f"/api/projects/{w.pid}", headers=bearer(w.alice))
    assert r.status_code == 200
    assert (hash_token(w.alice), hash_token(w.alice)) in compared
    compared.clear()
    alice = session_secret(w.db, w.pid, w.alice)
    headers = {"Cookie": f"{w.cookie}={alice}", "X-CSRF-Token": "0" * 40}
    r = w.client.post(f"/api/projects/{w.pid}/next", json={}, headers=headers)
    assert r.status_code == 403
    assert (csrf_token(alice), "0" * 40) in compared
    # And no `==` on a secret in Python in the functions that check them. The lookup is by
    # SHA-256 in SQL (an index compare, not constant time), which is safe: its timing could
    # tell only how much of the *hash* of a guess matches a stored hash, which says nothing
    # about a token that would match (that would need a SHA-256 preimage).
    from labelwise.server import security
    from labelwise.store import annotators

    for module, name in ((annotators, "authenticate"), (security, "csrf_valid")):
        tree = ast.parse(Path(module.__file__ or "").read_text())
        func_def = next(
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name
        )
        equalities = [
            ast.unparse(n)
            for n in ast.walk(func_def)
            if isinstance(n, ast.Compare)
            and any(isinstance(op, ast.Eq | ast.NotEq) for op in n.ops)
            and ast.unparse(n) != "Annotator.token_hash == digest"
        ]
        assert not equalities, (name, equalities)
    record(
        "security", check="tokens and CSRF values compared with hmac.compare_digest", passed=True
    )


# ------------------------------------------------------------------------------ no fetching

#: Modules that reach the network. None belongs in the package: Labelwise never fetches.
NETWORK_MODULES = {
    "aiohttp",
    "ftplib",
    "http.client",
    "httpx",
    "pycurl",
    "requests",
    "smtplib",
    "socket",
    "urllib.request",
    "urllib3",
    "websocket",
    "websockets",
}


def test_the_package_has_no_network_client() -> None:
    root = Path(labelwise.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Attribute):
                names = [ast.unparse(node)]
            for name in names:
                if any(name == m or name.startswith(m + ".") for m in NETWORK_MODULES):
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
    assert not found, "network access in the package:\n" + "\n".join(found)


def _image_project(
    tmp_path: Path, items: list[ItemRecord] | None = None
) -> tuple[TestClient, ProjectFolder, Database, int, str]:
    """An image project (no items unless given), its client and its admin's token."""
    url = f"sqlite:///{tmp_path / 'images.sqlite3'}"
    folder = ProjectFolder.create(tmp_path / "images", "images", url)
    db = folder.connect(url)
    with db.write() as session:
        project = create_project(session, name="images", kind="image", labels=["a", "b"])
        if items:
            add_items(session, project, items)
        _, admin = create_annotator(session, project, name="admin", role="admin")
        pid = project.id
    return (
        TestClient(create_app(ServerConfig(OpenProject(folder, db, pid)))),
        folder,
        db,
        pid,
        admin,
    )


def test_item_media_is_never_served_as_markup(tmp_path: Path) -> None:
    """A file in media/ that is really SVG (or HTML) with script goes out as image/png with
    nosniff and the CSP: a browser never renders it as a document. Paths out of media/ in an
    item's row are refused."""
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    items = [
        ItemRecord("svg", "evil.svg"),
        ItemRecord("html", "evil.png"),
        ItemRecord("out", "../labelwise.json"),
        ItemRecord("abs", "/etc/passwd"),
    ]
    client, folder, db, pid, admin = _image_project(tmp_path, items)
    (folder.media_dir / "evil.svg").write_bytes(svg)
    (folder.media_dir / "evil.png").write_bytes(b"<html><script>alert(1)</script></html>")
    with db.read() as session:
        ids = dict(session.execute(select(Item.external_id, Item.id)).all())
    for name in ("svg", "html"):
        r = client.get(f"/api/projects/{pid}/items/{ids[name]}/image", headers=bearer(admin))
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/png"
        check_headers(r, name)
    for name in ("out", "abs"):
        r = client.get(f"/api/projects/{pid}/items/{ids[name]}/image", headers=bearer(admin))
        assert r.status_code in (404, 422), (name, r.status_code)
        assert r.json()["error"]
        assert '"database"' not in r.text and "root:" not in r.text  # neither file's content
    client.close()
    db.dispose()


def test_imports_never_fetch_urls_or_read_outside_their_folder(
    tmp_path: Path, record: Callable[..., None]
) -> None:
    """Image references in an upload: URLs (to a listener that would see a connection), absolute
    paths, UNC paths and paths out of the upload's folder are all refused; nothing connects."""
    client, folder, db, pid, admin = _image_project(tmp_path)
    secret = tmp_path / "secret.png"
    from PIL import Image

    Image.new("L", (4, 4)).save(secret)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.3)
    port = listener.getsockname()[1]
    references = [
        f"http://127.0.0.1:{port}/x.png",
        f"https://127.0.0.1:{port}/x.png",
        f"//127.0.0.1:{port}/x.png",
        "http://169.254.169.254/latest/meta-data/x.png",
        f"file://{secret}",
        "data:image/png;base64,iVBORw0KGgo=",
        str(secret),
        "../secret.png",
        "../../secret.png",
        f"\\\\127.0.0.1@{port}\\share\\x.png",
    ]
    try:
        for reference in references:
            tasks = [{"id": 1, "data": {"image": reference}}]
            body = json.dumps(tasks).encode()
            r = client.post(
                f"/api/projects/{pid}/import",
                files={"file": ("tasks.json", body, "application/json")},
                headers=bearer(admin),
            )
            assert r.status_code == 422, (reference, r.status_code, r.text)
            assert r.json()["error"], reference
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected
    finally:
        listener.close()
        client.close()
    with db.read() as session:
        assert session.scalar(select(func.count(Item.id)).where(Item.project_id == pid)) == 0
    assert not any(folder.media_dir.iterdir())
    db.dispose()
    record(
        "security",
        check="no server-side fetch: URLs and out-of-folder paths in imports refused",
        references=len(references),
        passed=True,
    )


# ---------------------------------------------------------------------------- model artefacts


class _Trap:
    """Unpickling this creates a marker file: the proof that code in a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_model_artefacts_load_only_from_the_project_folder(
    tmp_path: Path, record: Callable[..., None]
) -> None:
    from labelwise.services.worker import train_once

    url = f"sqlite:///{tmp_path / 'models.sqlite3'}"
    folder = ProjectFolder.create(tmp_path / "project", "models", url)
    db = folder.connect(url)
    with db.write() as session:
        project = create_project(
            session,
            name="models",
            kind="text",
            labels=["ham", "spam"],
            settings=ProjectSettings(overlap=0.0, routine=0.0),
        )
        records = [  # 24 labeled, 16 left in the pool (queued, explained with the featurizer)
            ItemRecord(r.external_id, r.content, label=("spam" if i % 3 == 0 else "ham"))
            if i < 24
            else r
            for i, r in enumerate(_messages(40))
        ]
        add_items(session, project, records)
        pid = project.id
    assert train_once(folder, db, force=True).status == "trained"
    with db.read() as session:
        served_id = get_project(session, project_id=pid).current_version_id
        artefact = session.get(ModelVersion, served_id).artefact
    real = folder.root / artefact
    assert real.is_file()

    # A trap outside the folder; loading it directly does run its code (the test can fail).
    marker = tmp_path / "code-ran"
    trap = tmp_path / "elsewhere" / "model.joblib"
    trap.parent.mkdir()
    joblib.dump(_Trap(marker), trap)
    joblib.load(trap)
    assert marker.exists()
    marker.unlink()

    # The check itself: absolute paths, "..", and symlinks out of models/ are refused.
    for bad in (str(trap), "../elsewhere/model.joblib", "models/../../elsewhere/model.joblib"):
        with pytest.raises(InvalidDataError, match="refused"):
            folder.loadable(bad, folder.models_dir)
    (folder.models_dir / "link.joblib").symlink_to(trap)
    with pytest.raises(InvalidDataError, match="outside"):
        folder.loadable("models/link.joblib", folder.models_dir)
    assert folder.loadable(artefact, folder.models_dir) == real.resolve()

    def tamper(value: str) -> None:
        with db.write() as session:
            session.get(ModelVersion, served_id).artefact = value

    def cycle_refuses() -> str:
        outcome = train_once(folder, db, force=True)
        assert outcome.status == "failed", outcome
        assert "refused" in outcome.detail
        assert not marker.exists(), "a foreign artefact was unpickled"
        with db.read() as session:  # the last good model keeps serving
            assert get_project(session, project_id=pid).current_version_id == served_id
        return outcome.detail

    faults = 0
    # 1. The served version's row points outside the folder (absolute, then relative).
    for value in (str(trap), os.path.relpath(trap, folder.root)):
        tamper(value)
        cycle_refuses()
        faults += 1
    tamper(artefact)
    # 2. The artefact file is replaced by a symlink to the trap.
    kept = tmp_path / "kept.joblib"
    shutil.move(real, kept)
    real.symlink_to(trap)
    cycle_refuses()
    faults += 1
    real.unlink()
    shutil.move(kept, real)
    # 3. The featurizer beside the features, likewise.
    featurizer = folder.features_dir / "featurizer.joblib"
    kept_featurizer = tmp_path / "featurizer.joblib"
    shutil.move(featurizer, kept_featurizer)
    featurizer.symlink_to(trap)
    cycle_refuses()
    faults += 1
    featurizer.unlink()
    shutil.move(kept_featurizer, featurizer)
    # Put right, the next fit completes.
    assert train_once(folder, db, force=True).status == "trained"
    db.dispose()
    record(
        "security",
        check="model artefacts unpickled only from the project folder (row or symlink out refused)",
        attempts=faults,
        passed=True,
    )


# --------------------------------------------------------------------------- in the browser

#: Script payloads, each trying another way in: a script element, an event handler, a closing
#: tag or quote to break out of an element or attribute, a javascript: URL, SVG with script.
PAYLOADS = [
    "<script>window.__xss='script'</script>",
    "<img src=x onerror=\"window.__xss='img';alert('img')\">",
    "<svg onload=\"window.__xss='svg'\"></svg>",
    "<svg><script>window.__xss='svg-script'</script></svg>",
    "javascript:alert('url')",
    "\"><script>window.__xss='attr'</script>",
    "'><img src=x onerror=alert('attr2')>",
    "<a href=\"javascript:alert('link')\">click me</a>",
    "<iframe src=\"javascript:alert('frame')\"></iframe>",
    "</script><script>window.__xss='json'</script>",
    "</textarea><script>window.__xss='ta'</script>",
]
PROJECT_NAME = "Spam <img src=x onerror=alert('name')> </title><script>alert('title')</script>"
LABEL_NAMES = [
    "<script>window.__xss='label'</script>",
    "<img src=x onerror=alert('label')>",
    "javascript:alert('label')",
]
ANNOTATOR_NAMES = {
    "admin": "<svg onload=alert('admin')>",
    "alice": "\"><img src=x onerror=alert('alice')>",
    "bob": "<script>alert('bob')</script>",
}
FILE_NAMES = [
    "<img src=x onerror=alert('file')>.png",
    "../../etc/passwd",
    "\"><svg onload=alert('file')>.csv",
    "javascript:alert('file').txt",
]

#: What a page may hold: our scripts from /static, our JSON data block, nothing inline.
_DOM_CHECK = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      if (/^on/i.test(a.name)) bad.push(el.tagName + ' ' + a.name);
      const url = /^(href|src|action|formaction|xlink:href)$/i.test(a.name);
      if (url && /^\\s*javascript:/i.test(a.value))
        bad.push(el.tagName + ' ' + a.name + '=' + a.value);
    }
  }
  for (const s of document.querySelectorAll('script')) {
    const ok = (s.src && new URL(s.src).pathname.startsWith('/static/')) ||
               (!s.src && s.type === 'application/json');
    if (!ok) bad.push('script ' + (s.src || s.textContent.slice(0, 60)));
  }
  for (const t of ['iframe', 'object', 'embed', 'base', 'style'])
    if (document.querySelector(t)) bad.push(t);
  for (const i of document.querySelectorAll('img'))
    if (i.getAttribute('src') === 'x') bad.push('img src=x');
  return {bad: bad, flag: window.__xss === undefined ? null : String(window.__xss),
          text: document.body ? document.body.innerText : ''};
}"""


@dataclass
class Hostile:
    base: str
    pid: int
    tokens: dict[str, str]
    item_ids: list[int]
    opened: OpenProject


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Hostile]:
    """A project whose every user-supplied string is a script payload, with a model, answers
    from three annotators and conflicts for the review page; served over HTTP."""
    from labelwise.services.worker import train_once

    url = f"sqlite:///{tmp_path / 'hostile.sqlite3'}"
    folder = ProjectFolder.create(tmp_path / "hostile", PROJECT_NAME, url)
    db = folder.connect(url)
    words = ["win", "cash", "prize", "lunch", "meeting", "thanks"]
    with db.write() as session:
        project = create_project(
            session,
            name=PROJECT_NAME,
            kind="text",
            labels=LABEL_NAMES,
            settings=ProjectSettings(overlap=1.0, routine=0.0, retrain_every=1000),
        )
        records = []
        for i in range(36):
            text = f"{PAYLOADS[i % len(PAYLOADS)]} {words[i % 3 + 3 * (i % 2)]} message {i}"
            label = LABEL_NAMES[i % 2] if i < 18 else None
            ext = f"{FILE_NAMES[i % len(FILE_NAMES)]}-{i}"
            records.append(ItemRecord(ext, text, meta={"source": FILE_NAMES[0]}, label=label))
        add_items(session, project, records)
        tokens, rows = {}, {}
        for key, name in ANNOTATOR_NAMES.items():
            rows[key], tokens[key] = create_annotator(
                session, project, name=name, role="admin" if key == "admin" else "annotator"
            )
        pid = project.id
    assert train_once(folder, db, force=True).status == "trained"
    with db.write() as session:  # alice and bob disagree on a few items: the review page
        project = get_project(session, project_id=pid)
        alice = session.get(Annotator, rows["alice"].id)
        bob = session.get(Annotator, rows["bob"].id)
        item_ids = list(
            session.scalars(select(Item.id).where(Item.project_id == pid).order_by(Item.row))
        )
        for item_id in item_ids[-3:]:  # unlabeled so far: room for both
            answers.submit_label(session, project, alice, item_id=item_id, value=LABEL_NAMES[0])
            answers.submit_label(session, project, bob, item_id=item_id, value=LABEL_NAMES[2])
    opened = OpenProject(folder, db, pid)
    with ThreadedServer(create_app(ServerConfig(opened))) as base:
        yield Hostile(base, pid, tokens, item_ids, opened)
    db.dispose()


def _visit_all(page: Any, h: Hostile, visited: list[str], problems: list[str]) -> None:
    """Every page that shows user content, as the admin and as an annotator."""

    def check(where: str, expect: list[str]) -> None:
        found = page.evaluate(_DOM_CHECK)
        if found["flag"] is not None:
            problems.append(f"{where}: a payload ran (window.__xss={found['flag']})")
        if found["bad"]:
            problems.append(f"{where}: live markup from user content: {found['bad'][:5]}")
        for text in expect:  # the payloads are on the page, as text
            if text not in found["text"]:
                problems.append(f"{where}: {text!r} is not shown as text")
        visited.append(where)

    base, pid = h.base, h.pid
    sign_in_page(page, link_for(h.opened.db, pid, h.tokens["admin"], base))
    page.wait_for_selector('#annotate[data-state="item"]', timeout=20_000)
    check("annotate (admin)", [ANNOTATOR_NAMES["admin"], LABEL_NAMES[0], LABEL_NAMES[1]])
    if page.locator("#why-panel").is_hidden():  # open by default on a wide screen
        page.keyboard.press("w")
    page.wait_for_selector("#why-panel", state="visible", timeout=10_000)
    check("annotate, why panel", [])
    before = page.inner_text("#item-ref")
    page.keyboard.press("1")
    page.wait_for_function(
        "ref => document.querySelector('#item-ref').textContent !== ref",
        arg=before,
        timeout=20_000,
    )
    check("annotate, after an answer (reveal)", [])
    page.goto(f"{base}/p/{pid}/dashboard")
    check("dashboard (admin)", [ANNOTATOR_NAMES["alice"], ANNOTATOR_NAMES["bob"], PROJECT_NAME])
    page.goto(f"{base}/p/{pid}/review")
    page.wait_for_selector("article.conflict", timeout=20_000)
    check("review", [LABEL_NAMES[2], PAYLOADS[0]])
    page.goto(f"{base}/p/{pid + 1000}/annotate")
    check("error page", [])
    page.goto(f"{base}/api/projects/{pid}/items/{h.item_ids[1]}")
    check("item JSON", [json.dumps(PAYLOADS[1])[1:-1]])
    page.goto(f"{base}/login?token={PAYLOADS[1]}")
    check("sign-in error", [])
    page.goto(f"{base}/login/link/{PAYLOADS[1]}")
    check("sign-in link error", [])
    page.goto(f"{base}/p/{PAYLOADS[0]}/annotate")
    check("invalid id in the address", [])
    sign_in_page(page, link_for(h.opened.db, pid, h.tokens["alice"], base))
    page.wait_for_selector('#annotate[data-state="item"]', timeout=20_000)
    check("annotate (annotator)", [ANNOTATOR_NAMES["alice"]])
    page.goto(f"{base}/p/{pid}/dashboard")
    check("dashboard (annotator)", [PROJECT_NAME])


@pytest.mark.browser
def test_script_payloads_render_inert_in_the_browser(
    chromium: Any, hostile: Hostile, record: Callable[..., None]
) -> None:
    h = hostile
    problems: list[str] = []
    visited: list[str] = []
    # With the CSP, as served: nothing runs and the console shows no violation (a
    # violation would mean markup from user content reached the page).
    # Then without it (bypass_csp): the escaping alone must hold.
    for bypass in (False, True):
        context = chromium.new_context(bypass_csp=bypass)
        page = context.new_page()
        page.set_viewport_size({"width": 1440, "height": 960})
        where = "without CSP" if bypass else "with CSP"
        page.on(
            "console",
            lambda m, w=where: (
                # The error pages this test opens on purpose log their status;
                # anything else (a CSP violation above all) is a finding.
                problems.append(f"{w} console: {m.text}")
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("pageerror", lambda e, w=where: problems.append(f"{w} page error: {e}"))
        page.on(
            "dialog",
            lambda d, w=where: (problems.append(f"{w}: dialog {d.message!r}"), d.dismiss()),
        )
        _visit_all(page, h, visited, problems)
        context.close()
    assert not problems, "\n".join(problems)
    # The other ways out of the server: downloads and item media.
    import httpx

    auth = bearer(h.tokens["admin"])
    export = httpx.get(f"{h.base}/api/projects/{h.pid}/export?format=csv", headers=auth)
    assert export.status_code == 200
    disposition = export.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="[\w.\-]+"', disposition), disposition
    assert export.headers["content-type"].startswith("text/csv")
    assert export.headers["x-content-type-options"] == "nosniff"
    record(
        "security",
        check="script payloads inert in Chromium (with and without CSP), no CSP violation",
        pages=len(visited),
        payloads=len(PAYLOADS) + len(LABEL_NAMES) + len(ANNOTATOR_NAMES) + len(FILE_NAMES) + 1,
        passed=True,
    )
