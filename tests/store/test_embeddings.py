"""A project's embeddings: computed at import into a row file, appended, rolled back, filled in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labelwise.exceptions import InvalidDataError
from labelwise.features import make_embedder
from labelwise.services.transfer import import_file
from labelwise.store import embeddings
from labelwise.store.features import project_features
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import count_items
from labelwise.store.projects import (
    ProjectSettings,
    create_project,
    get_project,
    update_settings,
)
from labelwise.store.row_file import embedding_file

WORDS = [
    "cheap",
    "loan",
    "prize",
    "call",
    "now",
    "meeting",
    "lunch",
    "tomorrow",
    "invoice",
    "thanks",
    "love",
    "weekend",
]


def _texts(n: int, seed: int, prefix: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) for _ in range(n)]
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(n)], "text": texts})


class Project:
    """A text project on ``db`` whose items are embedded (or not, by ``features``)."""

    def __init__(self, db, root: Path, features: str = "embedding") -> None:
        self.db = db
        self.folder = ProjectFolder.create(root, root.name)
        with db.write() as s:
            self.id = create_project(
                s,
                name=root.name,
                kind="text",
                labels=["a", "b"],
                settings=ProjectSettings(features=features),
            ).id

    def load(self, path: Path) -> int:
        with self.db.write() as s:
            return import_file(s, get_project(s, project_id=self.id), self.folder, path)

    def count(self) -> int:
        with self.db.read() as s:
            return count_items(s, get_project(s, project_id=self.id))

    @property
    def rows(self):
        return embedding_file(self.folder.features_dir, "wordllama")

    def features(self):
        with self.db.read() as s:
            return project_features(s, get_project(s, project_id=self.id), self.folder)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(embeddings, "EMBED_CHUNK", 64)


def test_an_import_embeds_every_item_once_and_a_later_one_appends(db, tmp_path, small_chunks):
    project = Project(db, tmp_path / "p")
    first, second = _texts(300, 0, "a"), _texts(150, 1, "b")
    first.to_csv(tmp_path / "a.csv", index=False)
    second.to_csv(tmp_path / "b.csv", index=False)
    assert project.load(tmp_path / "a.csv") == 300
    assert project.rows.rows_on_disk() == 300
    project.load(tmp_path / "b.csv")
    features = project.features()
    assert features.spec.name == "embedding:wordllama"
    assert features.X.shape == (450, 256) and isinstance(features.X, np.memmap)
    expected = make_embedder("wordllama").embed([*first["text"], *second["text"]])
    np.testing.assert_allclose(features.X, expected, atol=1e-6)
    assert project.rows.info()["embedder"] == "wordllama"


def test_a_failed_import_leaves_neither_items_nor_embedding_rows(
    db, tmp_path, small_chunks, monkeypatch
):
    project = Project(db, tmp_path / "p")
    _texts(200, 0, "a").to_csv(tmp_path / "a.csv", index=False)
    project.load(tmp_path / "a.csv")
    size = project.rows.path.stat().st_size
    real = make_embedder("wordllama")
    calls = []

    class Failing:  # fails in the fourth chunk, after three were written
        name, dim, modality = real.name, real.dim, real.modality

        def embed(self, batch):
            calls.append(len(batch))
            if len(calls) == 4:
                raise OSError("No space left on device")
            return real.embed(batch)

    monkeypatch.setattr(embeddings, "make_embedder", lambda name: Failing())
    _texts(500, 1, "b").to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(OSError, match="No space left"):
        project.load(tmp_path / "b.csv")
    assert project.count() == 200
    assert project.rows.path.stat().st_size == size
    assert np.load(project.rows.path, mmap_mode="r").shape == (200, 256)
    monkeypatch.undo()
    assert project.load(tmp_path / "b.csv") == 500  # the lock was released
    assert project.features().X.shape == (700, 256)


def test_a_project_that_turns_to_embeddings_has_them_filled_in_by_the_first_read(db, tmp_path):
    project = Project(db, tmp_path / "p", features="tfidf")
    frame = _texts(120, 0, "a")
    frame.to_csv(tmp_path / "a.csv", index=False)
    project.load(tmp_path / "a.csv")
    assert not project.rows.exists()  # TF-IDF needs no embedding
    assert project.features().blocks == {"tfidf": (0, project.features().X.shape[1])}
    with db.write() as s:
        update_settings(s, get_project(s, project_id=project.id), {"features": "tfidf+embedding"})
    features = project.features()
    dim = 256
    assert features.blocks["embedding"] == (0, dim)
    assert project.rows.rows_on_disk() == 120
    # side by side, each row of unit norm; the embedding block is the embedder's rows, scaled
    part = features.part("embedding").toarray()
    rows = make_embedder("wordllama").embed(list(frame["text"]))
    np.testing.assert_allclose(part / np.linalg.norm(part, axis=1, keepdims=True), rows, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(features.X.multiply(features.X).sum(axis=1)), 1.0, 1e-5)


def test_a_file_of_another_embedder_is_refused_not_mixed(db, tmp_path):
    project = Project(db, tmp_path / "p")
    _texts(50, 0, "a").to_csv(tmp_path / "a.csv", index=False)
    project.load(tmp_path / "a.csv")
    info = project.rows.columns_path
    info.write_text(info.read_text().replace('"wordllama"', '"other"'))
    _texts(10, 1, "b").to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(InvalidDataError, match="holds embeddings of 'other'"):
        project.load(tmp_path / "b.csv")
    assert project.count() == 50


def test_features_that_do_not_fit_the_kind_are_refused_at_creation_and_in_settings(db, tmp_path):
    from labelwise.exceptions import InvalidParameterError

    with db.write() as s, pytest.raises(InvalidParameterError, match="do not apply to text"):
        create_project(
            s, name="x", kind="text", labels=["a", "b"], settings=ProjectSettings(features="pixels")
        )
    project = Project(db, tmp_path / "p")
    with db.write() as s:
        found = get_project(s, project_id=project.id)
        with pytest.raises(InvalidParameterError, match="embeds images, not texts"):
            update_settings(s, found, {"features": "embedding:randconv"})
        # stored in its canonical spelling
        assert update_settings(s, found, {"features": "tfidf+embedding"}).features == (
            "tfidf+embedding:wordllama"
        )
