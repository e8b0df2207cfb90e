"""Request bodies refused before they are read: no credentials, or more bytes than allowed.

An ASGI middleware (:class:`BodyLimits`) in front of every route that takes a body:

1. **Credentials first.** A request to the API with a body must carry a token of the served
   project (``Authorization: Bearer`` or the sign-in cookie); without one it is answered 401
   before a byte of the body is read. (A one-gigabyte JSON body without a token took the server
   to 2.3 GB of memory, a three-gigabyte upload filled the disk, before the 401.)
2. **A cap while it streams.** JSON and forms may be at most :data:`MAX_JSON` bytes; an upload
   (``multipart/form-data`` to an import route) at most the upload limit plus
   :data:`MULTIPART_SLACK` for its envelope. A ``Content-Length`` over the cap is refused at
   once (413); a body that streams past it (chunked, or lying about its length) is cut off
   there and refused, and nothing of it reaches the route.

The sign-in form is the one body taken without credentials, and it is small.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelwise.exceptions import AuthenticationError

__all__ = ["AUTHENTICATED", "MAX_JSON", "MULTIPART_SLACK", "BodyLimits"]

#: The largest JSON body or form a request may carry (a label, a release, a settings change).
MAX_JSON = 1024 * 1024
#: Bytes allowed past the upload limit for a multipart envelope (boundaries, headers, fields).
MULTIPART_SLACK = 1024 * 1024
#: Where the request's state keeps who the credentials checked here belong to,
#: ``(credential, via_cookie, annotator)``: the route reuses it rather than look them up again.
AUTHENTICATED = "labelwise.authenticated"
#: Routes whose body comes without credentials: the sign-in form.
_OPEN = {("POST", "/login")}
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class _TooLargeError(Exception):
    """The body went past its cap while it was being read."""


class BodyLimits:
    """See the module docstring.

    Parameters
    ----------
    app : ASGI application
    authenticate : callable(credential, via_cookie) -> annotator
        Raises :class:`AuthenticationError` unless ``credential`` (a token, or with
        ``via_cookie`` a session's secret) is one of the served project's (called in a thread:
        it reads the database); what it returns is kept in the request's state under
        :data:`AUTHENTICATED`.
    cookie : str
        The name of the project's sign-in cookie.
    max_upload : int
        The largest file an import route takes.
    """

    def __init__(self, app: ASGIApp, *, authenticate: Any, cookie: str, max_upload: int) -> None:
        self.app = app
        self.authenticate = authenticate
        self.cookie = cookie
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = str(scope.get("path", ""))
        if path.startswith("/api/") and (scope["method"], path) not in _OPEN:
            why = await self._unauthenticated(scope, headers)
            if why is not None:
                await _answer(send, 401, why)
                return
        multipart = headers.get("content-type", "").startswith("multipart/form-data")
        cap = self.max_upload + MULTIPART_SLACK if multipart else MAX_JSON
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            await _answer(send, 413, _too_large(cap, multipart))
            return
        seen = 0
        over = False  # the body went past its cap
        replaced = False  # the app's answer was replaced by the 413

        async def capped() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    over = True
                    raise _TooLargeError
            return message

        async def watched(message: Message) -> None:
            nonlocal replaced
            # FastAPI answers any failure while it reads a body as 400: past the cap, the
            # answer is the 413 that says why, and the app's own is dropped.
            if over:
                if message["type"] == "http.response.start" and not replaced:
                    replaced = True
                    await _answer(send, 413, _too_large(cap, multipart))
                return
            await send(message)

        try:
            await self.app(scope, capped, watched)
        except _TooLargeError:
            if not replaced:
                await _answer(send, 413, _too_large(cap, multipart))

    async def _unauthenticated(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """Why the request has no valid credentials, or None when it has."""
        credential = None
        auth = headers.get("authorization", "")
        via_cookie = not auth.lower().startswith("bearer ")
        if not via_cookie:
            credential = auth[7:].strip()
        else:
            for part in headers.get("cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == self.cookie:
                    credential = value.strip()
        if not credential:
            return "a token is required"
        try:
            who = await run_in_threadpool(self.authenticate, credential, via_cookie)
        except AuthenticationError as exc:
            return str(exc)
        scope.setdefault("state", {})[AUTHENTICATED] = (credential, via_cookie, who)
        return None


def _too_large(cap: int, multipart: bool) -> str:
    what = "an upload" if multipart else "a request body"
    return f"{what} may be at most {cap / 2**20:,.0f} MiB"


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
