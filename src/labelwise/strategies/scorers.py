"""Utility scorers: pure functions from model outputs to one informativeness score per row.

Higher utility means more informative. Every scorer takes an array and returns a float64 array of
shape ``(n_samples,)``; none of them needs a model, so they are tested on plain arrays.

Probability scorers take ``proba`` of shape ``(n_samples, n_classes)`` (rows sum to one):

- :func:`least_confident` ``1 - max_k p_k``
- :func:`margin` ``1 - (p_(1) - p_(2))``, the gap between the two most probable classes
- :func:`entropy` ``-sum_k p_k log p_k`` (natural log)

Decision-value scorers serve models without probabilities (an ``SVC`` without
``probability=True``): :func:`decision_margin` is ``-|f(x)|`` for binary decision values of shape
``(n_samples,)`` and ``-(f_(1) - f_(2))`` for one-vs-rest values of shape
``(n_samples, n_classes)``.

Committee scorers take the members' outputs: :func:`vote_entropy` works from hard votes of shape
``(n_members, n_samples)`` (class indices), :func:`kl_to_consensus` from probabilities of shape
``(n_members, n_samples, n_classes)``, and so does :func:`bald` (the members being Monte Carlo
dropout passes of one network, or any sample of models).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "bald",
    "decision_margin",
    "entropy",
    "kl_to_consensus",
    "least_confident",
    "margin",
    "random_utility",
    "vote_entropy",
]

FloatArray = NDArray[np.float64]

# Probabilities below this are treated as zero in logarithms (0 log 0 = 0).
_TINY = 1e-12


def _as_proba(proba: ArrayLike) -> NDArray[np.floating]:
    p = np.asarray(proba)
    if p.ndim != 2:
        raise ValueError(f"proba must have shape (n_samples, n_classes), got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    return p


def least_confident(proba: ArrayLike) -> FloatArray:
    """``1 - max_k p_k`` per row: how unsure the model is of its own top guess."""
    p = _as_proba(proba)
    return (1.0 - p.max(axis=1)).astype(np.float64, copy=False)


def margin(proba: ArrayLike) -> FloatArray:
    """``1 - (p_(1) - p_(2))`` per row: one minus the gap between the two most probable classes.

    With a single class column the gap is taken to be ``p_(1)`` (the other class has zero mass).
    """
    p = _as_proba(proba)
    if p.shape[1] == 1:
        return (1.0 - p[:, 0]).astype(np.float64, copy=False)
    if p.shape[1] == 2:
        gap = np.abs(p[:, 0] - p[:, 1])
    elif p.shape[1] <= 32:
        # The two largest by a pass over the columns: a few vector operations per class,
        # cheaper than partitioning every row (and fast on column-major probabilities).
        first = p[:, 0].copy()
        second = np.full_like(first, -np.inf)
        for j in range(1, p.shape[1]):
            column = p[:, j]
            np.maximum(second, np.minimum(first, column), out=second)
            np.maximum(first, column, out=first)
        gap = first - second
    else:
        top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
        gap = top2[:, 1] - top2[:, 0]
    return (1.0 - gap).astype(np.float64, copy=False)


def entropy(proba: ArrayLike) -> FloatArray:
    """Shannon entropy ``-sum_k p_k log p_k`` per row, in nats; ``log K`` at the uniform split."""
    p = _as_proba(proba).astype(np.float64, copy=False)
    logp = np.log(np.maximum(p, _TINY))
    return -np.einsum("ij,ij->i", p, logp)


def decision_margin(decision: ArrayLike) -> FloatArray:
    """Margin utility from decision values, for models without probabilities.

    Parameters
    ----------
    decision : array-like of shape (n_samples,) or (n_samples, n_classes)
        Binary decision values (signed distance to the boundary), or one-vs-rest scores.

    Returns
    -------
    ndarray of shape (n_samples,)
        ``-|f(x)|`` for binary values; ``-(f_(1) - f_(2))`` for one-vs-rest scores. Both are at
        most zero and largest for the items closest to the boundary.
    """
    d = np.asarray(decision, dtype=np.float64)
    if d.ndim == 2 and d.shape[1] == 1:
        d = d[:, 0]
    if d.ndim == 1:
        return -np.abs(d)
    if d.ndim != 2:
        raise ValueError(f"decision must be 1-D or 2-D, got shape {d.shape}")
    top2 = np.partition(d, d.shape[1] - 2, axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


def vote_entropy(votes: ArrayLike, n_classes: int) -> FloatArray:
    """Entropy of the committee's vote distribution per sample.

    Parameters
    ----------
    votes : array-like of int, shape (n_members, n_samples)
        Class index (0 … n_classes-1) each member predicts for each sample.
    n_classes : int
        Number of classes the indices refer to.
    """
    v = np.asarray(votes)
    if v.ndim != 2:
        raise ValueError(f"votes must have shape (n_members, n_samples), got shape {v.shape}")
    n_members, n_samples = v.shape
    # A class with j of the m votes adds -(j/m) log(j/m): a table of m + 1 values, looked up
    # once per class, instead of a (samples, classes) matrix of shares.
    shares = np.arange(n_members + 1) / n_members
    table = np.zeros(n_members + 1)
    table[1:] = -shares[1:] * np.log(shares[1:])
    out = np.zeros(n_samples)
    for cls in range(n_classes):
        out += table[np.count_nonzero(v == cls, axis=0)]
    return out


def kl_to_consensus(member_proba: ArrayLike) -> FloatArray:
    """Mean KL divergence of each member's distribution from the committee consensus.

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes)

    Returns
    -------
    ndarray of shape (n_samples,)
        ``mean_m KL(p_m || p_bar)`` with ``p_bar`` the members' mean; zero when they all agree.
    """
    p = np.asarray(member_proba, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(
            f"member_proba must have shape (n_members, n_samples, n_classes), got {p.shape}"
        )
    consensus = p.mean(axis=0)
    log_ratio = np.log(np.maximum(p, _TINY)) - np.log(np.maximum(consensus, _TINY))[None]
    kl = np.einsum("msk,msk->ms", p, log_ratio)
    return np.maximum(kl.mean(axis=0), 0.0)


def bald(member_proba: ArrayLike) -> FloatArray:
    """BALD: the mutual information between the prediction and the model, per sample.

    ``H(mean_m p_m) - mean_m H(p_m)``: the entropy of the averaged prediction minus the average
    entropy of the members' predictions (Houlsby et al. 2011), in nats. It is high where the
    members are each confident but disagree, and zero where they agree, however unsure they
    all are (that is aleatoric noise, which labels do not remove).

    Parameters
    ----------
    member_proba : array-like of shape (n_members, n_samples, n_classes)
        Each member's class probabilities, e.g. ``T`` Monte Carlo dropout passes.

    Returns
    -------
    ndarray of shape (n_samples,)
        At least zero and at most ``log n_classes``.

    Notes
    -----
    The logarithms are taken in the input's precision (float32 logarithms are several times
    faster, and their rounding, about 1e-7 relative, is far below any utility worth ranking
    by), after flooring probabilities at the smallest normal number, so ``0 log 0 = 0``; the
    sums are accumulated in float64. Rounding can make the difference a hair negative where the
    members agree: it is clipped to zero.
    """
    p = np.asarray(member_proba)
    if p.ndim != 3:
        raise ValueError(
            f"member_proba must have shape (n_members, n_samples, n_classes), got {p.shape}"
        )
    if p.shape[0] < 1:
        raise ValueError("member_proba needs at least one member")
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    floor = np.finfo(p.dtype).tiny
    n_members = p.shape[0]
    mean = p.mean(axis=0, dtype=np.float64)
    entropy_of_mean = -np.einsum("nc,nc->n", mean, np.log(np.maximum(mean, floor)))
    mean_entropy = -np.einsum("mnc,mnc->n", p, np.log(np.maximum(p, floor)), dtype=np.float64)
    mean_entropy /= n_members
    return np.maximum(entropy_of_mean - mean_entropy, 0.0)


def random_utility(n_samples: int, rng: np.random.Generator) -> FloatArray:
    """Independent uniform utilities: ranking by them is uniform random sampling."""
    return rng.random(n_samples)
