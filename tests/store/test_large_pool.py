"""Pools larger than memory: tabular features written once, at import, a chunk at a time, into a
memory-mapped file; appended by later imports; all or nothing with the database transaction.

Sizes are small (tens of thousands of rows, chunks of a few thousand) so that every path that a
ten-million-row pool takes runs here in seconds: ``benchmarks/large_pool.py`` runs the big one.
"""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from labelwise.exceptions import InvalidDataError
from labelwise.io import chunks as _chunks
from labelwise.io import stream as _stream
from labelwise.io.load import load_dataset, open_tabular_stream
from labelwise.models.explain import near_duplicates, nearest_labeled
from labelwise.services.setup import init_project
from labelwise.services.transfer import import_file
from labelwise.store import row_file
from labelwise.store.features import item_fields, load_features
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import ItemRecord, add_items, count_items
from labelwise.store.models import Item, Label, QueueEntry
from labelwise.store.projects import ProjectSettings, create_project, get_project
from labelwise.store.row_file import TabularStore

N = 50_000
D = 6
CHUNK = 4096


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few thousand rows (and delimited files larger than 64 KiB read in chunks)."""
    monkeypatch.setattr(_chunks, "DEFAULT_CHUNK_ROWS", CHUNK)
    monkeypatch.setattr(_stream, "SAMPLE_BYTES", 65_536)
    monkeypatch.setattr(_stream, "SAMPLE_ROWS", 5_000)


def _frame(n: int, *, seed: int = 0, prefix: str = "r", labels: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.normal(size=(n, D)).astype(np.float32), columns=[f"x{j}" for j in range(D)]
    )
    frame.insert(0, "id", [f"{prefix}{i}" for i in range(n)])
    if labels:
        frame["label"] = np.where(frame["x0"] > 0, "pos", "neg")
    return frame


class Project:
    """A tabular project on the test database, in its own folder."""

    def __init__(self, db, root: Path, *, overlap: float = 0.0):
        self.db = db
        self.folder = ProjectFolder.create(root, root.name)
        with db.write() as s:
            self.id = create_project(
                s,
                name=root.name,
                kind="tabular",
                labels=["neg", "pos"],
                settings=ProjectSettings(overlap=overlap),
            ).id

    def load(self, path: Path, **kwargs) -> int:
        with self.db.write() as s:
            return import_file(s, get_project(s, project_id=self.id), self.folder, path, **kwargs)

    def count(self) -> int:
        with self.db.read() as s:
            return count_items(s, get_project(s, project_id=self.id))

    def items(self) -> list[Item]:
        with self.db.read() as s:
            stmt = select(Item).where(Item.project_id == self.id).order_by(Item.row)
            return list(s.scalars(stmt))

    def matrix(self) -> np.ndarray:
        with self.db.read() as s:
            return load_features(s, get_project(s, project_id=self.id), self.folder)

    @property
    def store(self) -> TabularStore:
        return TabularStore(self.folder.features_dir)


# ------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "npy"])
def test_a_stream_reads_what_load_dataset_reads(tmp_path, small_chunks, fmt):
    frame = _frame(20_000, labels=fmt != "npy")
    path = tmp_path / f"data.{fmt}"
    if fmt == "npy":
        np.save(path, frame.drop(columns="id").to_numpy())
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    assert path.stat().st_size > 65_536  # larger than the sample: read in chunks
    whole = load_dataset(path, strict_ids=True)
    stream = open_tabular_stream(path)
    assert stream is not None
    chunks = list(stream.chunks())
    assert len(chunks) == -(-len(frame) // CHUNK)
    assert [c.start for c in chunks] == list(range(0, len(frame), CHUNK))
    assert stream.feature_names == whole.feature_names
    assert stream.dtype == (np.float64 if fmt in ("csv", "tsv") else np.float32)
    features = np.concatenate([c.features for c in chunks])
    np.testing.assert_array_equal(features, whole.items.astype(stream.dtype))
    assert np.concatenate([c.ids for c in chunks]).tolist() == whole.ids.tolist()
    if fmt != "npy":
        labels = np.concatenate([c.labels for c in chunks]).tolist()
        assert labels == [str(v) for v in whole.labels]
        assert stream.label_values() == ["neg", "pos"]


def test_text_files_are_not_streams(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame(
        {"text": ["a fine long review of a film"] * 30, "label": ["pos", "neg"] * 15}
    ).to_csv(path, index=False)
    assert open_tabular_stream(path) is None
    assert open_tabular_stream(path, text_column="text") is None


def test_chunked_csv_errors_name_the_column_and_the_row_in_the_file(tmp_path, small_chunks):
    frame = _frame(20_000).astype({"x2": object})
    frame.loc[15_001, "x2"] = "n/a"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    stream = open_tabular_stream(path)
    assert stream is not None
    with pytest.raises(InvalidDataError, match=r"feature column 'x2' is not numeric.*15001"):
        list(stream.chunks())
    frame.loc[15_001, "x2"] = ""
    frame.loc[19_000, "id"] = "r7"
    frame.to_csv(path, index=False)
    stream = open_tabular_stream(path)
    assert stream is not None
    with pytest.raises(InvalidDataError, match=r"'x2' holds a missing value.*first at row 15001"):
        list(stream.chunks())


# ------------------------------------------------------------------------------------ writing


def test_import_writes_features_once_chunk_by_chunk(db, tmp_path, small_chunks, monkeypatch):
    frame = _frame(N)
    path = tmp_path / "pool.parquet"
    frame.to_parquet(path, row_group_size=10_000)
    writes: list[int] = []
    write = row_file.RowAppender.write

    def spy(self, block):
        writes.append(len(block))
        return write(self, block)

    monkeypatch.setattr(row_file.RowAppender, "write", spy)

    def whole_file(*args, **kwargs):
        raise AssertionError("a Parquet file must not be read whole")

    monkeypatch.setattr("labelwise.services.transfer.read_data", whole_file)
    project = Project(db, tmp_path / "p")
    assert project.load(path) == N
    assert len(writes) == -(-N // CHUNK) and max(writes) <= CHUNK
    items = project.items()
    assert [i.row for i in items] == list(range(N))
    assert {i.content for i in items} == {""}  # fields live in the feature file only
    assert items[0].meta == {"source": "pool.parquet"}
    matrix = project.matrix()
    assert isinstance(matrix, np.memmap) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, frame.drop(columns=["id", "label"]).to_numpy())
    # the file stays a valid .npy file, and what a user sees is the data's values
    assert np.load(project.store.path, mmap_mode="r").shape == (N, D)
    fields = item_fields(project.folder, [items[0], items[-1]])
    assert fields[0] == {f"x{j}": float(str(frame.iloc[0, j + 1])) for j in range(D)}
    assert json.dumps(fields[1])  # plain floats


def test_import_memory_is_bounded_by_the_chunk_not_the_file(db, tmp_path, small_chunks):
    frame = _frame(24_000)
    frame.iloc[:6_000].to_parquet(tmp_path / "quarter.parquet")
    frame.to_parquet(tmp_path / "whole.parquet")
    peaks = []
    for name in ("quarter", "whole"):
        project = Project(db, tmp_path / name)
        tracemalloc.start()
        try:
            project.load(tmp_path / f"{name}.parquet")
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # Four times the rows, about the same peak of Python and numpy allocations: what is held
    # at once is a chunk, whatever the file's size.
    assert peaks[1] < 1.5 * peaks[0]


def test_a_later_import_appends_in_the_projects_column_order(db, tmp_path, small_chunks):
    project = Project(db, tmp_path / "p")
    first = _frame(10_000)
    first.to_parquet(tmp_path / "a.parquet")
    project.load(tmp_path / "a.parquet")
    second = _frame(9_000, seed=1, prefix="s")
    columns = ["label", "x3", "id", *[f"x{j}" for j in range(D) if j != 3]]
    second[columns].to_csv(tmp_path / "b.csv", index=False)  # other order, other format
    assert project.load(tmp_path / "b.csv") == 9_000
    matrix = project.matrix()
    assert matrix.shape == (19_000, D)
    expected = pd.concat([first, second]).drop(columns=["id", "label"]).to_numpy()
    np.testing.assert_allclose(matrix, expected, rtol=1e-6)  # the CSV's decimals, as float32
    assert np.load(project.store.path, mmap_mode="r").shape == (19_000, D)
    (tmp_path / "c.csv").write_text("id,x0,w\nz,1,2\n")
    with pytest.raises(InvalidDataError, match="c.csv has the fields x0, w but the project's"):
        project.load(tmp_path / "c.csv")


@pytest.mark.parametrize("problem", ["bad value", "id imported before", "id twice in the file"])
def test_a_failed_import_leaves_neither_items_nor_feature_rows(db, tmp_path, small_chunks, problem):
    project = Project(db, tmp_path / "p")
    _frame(5_000).to_parquet(tmp_path / "a.parquet")
    project.load(tmp_path / "a.parquet")
    size = project.store.path.stat().st_size
    frame = _frame(30_000, seed=2, prefix="t")
    if problem == "bad value":
        frame.loc[25_000, "x1"] = np.nan  # in the seventh chunk, after six were written
    elif problem == "id imported before":
        frame.loc[25_000, "id"] = "r17"
    else:
        frame.loc[25_000, "id"] = "t3"  # an earlier chunk's id: only the database sees it
    frame.to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InvalidDataError, match="b.parquet"):
        project.load(tmp_path / "b.parquet")
    assert project.count() == 5_000
    assert project.store.path.stat().st_size == size
    assert np.load(project.store.path, mmap_mode="r").shape == (5_000, D)
    frame.loc[25_000, ["x1", "id"]] = [0.5, "t25000"]
    frame.to_parquet(tmp_path / "b.parquet")
    assert project.load(tmp_path / "b.parquet") == 30_000  # the lock was released
    assert project.matrix().shape == (35_000, D)


def test_rows_go_when_the_transaction_rolls_back_after_the_import(db, tmp_path, small_chunks):
    project = Project(db, tmp_path / "p")
    _frame(5_000).to_parquet(tmp_path / "a.parquet")
    sizes = []

    def import_then_fail() -> None:
        with db.write() as s:
            found = get_project(s, project_id=project.id)
            import_file(s, found, project.folder, tmp_path / "a.parquet")
            sizes.append(project.store.path.stat().st_size)
            raise RuntimeError("something after the import failed")

    with pytest.raises(RuntimeError, match="after the import"):
        import_then_fail()
    assert sizes[0] > 5_000 * D * 4  # the rows were written, then cut off by the rollback
    assert project.count() == 0
    assert project.store.rows_on_disk() == 0


def test_two_imports_in_one_transaction_share_the_append(db, tmp_path, small_chunks):
    project = Project(db, tmp_path / "p")
    _frame(5_000).to_parquet(tmp_path / "a.parquet")
    _frame(6_000, seed=1, prefix="s").to_parquet(tmp_path / "b.parquet")
    with db.write() as s:
        found = get_project(s, project_id=project.id)
        import_file(s, found, project.folder, tmp_path / "a.parquet")
        import_file(s, found, project.folder, tmp_path / "b.parquet")  # no wait for itself
    assert project.matrix().shape == (11_000, D)
    assert item_fields(project.folder, project.items()[5_000:5_001])[0]["x0"] == float(
        str(_frame(6_000, seed=1)["x0"].iloc[0])
    )


def test_a_tail_left_by_a_killed_import_is_never_read_and_is_cut_off(db, tmp_path, small_chunks):
    project = Project(db, tmp_path / "p")
    _frame(5_000).to_parquet(tmp_path / "a.parquet")
    project.load(tmp_path / "a.parquet")
    with project.store.path.open("ab") as fh:  # what a process killed mid-import leaves
        fh.write(np.full((700, D), 9.0, dtype=np.float32).tobytes())
    assert project.matrix().shape == (5_000, D)
    _frame(3_000, seed=3, prefix="u").to_parquet(tmp_path / "b.parquet")
    project.load(tmp_path / "b.parquet")
    matrix = project.matrix()
    assert matrix.shape == (8_000, D) and not (matrix == 9.0).any()
    assert project.store.rows_on_disk() == 8_000


def test_imported_labels_and_overlap_targets(db, tmp_path, small_chunks):
    project = Project(db, tmp_path / "p", overlap=0.5)
    frame = _frame(12_000)
    frame.loc[::3, "label"] = None  # a third have no label
    frame.to_parquet(tmp_path / "a.parquet")
    project.load(tmp_path / "a.parquet", with_labels=True)
    items = project.items()
    with db.read() as s:
        labels = dict(s.execute(select(Label.item_id, Label.value)).all())
    assert len(labels) == 8_000
    expected = [None if pd.isna(v) else v for v in frame["label"]]
    for item, label in zip(items, expected, strict=True):
        assert labels.get(item.id) == label
        assert item.n_labels == (label is not None)
        assert item.done == (label is not None and item.target == 1)
    assert 0.45 < np.mean([i.target == 2 for i in items]) < 0.55
    frame.loc[5_000, "label"] = "maybe"
    frame.assign(id=frame["id"] + "b").to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InvalidDataError, match="row 5000 .*'maybe' is not one of the project"):
        project.load(tmp_path / "b.parquet", with_labels=True)


def test_items_stored_as_json_by_earlier_releases_get_a_feature_file(db, tmp_path, small_chunks):
    project = Project(db, tmp_path / "p")
    rng = np.random.default_rng(4)
    values = rng.normal(size=(6_000, 2))
    records = [
        ItemRecord(f"old{i}", json.dumps({"a": float(a), "b": float(b)}))
        for i, (a, b) in enumerate(values)
    ]
    with db.write() as s:
        add_items(s, get_project(s, project_id=project.id), records)
    np.testing.assert_array_equal(project.matrix(), values)  # built from the JSON, in chunks
    pd.DataFrame({"id": ["new0"], "b": [2.0], "a": [1.0]}).to_csv(tmp_path / "n.csv", index=False)
    project.load(tmp_path / "n.csv")
    assert project.matrix()[-1].tolist() == [1.0, 2.0]
    items = project.items()
    assert item_fields(project.folder, [items[0], items[-1]]) == [
        {"a": values[0, 0], "b": values[0, 1]},
        {"a": 1.0, "b": 2.0},
    ]


def test_init_streams_a_parquet_file_and_infers_its_label_set(tmp_path, db_url, small_chunks):
    frame = _frame(20_000)
    frame.to_parquet(tmp_path / "pool.parquet")
    op, _ = init_project(tmp_path / "proj", tmp_path / "pool.parquet", db_url=db_url)
    try:
        project = op.project()
        assert (project.kind, project.label_set) == ("tabular", ["neg", "pos"])
        with op.db.read() as s:
            assert count_items(s, project) == 20_000
            assert s.scalar(select(Label.id).limit(1)) is None  # labels only suggest the set
    finally:
        op.db.dispose()


# ------------------------------------------------------------------------------------- worker


def test_the_worker_fits_on_labeled_rows_and_reads_items_by_row(
    tmp_path, db_url, small_chunks, monkeypatch
):
    from labelwise.services import cycle, worker
    from labelwise.store.pool_index import PoolItems

    frame = _frame(N)
    seed = frame.iloc[:60]
    seed.to_csv(tmp_path / "seed.csv", index=False)
    frame.iloc[60:].drop(columns="label").to_parquet(tmp_path / "pool.parquet")
    settings = ProjectSettings(queue_size=50, retrain_every=5, overlap=0.0)
    op, _ = init_project(
        tmp_path / "proj", tmp_path / "seed.csv", with_labels=True, settings=settings, db_url=db_url
    )
    fitted: list[tuple[int, int]] = []
    fit_model = cycle.fit_model

    def spy_fit(template, X, y, extra):
        fitted.append(X.shape)
        return fit_model(template, X, y, extra)

    fetched: list[int] = []
    prefetch = PoolItems.prefetch

    def spy_prefetch(self, rows):
        rows = list(rows)
        fetched.extend(rows)
        return prefetch(self, rows)

    monkeypatch.setattr(cycle, "fit_model", spy_fit)
    monkeypatch.setattr(PoolItems, "prefetch", spy_prefetch)
    try:
        with op.db.write() as s:
            import_file(
                s, get_project(s, project_id=op.project_id), op.folder, tmp_path / "pool.parquet"
            )
        assert worker.train_once(op.folder, op.db).status == "trained"
        assert fitted == [(60, D)]  # the labeled rows only
        assert len(set(fetched)) < 50 * 30  # the queue, its neighbours and duplicates: not 50,000
        with op.db.read() as s:
            queue = s.scalars(select(QueueEntry)).all()
            rows = dict(s.execute(select(Item.id, Item.row)).all())
        assert 0 < len(queue) <= 50
        assert all(rows[e.item_id] >= 60 for e in queue)  # open items only
        # the previews of the (close) neighbours shown come from the feature file
        preview = next(e for e in queue if e.reason["neighbors"]).reason["neighbors"][0]["preview"]
        assert set(json.loads(preview)) == {f"x{j}" for j in range(D)}
    finally:
        op.db.dispose()


def test_near_duplicates_scan_finds_what_a_full_ranking_finds():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(80_000, 8))
    X[100:160] = X[5] + rng.normal(scale=0.05, size=(60, 8))  # many close copies of row 5
    X[50_000:50_003] = X[7]
    among = np.union1d(np.sort(rng.choice(80_000, 60_000, replace=False)), [5, 7, 100, 50_000])
    rows = np.array([5, 7, 100, 50_000, int(among[-1])])
    for threshold, k in ((0.9, 20), (0.999, 3), (0.5, 5)):
        neighbours, sims = nearest_labeled(X, rows, among, k=k + 1)
        expected = [
            [
                (int(n), float(s))
                for n, s in zip(ns, ss, strict=True)
                if n != row and s >= threshold
            ][:k]
            for row, ns, ss in zip(rows, neighbours, sims, strict=True)
        ]
        found = near_duplicates(X, rows, among, threshold=threshold, k=k)
        assert [[n for n, _ in f] for f in found] == [[n for n, _ in e] for e in expected]
        for f, e in zip(found, expected, strict=True):
            np.testing.assert_allclose([s for _, s in f], [s for _, s in e])


def test_a_tabular_export_reads_the_feature_file(db, tmp_path, small_chunks):
    from labelwise.services.export import export_project

    project = Project(db, tmp_path / "p")
    _frame(3_000).to_parquet(tmp_path / "a.parquet")
    project.load(tmp_path / "a.parquet", with_labels=True)
    out = tmp_path / "out.csv"
    with db.read() as s:
        export_project(s, get_project(s, project_id=project.id), "csv", out, folder=project.folder)
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3_000
    assert list(rows[0])[: D + 1] == ["id", *[f"x{j}" for j in range(D)]]
    assert np.float32(rows[10]["x4"]) == project.matrix()[10, 4]
