"""TF-IDF: texts as weighted words and word pairs, fitted on the whole pool."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer

from labelwise.exceptions import InvalidDataError

__all__ = ["TfidfFeaturizer", "documents"]

# Below this many documents a term seen in two of them is rare: keep every term instead.
_SMALL_CORPUS = 50


class TfidfFeaturizer(TransformerMixin, BaseEstimator):
    """TF-IDF of a 1-D array of str, shape (n,), into a CSR matrix of shape (n, n_terms).

    Rows have unit L2 norm (all zero for a text with no known term). ``min_df="auto"`` keeps
    terms found in at least two documents, or in one when the corpus has fewer than 50
    documents. Other parameters are those of :class:`TfidfVectorizer`.
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

    def fit(self, X: Any, y: Any = None) -> TfidfFeaturizer:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> sp.csr_matrix:
        docs = documents(X)
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
        return sp.csr_matrix(self.vectorizer_.transform(documents(X)))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.vectorizer_.get_feature_names_out()


def documents(X: Any) -> list[str]:
    """``X`` as a list of str; :class:`InvalidDataError` naming the first item that is not."""
    docs = list(X)
    bad = next((i for i, doc in enumerate(docs) if not isinstance(doc, str)), None)
    if bad is not None:
        raise InvalidDataError(f"text item {bad} is {type(docs[bad]).__name__}, not str")
    return docs
