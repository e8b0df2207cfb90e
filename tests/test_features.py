"""Featurizers: TF-IDF for text, flattened pixels for images, checked passthrough for tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.features import featurize, make_featurizer
from labelwise.io.load import Dataset, load_dataset
from shared_data import shared_file

FIXTURES = Path(__file__).parent / "fixtures"


def _dataset(kind: Literal["text", "image", "tabular"], items: Any) -> Dataset:
    ids = np.arange(items.shape[0]).astype(str).astype(object)
    return Dataset(kind, items, None, ids)


def _texts(n: int) -> np.ndarray:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    docs = [f"{words[i % 8]} {words[(i * 3) % 8]} unique{i}" for i in range(n)]
    return np.array(docs, dtype=object)


def test_tfidf_is_csr_float32_with_one_row_per_item() -> None:
    ds = load_dataset(FIXTURES / "reviews.csv")
    X, fitted = featurize(ds, features="tfidf")
    assert isinstance(X, sp.csr_matrix)
    assert X.dtype == np.float32
    assert X.shape[0] == len(ds)
    np.testing.assert_allclose(sp.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    assert "free cruise" in set(fitted.get_feature_names_out())  # word pairs are features
    assert X.shape == fitted.transform(ds.items).shape


def test_tiny_corpus_keeps_terms_seen_once_and_large_corpus_drops_them() -> None:
    _, small = featurize(_dataset("text", _texts(10)), features="tfidf")
    assert "unique3" in set(small.get_feature_names_out())
    _, large = featurize(_dataset("text", _texts(60)), features="tfidf")
    assert "unique3" not in set(large.get_feature_names_out())
    assert "alpha" in set(large.get_feature_names_out())


def test_text_options_reach_the_vectorizer() -> None:
    featurizer = make_featurizer("text", "tfidf", max_features=5, ngram_range=(1, 1), min_df=1)
    X, _ = featurize(_dataset("text", _texts(60)), featurizer)
    assert X.shape == (60, 5)


def test_accents_and_case_are_folded() -> None:
    docs = np.array(["Café OPEN", "cafe open"], dtype=object)
    X, _ = featurize(_dataset("text", docs), features="tfidf")
    assert (X[0] != X[1]).nnz == 0


def test_texts_without_terms_raise() -> None:
    with pytest.raises(InvalidDataError, match="TF-IDF found no terms"):
        featurize(_dataset("text", np.array(["", "  ", "!"], dtype=object)), features="tfidf")


def test_sms_spam_features() -> None:
    X, _ = featurize(
        load_dataset(shared_file("text", "sms_spam", "SMSSpamCollection")), features="tfidf"
    )
    assert X.shape[0] == 5574
    assert X.dtype == np.float32
    assert 1_000 < X.shape[1] <= 100_000


def test_uint8_images_flatten_to_unit_float32() -> None:
    images = np.array([[[0, 255], [128, 64]], [[255, 255], [0, 0]]], dtype=np.uint8)
    X, fitted = featurize(_dataset("image", images), features="pixels")
    assert X.dtype == np.float32
    assert X.shape == (2, 4)
    assert X.min() == 0.0
    assert X.max() == 1.0
    assert X[0, 2] == pytest.approx(128 / 255)
    with pytest.raises(InvalidDataError, match="fitted on"):
        fitted.transform(np.zeros((1, 3, 3), dtype=np.uint8))


def test_color_and_float_images() -> None:
    color = np.random.default_rng(0).integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    X, _ = featurize(_dataset("image", color), features="pixels")
    assert X.shape == (3, 60)
    floats = np.full((2, 2, 2), 0.25, dtype=np.float64)
    Y, _ = featurize(_dataset("image", floats), features="pixels")
    assert Y.dtype == np.float32
    assert (Y == 0.25).all()  # not rescaled


def test_tabular_passthrough_keeps_dense_dense_and_sparse_csr() -> None:
    dense = np.arange(6, dtype=np.int64).reshape(3, 2)
    X, _ = featurize(_dataset("tabular", dense))
    assert isinstance(X, np.ndarray)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, dense)
    S, _ = featurize(load_dataset(FIXTURES / "sample.svm"))
    assert isinstance(S, sp.csr_matrix)
    assert S.dtype == np.float64
    assert S.shape == (4, 3)


def test_tabular_nan_raises() -> None:
    with pytest.raises(InvalidDataError, match="NaN"):
        featurize(_dataset("tabular", np.array([[1.0, np.nan], [0.0, 1.0]])))
    sparse = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, np.inf]]))
    with pytest.raises(InvalidDataError, match="NaN or infinity"):
        featurize(_dataset("tabular", sparse))


def test_featurize_fits_a_clone_not_the_callers_featurizer() -> None:
    featurizer = make_featurizer("text", "tfidf")
    _X, fitted = featurize(load_dataset(FIXTURES / "reviews.csv"), featurizer)
    assert fitted is not featurizer
    assert not hasattr(featurizer, "vectorizer_")
    assert hasattr(fitted, "vectorizer_")
    assert clone(featurizer).get_params() == featurizer.get_params()


@pytest.mark.parametrize("kind", ["text", "image", "tabular"])
def test_featurizers_are_unfitted_sklearn_estimators(kind: str) -> None:
    featurizer = make_featurizer(kind)
    # repr, not get_params(): a combined featurizer's parameters hold estimators, which compare
    # by identity; the repr shows their parameters.
    assert repr(clone(featurizer)) == repr(featurizer)
    assert not [name for name in vars(featurizer) if name.endswith("_")]


def test_unknown_kind_and_option() -> None:
    with pytest.raises(InvalidParameterError, match=r"kind must be one of .*got 'audio'"):
        make_featurizer("audio")
    with pytest.raises(InvalidParameterError, match=r"unknown option\(s\) \['max_feature'\]"):
        make_featurizer("text", max_feature=10)
    with pytest.raises(InvalidParameterError, match="accepted: none"):
        make_featurizer("image", "pixels", scale=True)
    with pytest.raises(InvalidParameterError, match="take no options"):
        make_featurizer("image", scale=True)  # the default: random convolutional features


def test_featurizer_must_be_a_transformer() -> None:
    with pytest.raises(InvalidParameterError, match="fit_transform"):
        featurize(load_dataset(FIXTURES / "tabular.csv"), featurizer=object())
