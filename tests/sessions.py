"""Signing a test in the way a browser does: a session (its secret in the cookie), or a
one-time sign-in link opened and confirmed in a real browser page."""

from __future__ import annotations

from typing import Any

from labelwise.store.annotators import authenticate
from labelwise.store.db import Database
from labelwise.store.sign_ins import link_url, new_link, start_session


def session_secret(db: Database, project_id: int, token: str) -> str:
    """A new browser session of the token's annotator: what the sign-in cookie holds."""
    with db.write() as session:
        return start_session(session, authenticate(session, token, project_id=project_id))


def link_for(db: Database, project_id: int, token: str, base: str) -> str:
    """A one-time sign-in link for the token's annotator, on the server at ``base``."""
    with db.write() as session:
        annotator = authenticate(session, token, project_id=project_id)
        return link_url(base, new_link(session, annotator))


def sign_in_page(page: Any, link: str) -> None:
    """Open a sign-in link in a browser page and confirm it, as a person would."""
    page.goto(link)
    page.click("button[type=submit]")
    page.wait_for_url("**/annotate", timeout=20_000)
