"""What a test needs from outside the code under test, and the one rule for when it is missing.

Some tests need more than the Python code: a shared dataset (``tests/shared_data.py``), an
optional package (torch, the ``embed`` extra, Playwright), a program (``pg_dump``, ``psql``,
Chromium) or a PostgreSQL server (``tests/postgres_server.py``). Where one is missing the test is
skipped on a developer's machine, which may lack it for good reason. Under ``CI=true`` it fails
instead, with a message naming what is missing and how to provide it: CI installs everything
(``.ci/run``), and a test that silently stopped running there would hide the regressions it
exists to catch.

Skips that are not about a missing dependency (a case that cannot happen on SQLite, a variant
that only ``--heavy`` runs) do not go through here: they hold on every machine, CI included.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest

__all__ = ["in_ci", "missing", "need_module", "need_program"]


def in_ci() -> bool:
    """Whether the tests run in CI (``CI=true``), where nothing a test needs may be missing.

    Read at each call, not at import, so a test can set the variable with ``monkeypatch``.
    """
    return os.environ.get("CI") == "true"


def missing(what: str, how: str) -> NoReturn:
    """Stop the current test because ``what`` is not there: a failure in CI, else a skip.

    Parameters
    ----------
    what : str
        The missing thing, named as a reader would look for it ("pg_dump", "the dataset
        <path>", "the Python package 'torch'").
    how : str
        How to provide it (the package to install, the variable to set), so that the message
        alone is enough to fix the run.

    Also works at module level (a skip there skips the whole module; a failure is an error
    collecting it, which fails the run just the same).
    """
    message = f"{what} is missing; {how}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: every test must run, none may be skipped)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def need_module(name: str, how: str) -> ModuleType:
    """The module ``name``, imported; :func:`missing` when it cannot be imported.

    ``how`` says what to install (``pip install torch``, ``pip install -e '.[embed]'``).
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"the Python package {name!r} ({exc})", how)


def need_program(*names: str, how: str) -> str:
    """The path of the first of ``names`` found on ``PATH``; :func:`missing` when none is.

    Several names stand for one program under the names distributions give it
    (``chromium``, ``chromium-browser``).
    """
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    missing(f"the program {' or '.join(names)} on PATH", how)
