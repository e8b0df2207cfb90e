"""A served project per test: a small text project on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labelwise.server import ServerConfig, create_app
from labelwise.server.security import csrf_token
from labelwise.services.setup import OpenProject, init_project
from labelwise.store.annotators import create_annotator
from labelwise.store.projects import ProjectSettings, get_project

WORDS = {
    "spam": ["win", "prize", "cash", "free", "claim", "urgent", "offer", "call now"],
    "ham": ["lunch", "tomorrow", "meeting", "thanks", "see you", "home", "dinner", "later"],
}


def write_messages(path: Path, n: int = 60) -> Path:
    lines = ["id,text,label"]
    for i in range(n):
        label = "spam" if i % 3 == 0 else "ham"
        words = WORDS[label]
        text = f"{words[i % len(words)]} {words[(i * 5 + 1) % len(words)]} message {i}"
        lines.append(f"m{i},{text},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Served:
    client: TestClient
    project: OpenProject
    admin: str
    alice: str
    bob: str

    @property
    def pid(self) -> int:
        return self.project.project_id

    def h(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def api(self, path: str) -> str:
        return f"/api/projects/{self.pid}{path}"

    @property
    def cookie(self) -> str:
        """The name of the served project's sign-in cookie."""
        return str(self.client.app.state.labelwise.cookie)


def make_served(tmp_path: Path, db_url: str, *, settings: ProjectSettings | None = None) -> Served:
    data = write_messages(tmp_path / "messages.csv")
    opened, admin = init_project(
        tmp_path / "project",
        data,
        name=f"p-{tmp_path.name}",
        db_url=db_url,
        settings=settings or ProjectSettings(overlap=0.0, routine=0.0),
    )
    with opened.db.write() as session:
        project = get_project(session, project_id=opened.project_id)
        _, alice = create_annotator(session, project, name="alice", role="annotator")
        _, bob = create_annotator(session, project, name="bob", role="annotator")
    client = TestClient(create_app(ServerConfig(opened)))
    return Served(client, opened, admin, alice, bob)


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Served:
    s = make_served(tmp_path, db_url)
    yield s
    s.client.close()
    s.project.db.dispose()


__all__ = ["Served", "csrf_token", "make_served", "write_messages"]


@pytest.fixture
def served_with(tmp_path: Path, db_url: str) -> Iterator[Callable[[ProjectSettings], Served]]:
    """A served project with the settings a test gives."""
    made: list[Served] = []

    def make(settings: ProjectSettings) -> Served:
        made.append(make_served(tmp_path, db_url, settings=settings))
        return made[-1]

    yield make
    for s in made:
        s.client.close()
        s.project.db.dispose()
