"""Request dependencies: the app state, who is asking, and the project they may see."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from pydantic import Field, StringConstraints
from sqlalchemy.orm import Session

from labelwise.exceptions import AuthenticationError, NotFoundError, PermissionDeniedError
from labelwise.server.limits import AUTHENTICATED
from labelwise.server.security import cookie_name, csrf_valid
from labelwise.store.annotators import authenticate
from labelwise.store.db import Database
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Annotator, Project
from labelwise.store.projects import get_project
from labelwise.store.sign_ins import session_annotator

__all__ = [
    "MAX_ID",
    "Admin",
    "AppState",
    "BodyId",
    "ItemId",
    "LabelName",
    "Principal",
    "ProjectId",
    "State",
    "User",
    "annotator_for",
    "one_of_value_or_labels",
    "principal_for",
    "project_session",
]

_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

#: Row ids are 32-bit integers on PostgreSQL (64-bit on SQLite). A larger number in a URL or a
#: body is no id at all: it is refused with a 422 here, before a query where the driver would
#: fail on it (an overflow, answered as a 500).
MAX_ID = 2**31 - 1
ProjectId = Annotated[int, Path(ge=1, le=MAX_ID, description="A project's id.")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="An item's id (in this project).")]
#: An item id in a request body.
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]
#: One label's name in a request body (a multi-label answer's list holds these).
LabelName = Annotated[str, StringConstraints(max_length=200)]


def one_of_value_or_labels(value: str | None, labels: list[str] | None, what: str) -> None:
    """A body gives ``what`` (an answer, a decision) as ``value`` or as ``labels``, exactly one:
    else a ValueError that says so (answered as a 422)."""
    if (value is None) == (labels is None):
        raise ValueError(
            f"give the {what} as value (a label) or as labels (a multi-label project's list of "
            "labels), exactly one of them"
        )


@dataclass(frozen=True)
class AppState:
    """What every request may use: the project folder and its database."""

    folder: ProjectFolder
    db: Database
    project_id: int

    @property
    def cookie(self) -> str:
        """The name of this project's sign-in cookie."""
        return cookie_name(self.db.url, self.project_id)


@dataclass(frozen=True)
class Principal:
    """The authenticated annotator behind a request."""

    annotator_id: int
    name: str
    role: str
    project_id: int
    #: What the request presented: a token (``Authorization: Bearer``) or, from a browser,
    #: the secret of its session (the cookie). The CSRF value is derived from it.
    credential: str
    via_cookie: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def check_project(self, project_id: int) -> None:
        """Every id in a URL is scoped: another project's id is simply not found."""
        if project_id != self.project_id:
            raise NotFoundError(f"no project {project_id}")


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.labelwise
    return state


State = Annotated[AppState, Depends(get_state)]


def _token_of(request: Request, state: AppState) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return request.cookies.get(state.cookie), True


def annotator_for(state: AppState, credential: str | None, via_cookie: bool) -> Annotator:
    """The served project's annotator behind a credential: a token, or (``via_cookie``) the
    secret of a browser session. A token in the cookie is no session: refused."""
    with state.db.read() as session:
        if via_cookie:
            return session_annotator(session, state.project_id, credential)
        return authenticate(session, credential, project_id=state.project_id)


def principal_for(request: Request, state: AppState) -> Principal:
    """Authenticate the request (Bearer header, else the session cookie plus CSRF header) as
    one of the served project's annotators."""
    credential, via_cookie = _token_of(request, state)
    checked = request.scope.get("state", {}).get(AUTHENTICATED)
    if checked is not None and checked[:2] == (credential, via_cookie):
        annotator = checked[2]  # looked up before the body was read (BodyLimits)
    else:
        annotator = annotator_for(state, credential, via_cookie)
    assert credential is not None  # an empty credential is refused
    unsafe = via_cookie and request.method not in _SAFE_METHODS
    if unsafe and not csrf_valid(credential, request.headers.get("x-csrf-token")):
        raise PermissionDeniedError("missing or wrong X-CSRF-Token header")
    return Principal(
        annotator.id, annotator.name, annotator.role, annotator.project_id, credential, via_cookie
    )


def get_principal(request: Request, state: State) -> Principal:
    return principal_for(request, state)


def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("this needs an admin token")
    return principal


User = Annotated[Principal, Depends(get_principal)]
Admin = Annotated[Principal, Depends(get_admin)]


def optional_principal(request: Request, state: AppState) -> Principal | None:
    try:
        return principal_for(request, state)
    except AuthenticationError:
        return None


@contextmanager
def project_session(
    state: AppState, user: Principal, project_id: int, *, write: bool = False, durable: bool = True
) -> Iterator[tuple[Session, Project]]:
    """A session and the project ``project_id`` names, once ``user`` is checked to belong to
    it: a transaction with ``write`` (``durable`` as in :meth:`Database.write`), else a read."""
    user.check_project(project_id)
    with state.db.write(durable=durable) if write else state.db.read() as session:
        yield session, get_project(session, project_id=project_id)
