"""Annotators and their tokens.

A token is 32 random bytes (URL-safe base64) shown once, when it is made. The database keeps its
SHA-256 hash: tokens carry 256 bits of entropy, so a fast hash is enough, and a stolen database
yields no usable credentials. Lookups go by hash and are confirmed with a constant-time compare.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from labelwise.exceptions import (
    AuthenticationError,
    InvalidParameterError,
    PermissionDeniedError,
)
from labelwise.store.models import Annotator, Label, Project, SignIn

__all__ = [
    "ROLES",
    "OwnAnswers",
    "authenticate",
    "create_annotator",
    "find_annotator",
    "hash_token",
    "list_annotators",
    "own_answers",
    "reissue_token",
    "require_admin",
]

ROLES = ("admin", "annotator")
#: The annotator that records labels brought in by an import.
IMPORT_ANNOTATOR = "import"


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_annotator(
    session: Session, project: Project, *, name: str, role: str
) -> tuple[Annotator, str]:
    """A new annotator and their token (returned once; only its hash is stored)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidParameterError("annotator name must be 1 to 100 characters")
    if not name.isprintable():
        raise InvalidParameterError(
            f"annotator name {name!r} holds a control character; use printable characters"
        )
    if role not in ROLES:
        raise InvalidParameterError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    exists = session.scalar(
        select(Annotator.id).where(Annotator.project_id == project.id, Annotator.name == name)
    )
    if exists is not None:
        raise InvalidParameterError(
            f"an annotator named {name!r} already exists in this project "
            "(labelwise token --reissue gives them a new token)"
        )
    token = secrets.token_urlsafe(32)
    annotator = Annotator(
        project_id=project.id,
        name=name,
        role=role,
        token_hash=hash_token(token),
        token_hint=token[:4],
    )
    session.add(annotator)
    session.flush()
    return annotator, token


def find_annotator(session: Session, project: Project, name: str) -> Annotator | None:
    """The project's annotator called ``name``, if any."""
    return session.scalar(
        select(Annotator).where(Annotator.project_id == project.id, Annotator.name == name.strip())
    )


def reissue_token(
    session: Session, project: Project, *, name: str, role: str | None = None
) -> tuple[Annotator, str]:
    """A fresh token for an existing annotator: the old one stops working at once, and so do
    the browser sessions and sign-in links they had (a stolen token's sessions included).

    Also the way back in for an annotator restored from an export (restored annotators come back
    disabled, without a token) or one whose token was lost. Their labels keep their attribution.
    ``role``, when given, changes the annotator's role too.
    """
    annotator = find_annotator(session, project, name)
    if annotator is None:
        raise InvalidParameterError(f"no annotator named {name!r} in this project")
    if annotator.name == IMPORT_ANNOTATOR and not annotator.token_hint:
        raise InvalidParameterError(
            f"{name!r} stands for imported labels; it cannot sign in (make a new annotator)"
        )
    if role is not None and role not in ROLES:
        raise InvalidParameterError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    token = secrets.token_urlsafe(32)
    annotator.token_hash = hash_token(token)
    annotator.token_hint = token[:4]
    annotator.disabled = False
    if role is not None:
        annotator.role = role
    session.execute(delete(SignIn).where(SignIn.annotator_id == annotator.id))
    session.flush()
    return annotator, token


def system_annotator(session: Session, project: Project, name: str = IMPORT_ANNOTATOR) -> Annotator:
    """The non-human annotator that imported labels are attributed to (no usable token)."""
    annotator = session.scalar(
        select(Annotator).where(Annotator.project_id == project.id, Annotator.name == name)
    )
    if annotator is None:
        annotator = Annotator(
            project_id=project.id,
            name=name,
            role="annotator",
            token_hash=hash_token(secrets.token_hex(32)),
            token_hint="",
            disabled=True,
        )
        session.add(annotator)
        session.flush()
    return annotator


def authenticate(
    session: Session, token: str | None, *, project_id: int | None = None
) -> Annotator:
    """The active annotator holding ``token``, or :class:`AuthenticationError`.

    With ``project_id``, only that project's annotators count: a server serves its own project,
    and another project's token in the same database is as unknown to it as a made-up one.
    """
    if not token:
        raise AuthenticationError("a token is required")
    digest = hash_token(token)
    annotator = session.scalar(select(Annotator).where(Annotator.token_hash == digest))
    if annotator is None or not hmac.compare_digest(annotator.token_hash, digest):
        raise AuthenticationError("unknown token")
    if project_id is not None:
        _check_member(annotator, project_id)
    if annotator.disabled:
        raise AuthenticationError("this token has been disabled")
    return annotator


def _check_member(annotator: Annotator, project_id: int) -> None:
    """A token of another project is refused as unknown (kept out of :func:`authenticate`,
    whose only comparisons are of secrets, in constant time)."""
    if annotator.project_id != project_id:
        raise AuthenticationError("unknown token (not one of this project's)")


def require_admin(annotator: Annotator) -> None:
    if annotator.role != "admin":
        raise PermissionDeniedError("this needs an admin token")


def list_annotators(session: Session, project: Project) -> list[Annotator]:
    return list(
        session.scalars(
            select(Annotator).where(Annotator.project_id == project.id).order_by(Annotator.id)
        )
    )


@dataclass(frozen=True)
class OwnAnswers:
    """An annotator's own standing answers, as the annotate page shows them.

    Attributes
    ----------
    labels : int
        Their current labels (skips and superseded answers not counted).
    can_undo : bool
        Whether they have a standing label or skip that undo would take back.
    """

    labels: int
    can_undo: bool


def own_answers(session: Session, annotator_id: int) -> OwnAnswers:
    """How many labels the annotator stands by, and whether undo has anything to undo."""
    last = session.scalar(
        select(Label.id)
        .where(
            Label.annotator_id == annotator_id,
            Label.action.in_(("label", "skip")),
            Label.is_current.is_(True),
        )
        .order_by(Label.id.desc())
        .limit(1)
    )
    labels = session.scalar(
        select(func.count(Label.id)).where(
            Label.annotator_id == annotator_id,
            Label.action == "label",
            Label.is_current.is_(True),
        )
    )
    return OwnAnswers(int(labels or 0), last is not None)
