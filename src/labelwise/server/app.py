"""The FastAPI application: ``create_app(config)`` builds everything; nothing happens at import.

Errors are mapped in one place: each :class:`~labelwise.exceptions.LabelwiseError` subclass to
its status code, with ``{"error": message}`` for the API and an escaped error page for browsers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import DBAPIError

from labelwise import __version__
from labelwise.exceptions import (
    AuthenticationError,
    ConflictError,
    DiskFullError,
    InvalidDataError,
    InvalidParameterError,
    LabelwiseError,
    ModelCapabilityError,
    NotFoundError,
    PermissionDeniedError,
    PoolExhaustedError,
    StorageError,
)
from labelwise.server.deps import AppState, User, annotator_for
from labelwise.server.limits import BodyLimits
from labelwise.server.routes import items, labeling, pages, projects
from labelwise.server.routes.projects import MAX_UPLOAD
from labelwise.server.security import SecurityHeaders
from labelwise.services.setup import OpenProject
from labelwise.store.db import as_storage_error

__all__ = ["ServerConfig", "create_app", "status_for"]

log = logging.getLogger("labelwise.server")

_STATUS: list[tuple[type[LabelwiseError], int]] = [
    (PermissionDeniedError, 403),
    (AuthenticationError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (PoolExhaustedError, 409),
    (InvalidDataError, 422),
    (InvalidParameterError, 422),
    (ModelCapabilityError, 422),
    (DiskFullError, 507),
    (StorageError, 503),
]


def status_for(exc: LabelwiseError) -> int:
    """The HTTP status of a Labelwise error."""
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return 400


@dataclass(frozen=True)
class ServerConfig:
    """What the server serves."""

    project: OpenProject


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def create_app(config: ServerConfig) -> FastAPI:
    """A ready application for one project folder and its database."""
    app = FastAPI(
        title="Labelwise",
        version=__version__,
        description="Human-in-the-loop active learning: the labeling API.",
        # No Swagger page: it loads its script from a CDN and runs inline script, both of which
        # the Content-Security-Policy forbids. The schema itself is served below, to a token.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    package = Path(str(resources.files("labelwise.server")))
    templates = Jinja2Templates(directory=str(package / "templates"))
    templates.env.globals["version"] = __version__  # static URLs change with each release
    app.state.templates = templates
    app.state.labelwise = AppState(
        folder=config.project.folder, db=config.project.db, project_id=config.project.project_id
    )
    state: AppState = app.state.labelwise

    def check_credential(credential: str, via_cookie: bool) -> Any:
        return annotator_for(state, credential, via_cookie)

    # Added before the headers, so that its 401 and 413 answers carry them too.
    app.add_middleware(
        BodyLimits, authenticate=check_credential, cookie=state.cookie, max_upload=MAX_UPLOAD
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(package / "static")), name="static")
    app.include_router(pages.router)
    app.include_router(labeling.router)
    app.include_router(projects.router)
    app.include_router(items.router)

    @app.exception_handler(LabelwiseError)
    async def labelwise_error(request: Request, exc: LabelwiseError) -> Response:
        status = status_for(exc)
        if _wants_html(request):
            if status == 401:
                return RedirectResponse("/login", status_code=303)
            return templates.TemplateResponse(
                request, "error.html", {"status": status, "message": str(exc)}, status_code=status
            )
        return JSONResponse({"error": str(exc)}, status_code=status)

    async def storage_error(request: Request, exc: Exception) -> Response:
        # The database or the disk failing (damaged, full, unreachable) is said so, as a 503
        # or 507 that names it; any other such error is a bug, answered as a 500 and logged.
        meaning = as_storage_error(exc, state.db)
        if meaning is None:
            raise exc
        log.error("%s", meaning)
        return await labelwise_error(request, meaning)

    app.add_exception_handler(DBAPIError, storage_error)
    app.add_exception_handler(OSError, storage_error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
            for e in exc.errors()
        )
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.get("/api/health", include_in_schema=False)
    def health() -> Response:
        """Up, and the database can be read (a 503 naming what is wrong otherwise)."""
        try:
            app.state.labelwise.db.check()
        except StorageError as exc:
            return JSONResponse(
                {"status": "error", "error": str(exc), "version": __version__}, status_code=503
            )
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(user: User) -> dict[str, Any]:
        """The OpenAPI description of this API (like every route but a few, it needs a token)."""
        return app.openapi()

    return app
