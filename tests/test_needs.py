"""The rule for what a test needs from outside the code (``tests/needs.py``): a skip on a
developer's machine, a failure naming what is missing and how to provide it under ``CI=true``;
and a scan of the test files that keeps every such check going through that one rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import needs
import shared_data
from needs import missing, need_module, need_program

TESTS = Path(__file__).resolve().parent
NOT_THERE = "labelwise_no_such_module_here"


@pytest.fixture(params=["laptop", "ci"])
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once outside CI and once under ``CI=true``."""
    if request.param == "ci":
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    return str(request.param)


def _outcome(where: str) -> type[BaseException]:
    return pytest.fail.Exception if where == "ci" else pytest.skip.Exception


def test_in_ci_reads_the_variable_at_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert needs.in_ci()
    monkeypatch.setenv("CI", "false")  # only "true" counts, as in tests/postgres_server.py
    assert not needs.in_ci()
    monkeypatch.delenv("CI")
    assert not needs.in_ci()


def test_missing_skips_or_fails_and_says_how(where: str) -> None:
    with pytest.raises(_outcome(where)) as info:
        missing("the widget", "install it with apt-get install widget")
    message = str(info.value)
    assert message.startswith("the widget is missing; install it with apt-get install widget")
    assert ("CI=true" in message) == (where == "ci")


def test_a_missing_module_is_named(where: str) -> None:
    with pytest.raises(_outcome(where), match=rf"the Python package '{NOT_THERE}'.*pip install x"):
        need_module(NOT_THERE, "pip install x")


def test_a_present_module_is_returned(where: str) -> None:
    assert need_module("json", "never said").dumps([1]) == "[1]"


def test_a_missing_program_is_named(where: str) -> None:
    with pytest.raises(
        _outcome(where), match=r"the program lw-no-a or lw-no-b on PATH is missing; apt-get"
    ):
        need_program("lw-no-a", "lw-no-b", how="apt-get install lw")


def test_the_first_program_found_is_returned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = tmp_path / "lw-tool"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert need_program("lw-absent", "lw-tool", how="-") == str(program)


def test_a_missing_shared_dataset_says_where_to_put_it(where: str) -> None:
    with pytest.raises(_outcome(where)) as info:
        shared_data.shared_file("no-such-folder", "no-such-file.csv")
    message = str(info.value)
    assert str(shared_data.SHARED / "no-such-folder" / "no-such-file.csv") in message
    assert "LABELWISE_SHARED_DATA" in message


def test_shared_data_sits_beside_the_repository_unless_named() -> None:
    # Resolved from the test files' place (or the variable), never from a machine path.
    assert TESTS.parent == shared_data.REPO
    assert shared_data.SHARED.is_absolute()


# What would bypass the rule: a skip of its own for a dependency, a CI check of its own, or a
# shared dataset reached by a path written out.
_BYPASSES = {
    "reads CI itself": re.compile(r"""environ(\.get\(|\[)\s*["']CI["']"""),
    "importorskip of torch or playwright": re.compile(
        r"""importorskip\(\s*["'](torch|playwright|transformers|timm|open_clip)"""
    ),
    "looks up pg_dump, psql or chromium itself": re.compile(
        r"""shutil\.which\(\s*["'](pg_dump|psql|chromium)"""
    ),
    "names the shared data folder by path": re.compile(
        r"""["'][^"'\s]*shared/data|["']shared["']\s*/\s*["']data["']"""
    ),
    "an absolute machine path": re.compile(r"""["'](/work|/home|/Users|/mnt|/root)/"""),
}
# The helpers that hold the rule, and this file, which spells the patterns out.
_RULE_HOLDERS = {"needs.py", "shared_data.py", "test_needs.py"}


def test_every_test_goes_through_the_one_rule() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name in _RULE_HOLDERS:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in _BYPASSES.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(TESTS)}:{number}: {what}: {line.strip()}")
    assert not found, "use tests/needs.py or tests/shared_data.py instead:\n" + "\n".join(found)
