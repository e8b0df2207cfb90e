"""Columns: a tabular matrix as it is, checked numeric and finite."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from labelwise.exceptions import InvalidDataError
from labelwise.pool import check_matrix

__all__ = ["TabularFeaturizer"]


class TabularFeaturizer(TransformerMixin, BaseEstimator):
    """A matrix of shape (n, d), dense or sparse, as float64 (sparse as CSR), checked finite.

    Scaling the columns is left to the model, with statistics of the whole pool (see
    :class:`labelwise.models.registry.PoolScaler`).
    """

    def fit(self, X: Any, y: Any = None) -> TabularFeaturizer:
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


def _tabular(X: Any) -> Any:
    if sp.issparse(X):
        return check_matrix(sp.csr_matrix(X, dtype=np.float64), name="features")
    try:
        matrix = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidDataError("features must be a numeric matrix of shape (n, d)") from None
    return check_matrix(matrix, name="features")
