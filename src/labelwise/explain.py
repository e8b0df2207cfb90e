"""Explanations for annotators: which labeled items a queried item resembles.

:func:`nearest_labeled` finds, for each queried row, the most similar labeled rows by cosine
similarity, so the annotator sees how comparable items were labeled (and a low similarity says
"unlike anything labeled so far").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.preprocessing import normalize

from labelwise.pool import Matrix, take_rows

__all__ = ["nearest_labeled"]

_BLOCK = 2048


def nearest_labeled(
    X: Matrix, rows: NDArray[np.intp], labeled: NDArray[np.intp], *, k: int = 3
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """The ``k`` labeled rows most similar to each of ``rows``.

    Parameters
    ----------
    X : matrix of shape (n_items, n_features)
    rows : int array of shape (n_rows,)
        Rows to explain.
    labeled : int array of shape (n_labeled,)
        Candidate neighbours.
    k : int

    Returns
    -------
    neighbours : int array of shape (n_rows, min(k, n_labeled))
        Pool indices (from ``labeled``), most similar first.
    similarity : float array of the same shape
        Cosine similarity in [-1, 1].
    """
    k = min(k, len(labeled))
    if k == 0 or len(rows) == 0:
        return np.empty((len(rows), 0), np.intp), np.empty((len(rows), 0))
    queried = normalize(take_rows(X, rows))
    out_idx = np.empty((len(rows), k), dtype=np.intp)
    out_sim = np.empty((len(rows), k))
    best_sim = np.full((len(rows), k), -np.inf)
    best_idx = np.zeros((len(rows), k), dtype=np.intp)
    for start in range(0, len(labeled), _BLOCK):
        block = labeled[start : start + _BLOCK]
        sims = queried @ normalize(take_rows(X, block)).T
        sims = np.asarray(sims.todense() if sp.issparse(sims) else sims, dtype=np.float64)
        cand_sim = np.concatenate([best_sim, sims], axis=1)
        cand_idx = np.concatenate([best_idx, np.broadcast_to(block, sims.shape)], axis=1)
        top = np.argsort(-cand_sim, axis=1, kind="stable")[:, :k]
        best_sim = np.take_along_axis(cand_sim, top, axis=1)
        best_idx = np.take_along_axis(cand_idx, top, axis=1)
    out_idx[:] = best_idx
    out_sim[:] = best_sim
    return out_idx, out_sim
