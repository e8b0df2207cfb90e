"""Schema-driven fuzzing: schemathesis against our own OpenAPI description, in process.

Every operation of ``app.openapi()`` is called with cases Hypothesis generates from its schema:
valid requests (positive mode) and requests that break the schema on purpose (negative mode),
with the admin's token or an annotator's, aimed half the time at the seeded project and its real
items so the handlers get past "not found". The one property: no answer is a 5xx, and no
exception escapes the app. A 4xx is the right answer to most of these cases.

The CI run draws a few cases per operation and mode (about a minute, SQLite); ``--heavy`` draws
many more, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from sqlalchemy import select

from labelwise.server import ServerConfig, create_app
from labelwise.services.setup import OpenProject
from labelwise.store.annotators import create_annotator
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import ItemRecord, add_items
from labelwise.store.models import Item
from labelwise.store.projects import ProjectSettings, create_project

#: Cases per operation and generation mode.
CI_EXAMPLES = 10
HEAVY_EXAMPLES = 150

LABELS = ("ham", "spam")
WORDS = ["win", "prize", "cash", "lunch", "meeting", "thanks", "call", "dinner", "home", "now"]


@dataclass
class Seeded:
    app: Any
    project: OpenProject
    tokens: dict[str, str]
    item_ids: list[int] = field(default_factory=list)


@pytest.fixture
def seeded(tmp_path: Path, db_url: str, heavy: bool) -> Iterator[Seeded]:
    """A text project with 40 items (10 labeled by import), an admin and an annotator."""
    if db_url.startswith("postgresql") and not heavy:
        pytest.skip("the PostgreSQL fuzz run is part of --heavy")
    folder = ProjectFolder.create(tmp_path / "project", "fuzzed", db_url)
    db = folder.connect(db_url)
    with db.write() as session:
        project = create_project(
            session,
            name="fuzzed",
            kind="text",
            labels=list(LABELS),
            settings=ProjectSettings(overlap=0.2, routine=0.0),
        )
        records = [
            ItemRecord(
                f"m{i}",
                f"{WORDS[i % 10]} {WORDS[(3 * i + 1) % 10]} message {i}",
                label=("spam" if i % 3 == 0 else "ham") if i < 10 else None,
            )
            for i in range(40)
        ]
        add_items(session, project, records)
        _, admin = create_annotator(session, project, name="admin", role="admin")
        _, alice = create_annotator(session, project, name="alice", role="annotator")
        project_id = project.id
    with db.read() as session:
        item_ids = list(session.scalars(select(Item.id).where(Item.project_id == project_id)))
    opened = OpenProject(folder, db, project_id)
    yield Seeded(
        create_app(ServerConfig(opened)), opened, {"admin": admin, "alice": alice}, item_ids
    )
    db.dispose()


def _case_strategy(operation: Any, seeded: Seeded, mode: GenerationMode) -> st.SearchStrategy:
    """Cases for one operation: free path ids, or the seeded project's own (half each).

    With the project's own ids, a body's ``value`` is also one of its labels half the time, so
    that answers and adjudications get past validation into the store.
    """
    params = {p.name for p in operation.path_parameters}
    free = operation.as_strategy(generation_mode=mode)

    def own(item_id: int) -> st.SearchStrategy:
        fixed = {"project_id": seeded.project.project_id, "item_id": item_id}
        return operation.as_strategy(
            generation_mode=mode, path_parameters={k: v for k, v in fixed.items() if k in params}
        )

    def real_label(drawn: tuple[Any, str | None]) -> Any:
        case, label = drawn
        if label is not None and isinstance(case.body, dict) and "value" in case.body:
            case.body["value"] = label
        return case

    owned = st.tuples(
        st.sampled_from(seeded.item_ids).flatmap(own), st.sampled_from([None, *LABELS])
    ).map(real_label)
    return st.one_of(free, owned)


def _fuzz(
    operation: Any,
    seeded: Seeded,
    mode: GenerationMode,
    examples: int,
    found: list[str],
    statuses: Counter[int],
    *,
    heavy: bool,
) -> int:
    calls = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        # CI draws the same cases every run (a red CI is reproducible); --heavy draws new ones
        # each time (a failure prints the request as a curl command).
        derandomize=not heavy,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_case_strategy(operation, seeded, mode), who=st.sampled_from(["admin", "alice"]))
    def run(case: Any, who: str) -> None:
        nonlocal calls
        calls += 1
        headers = {"Authorization": f"Bearer {seeded.tokens[who]}"}
        try:
            response = case.call(headers=headers)
        except Exception:  # an exception escaping the app is a 500 to the client
            found.append(f"{case.operation.label} as {who}: raised\n{traceback.format_exc()}")
            statuses[500] += 1
            return
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            found.append(
                f"{case.operation.label} as {who}: {response.status_code} "
                f"{response.text[:300]!r}\n{case.as_curl_command(headers=headers)}"
            )

    run()
    return calls


def test_no_operation_answers_5xx(seeded: Seeded, heavy: bool, record: Callable[..., None]) -> None:
    schema = schemathesis.openapi.from_asgi(
        "/api/openapi.json",
        seeded.app,
        headers={"Authorization": f"Bearer {seeded.tokens['admin']}"},
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every operation the app describes is fuzzed (test_security checks that the description
    # covers every /api/ route).
    described = {
        (method.upper(), path)
        for path, item in seeded.app.openapi()["paths"].items()
        for method in item
    }
    assert {(op.method.upper(), op.path) for op in operations} == described
    examples = HEAVY_EXAMPLES if heavy else CI_EXAMPLES
    found: list[str] = []
    statuses: dict[str, Counter[int]] = {op.label: Counter() for op in operations}
    cases = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases += _fuzz(
                operation, seeded, mode, examples, found, statuses[operation.label], heavy=heavy
            )
    succeeded = sum(1 for c in statuses.values() if any(200 <= code < 300 for code in c))
    record(
        "fuzz",
        operations=len(operations),
        cases=cases,
        server_errors=len(found),
        database=seeded.project.db.engine.dialect.name,
        examples_per_operation_and_mode=examples,
        operations_answered_2xx=succeeded,
    )
    assert not found, f"{len(found)} server error(s):\n\n" + "\n\n".join(found[:10])
    # Not a vacuous run: the tokens were accepted and most operations did their work at least
    # once (a few, like triage, need a file the fuzzer is unlikely to produce).
    assert cases >= len(operations) * 2
    assert not [label for label, c in statuses.items() if c[401]], statuses
    assert succeeded >= len(operations) // 2, statuses
