"""HTTP security: headers on every response, the CSRF token of a browser session, and the
origin check of a sign-in.

Browsers authenticate with an HttpOnly, SameSite=Strict cookie holding the secret of a session
(:mod:`labelwise.store.sign_ins`), never the annotator's token. Every state-changing request
made with that cookie must also carry ``X-CSRF-Token``, a value derived from the secret (HMAC)
that pages embed in a ``<meta>`` tag: another site can make the browser send the cookie, but
cannot read the page to learn the header. Requests that present the token in an
``Authorization: Bearer`` header need no CSRF token (no ambient credential).

Signing in has no session yet to derive a CSRF value from, so the sign-in forms check where
the form came from instead (:func:`same_origin`): another site's form could otherwise sign a
browser in as someone else (an admin's session silently swapped for an annotator's).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "SecurityHeaders", "cookie_name", "csrf_token", "csrf_valid", "same_origin"]

COOKIE = "labelwise_token"


def cookie_name(database_url: str, project_id: int) -> str:
    """The sign-in cookie of one project: ``labelwise_token_<digest>``. Cookies ignore ports,
    so two servers on one host would otherwise overwrite each other's sign-in; every server of
    one project (the same database, the same project) shares the name."""
    digest = hashlib.sha256(f"{database_url}|{project_id}".encode()).hexdigest()[:12]
    return f"{COOKIE}_{digest}"


#: No inline script or style, no plugins, no framing, nothing loaded from elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

#: Served over HTTPS once, the browser refuses plain HTTP to this host for a year.
HSTS = "max-age=31536000"

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Nothing to other sites; same-origin requests keep their Origin header (under
    # no-referrer a browser sends "Origin: null" even with its own forms).
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds the security headers to every HTTP response; dynamic responses are not cached.

    A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: that one never sees
    the response of an unhandled exception (Starlette's outermost error middleware answers it),
    so a 500 went out without a Content-Security-Policy. Here an exception that escapes the app
    before its response has started is answered with a plain 500 carrying every header, then
    re-raised so that the server still logs it (and a test client still sees it).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dynamic = not str(scope.get("path", "")).startswith("/static/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
                if scope.get("scheme") == "https":  # TLS here or at a proxy that says so
                    headers.setdefault("Strict-Transport-Security", HSTS)
                if dynamic:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if started:
                raise
            response = PlainTextResponse("Internal Server Error", status_code=500)
            await response(scope, receive, send_with_headers)
            raise


def same_origin(headers: Mapping[str, str]) -> bool:
    """Whether a form post comes from this site's own pages.

    Browsers say where a request comes from: ``Sec-Fetch-Site`` (every current browser),
    else ``Origin`` (sent with every POST), compared with ``Host``. A request with neither
    comes from no browser (a script), where a cross-site forgery is not possible.
    """
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")  # none: typed or bookmarked by the user
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin == "null":  # a sandboxed frame, a data: page: nothing of ours
        return False
    host = headers.get("host", "")
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()


def csrf_token(token: str) -> str:
    """The CSRF value bound to a session's secret (or, for a script, its token)."""
    return hmac.new(token.encode(), b"labelwise-csrf", hashlib.sha256).hexdigest()[:40]


def csrf_valid(token: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(token), presented)
