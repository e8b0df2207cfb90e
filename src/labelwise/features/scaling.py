"""Column scaling from the whole pool, fixed before any fit.

A model fitted on a few dozen labeled rows must not take its feature scaling from them: a
scaler fitted on the labeled rows alone (as a plain scikit-learn pipeline does) makes each
term of a sparse TF-IDF matrix as large as it happens to be in the labeled documents, and on a
20-class text set that cost logistic regression a third of its macro-F1. The unlabeled rows
are available and unbiased, so the statistics come from the whole pool:

* :class:`PoolScaler` is a pipeline step that standardises columns with statistics it is
  *given*; unbound (the default) it passes its input through unchanged;
* :func:`pool_statistics` computes them a chunk of rows at a time (memory-mapped pools of
  millions of rows are never copied), and says whether the rows are already normalised;
* :func:`fit_to_pool` returns a clone of a model whose every nested :class:`PoolScaler` holds
  the pool's statistics -- or stays unbound when the pool's rows are already of unit L2 norm
  (TF-IDF, embeddings, both side by side: their scale is part of their meaning).

The named models of :mod:`labelwise.models.registry` that need scaled inputs (``logreg``,
``linear-svm``, ``knn``, ``self-training``) start with a :class:`PoolScaler`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, TransformerMixin, clone

__all__ = ["PoolScaler", "PoolStatistics", "fit_to_pool", "pool_statistics"]

#: Rows read at once while computing the statistics.
_CHUNK = 131_072
#: How far from 1 a row's L2 norm may be for the rows to count as normalised.
_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class PoolStatistics:
    """Column statistics of a pool.

    Attributes
    ----------
    mean, scale : float64 arrays of shape (n_features,)
        Column means (zero for a sparse pool, which is never centred) and standard deviations
        (1 for a constant column).
    normalized : bool
        Whether every row that is not all zero has unit L2 norm.
    """

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    normalized: bool


def pool_statistics(X: Any, *, chunk: int = _CHUNK) -> PoolStatistics:
    """Column means and deviations of ``X`` (dense, memory-mapped or sparse), one pass in
    chunks, merged exactly (Chan et al.); a sparse matrix is not centred (its deviations are
    taken about zero, as ``StandardScaler(with_mean=False)`` scales)."""
    n_rows, n_features = X.shape
    n = 0
    mean = np.zeros(n_features)
    m2 = np.zeros(n_features)
    normalized = True
    for start in range(0, n_rows, chunk):
        block = X[start : start + chunk]
        k = block.shape[0]
        if sp.issparse(block):
            block = sp.csr_matrix(block, dtype=np.float64)
            sq = np.asarray(block.multiply(block).sum(axis=0)).ravel()
            m2 += sq  # about zero: sparse columns are scaled, never centred
            norms = np.sqrt(np.asarray(block.multiply(block).sum(axis=1)).ravel())
        else:
            block = np.asarray(block)
            block_mean = block.mean(axis=0, dtype=np.float64)
            deviation = block - block_mean.astype(block.dtype)
            block_m2 = np.einsum("ij,ij->j", deviation, deviation, dtype=np.float64)
            delta = block_mean - mean
            mean = mean + delta * k / (n + k)
            m2 = m2 + block_m2 + delta**2 * n * k / (n + k)
            norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        n += k
        if normalized:
            nonzero = norms[norms > 0]
            normalized = bool(np.all(np.abs(nonzero - 1.0) <= _NORM_TOLERANCE))
    std = np.sqrt(m2 / max(n, 1))
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
    return PoolStatistics(mean, np.where(std > tiny, std, 1.0), normalized and n > 0)


class PoolScaler(TransformerMixin, BaseEstimator):
    """Standardise columns with given statistics: ``(X - mean) / scale``; sparse input is
    only scaled (its ``mean`` must be zero). Unbound (both None) it passes ``X`` through.

    ``fit`` learns nothing from the rows it is given: the statistics are the pool's, set by
    :func:`fit_to_pool`. The map is affine per column, so a linear model after it folds it
    into its weights (:func:`labelwise.models.registry.linear_form`).

    Parameters
    ----------
    mean, scale : array of shape (n_features,) or None
    """

    def __init__(self, mean: Any = None, scale: Any = None) -> None:
        self.mean = mean
        self.scale = scale

    def fit(self, X: Any, y: Any = None) -> PoolScaler:
        if (self.mean is None) != (self.scale is None):
            raise ValueError("PoolScaler needs both mean and scale, or neither")
        self.n_features_in_ = int(X.shape[1])
        if self.scale is not None and len(self.scale) != self.n_features_in_:
            raise ValueError(
                f"PoolScaler holds statistics of {len(self.scale)} columns, got "
                f"{self.n_features_in_}"
            )
        return self

    @property
    def bound(self) -> bool:
        return self.scale is not None

    def transform(self, X: Any) -> Any:
        if not self.bound:
            return X
        scale = np.asarray(self.scale)
        if sp.issparse(X):
            out = sp.csr_matrix(X, dtype=np.result_type(X.dtype, np.float32), copy=True)
            out.data /= scale.astype(out.dtype)[out.indices]
            return out
        values = np.array(X, dtype=np.result_type(np.asarray(X).dtype, np.float32))
        values -= np.asarray(self.mean, dtype=values.dtype)
        values /= scale.astype(values.dtype)
        return values

    def affine(self) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
        """``(mean, scale)`` of the map, or None when unbound (the identity)."""
        if not self.bound:
            return None
        return np.asarray(self.mean, dtype=np.float64), np.asarray(self.scale, dtype=np.float64)


def fit_to_pool(estimator: Any, X: Any = None, *, statistics: PoolStatistics | None = None) -> Any:
    """A clone of ``estimator`` whose nested :class:`PoolScaler` steps hold the pool's
    statistics (from ``statistics``, else computed from ``X``).

    Left unbound where the pool's rows are already normalised, and ``estimator`` is returned
    as it is when it holds no :class:`PoolScaler` (any model of the caller's own).
    """
    paths = [
        name
        for name, value in estimator.get_params(deep=True).items()
        if isinstance(value, PoolScaler)
    ]
    if isinstance(estimator, PoolScaler):
        paths.append("")
    if not paths:
        return estimator
    if statistics is None:
        if X is None:
            raise ValueError("fit_to_pool needs the pool X or its statistics")
        statistics = pool_statistics(X)
    model = clone(estimator)
    if statistics.normalized:
        return model
    for path in paths:
        prefix = f"{path}__" if path else ""
        model.set_params(**{f"{prefix}mean": statistics.mean, f"{prefix}scale": statistics.scale})
    return model
