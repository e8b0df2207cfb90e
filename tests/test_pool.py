"""Pool: indices over one matrix, labels as codes, memory maps and sparse matrices."""

import numpy as np
import pytest
import scipy.sparse as sp

from labelwise import InvalidDataError, InvalidParameterError, Pool, open_features


def test_labels_by_index_and_views():
    pool = Pool(np.zeros((6, 2)))
    pool.label([4, 1], ["dog", "cat"])
    assert pool.labeled.tolist() == [1, 4]
    assert pool.unlabeled.tolist() == [0, 2, 3, 5]
    assert pool.y_labeled.tolist() == ["cat", "dog"]
    pool.label([1], ["dog"])  # relabel replaces
    assert pool.labels_of([1]).tolist() == ["dog"]
    pool.unlabel([4])
    assert pool.labeled.tolist() == [1]


def test_integer_labels_stay_integers():
    pool = Pool(np.zeros((3, 1)))
    pool.label([0, 1], [1, -1])
    assert pool.y_labeled.dtype.kind == "i"


def test_declared_classes_fix_the_order():
    pool = Pool(np.zeros((3, 1)), classes=["pos", "neg"])
    pool.label([0], ["neg"])
    assert pool.classes.tolist() == ["pos", "neg"]


def test_missing_label_and_unlabeled_lookup_are_errors():
    pool = Pool(np.zeros((3, 1)))
    with pytest.raises(InvalidParameterError, match="label for item 2 is missing"):
        pool.label([2], [None])
    with pytest.raises(InvalidParameterError, match="item 0 has no label"):
        pool.labels_of([0])
    with pytest.raises(InvalidParameterError, match="unique"):
        pool.label([0, 0], ["a", "b"])


def test_pool_keeps_the_matrix_by_reference(tmp_path):
    X = np.arange(20, dtype=np.float64).reshape(10, 2)
    assert Pool(X).X is X
    path = tmp_path / "f.npy"
    np.save(path, X)
    mm = open_features(path)
    assert isinstance(mm, np.memmap)
    assert Pool(mm).X is mm
    sparse_path = tmp_path / "f.npz"
    sp.save_npz(sparse_path, sp.csr_matrix(X))
    assert sp.issparse(Pool(open_features(sparse_path)).X)


def test_open_features_errors(tmp_path):
    with pytest.raises(InvalidDataError, match="no such feature file"):
        open_features(tmp_path / "missing.npy")
    (tmp_path / "f.txt").write_text("1")
    with pytest.raises(InvalidDataError, match="expected .npy or .npz"):
        open_features(tmp_path / "f.txt")


def test_sparse_nan_is_found():
    X = sp.csr_matrix(np.array([[0.0, 1.0], [np.nan, 0.0]]))
    with pytest.raises(InvalidDataError, match="row 1"):
        Pool(X)
