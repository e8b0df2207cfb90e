"""Loading datasets: the real files under ../shared/data, small fixtures, and every error."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.io import load as data_module
from labelwise.io.load import Dataset, load_dataset
from shared_data import SHARED, require_shared

FIXTURES = Path(__file__).parent / "fixtures"
SMS = SHARED / "text" / "sms_spam" / "SMSSpamCollection"
SENTENCES = SHARED / "text" / "sentiment_labelled_sentences"
TABULAR = SHARED / "benchmark-tabular"
PNEUMONIA = SHARED / "image" / "pneumoniamnist" / "pneumoniamnist_reconstructed.npz"


_require = require_shared  # skipped where missing, a failure in CI


def _benchmark_shapes() -> list[Any]:
    properties = TABULAR / "dataset_properties.txt"
    if not properties.exists():
        # One case that asks for the file: skipped without it (a failure in CI), where an
        # empty parameter list would be skipped silently everywhere.
        return [pytest.param("dataset_properties.txt", 0, 0, 0, id="properties-missing")]
    pattern = re.compile(r"^(\S+)\s+n=\s*(\d+) d=\s*(\d+) K=\s*(\d+)")
    lines = properties.read_text().splitlines()
    return [(m[1], int(m[2]), int(m[3]), int(m[4])) for line in lines if (m := pattern.match(line))]


# ------------------------------------------------------------------------------- real datasets


def test_sms_spam_collection_loads_every_row_without_a_header() -> None:
    ds = load_dataset(_require(SMS))
    assert ds.kind == "text"
    assert len(ds) == 5574
    labels, counts = np.unique(ds.require_labels(), return_counts=True)
    assert dict(zip(labels, counts, strict=True)) == {"ham": 4827, "spam": 747}
    assert ds.items[0].startswith("Go until jurong point")
    assert ds.feature_names == ("1",)
    assert list(ds.ids[:3]) == ["0", "1", "2"]
    # Quotes are characters, not field delimiters: no row swallowed the next one.
    assert sum('"' in text for text in ds.items) > 100
    assert max(text.count("\n") for text in ds.items) == 0
    # cp1252 punctuation stored as C1 controls is mapped back to the intended characters.
    assert not any(re.search("[\x80-\x9f]", text) for text in ds.items)


def test_sms_spam_collection_is_sniffed_under_any_name(tmp_path: Path) -> None:
    copy = tmp_path / "sms.data"
    shutil.copy(_require(SMS), copy)
    ds = load_dataset(copy)
    assert (ds.kind, len(ds), ds.require_labels()[0]) == ("text", 5574, "ham")


@pytest.mark.parametrize("name", ["imdb", "amazon_cells", "yelp"])
def test_sentiment_sentences_have_int_labels_and_no_header(name: str) -> None:
    ds = load_dataset(_require(SENTENCES / f"{name}_labelled.txt"))
    assert ds.kind == "text"
    assert len(ds) == 1000
    assert ds.labels is not None
    assert ds.labels.dtype == np.int64
    assert np.bincount(ds.labels).tolist() == [500, 500]
    assert ds.feature_names == ("0",)


def test_imdb_first_row_is_data() -> None:
    ds = load_dataset(_require(SENTENCES / "imdb_labelled.txt"))
    assert ds.items[0].startswith("A very, very, very slow-moving, aimless movie")
    assert ds.labels is not None
    assert ds.labels[0] == 0


def test_heart_libsvm_stays_sparse() -> None:
    ds = load_dataset(_require(TABULAR / "heart-svmstyle.txt"))
    assert ds.kind == "tabular"
    assert isinstance(ds.items, sp.csr_matrix)
    assert ds.items.shape == (270, 13)
    assert ds.items.dtype == np.float64
    assert ds.feature_names == tuple(f"f{j}" for j in range(1, 14))
    assert ds.labels is not None
    assert ds.labels.dtype == np.int64
    assert dict(zip(*np.unique(ds.labels, return_counts=True), strict=True)) == {-1: 150, 1: 120}


@pytest.mark.parametrize(("name", "n", "d", "k"), _benchmark_shapes())
def test_benchmark_libsvm_shapes_match_their_properties(name: str, n: int, d: int, k: int) -> None:
    ds = load_dataset(_require(TABULAR / name))
    assert ds.items.shape == (n, d)
    assert ds.labels is not None
    assert len(np.unique(ds.labels)) == k


def test_pneumoniamnist_concatenates_train_val_test() -> None:
    ds = load_dataset(_require(PNEUMONIA))
    assert ds.kind == "image"
    assert ds.items.shape == (4708 + 524 + 624, 28, 28)
    assert ds.items.dtype == np.uint8
    assert ds.labels is not None
    assert ds.labels.dtype == np.int64
    assert np.bincount(ds.labels).tolist() == [1214 + 135 + 234, 3494 + 389 + 390]
    # The train split comes first, its normal (0) images ahead of the pneumonia (1) ones.
    assert (ds.labels[:1214] == 0).all()
    assert (ds.labels[1214:4708] == 1).all()


# ------------------------------------------------------------------------------ delimited text


def test_csv_with_header_uses_named_columns() -> None:
    ds = load_dataset(FIXTURES / "reviews.csv")
    assert ds.kind == "text"
    assert len(ds) == 8
    assert ds.feature_names == ("text",)
    assert ds.items[0] == "Win a free cruise, reply YES now to claim"
    assert list(ds.ids[:2]) == ["m1", "m2"]
    assert ds.labels is not None
    assert ds.labels[3] == "ham"
    assert ds.source == str(FIXTURES / "reviews.csv")


def test_csv_header_found_without_a_numeric_column(tmp_path: Path) -> None:
    path = tmp_path / "two.csv"
    path.write_text("text,label\nhello there friend,a\nsee you soon,b\nnot today,a\n")
    ds = load_dataset(path)
    assert len(ds) == 3
    assert ds.feature_names == ("text",)
    assert list(ds.require_labels()) == ["a", "b", "a"]


def test_headerless_tsv_infers_label_and_keeps_stray_quotes() -> None:
    ds = load_dataset(FIXTURES / "messages.tsv")
    assert ds.kind == "text"
    assert len(ds) == 10
    assert ds.feature_names == ("1",)
    assert ds.items[1] == '"FREE entry to win a prize, text WIN now'
    assert ds.items[2] == 'He said "no" and left'
    assert ds.labels is not None
    assert list(ds.labels[:3]) == ["ham", "spam", "ham"]


def test_columns_by_position(tmp_path: Path) -> None:
    ds = load_dataset(FIXTURES / "messages.tsv", text_column="1", label_column="0")
    assert ds.labels is not None
    assert ds.labels[1] == "spam"
    by_name = load_dataset(FIXTURES / "reviews.csv", text_column="0", label_column="label")
    assert by_name.feature_names == ("text",)


def test_no_suffix_file_is_sniffed_as_tab_separated(tmp_path: Path) -> None:
    copy = tmp_path / "messages"
    shutil.copy(FIXTURES / "messages.tsv", copy)
    ds = load_dataset(copy)
    assert (len(ds), ds.feature_names) == (10, ("1",))


def test_semicolon_file_with_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "export.dat"
    path.write_text("id;comment;class\n1;great value for money;pos\n2;broke in a day;neg\n")
    ds = load_dataset(path)
    assert ds.kind == "text"
    assert ds.feature_names == ("comment",)
    assert list(ds.ids) == ["1", "2"]
    assert list(ds.require_labels()) == ["pos", "neg"]


def test_mixed_encodings_lose_no_row(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tsv"
    utf8 = "ham\tcaf\u00e9 at 5\nham\tna\u00efve question\n".encode()
    path.write_bytes(utf8 + b"spam\tWin \xa3100 now, it\x92s free\n")
    ds = load_dataset(path)
    assert list(ds.items) == [
        "caf\u00e9 at 5",
        "na\u00efve question",
        "Win \u00a3100 now, it\u2019s free",
    ]


def test_numeric_csv_is_tabular() -> None:
    ds = load_dataset(FIXTURES / "tabular.csv")
    assert ds.kind == "tabular"
    assert ds.feature_names == ("f1", "f2", "f3")
    assert ds.items.dtype == np.float64
    assert ds.items.shape == (6, 3)
    assert ds.items[3, 2] == pytest.approx(1e-3)
    assert list(ds.ids[:2]) == ["a", "b"]
    assert ds.labels is not None
    assert ds.labels.dtype == np.int64


def test_feature_columns_choose_and_order_columns() -> None:
    ds = load_dataset(FIXTURES / "tabular.csv", feature_columns=["f3", "1"])
    assert ds.feature_names == ("f3", "f1")
    assert ds.items[0].tolist() == [-2.0, 0.5]


def test_headerless_numeric_csv(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("0.5,1.5,2.5\n1.0,2.0,3.0\n")
    ds = load_dataset(path)
    assert ds.kind == "tabular"
    assert ds.items.shape == (2, 3)
    assert ds.feature_names == ("0", "1", "2")
    assert ds.labels is None


def test_missing_labels_become_none_and_require_labels_says_where() -> None:
    ds = load_dataset(FIXTURES / "records.jsonl")
    assert ds.labels is not None
    assert ds.labels[2] is None
    with pytest.raises(InvalidDataError, match=r"1 of 4 items have no label \(first at row 2\)"):
        ds.require_labels()


def test_require_labels_without_label_column(tmp_path: Path) -> None:
    path = tmp_path / "texts.csv"
    path.write_text("text\nfirst document here\nsecond document here\n")
    ds = load_dataset(path)
    assert ds.labels is None
    with pytest.raises(InvalidDataError, match="has no label column"):
        ds.require_labels()


# ----------------------------------------------------------------------- JSON, Parquet, LIBSVM


def test_jsonl_records() -> None:
    ds = load_dataset(FIXTURES / "records.jsonl")
    assert ds.kind == "text"
    assert len(ds) == 4  # the blank line is ignored
    assert list(ds.ids) == ["101", "102", "103", "104"]
    assert ds.items[3] == "Arrived late and the box was damaged"


def test_json_list_of_records(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text(
        '[{"review": "loved it, would buy again", "target": 1}, '
        '{"review": "awful, returned it", "target": 0}]'
    )
    ds = load_dataset(path)
    assert ds.feature_names == ("review",)
    assert ds.labels is not None
    assert ds.labels.tolist() == [1, 0]


def test_parquet_keeps_int_labels(tmp_path: Path) -> None:
    path = tmp_path / "items.parquet"
    frame = pd.DataFrame(
        {"uid": ["x", "y", "z"], "body": ["a b c", "d e f", "g h i"], "label": [2, 0, 1]}
    )
    frame.to_parquet(path)
    ds = load_dataset(path)
    assert ds.kind == "text"
    assert list(ds.ids) == ["x", "y", "z"]
    assert ds.labels is not None
    assert ds.labels.dtype == np.int64
    assert ds.labels.tolist() == [2, 0, 1]


def test_libsvm_by_suffix_and_by_sniffing(tmp_path: Path) -> None:
    ds = load_dataset(FIXTURES / "sample.svm")
    assert isinstance(ds.items, sp.csr_matrix)
    assert ds.items.toarray().tolist() == [
        [0.5, 0.0, -2.0],
        [0.0, 1.5, 0.0],
        [1.0, 1.0, 1.0],
        [0.0, 0.0, 0.25],
    ]
    assert ds.labels is not None
    assert ds.labels.tolist() == [1, -1, 1, -1]
    copy = tmp_path / "sample.txt"
    shutil.copy(FIXTURES / "sample.svm", copy)
    assert load_dataset(copy).items.shape == (4, 3)


# --------------------------------------------------------------------------------- npz, images


def test_npz_images_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "images.npz"
    images = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    np.savez(path, images=images, labels=np.array([[1], [0], [1], [0]]))
    ds = load_dataset(path)
    assert ds.kind == "image"
    np.testing.assert_array_equal(ds.items, images)
    assert ds.labels is not None
    assert ds.labels.tolist() == [1, 0, 1, 0]


def test_npz_without_labels_and_as_matrix(tmp_path: Path) -> None:
    only = tmp_path / "only.npz"
    np.savez(only, images=np.zeros((3, 4, 4, 3), dtype=np.float32))
    assert load_dataset(only).labels is None
    matrix = tmp_path / "xy.npz"
    np.savez(matrix, X=np.eye(3), y=np.array(["a", "b", "a"]))
    ds = load_dataset(matrix)
    assert ds.kind == "tabular"
    assert ds.labels is not None
    assert list(ds.labels) == ["a", "b", "a"]


def test_npz_splits_in_train_val_test_order(tmp_path: Path) -> None:
    path = tmp_path / "splits.npz"
    splits = {name: np.full((2, 3, 3), value, dtype=np.uint8) for value, name in enumerate("tvs")}
    np.savez(
        path,
        test_images=splits["s"],
        test_labels=np.array([[2], [2]]),
        train_images=splits["t"],
        train_labels=np.array([[0], [0]]),
        val_images=splits["v"],
        val_labels=np.array([[1], [1]]),
    )
    ds = load_dataset(path)
    assert ds.items[:, 0, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.labels is not None
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]


def _png(path: Path, size: tuple[int, int] = (4, 3), mode: str = "L", value: int = 100) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, color).save(path)


def _class_folders(root: Path) -> Path:
    for label in ("cat", "dog"):
        for i in range(3):
            _png(root / label / f"{i}.png", value=10 * i + (0 if label == "cat" else 100))
    return root


def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    ds = load_dataset(_class_folders(tmp_path / "pets"))
    assert ds.kind == "image"
    assert ds.items.shape == (6, 3, 4)
    assert ds.items.dtype == np.uint8
    assert ds.labels is not None
    assert list(ds.labels) == ["cat"] * 3 + ["dog"] * 3
    assert list(ds.ids[:2]) == ["cat/0.png", "cat/1.png"]
    assert ds.items[4, 0, 0] == 110


def test_flat_image_folder_mixing_gray_and_color_is_rgb(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", mode="RGB")
    ds = load_dataset(tmp_path)
    assert ds.items.shape == (2, 3, 4, 3)
    assert ds.labels is None


def test_image_column_reads_paths_relative_to_the_file(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png", value=200)
    path = tmp_path / "index.csv"
    path.write_text("file,label\nimg/a.png,x\nimg/b.png,y\n")
    ds = load_dataset(path, image_column="file")
    assert ds.kind == "image"
    assert ds.items[:, 0, 0].tolist() == [100, 200]
    assert ds.labels is not None
    assert list(ds.labels) == ["x", "y"]


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd", "http://example.com/a.png"])
def test_image_column_paths_must_stay_in_the_folder(tmp_path: Path, bad: str) -> None:
    pytest.importorskip("PIL")
    (tmp_path / "data").mkdir()
    _png(tmp_path / "outside.png")
    path = tmp_path / "data" / "index.csv"
    path.write_text(f"file,label\n{bad},x\n")
    with pytest.raises(InvalidDataError, match="must be relative to .* and stay inside it"):
        load_dataset(path, image_column="file")


# ------------------------------------------------------------------------------------- Dataset


def test_subset_takes_rows_in_order() -> None:
    ds = load_dataset(FIXTURES / "reviews.csv")
    part = ds.subset(np.array([5, 0]))
    assert isinstance(part, Dataset)
    assert list(part.ids) == ["m6", "m1"]
    assert part.labels is not None
    assert list(part.labels) == ["spam", "spam"]
    assert len(part) == 2
    sparse = load_dataset(FIXTURES / "sample.svm").subset([3])
    assert sparse.items.shape == (1, 3)
    with pytest.raises(InvalidParameterError):
        ds.subset([8])


def test_dataset_checks_its_shapes() -> None:
    with pytest.raises(InvalidDataError, match="ids have shape"):
        Dataset("tabular", np.zeros((2, 2)), None, np.array(["0"], dtype=object))


# -------------------------------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataError, match=r"no such file or directory: .*nothing\.csv"):
        load_dataset(tmp_path / "nothing.csv")


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(InvalidDataError, match=r"empty\.csv is empty"):
        load_dataset(path)


def test_header_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("text,label\n")
    with pytest.raises(InvalidDataError, match="holds no rows"):
        load_dataset(path)


def test_unknown_column_lists_the_available_ones() -> None:
    with pytest.raises(InvalidDataError, match=r"'message' is not a column.*'text', 'label', 'id'"):
        load_dataset(FIXTURES / "reviews.csv", text_column="message")


def test_nan_feature_names_column_and_row(tmp_path: Path) -> None:
    path = tmp_path / "nan.csv"
    path.write_text("a,b,label\n1,2,0\n3,nan,1\n5,,0\n")
    with pytest.raises(InvalidDataError, match=r"feature column 'b' .*NaN.*row 1\)"):
        load_dataset(path)


def test_non_numeric_feature_column(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("a,b,label\n1,2,0\n3,red,1\n")
    with pytest.raises(
        InvalidDataError, match=r"feature column 'b' is not numeric \(row 1: 'red'\)"
    ):
        load_dataset(path, feature_columns=["a", "b"])


def test_missing_text_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text("text,label\nfirst,a\n,b\nthird,a\n")
    with pytest.raises(
        InvalidDataError, match=r"text column 'text' is empty in 1 rows \(first at row 1\)"
    ):
        load_dataset(path)


def test_malformed_jsonl_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n\n{"text": "broken", "label": \n')
    with pytest.raises(InvalidDataError, match=r"bad.jsonl, line 3: invalid JSON"):
        load_dataset(path)


def test_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "dups.csv"
    path.write_text("id,text\nk1,alpha\nk2,beta\nk1,gamma\n")
    with pytest.raises(InvalidDataError, match=r"duplicate id 'k1' \(rows 0 and 2\)"):
        load_dataset(path, id_column="id")


def test_inferred_id_column_must_be_unique_to_be_used(tmp_path: Path) -> None:
    path = tmp_path / "dups.csv"
    path.write_text("id,text\nk1,alpha beta gamma\nk1,delta epsilon zeta\n")
    assert list(load_dataset(path).ids) == ["0", "1"]


def test_non_image_file_in_image_folder(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = _class_folders(tmp_path / "pets")
    (root / "dog" / "3.png").write_text("not really a picture")
    with pytest.raises(InvalidDataError, match=r"3.png is not a readable image"):
        load_dataset(root)
    (root / "dog" / "3.png").unlink()
    (root / "dog" / "notes.txt").write_text("hello")
    with pytest.raises(InvalidDataError, match=r"notes.txt is not an image file"):
        load_dataset(root)


def test_mismatched_image_sizes(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = _class_folders(tmp_path / "pets")
    _png(root / "dog" / "big.png", size=(8, 8))
    with pytest.raises(InvalidDataError, match=r"big\.png is 8x8 pixels but .*0\.png is 4x3"):
        load_dataset(root)


def test_image_above_the_pixel_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("PIL")
    _png(tmp_path / "a.png")
    monkeypatch.setattr(data_module, "_MAX_IMAGE_PIXELS", 10)
    with pytest.raises(InvalidDataError, match="more than the limit"):
        load_dataset(tmp_path)


def test_missing_pillow_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(InvalidParameterError, match=r"pip install pillow"):
        load_dataset(tmp_path)


def test_missing_pyarrow_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(InvalidParameterError, match=r"pip install labelwise\[parquet\]"):
        load_dataset(path)


def test_unsupported_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(InvalidDataError, match=r"unsupported file type \.xlsx"):
        load_dataset(path)


def test_column_options_do_not_apply_to_libsvm() -> None:
    with pytest.raises(InvalidParameterError, match="no named columns"):
        load_dataset(FIXTURES / "sample.svm", label_column="label")


def test_conflicting_column_roles() -> None:
    with pytest.raises(InvalidParameterError, match="two roles"):
        load_dataset(FIXTURES / "reviews.csv", text_column="text", label_column="0")
    with pytest.raises(InvalidParameterError, match="not both"):
        load_dataset(FIXTURES / "reviews.csv", text_column="text", image_column="id")


def test_npz_with_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "odd.npz"
    np.savez(path, a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(InvalidDataError, match=r"holds arrays \['a', 'b'\]"):
        load_dataset(path)


def test_npz_labels_of_the_wrong_length(tmp_path: Path) -> None:
    path = tmp_path / "short.npz"
    np.savez(path, images=np.zeros((3, 2, 2), dtype=np.uint8), labels=np.array([0, 1]))
    with pytest.raises(InvalidDataError, match=r"labels have shape \(2,\), expected \(3,\)"):
        load_dataset(path)


def test_ragged_delimited_rows(tmp_path: Path) -> None:
    path = tmp_path / "ragged.tsv"
    path.write_text("a\tb\nc\td\te\n")
    with pytest.raises(InvalidDataError, match=r"cannot parse .*ragged\.tsv"):
        load_dataset(path)


# ------------------------------------------------------- what the readers say beyond errors


def _data_warnings(call: object) -> tuple[object, list[str]]:
    """``call()``'s result and the DataWarning messages it raised."""
    import warnings

    from labelwise.exceptions import DataWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        result = call()  # type: ignore[operator]
    return result, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_a_guessed_encoding_is_said_once(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tsv"
    utf8_lines = "ham\tcaf\u00e9 at 5\nham\tna\u00efve question\n".encode()
    path.write_bytes(utf8_lines + b"spam\tWin \xa3100, it\x92s free\n")
    ds, found = _data_warnings(lambda: load_dataset(path))
    assert list(ds.items)[2] == "Win \u00a3100, it\u2019s free"  # type: ignore[attr-defined]
    assert found == [
        "mixed.tsv is not UTF-8: the encoding was guessed line by line, 1 as cp1252 of its 3 "
        "lines (first at line 3), the rest as UTF-8; if accented letters look wrong, save the "
        "file as UTF-8"
    ]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"text,label\nna\xefve,a\nbad \x81 byte,b\n")  # 0x81: cp1252 has none
    _, found = _data_warnings(lambda: load_dataset(latin))
    assert "1 as cp1252 and 1 as latin-1 of its 3 lines (first at line 2)" in found[0]
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text("text,label\ncaf\u00e9,a\n", encoding="utf-8")
    assert _data_warnings(lambda: load_dataset(utf8))[1] == []


def test_a_small_tabular_stream_says_a_guessed_encoding_too(tmp_path: Path) -> None:
    from labelwise.io.load import open_tabular_stream

    path = tmp_path / "rows.csv"
    path.write_bytes(b"f1,f2,note\n1,2,x\n3,4,\xe9\n")
    stream, found = _data_warnings(lambda: open_tabular_stream(path, feature_columns=["f1", "f2"]))
    assert stream is not None and len(found) == 1 and "1 as cp1252" in found[0]


def test_where_ids_and_labels_come_from(tmp_path: Path) -> None:
    numbered = tmp_path / "plain.csv"
    numbered.write_text("text,category\nfirst text,a\nsecond text,b\n")
    ds = load_dataset(numbered)
    assert ds.ids_numbered and ds.label_column == "category"
    named = tmp_path / "named.csv"
    named.write_text("id,text\nx,first text\ny,second text\n")
    ds = load_dataset(named)
    assert not ds.ids_numbered and ds.label_column is None
    assert load_dataset(FIXTURES / "sample.svm").ids_numbered


def test_npz_splits_are_kept_and_classes_named(tmp_path: Path) -> None:
    path = tmp_path / "med.npz"
    np.savez(
        path,
        train_images=np.zeros((3, 2, 2), dtype=np.uint8),
        train_labels=np.array([[0], [1], [2]]),
        test_images=np.ones((2, 2, 2), dtype=np.uint8),
        test_labels=np.array([[2], [0]]),
        label_names=np.array(["cat", "dog", "owl"]),
    )
    ds = load_dataset(path)
    assert ds.splits is not None and ds.splits.tolist() == ["train"] * 3 + ["test"] * 2
    assert ds.classes == ("cat", "dog", "owl")
    assert ds.labels is not None and ds.labels.tolist() == ["cat", "dog", "owl", "owl", "cat"]
    assert ds.label_column == "labels"
    assert ds.subset([4, 0]).splits.tolist() == ["test", "train"]  # type: ignore[union-attr]
    given = load_dataset(path, label_names=["a", "b", "c"])  # the caller's names come first
    assert given.labels is not None and given.labels.tolist()[:3] == ["a", "b", "c"]
    with pytest.raises(InvalidDataError, match=r"label 2 \(row 2\) has no name"):
        load_dataset(path, label_names=["a", "b"])

    xy = tmp_path / "xy.npz"
    np.savez(xy, X_train=np.eye(2), y_train=np.array([0, 1]), X_val=np.ones((1, 2)), y_val=[1])
    ds = load_dataset(xy)
    assert ds.kind == "tabular" and ds.items.shape == (3, 2)
    assert ds.splits is not None and ds.splits.tolist() == ["train", "train", "val"]
    assert ds.label_column == "y"


def test_label_names_name_integer_labels_of_any_file(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text("text,label\nbuy now,1\nsee you,0\nno label here,\n")
    ds = load_dataset(path, label_names=["ham", "spam"])
    assert ds.labels is not None and ds.labels.tolist() == ["spam", "ham", None]
    assert ds.classes == ("ham", "spam")
    words = tmp_path / "words.csv"
    words.write_text("text,label\nbuy now,spam\n")
    with pytest.raises(InvalidDataError, match="name integer classes, but the label of row 0"):
        load_dataset(words, label_names=["ham", "spam"])
    with pytest.raises(InvalidParameterError, match="label_names names 'a' twice"):
        load_dataset(path, label_names=["a", "a"])


def test_both_readers_check_the_column_keywords_alike(tmp_path):
    from labelwise.io.columns import Columns
    from labelwise.io.load import open_tabular_stream

    matrix = tmp_path / "x.npy"
    np.save(matrix, np.ones((3, 2)))
    messages = []
    for read in (load_dataset, open_tabular_stream):
        with pytest.raises(InvalidParameterError, match="no named columns") as caught:
            read(matrix, label_column="y")
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    with pytest.raises(InvalidParameterError, match="not both"):
        Columns.of(text_column="a", image_column="b").check()
    with pytest.raises(InvalidParameterError, match="feature_columns is for tabular data"):
        Columns.of(text_column="a", feature_columns=["x"]).check()
    columns = Columns.of(label_column="0", feature_columns=["f1", "f2"], id_column="id")
    assert columns.named == {"0", "f1", "f2", "id"} and columns.header_names == {"f1", "f2", "id"}
