"""Signing in from a browser: sessions, and one-time sign-in links.

A token is a long-lived credential (scripts send it as ``Authorization: Bearer``); a browser
never keeps it. Signing in with a token (the form) or with a one-time link starts a
**session**: a fresh random secret in the cookie, its SHA-256 in the ``sign_ins`` table, valid
for :data:`SESSION_DAYS`. Signing out deletes the row, so the cookie is worthless from then
on, wherever a copy of it went.

A **sign-in link** carries a one-time code instead of the token, so no token lands in a proxy's
log or a browser's history: ``labelwise demo`` and ``labelwise token`` print one. Opening the
link shows who it signs in; only confirming (a form posted from the page) spends the code and
starts the session, so a link scanner's visit spends nothing, and another site cannot sign a
browser in behind its back. A code lasts :data:`LINK_MINUTES` unless made for longer.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from labelwise.exceptions import AuthenticationError
from labelwise.store.annotators import hash_token
from labelwise.store.leasing import database_now
from labelwise.store.models import Annotator, SignIn

__all__ = [
    "LINK_MINUTES",
    "LINK_PATH",
    "SESSION_DAYS",
    "end_session",
    "link_annotator",
    "link_url",
    "new_link",
    "redeem_link",
    "session_annotator",
    "start_session",
]

#: How long a browser session lasts.
SESSION_DAYS = 30
#: How long a sign-in link lasts by default.
LINK_MINUTES = 30
#: Where the server shows a sign-in link's page (the code follows).
LINK_PATH = "/login/link/"


def link_url(base_url: str, code: str) -> str:
    """The address of a sign-in link on the server at ``base_url``."""
    return base_url.rstrip("/") + LINK_PATH + code


def _find(session: Session, kind: str, secret: str | None) -> SignIn | None:
    if not secret:
        return None
    found = session.scalar(select(SignIn).where(SignIn.secret_hash == hash_token(secret)))
    if found is None or found.kind != kind:
        return None
    return found


def _annotator_of(session: Session, row: SignIn, project_id: int) -> Annotator:
    annotator = session.get(Annotator, row.annotator_id)
    if annotator is None or annotator.project_id != project_id or annotator.disabled:
        raise AuthenticationError("this sign-in is not valid here")
    return annotator


def _sweep(session: Session, now: datetime) -> None:
    """Expired sessions and links go when new ones are made: the table holds live ones."""
    session.execute(delete(SignIn).where(SignIn.expires_at <= now))


def _new(session: Session, annotator: Annotator, kind: str, secret: str, lasts: timedelta) -> str:
    """Store a new sign-in of ``kind`` (its secret's hash), lasting ``lasts``; returns the
    secret."""
    now = database_now(session)
    _sweep(session, now)
    session.add(
        SignIn(
            annotator_id=annotator.id,
            kind=kind,
            secret_hash=hash_token(secret),
            created_at=now,
            expires_at=now + lasts,
        )
    )
    session.flush()
    return secret


def start_session(session: Session, annotator: Annotator) -> str:
    """A new browser session for ``annotator``; returns its secret (for the cookie)."""
    secret = secrets.token_urlsafe(32)
    return _new(session, annotator, "session", secret, timedelta(days=SESSION_DAYS))


def session_annotator(session: Session, project_id: int, secret: str | None) -> Annotator:
    """The annotator of a live session of ``project_id``, or :class:`AuthenticationError`."""
    row = _find(session, "session", secret)
    if row is None or row.expires_at <= database_now(session):
        raise AuthenticationError("not signed in (or the session ended): sign in again")
    return _annotator_of(session, row, project_id)


def end_session(session: Session, secret: str | None) -> bool:
    """Sign out: the session's row goes, and its cookie is worthless from then on."""
    row = _find(session, "session", secret)
    if row is None:
        return False
    session.execute(delete(SignIn).where(SignIn.id == row.id))
    return True


def new_link(session: Session, annotator: Annotator, *, minutes: int = LINK_MINUTES) -> str:
    """A one-time sign-in code for ``annotator``, valid ``minutes``."""
    if not 1 <= minutes <= 7 * 24 * 60:
        raise ValueError(f"a sign-in link lasts 1 minute to a week, not {minutes} minutes")
    code = secrets.token_urlsafe(24)
    return _new(session, annotator, "link", code, timedelta(minutes=minutes))


def link_annotator(session: Session, project_id: int, code: str | None) -> Annotator:
    """Who an unused, unexpired link of ``project_id`` signs in (the code is not spent)."""
    row = _find(session, "link", code)
    if row is None or row.used_at is not None or row.expires_at <= database_now(session):
        raise AuthenticationError(
            "this sign-in link is not valid (used, expired or mistyped): ask for a new one"
        )
    return _annotator_of(session, row, project_id)


def redeem_link(session: Session, project_id: int, code: str | None) -> tuple[Annotator, str]:
    """Spend a link: (its annotator, the secret of the session it starts)."""
    annotator = link_annotator(session, project_id, code)
    assert code is not None  # link_annotator refuses an empty code
    # One statement that spends the link only while it is unspent: of two browsers that
    # confirm at once, one signs in.
    spent = session.execute(
        update(SignIn)
        .where(
            SignIn.secret_hash == hash_token(code),
            SignIn.kind == "link",
            SignIn.used_at.is_(None),
        )
        .values(used_at=database_now(session))
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise AuthenticationError("this sign-in link was used already: ask for a new one")
    return annotator, start_session(session, annotator)
