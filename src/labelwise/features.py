"""Featurizers: from a :class:`~labelwise.data.Dataset`'s items to a feature matrix.

Each kind of dataset has one default, an unfitted scikit-learn transformer over ``Dataset.items``:

* text: TF-IDF over words and word pairs, sparse CSR float32 of shape (n, n_terms);
* image: pixels flattened to float32 of shape (n, h * w * c), uint8 scaled to [0, 1];
* tabular: the matrix itself as float64 (dense stays dense, sparse stays CSR), checked finite.

Scaling tabular columns is the model's job (see :mod:`labelwise.models`), not the featurizer's.
Fitting on the whole pool, labeled or not, is legitimate in pool-based active learning: the
featurizer never sees a label.
"""

from __future__ import annotations

__all__ = ["featurize", "make_featurizer"]

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.feature_extraction.text import TfidfVectorizer

from labelwise.data import Dataset
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.pool import check_matrix

# Below this many documents a term seen in two of them is rare: keep every term instead.
_SMALL_CORPUS = 50


class _TextFeaturizer(TransformerMixin, BaseEstimator):
    """TF-IDF of a 1-D array of str, shape (n,), into a CSR matrix of shape (n, n_terms).

    ``min_df="auto"`` keeps terms found in at least two documents, or in one when the corpus has
    fewer than 50 documents. Other parameters are those of :class:`TfidfVectorizer`.
    """

    def __init__(
        self,
        *,
        max_features: int | None = 100_000,
        min_df: int | float | str = "auto",
        max_df: int | float = 1.0,
        ngram_range: tuple[int, int] = (1, 2),
        sublinear_tf: bool = True,
        strip_accents: str | None = "unicode",
        lowercase: bool = True,
        stop_words: str | list[str] | None = None,
        dtype: Any = np.float32,
    ) -> None:
        self.max_features = max_features
        self.min_df = min_df
        self.max_df = max_df
        self.ngram_range = ngram_range
        self.sublinear_tf = sublinear_tf
        self.strip_accents = strip_accents
        self.lowercase = lowercase
        self.stop_words = stop_words
        self.dtype = dtype

    def fit(self, X: Any, y: Any = None) -> _TextFeaturizer:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> sp.csr_matrix:
        docs = _documents(X)
        min_df = self.min_df
        if min_df == "auto":
            min_df = 1 if len(docs) < _SMALL_CORPUS else 2
        params = self.get_params() | {"min_df": min_df}
        self.vectorizer_ = TfidfVectorizer(**params)
        try:
            return sp.csr_matrix(self.vectorizer_.fit_transform(docs))
        except ValueError as exc:  # every document empty, or only stop words
            raise InvalidDataError(f"TF-IDF found no terms in the texts: {exc}") from None

    def transform(self, X: Any) -> sp.csr_matrix:
        return sp.csr_matrix(self.vectorizer_.transform(_documents(X)))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.vectorizer_.get_feature_names_out()


class _ImageFeaturizer(TransformerMixin, BaseEstimator):
    """Images of shape (n, h, w) or (n, h, w, c) to float32 rows of shape (n, h * w * c).

    uint8 pixels are divided by 255; other dtypes are cast as they are. ``transform`` refuses
    images of another shape than those seen by ``fit``.
    """

    def fit(self, X: Any, y: Any = None) -> _ImageFeaturizer:
        self.image_shape_ = _images(X).shape[1:]
        self.n_features_in_ = int(np.prod(self.image_shape_))
        return self

    def transform(self, X: Any) -> np.ndarray:
        images = _images(X)
        if images.shape[1:] != self.image_shape_:
            raise InvalidDataError(
                f"images have shape {images.shape[1:]}, but the featurizer was fitted on "
                f"{self.image_shape_}"
            )
        flat = images.reshape(len(images), -1).astype(np.float32)
        if images.dtype == np.uint8:
            flat /= np.float32(255.0)
        return flat


class _TabularFeaturizer(TransformerMixin, BaseEstimator):
    """A matrix of shape (n, d), dense or sparse, as float64 (sparse as CSR), checked finite."""

    def fit(self, X: Any, y: Any = None) -> _TabularFeaturizer:
        self.n_features_in_ = int(_tabular(X).shape[1])
        return self

    def transform(self, X: Any) -> Any:
        matrix = _tabular(X)
        if matrix.shape[1] != self.n_features_in_:
            raise InvalidDataError(
                f"got {matrix.shape[1]} features, but the featurizer was fitted on "
                f"{self.n_features_in_}"
            )
        return matrix


_FEATURIZERS: dict[str, type[BaseEstimator]] = {
    "image": _ImageFeaturizer,
    "tabular": _TabularFeaturizer,
    "text": _TextFeaturizer,
}


def make_featurizer(kind: str, **options: Any) -> BaseEstimator:
    """The default unfitted featurizer for a dataset ``kind`` ("text", "image" or "tabular").

    ``options`` set the text featurizer's TF-IDF parameters (``max_features``, ``min_df``,
    ``max_df``, ``ngram_range``, ``sublinear_tf``, ``strip_accents``, ``lowercase``,
    ``stop_words``, ``dtype``); image and tabular featurizers take none.
    """
    if kind not in _FEATURIZERS:
        raise InvalidParameterError(f"kind must be one of {sorted(_FEATURIZERS)}, got {kind!r}")
    featurizer = _FEATURIZERS[kind]()
    accepted = featurizer.get_params()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidParameterError(
            f"unknown option(s) {unknown} for the {kind} featurizer; "
            f"accepted: {sorted(accepted) or 'none'}"
        )
    return featurizer.set_params(**options)


def featurize(dataset: Dataset, featurizer: Any = None) -> tuple[Any, Any]:
    """Fit a featurizer on all of ``dataset``'s items and return ``(matrix, fitted_featurizer)``.

    ``featurizer`` is any scikit-learn transformer over ``dataset.items``; it is cloned, never
    fitted in place. By default, :func:`make_featurizer` of the dataset's kind. The matrix has
    shape (len(dataset), n_features): CSR float32 for text, float32 for images, float64 (dense
    or CSR) for tabular data.
    """
    if featurizer is None:
        featurizer = make_featurizer(dataset.kind)
    elif not hasattr(featurizer, "fit_transform"):
        raise InvalidParameterError(
            f"featurizer must be a scikit-learn transformer with fit_transform, "
            f"got {type(featurizer).__name__}"
        )
    fitted = clone(featurizer)
    return fitted.fit_transform(dataset.items), fitted


def _documents(X: Any) -> list[str]:
    docs = list(X)
    bad = next((i for i, doc in enumerate(docs) if not isinstance(doc, str)), None)
    if bad is not None:
        raise InvalidDataError(f"text item {bad} is {type(docs[bad]).__name__}, not str")
    return docs


def _images(X: Any) -> np.ndarray:
    images = np.asarray(X)
    if images.ndim not in (3, 4) or not np.issubdtype(images.dtype, np.number):
        raise InvalidDataError(
            f"images must be a numeric array of shape (n, h, w) or (n, h, w, c), "
            f"got {images.dtype} of shape {images.shape}"
        )
    return images


def _tabular(X: Any) -> Any:
    if sp.issparse(X):
        return check_matrix(sp.csr_matrix(X, dtype=np.float64), name="features")
    try:
        matrix = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidDataError("features must be a numeric matrix of shape (n, d)") from None
    return check_matrix(matrix, name="features")
