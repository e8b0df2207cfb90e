"""Multi-label utility scorers: pure functions from per-label probabilities to one utility per row.

In a multi-label task each item may carry any number of the ``L`` labels. The scorers here take
``P`` of shape ``(n_samples, n_labels)`` with ``P[i, j]`` the probability that label ``j`` is
present on item ``i`` (one binary classifier per label: rows do *not* sum to one) and return a
float64 array of shape ``(n_samples,)``. As in :mod:`labelwise.strategies.scorers`, higher
utility means "query first".

- :func:`label_margins` each label decision's margin: the distance of ``p_j`` from the label's
  threshold, scaled to ``[0, 1]`` on each side (``|2 p_j - 1|`` at the threshold 0.5);
- :func:`mean_margin_uncertainty` ``1 - mean_j m_j``: the per-label margins averaged;
- :func:`min_margin_uncertainty` ``1 - min_j m_j``: the most uncertain label decides;
- :func:`mmc` maximum loss reduction with maximal confidence (Yang et al. 2009), with the number
  of labels of each row given, or predicted by :func:`predict_cardinality`;
- :func:`label_cardinality_inconsistency` ``|#{j : p_j > 0.5} - c|`` with ``c`` the mean label
  cardinality of the labeled set (Li & Guo 2013);
- :func:`label_set_vote_entropy` query by committee on label sets: the binary vote entropy of
  each label, averaged over the labels.

Inputs are checked: a wrong shape, a NaN or a probability outside ``[0, 1]`` raises
:class:`~labelwise.exceptions.InvalidDataError`, a bad setting
:class:`~labelwise.exceptions.InvalidParameterError`, each naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.models.registry import decision_margins

__all__ = [
    "MULTI_LABEL_SCORERS",
    "CardinalityPredictor",
    "MultiLabelScorer",
    "fit_cardinality",
    "label_cardinality_inconsistency",
    "label_margins",
    "label_set_vote_entropy",
    "mean_margin_uncertainty",
    "min_margin_uncertainty",
    "mmc",
    "multilabel_utility",
    "predict_cardinality",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _as_label_proba(P: ArrayLike, name: str = "P") -> FloatArray:
    """``P`` as a float64 matrix of per-label probabilities, or an error naming what is wrong."""
    try:
        p = np.asarray(P, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"{name} must be a numeric matrix of probabilities: {exc}") from exc
    if p.ndim != 2:
        raise InvalidDataError(f"{name} must have shape (n_samples, n_labels), got shape {p.shape}")
    if p.shape[1] < 1:
        raise InvalidDataError(f"{name} must have at least one label column, got shape {p.shape}")
    if np.isnan(p).any():
        raise InvalidDataError(f"{name} contains NaN probabilities")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise InvalidDataError(
            f"{name} must hold probabilities in [0, 1], got values in [{p.min()}, {p.max()}]"
        )
    return p


def _as_binary(Y: ArrayLike, name: str, ndim: int) -> NDArray[np.int64]:
    """``Y`` as an int64 array of 0/1 with ``ndim`` dimensions, or an error naming the problem."""
    try:
        y = np.asarray(Y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"{name} must be a numeric array of 0/1: {exc}") from exc
    if y.ndim != ndim:
        raise InvalidDataError(f"{name} must have {ndim} dimensions, got shape {y.shape}")
    if np.isnan(y).any():
        raise InvalidDataError(f"{name} contains NaN")
    if not np.isin(y, (0.0, 1.0)).all():
        raise InvalidDataError(f"{name} must hold only 0 and 1")
    return y.astype(np.int64)


def _as_thresholds(threshold: float | ArrayLike, n_labels: int, name: str) -> FloatArray:
    """One threshold, or one per label, each in [0, 1]."""
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim > 1 or (t.ndim == 1 and t.shape != (n_labels,)):
        raise InvalidParameterError(
            f"{name} must be a number or one per label (shape ({n_labels},)), got shape {t.shape}"
        )
    if np.isnan(t).any() or t.min() < 0.0 or t.max() > 1.0:
        raise InvalidParameterError(f"{name} must lie in [0, 1], got {t.tolist()}")
    return t


def label_margins(P: ArrayLike, thresholds: float | ArrayLike = 0.5) -> FloatArray:
    """How sure each label decision is: the distance of ``p_j`` from the label's threshold ``t_j``,
    scaled to ``[0, 1]`` on each side of it.

    ``(p - t) / (1 - t)`` where ``p >= t`` (the label is predicted), ``(t - p) / t`` below it:
    zero at the threshold, one at 0 or 1. At ``t = 0.5`` this is ``|2 p - 1|``. A model whose
    thresholds were chosen for F1 decides a rare label far below 0.5: its uncertain items lie near
    that threshold, not near 0.5.

    Parameters
    ----------
    P : array-like of shape (n_samples, n_labels)
        Probability that each label is present.
    thresholds : float or array-like of shape (n_labels,), default 0.5
        The probability from which each label is predicted present.

    Returns
    -------
    ndarray of shape (n_samples, n_labels)
    """
    p = _as_label_proba(P)
    return decision_margins(p, _as_thresholds(thresholds, p.shape[1], "thresholds"))


def mean_margin_uncertainty(P: ArrayLike, thresholds: float | ArrayLike = 0.5) -> FloatArray:
    """``1 - mean_j m_j`` per row: the per-label margins (:func:`label_margins`), averaged.

    Parameters
    ----------
    P : array-like of shape (n_samples, n_labels)
        Probability that each label is present.
    thresholds : float or array-like of shape (n_labels,), default 0.5
        Each label's decision threshold; at 0.5 the margin is ``|2 p_j - 1|``.

    Returns
    -------
    ndarray of shape (n_samples,)
        In ``[0, 1]``: zero for a row whose every probability is 0 or 1, one for a row whose
        every probability sits on its threshold.
    """
    return 1.0 - label_margins(P, thresholds).mean(axis=1)


def min_margin_uncertainty(P: ArrayLike, thresholds: float | ArrayLike = 0.5) -> FloatArray:
    """``1 - min_j m_j`` per row: the label closest to its threshold decides.

    Parameters
    ----------
    P : array-like of shape (n_samples, n_labels)
        Probability that each label is present.
    thresholds : float or array-like of shape (n_labels,), default 0.5
        Each label's decision threshold; at 0.5 the margin is ``|2 p_j - 1|``.

    Returns
    -------
    ndarray of shape (n_samples,)
        In ``[0, 1]``: zero only when every label is certain, one as soon as one label sits on
        its threshold.
    """
    return 1.0 - label_margins(P, thresholds).min(axis=1)


def _sorted_normalised(p: FloatArray) -> FloatArray:
    """Each row sorted in decreasing order and divided by its sum (a zero row stays zero)."""
    s = -np.sort(-p, axis=1)
    sums = s.sum(axis=1, keepdims=True)
    return np.divide(s, sums, out=np.zeros_like(s), where=sums > 0)


@dataclass(frozen=True)
class CardinalityPredictor:
    """How many labels a row carries, predicted from its sorted probabilities (Yang et al.
    2009): fitted by :func:`fit_cardinality`, small and picklable (a scoring pass on a cluster
    ships it to the workers with the model).

    Attributes
    ----------
    n_labels : int
        The number of label columns it was fitted on.
    constant : int or None
        The one count the labeled set shows, when it shows only one (then ``model`` is None:
        there is nothing to learn).
    model : fitted LogisticRegression or None
        On the rows' probabilities sorted (decreasing) and normalised to sum to one.
    """

    n_labels: int
    constant: int | None = None
    model: Any = None

    def predict(self, P: ArrayLike) -> IntArray:
        """Predicted number of labels of each row of ``P`` (n_samples, n_labels), one of the
        counts seen in the labeled set."""
        p = _as_label_proba(P, "P_sorted")
        if p.shape[1] != self.n_labels:
            raise InvalidDataError(
                f"P_sorted has {p.shape[1]} labels but P_labeled_sorted has {self.n_labels}"
            )
        if self.constant is not None:
            return np.full(p.shape[0], self.constant, dtype=np.int64)
        if p.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.model.predict(_sorted_normalised(p)), dtype=np.int64)


def fit_cardinality(P_labeled_sorted: ArrayLike, Y_labeled: ArrayLike) -> CardinalityPredictor:
    """Fit the predictor of a row's number of labels on the labeled set (Yang et al. 2009).

    A logistic regression (scikit-learn, multinomial) is trained on the labeled set: its features
    are each row's probabilities sorted in decreasing order and normalised to sum to one, its
    target the row's number of labels ``sum_j Y[i, j]``.

    Parameters
    ----------
    P_labeled_sorted : array-like of shape (n_labeled, n_labels)
        The current model's probabilities on the labeled items. The rows are sorted (decreasing)
        and normalised here, so rows passed unsorted give the same result.
    Y_labeled : array-like of 0/1, shape (n_labeled, n_labels)
        The labeled items' label sets.

    Returns
    -------
    CardinalityPredictor
        A constant predictor when the labeled set shows a single count.
    """
    from sklearn.linear_model import LogisticRegression

    train = _as_label_proba(P_labeled_sorted, "P_labeled_sorted")
    y = _as_binary(Y_labeled, "Y_labeled", ndim=2)
    if y.shape != train.shape:
        raise InvalidDataError(
            f"Y_labeled must have the shape of P_labeled_sorted {train.shape}, got {y.shape}"
        )
    if train.shape[0] == 0:
        raise InvalidDataError("P_labeled_sorted needs at least one labeled row")
    counts = y.sum(axis=1)
    seen = np.unique(counts)
    if seen.size == 1:
        return CardinalityPredictor(train.shape[1], constant=int(seen[0]))
    model = LogisticRegression(max_iter=1000)
    model.fit(_sorted_normalised(train), counts)
    return CardinalityPredictor(train.shape[1], model=model)


def predict_cardinality(
    P_labeled_sorted: ArrayLike, Y_labeled: ArrayLike, P_sorted: ArrayLike
) -> IntArray:
    """Predict each row's number of labels from its sorted probabilities (Yang et al. 2009):
    :func:`fit_cardinality` on the labeled set, then :meth:`CardinalityPredictor.predict`.

    Parameters
    ----------
    P_labeled_sorted : array-like of shape (n_labeled, n_labels)
        The current model's probabilities on the labeled items (sorted and normalised here).
    Y_labeled : array-like of 0/1, shape (n_labeled, n_labels)
        The labeled items' label sets.
    P_sorted : array-like of shape (n_samples, n_labels)
        The probabilities of the items whose number of labels is wanted (sorted here too).

    Returns
    -------
    ndarray of int64, shape (n_samples,)
        Predicted number of labels, always one of the counts seen in the labeled set (so in
        ``[0, n_labels]``). When the labeled set shows a single count, that count is returned for
        every row (there is nothing to learn).

    Notes
    -----
    Normalising follows Yang et al.: the features describe the *shape* of the sorted vector
    (how the mass falls off from the top label), so a row and its half predict alike.
    """
    _as_label_proba(P_sorted, "P_sorted")
    return fit_cardinality(P_labeled_sorted, Y_labeled).predict(P_sorted)


def _default_cardinality(p: FloatArray) -> IntArray:
    """The sum of the probabilities rounded half up, clipped to ``[1, n_labels]``."""
    k = np.floor(p.sum(axis=1) + 0.5)
    return np.clip(k, 1, p.shape[1]).astype(np.int64)


def mmc(P: ArrayLike, cardinality: ArrayLike | None = None) -> FloatArray:
    """Maximum loss reduction with maximal confidence (MMC, Yang et al. 2009).

    Each row's label set is predicted as its ``k`` most probable labels (``y_j = +1``, the others
    ``y_j = -1``) and the utility is the expected loss reduction
    ``sum_j (1 - y_j f_j) / 2`` with ``f_j = 2 p_j - 1``; that is ``1 - p_j`` summed over the
    predicted labels plus ``p_j`` over the others: large where the predicted set is unsure.

    Parameters
    ----------
    P : array-like of shape (n_samples, n_labels)
        Probability that each label is present.
    cardinality : array-like of int, shape (n_samples,), or int, optional
        ``k``, the number of labels predicted for each row, in ``[0, n_labels]``; a scalar is
        used for every row. Pass :func:`predict_cardinality`'s output to follow the original
        method (a logistic regression on the sorted probabilities, trained on the labeled set).
        By default ``k`` is the sum of the row's probabilities (its expected number of labels)
        rounded half up and clipped to ``[1, n_labels]``: it needs no labeled set, and an item
        is assumed to carry at least one label, as in the original.

    Returns
    -------
    ndarray of shape (n_samples,)
        In ``[0, n_labels]``; zero for a row of certain probabilities (0 or 1) whose number of
        ones is ``k``.

    Notes
    -----
    Ties among equal probabilities are broken towards the lower label index; they do not change
    the utility (two labels of equal ``p`` add ``(1 - p) + p`` whichever is chosen).
    """
    p = _as_label_proba(P)
    n, n_labels = p.shape
    if cardinality is None:
        k = _default_cardinality(p)
    else:
        raw = np.asarray(cardinality, dtype=np.float64)
        if raw.ndim == 0:
            raw = np.full(n, float(raw))
        if raw.shape != (n,):
            raise InvalidParameterError(
                f"cardinality must have shape ({n},) (one count per row of P), got {raw.shape}"
            )
        if np.isnan(raw).any() or (raw != np.round(raw)).any():
            raise InvalidParameterError("cardinality must hold whole numbers of labels")
        if raw.size and (raw.min() < 0 or raw.max() > n_labels):
            raise InvalidParameterError(
                f"cardinality must lie in [0, {n_labels}] (the number of labels), "
                f"got values in [{raw.min():g}, {raw.max():g}]"
            )
        k = raw.astype(np.int64)
    # Rank of each label within its row, 0 for the most probable (stable: lower index first).
    order = np.argsort(-p, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n_labels)[None, :].repeat(n, axis=0), axis=1)
    y = np.where(rank < k[:, None], 1.0, -1.0)
    f = 2.0 * p - 1.0
    return ((1.0 - y * f) / 2.0).sum(axis=1)


def label_cardinality_inconsistency(
    P: ArrayLike, mean_cardinality: float, threshold: float | ArrayLike = 0.5
) -> FloatArray:
    """Label cardinality inconsistency (LCI, Li & Guo 2013): ``|#{j : p_j > t} - c|`` per row.

    Parameters
    ----------
    P : array-like of shape (n_samples, n_labels)
        Probability that each label is present.
    mean_cardinality : float
        ``c``, the mean number of labels per item in the labeled set, in ``[0, n_labels]``.
    threshold : float or array-like of shape (n_labels,), default 0.5
        ``t``: a label counts as predicted when its probability is strictly above it (as
        scikit-learn's ``predict`` does for a logistic regression); one per label for a model
        with per-label thresholds.

    Returns
    -------
    ndarray of shape (n_samples,)
        How far the predicted number of labels is from the labeled set's mean; zero for a row
        predicting exactly ``c`` labels.
    """
    p = _as_label_proba(P)
    c = float(mean_cardinality)
    if not np.isfinite(c) or c < 0 or c > p.shape[1]:
        raise InvalidParameterError(
            f"mean_cardinality must lie in [0, {p.shape[1]}] (the number of labels), got {c}"
        )
    t = _as_thresholds(threshold, p.shape[1], "threshold")
    predicted = np.count_nonzero(p > t, axis=1)
    return np.abs(predicted - c).astype(np.float64)


def label_set_vote_entropy(votes: ArrayLike) -> FloatArray:
    """Query by committee on label sets: each label's binary vote entropy, averaged over labels.

    Parameters
    ----------
    votes : array-like of 0/1, shape (n_members, n_samples, n_labels)
        Whether each committee member predicts each label present on each item.

    Returns
    -------
    ndarray of shape (n_samples,)
        ``mean_j H(q_j)`` with ``q_j`` the share of members voting label ``j`` present and
        ``H(q) = -q log q - (1 - q) log(1 - q)`` in nats (``0 log 0 = 0``): zero where the
        members agree on every label, ``log 2`` where they split evenly on every label.
    """
    v = _as_binary(votes, "votes", ndim=3)
    n_members, _, n_labels = v.shape
    if n_members < 1:
        raise InvalidDataError("votes needs at least one committee member")
    if n_labels < 1:
        raise InvalidDataError(f"votes must have at least one label, got shape {v.shape}")
    # A label with j of the m votes present has entropy table[j]: m + 1 values, looked up once.
    shares = np.arange(n_members + 1) / n_members
    table = np.zeros(n_members + 1)
    inner = slice(1, n_members)
    table[inner] = -shares[inner] * np.log(shares[inner]) - (1.0 - shares[inner]) * np.log(
        1.0 - shares[inner]
    )
    return table[v.sum(axis=0)].mean(axis=1)


#: The multi-label utilities a scoring pass computes by name (see :func:`multilabel_utility`).
MultiLabelScorer = Literal["mean_margin", "min_margin", "mmc", "lci"]
MULTI_LABEL_SCORERS: tuple[str, ...] = ("mean_margin", "min_margin", "mmc", "lci")


def multilabel_utility(
    scorer: str,
    P: ArrayLike,
    *,
    thresholds: ArrayLike | None = None,
    cardinality: CardinalityPredictor | None = None,
    mean_cardinality: float | None = None,
) -> FloatArray:
    """One multi-label utility of each row of ``P`` by its scorer's name.

    Parameters
    ----------
    scorer : {"mean_margin", "min_margin", "mmc", "lci"}
    P : array-like of shape (n_samples, n_labels)
        Per-label probabilities.
    thresholds : array-like of shape (n_labels,), optional
        The model's per-label thresholds: the margins are measured from them, and LCI counts a
        label as predicted above its own (0.5 without them).
    cardinality : CardinalityPredictor, optional
        For ``mmc``: each row's number of labels, predicted as Yang et al. do; without it,
        :func:`mmc`'s default (the rounded sum of the probabilities).
    mean_cardinality : float
        For ``lci`` (required): the labeled set's mean number of labels.
    """
    t = 0.5 if thresholds is None else thresholds
    if scorer == "mean_margin":
        return mean_margin_uncertainty(P, t)
    if scorer == "min_margin":
        return min_margin_uncertainty(P, t)
    if scorer == "mmc":
        k = None if cardinality is None else cardinality.predict(P)
        return mmc(P, k)
    if scorer == "lci":
        if mean_cardinality is None:
            raise InvalidParameterError("the lci utility needs the labeled set's mean cardinality")
        return label_cardinality_inconsistency(P, mean_cardinality, t)
    raise InvalidParameterError(
        f"unknown multi-label scorer {scorer!r}; expected one of {', '.join(MULTI_LABEL_SCORERS)}"
    )
