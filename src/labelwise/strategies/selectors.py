"""Selectors: turn one utility per candidate into a batch of candidates.

A selector sees the candidates' utilities (higher = more informative) and, for diversity, their
feature rows; it returns *positions* into the candidate array, best first. Every random choice,
tie-breaks included, goes through the ``rng`` it is given: same seed, same batch.

- :func:`top_k`: the ``k`` highest utilities, ties broken at random.
- :func:`weighted_kmeans`: k-means over the top candidates, weighted by utility, one pick per
  cluster (Zhdanov 2019, "Diverse mini-batch active learning").
- :func:`kcenter_greedy`: greedy k-center, each pick farthest from the labeled set and earlier
  picks (Sener & Savarese 2018, "core-set").
- :func:`kmeans_pp_factored`: k-means++ seeding on gradient embeddings ``a_i ⊗ h_i`` without
  materialising them (Ash et al. 2020, BADGE).
- :func:`density_weights`: how typical each candidate is of the pool (Settles & Craven 2008).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import euclidean_distances

from labelwise.pool import Matrix

__all__ = [
    "density_weights",
    "kcenter_greedy",
    "kmeans_pp_factored",
    "rank_order",
    "top_k",
    "typical_points",
    "weighted_kmeans",
]

# Rows per block when computing distances, bounding memory at about block × block × 8 bytes.
_DISTANCE_BLOCK = 4096
# Members of one cluster whose typicality is compared (a random sample of a larger cluster).
_TYPICAL_SAMPLE = 4096


def rank_order(utilities: NDArray[np.floating], rng: np.random.Generator) -> NDArray[np.intp]:
    """All positions sorted by utility, highest first, ties in random order."""
    u = np.asarray(utilities, dtype=np.float64)
    return np.lexsort((rng.random(len(u)), -u)).astype(np.intp)


def top_k(utilities: NDArray[np.floating], k: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """Positions of the ``k`` highest utilities, best first; ties broken at random.

    Runs in linear time (a partition, not a sort of the whole array), so it suits pools of
    millions of candidates.
    """
    u = np.asarray(utilities, dtype=np.float64)
    n = len(u)
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and {n}, got {k}")
    if k == 0:
        return np.empty(0, dtype=np.intp)
    threshold = _kth_largest(u, k)
    above = np.flatnonzero(u > threshold)
    tied = np.flatnonzero(u == threshold)
    chosen = np.concatenate([above, rng.choice(tied, size=k - len(above), replace=False)])
    return chosen[rank_order(u[chosen], rng)]


def _kth_largest(u: NDArray[np.float64], k: int) -> float:
    """The ``k``-th largest value of ``u``.

    On a large array, an evenly spaced sample first suggests a lower bound that keeps a few
    times ``k`` values, and only those are partitioned: besides reading less, this spares the
    partition its slow case, a few distinct values repeated many times (committee votes).
    """
    n = len(u)
    if n > 65_536 and k < n // 64:
        sample = u[:: n // 16_384]
        keep = min(len(sample) - 1, int(np.ceil(len(sample) * k / n * 4)) + 8)
        bound = np.partition(sample, len(sample) - 1 - keep)[len(sample) - 1 - keep]
        above = u[u > bound]
        if len(above) >= k:  # then the k largest are all in there
            return float(np.partition(above, len(above) - k)[len(above) - k])
        if len(above) + np.count_nonzero(u == bound) >= k:  # the bound's value completes them
            return float(bound)
    return float(np.partition(u, n - k)[n - k])


def _positive_weights(utilities: NDArray[np.floating]) -> NDArray[np.float64]:
    """Utilities shifted and scaled into (0, 1], usable as sample weights."""
    u = np.asarray(utilities, dtype=np.float64)
    span = float(u.max() - u.min()) if len(u) else 0.0
    if span == 0.0:
        return np.ones(len(u))
    return (u - u.min()) / span * 0.99 + 0.01


def weighted_kmeans(
    X: Matrix,
    utilities: NDArray[np.floating],
    k: int,
    rng: np.random.Generator,
    *,
    representative: Literal["centroid", "utility"] = "centroid",
) -> NDArray[np.intp]:
    """One representative per cluster of a utility-weighted k-means over ``X``.

    Parameters
    ----------
    X : matrix of shape (n_candidates, n_features)
        The candidates' representation (usually the top candidates by utility).
    utilities : array of shape (n_candidates,)
        Sample weights after a shift into (0, 1].
    k : int
        Number of clusters, and of positions returned.
    representative : {"centroid", "utility"}
        Which member stands for a cluster: the one nearest its centroid (Zhdanov's choice), or
        the most useful one (with ``k = 1`` this is plain top-1 selection).

    Returns
    -------
    positions : int array of shape (k,)
        One per cluster, ordered by utility (best first).
    """
    n = X.shape[0]
    u = np.asarray(utilities, dtype=np.float64)
    if k >= n:
        return rank_order(u, rng)[:k]
    if k == 1 and representative == "utility":
        return top_k(u, 1, rng)
    km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1)))
    weights = _positive_weights(utilities)
    with warnings.catch_warnings():
        # Duplicate rows can leave fewer distinct clusters than k; the gap is filled below.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = km.fit_predict(X, sample_weight=weights)
    # Score to minimise within a cluster: distance to its centroid, or minus the utility.
    dist = km.transform(X)[np.arange(n), labels] if representative == "centroid" else -u
    picked: list[int] = []
    taken = np.zeros(n, dtype=bool)
    for cluster in range(k):
        members = np.flatnonzero(labels == cluster)
        if len(members):
            best = int(members[np.argmin(dist[members])])
            picked.append(best)
            taken[best] = True
    # Empty clusters (duplicate points) leave gaps: fill them with the best remaining utilities.
    if len(picked) < k:
        rest = np.flatnonzero(~taken)
        picked.extend(rest[top_k(u[rest], k - len(picked), rng)].tolist())
    chosen = np.asarray(picked, dtype=np.intp)
    return chosen[rank_order(u[chosen], rng)]


def _min_distances(X: Matrix, centers: Matrix) -> NDArray[np.float64]:
    """Distance from each row of ``X`` to its nearest row of ``centers``, computed in blocks."""
    out = np.full(X.shape[0], np.inf)
    if centers.shape[0] == 0:
        return out
    if isinstance(X, np.ndarray) and isinstance(centers, np.ndarray):
        # Dense: min over ||c||² - 2 x·c per block, then add ||x||² and take one root per row
        # (in float64, which also spares float32 the slow upcasting path of scikit-learn).
        C = centers.astype(np.float64)
        c_sq = np.einsum("ij,ij->i", C, C)
        for start in range(0, X.shape[0], _DISTANCE_BLOCK):
            block = np.asarray(X[start : start + _DISTANCE_BLOCK], dtype=np.float64)
            best = np.full(len(block), np.inf)
            for c_start in range(0, len(C), _DISTANCE_BLOCK):
                part = block @ C[c_start : c_start + _DISTANCE_BLOCK].T
                part *= -2.0
                part += c_sq[c_start : c_start + _DISTANCE_BLOCK]
                np.minimum(best, part.min(axis=1), out=best)
            best += np.einsum("ij,ij->i", block, block)
            out[start : start + len(block)] = np.sqrt(np.maximum(best, 0.0))
        return out
    for start in range(0, X.shape[0], _DISTANCE_BLOCK):
        block = X[start : start + _DISTANCE_BLOCK]
        for c_start in range(0, centers.shape[0], _DISTANCE_BLOCK):
            d = euclidean_distances(block, centers[c_start : c_start + _DISTANCE_BLOCK])
            np.minimum(out[start : start + len(d)], d.min(axis=1), out=out[start : start + len(d)])
    return out


def kcenter_greedy(
    X: Matrix, labeled: Matrix, k: int, rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Greedy k-center: repeatedly pick the candidate farthest from everything chosen so far.

    Parameters
    ----------
    X : matrix of shape (n_candidates, n_features)
    labeled : matrix of shape (n_labeled, n_features)
        Rows already covered (may be empty: the first pick is then random).
    k : int

    Returns
    -------
    positions : int array of shape (k,), in pick order
    distances : float array of shape (k,)
        Each pick's distance to the nearest covered row at the time it was picked (inf for a
        first pick with nothing labeled).
    """
    n = X.shape[0]
    if k > n:
        raise ValueError(f"k must be at most {n}, got {k}")
    nearest = _min_distances(X, labeled) ** 2  # squared from here on: no root per step
    x_sq = _row_sq_norms(X)
    picks = np.empty(k, dtype=np.intp)
    gaps = np.empty(k)
    for i in range(k):
        best = np.flatnonzero(nearest == nearest.max())
        pick = int(best[0] if len(best) == 1 else rng.choice(best))
        picks[i], gaps[i] = pick, np.sqrt(nearest[pick])
        # ||x - c||² = ||x||² - 2 x·c + ||c||²: one matrix-vector product per pick.
        d2 = x_sq - 2.0 * _row_dots(X, X[pick : pick + 1])
        d2 += x_sq[pick]
        np.maximum(d2, 0.0, out=d2)
        np.minimum(nearest, d2, out=nearest)
        nearest[pick] = -np.inf
    return picks, gaps


def _row_dots(H: Matrix, h: Any) -> NDArray[np.float64]:
    """Dot product of every row of ``H`` with the single row ``h``."""
    hv = h.toarray().ravel() if sp.issparse(h) else np.ravel(h)
    return np.asarray(H @ hv, dtype=np.float64).ravel()


def _row_sq_norms(H: Any) -> NDArray[np.float64]:
    if sp.issparse(H):
        return np.asarray(H.multiply(H).sum(axis=1), dtype=np.float64).ravel()
    return np.einsum("ij,ij->i", H, H, dtype=np.float64)


def kmeans_pp_factored(
    A: NDArray[np.floating], H: Matrix, k: int, rng: np.random.Generator
) -> NDArray[np.intp]:
    """k-means++ seeding on embeddings ``g_i = a_i ⊗ h_i``, never forming them.

    ``<g_i, g_j> = <a_i, a_j> <h_i, h_j>``, so squared distances need only the factors: memory
    stays at the size of ``A`` and ``H``, even for sparse ``H`` of many features. The first pick
    is the largest ``||g||`` (as in BADGE); each later one is drawn with probability proportional
    to the squared distance to the nearest pick so far.

    Parameters
    ----------
    A : array of shape (n, n_classes)
        For BADGE, ``p - onehot(argmax p)``: the loss gradient w.r.t. the logits.
    H : matrix of shape (n, n_features)
        The representation the last layer sees.
    k : int
    """
    n = A.shape[0]
    if k > n:
        raise ValueError(f"k must be at most {n}, got {k}")
    a_sq = np.einsum("ij,ij->i", A, A, dtype=np.float64)
    g_sq = a_sq * _row_sq_norms(H)
    first = int(np.argmax(g_sq))
    picks = [first]
    d2 = np.full(n, np.inf)
    chosen = np.zeros(n, dtype=bool)
    chosen[first] = True
    for _ in range(1, k):
        c = picks[-1]
        step = (A @ A[c]) * _row_dots(H, H[c : c + 1])
        step *= -2.0
        step += g_sq
        step += g_sq[c]
        np.maximum(step, 0.0, out=step)
        np.minimum(d2, step, out=d2)
        d2[chosen] = 0.0
        cumulative = np.cumsum(d2)
        total = float(cumulative[-1])
        if total <= 0.0 or not np.isfinite(total):
            # Every remaining embedding coincides with a pick: fall back to a uniform draw.
            nxt = int(rng.choice(np.flatnonzero(~chosen)))
        else:
            # A draw proportional to d2: where a uniform point falls in the running total.
            nxt = int(np.searchsorted(cumulative, rng.random() * total, side="right"))
            nxt = min(nxt, n - 1)
            while chosen[nxt]:  # a zero-weight row at the boundary: step back to a live one
                nxt -= 1
        picks.append(nxt)
        chosen[nxt] = True
    return np.asarray(picks, dtype=np.intp)


def density_weights(
    X: Matrix, rng: np.random.Generator, *, n_reference: int = 1000
) -> NDArray[np.float64]:
    """How typical each row is: mean Gaussian similarity to a random reference sample.

    Parameters
    ----------
    X : matrix of shape (n, n_features)
    n_reference : int
        Size of the random reference sample, keeping the cost linear in ``n``.

    Returns
    -------
    ndarray of shape (n,), values in (0, 1]
        The bandwidth is the median distance between reference rows, so the weights do not
        depend on the scale of the features.
    """
    n = X.shape[0]
    ref_rows = rng.choice(n, size=min(n, n_reference), replace=False)
    ref = X[np.sort(ref_rows)]
    ref_d = euclidean_distances(ref, ref)
    positive = ref_d[ref_d > 0]
    bandwidth = float(np.median(positive)) if positive.size else 1.0
    out = np.empty(n)
    for start in range(0, n, _DISTANCE_BLOCK):
        d = euclidean_distances(X[start : start + _DISTANCE_BLOCK], ref)
        out[start : start + len(d)] = np.exp(-((d / bandwidth) ** 2) / 2.0).mean(axis=1)
    return np.maximum(out, 1e-12)


def typical_points(
    X: Matrix,
    k: int,
    rng: np.random.Generator,
    *,
    neighbours: int = 20,
    max_candidates: int = 50_000,
) -> NDArray[np.intp]:
    """``k`` rows that stand for the pool: TypiClust's choice (Hacohen, Dekel & Weinshall,
    "Active learning on a budget", ICML 2022) for a first batch, before any model.

    The rows (a random ``max_candidates`` of them on a larger pool) are split by k-means into
    ``k`` clusters; from each, the most *typical* row is taken: the one whose ``neighbours``
    nearest rows of its cluster are closest on average (typicality is the inverse of that
    mean distance). Labels of typical items of every region beat a uniform sample at low
    budgets, where a random draw misses small regions and wastes labels on outliers.

    Parameters
    ----------
    X : matrix of shape (n, n_features)
        The representation (embeddings, TF-IDF, scaled columns).
    k : int
        Rows to choose (at most ``n``).
    rng : numpy Generator
        Seeds the sample and k-means: same seed, same rows.

    Returns
    -------
    int array of shape (k,)
        Rows of ``X``, from the largest cluster to the smallest.
    """
    from sklearn.cluster import MiniBatchKMeans

    n = X.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be from 1 to the number of rows ({n}), got {k}")
    rows = np.arange(n, dtype=np.intp)
    if n > max_candidates:
        rows = np.sort(rng.choice(n, size=max_candidates, replace=False)).astype(np.intp)
    data = X[rows]
    if k == len(rows):
        return rows
    seed = int(rng.integers(2**31 - 1))
    kmeans: Any = (
        KMeans(n_clusters=k, n_init=1, random_state=seed)
        if len(rows) <= 20_000
        else MiniBatchKMeans(n_clusters=k, n_init=3, random_state=seed, batch_size=4096)
    )
    assignment = kmeans.fit_predict(data)
    sizes = np.bincount(assignment, minlength=k)
    picks: list[int] = []
    for cluster in np.argsort(-sizes, kind="stable"):
        members = np.flatnonzero(assignment == cluster)
        if not len(members):
            continue
        if len(members) > _TYPICAL_SAMPLE:  # typicality among a sample: bounded memory
            members = np.sort(rng.choice(members, size=_TYPICAL_SAMPLE, replace=False))
        block = data[members]
        d = euclidean_distances(block, block)
        m = min(neighbours, len(members) - 1)
        if m < 1:
            picks.append(int(rows[members[0]]))
            continue
        nearest = np.partition(d, m, axis=1)[:, 1 : m + 1]  # column 0 is the row itself
        typicality = 1.0 / (nearest.mean(axis=1) + 1e-12)
        picks.append(int(rows[members[int(np.argmax(typicality))]]))
    chosen = np.asarray(picks, dtype=np.intp)
    if len(chosen) < k:  # empty clusters (duplicate rows): fill up at random
        left = np.setdiff1d(rows, chosen)
        chosen = np.concatenate([chosen, rng.choice(left, size=k - len(chosen), replace=False)])
    return chosen.astype(np.intp)
