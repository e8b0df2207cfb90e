"""HTTP security: headers on every response, and the CSRF token of a browser session.

Browsers authenticate with an HttpOnly, SameSite=Strict cookie holding the annotator's token.
Every state-changing request made with that cookie must also carry ``X-CSRF-Token``, a value
derived from the token (HMAC) that pages embed in a ``<meta>`` tag: another site can make the
browser send the cookie, but cannot read the page to learn the header. Requests that present the
token in an ``Authorization: Bearer`` header need no CSRF token (no ambient credential).
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["CSP", "SecurityHeaders", "csrf_token", "csrf_valid"]

COOKIE = "labelwise_token"

#: No inline script or style, no plugins, no framing, nothing loaded from elsewhere.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class SecurityHeaders(BaseHTTPMiddleware):
    """Adds the security headers; dynamic responses are not cached."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def csrf_token(token: str) -> str:
    """The CSRF value bound to a session token."""
    return hmac.new(token.encode(), b"labelwise-csrf", hashlib.sha256).hexdigest()[:40]


def csrf_valid(token: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(token), presented)
