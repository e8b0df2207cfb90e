"""Multi-label models: one binary classifier per label, each with its own decision threshold.

An item carries a set of labels, possibly empty. Label sets are an indicator matrix ``Y`` of
shape ``(n_samples, n_labels)`` (``Y[i, j] == 1`` when item ``i`` carries label ``j``) beside a
tuple of label names; :func:`check_indicator` is the one check of such a matrix.

:class:`MultiLabelModel` fits a clone of any registry classifier per label (one-vs-rest) and
predicts a label when its score reaches that label's threshold, chosen on cross-validated
scores to maximise the label's F1 (:func:`best_threshold`). A rare label, whose probabilities
seldom reach 0.5, gets a lower threshold and is found far more often than at 0.5.

:class:`LabelSetClassifier` is the same model fitted on label sets in their stored form (one
string per item, :mod:`labelwise.label_sets`): the form a project's pool, the strategies and the
worker hand to any classifier. :func:`labelwise.models.registry.make_model` builds it for a
project's labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold

from labelwise import label_sets
from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.models.registry import has_predict_proba
from labelwise.models.semi import WrapsUnlabeled, fit_model
from labelwise.pool import Matrix, check_matrix, take_rows

__all__ = ["LabelSetClassifier", "MultiLabelModel", "best_threshold", "check_indicator"]

#: F1 values closer than this count as a tie (they differ only by rounding).
_TIE = 1e-12


def check_indicator(Y: Any, *, name: str = "Y", n_samples: int | None = None) -> NDArray[np.int8]:
    """``Y`` as an ``int8`` indicator matrix of 0s and 1s, or raise :class:`InvalidDataError`.

    Parameters
    ----------
    Y : array-like or sparse matrix of shape (n_samples, n_labels)
        ``Y[i, j]`` is 1 (or True) when item ``i`` carries label ``j``, else 0 (or False).
    name : str
        What to call ``Y`` in messages.
    n_samples : int, optional
        The number of rows ``Y`` must have (the rows of the matching feature matrix).

    Returns
    -------
    ndarray of shape (n_samples, n_labels) and dtype int8
        A dense copy holding only 0 and 1.
    """
    if sp.issparse(Y):
        Y = Y.toarray()
    try:
        arr = np.asarray(Y)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"{name} is not an indicator matrix: {exc}") from None
    if arr.ndim != 2:
        raise InvalidDataError(
            f"{name} must be a 2-D indicator matrix (n_samples, n_labels), got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise InvalidDataError(f"{name} has no label columns (shape {arr.shape})")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise InvalidDataError(f"{name} has {arr.shape[0]} rows but X has {n_samples}")
    if arr.dtype != bool and not np.issubdtype(arr.dtype, np.number):
        raise InvalidDataError(f"{name} must hold 0 and 1, got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InvalidDataError(
            f"{name} must hold only 0 and 1, got {arr[row, col].item()!r} at row {int(row)}, "
            f"column {int(col)}"
        )
    return arr.astype(np.int8)


def best_threshold(scores: ArrayLike, y: ArrayLike) -> float:
    """The decision threshold that maximises F1 when ``score >= threshold`` predicts positive.

    Every distinct set of predictions is one interval of thresholds: "positive from the
    ``k``-th smallest distinct score up" holds for any threshold in ``(v[k-1], v[k]]`` (with
    ``v[-1] = 0``). Each interval is represented by 0.5 where 0.5 lies in it (so 0.5 is kept
    unless another threshold does better), otherwise by the interval's midpoint. Among the
    candidates with the highest F1, the one nearest 0.5 wins. Predicting nothing positive
    (F1 = 0) is never a candidate.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Scores in [0, 1], higher meaning more likely positive (e.g. cross-validated
        probabilities).
    y : array-like of shape (n_samples,)
        The truth, 0 or 1, with at least one positive.

    Returns
    -------
    float
        The chosen threshold.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(y).astype(bool)
    if s.ndim != 1 or s.shape != t.shape or len(s) == 0:
        raise InvalidDataError(
            f"scores and y must be 1-D of equal, non-zero length, got {s.shape} and {t.shape}"
        )
    positives = int(t.sum())
    if positives == 0:
        raise InvalidDataError("y has no positive example: no threshold has an F1 above 0")
    order = np.argsort(s, kind="stable")
    s_sorted, t_sorted = s[order], t[order]
    values = np.unique(s_sorted)  # ascending distinct scores
    first = np.searchsorted(s_sorted, values, side="left")  # first row with score >= value
    predicted = len(s) - first
    cum_pos = np.concatenate([[0], np.cumsum(t_sorted)])
    true_pos = positives - cum_pos[first]
    f1 = 2.0 * true_pos / (predicted + positives)
    lower = np.concatenate([[min(0.0, float(values[0]))], values[:-1]])
    inside = (lower < 0.5) & (values >= 0.5)
    candidates = np.where(inside, 0.5, (lower + values) / 2.0)
    if values[0] <= 0.0:  # the interval reaching 0 from the left: threshold 0 predicts all
        candidates[0] = values[0]
    best = f1 >= f1.max() - _TIE
    distance = np.where(best, np.abs(candidates - 0.5), np.inf)
    return float(candidates[int(np.argmin(distance))])


def _positive_scores(model: Any, X: Matrix) -> NDArray[np.float64]:
    """Scores in [0, 1] of the positive class (1) of a fitted binary ``model``: its
    probabilities, or the logistic function of its decision values for a model without them."""
    if has_predict_proba(model):
        proba = np.asarray(model.predict_proba(X), dtype=np.float64)
        column = int(np.flatnonzero(np.asarray(model.classes_) == 1)[0])
        return proba[:, column]
    return np.asarray(expit(np.asarray(model.decision_function(X), dtype=np.float64)))


class MultiLabelModel(WrapsUnlabeled, ClassifierMixin, BaseEstimator):
    """One clone of ``estimator`` per label, with per-label thresholds chosen by cross-validation.

    Parameters
    ----------
    estimator : scikit-learn classifier
        Any binary classifier (a registry model, e.g. ``make_model("logreg")``); never fitted
        itself, only its clones. Without ``predict_proba``, its decision values pass through the
        logistic function to give scores in [0, 1].
    cv : int
        Folds of the stratified cross-validation that chooses each label's threshold (at
        least 2). A label whose rarer class has fewer than ``cv`` examples keeps 0.5.
    random_state : int or None
        Seed of the fold shuffling.
    labels : sequence of str, optional
        Names of the label columns; ``"0"``, ``"1"``, ... when omitted.

    Attributes
    ----------
    labels_ : tuple of str
        The label names, one per column of ``Y``.
    estimators_ : list
        Per label, its fitted clone, or None for a label predicted as a constant.
    constant_labels_ : dict of str to int
        Labels whose training column held a single value (no positive, or no negative
        example), mapped to that value: they are predicted as it, with probability 0.0 or 1.0.
    thresholds_ : ndarray of shape (n_labels,)
        Per label, the score at or above which it is predicted.
    cv_thresholds_ : ndarray of shape (n_labels,) and dtype bool
        Which thresholds were chosen on cross-validated scores (the others are 0.5).
    n_features_in_ : int
        Columns of the ``X`` seen in ``fit``.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        cv: int = 3,
        random_state: int | None = 0,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.estimator = estimator
        self.cv = cv
        self.random_state = random_state
        self.labels = labels

    def fit(self, X: Any, Y: Any, unlabeled: Any = None) -> MultiLabelModel:
        """Fit one classifier per label and choose each label's threshold.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
        Y : array-like of shape (n_samples, n_labels)
            Indicator matrix of 0s and 1s (see :func:`check_indicator`).
        unlabeled : array-like or sparse matrix of shape (n_unlabeled, n_features), optional
            Unlabeled rows, for a semi-supervised ``estimator`` (``uses_unlabeled``): each
            label's classifier sees them beside the labeled rows. The folds that choose the
            thresholds fit without them (scored on held-out labeled rows only).

        Returns
        -------
        MultiLabelModel
            ``self``, fitted.
        """
        if not isinstance(self.cv, (int, np.integer)) or isinstance(self.cv, bool) or self.cv < 2:
            raise InvalidParameterError(f"cv must be an integer of at least 2, got {self.cv!r}")
        Xc = check_matrix(X)
        Yc = check_indicator(Y, n_samples=Xc.shape[0])
        n_labels = Yc.shape[1]
        if self.labels is None:
            names = tuple(str(j) for j in range(n_labels))
        else:
            names = tuple(str(name) for name in self.labels)
            if len(names) != n_labels:
                raise InvalidDataError(f"{len(names)} label names given for {n_labels} columns")
            if len(set(names)) != n_labels:
                raise InvalidDataError(f"label names must be distinct, got {list(names)}")
        self.labels_ = names
        self.n_features_in_ = int(Xc.shape[1])
        self.classes_ = np.arange(n_labels)
        self.estimators_: list[Any] = []
        self.constant_labels_: dict[str, int] = {}
        self.thresholds_ = np.full(n_labels, 0.5)
        self.cv_thresholds_ = np.zeros(n_labels, dtype=bool)
        for j in range(n_labels):
            y = Yc[:, j]
            positives = int(y.sum())
            rarer = min(positives, len(y) - positives)
            if rarer == 0:
                self.constant_labels_[names[j]] = int(positives > 0)
                self.estimators_.append(None)
                continue
            self.estimators_.append(fit_model(self.estimator, Xc, y, unlabeled))
            if rarer >= self.cv:
                self.thresholds_[j] = best_threshold(self._cross_validated(Xc, y), y)
                self.cv_thresholds_[j] = True
        return self

    @property
    def pseudo_labels_(self) -> list[tuple[int, str, float]] | None:
        """What a semi-supervised per-label classifier made up, over all labels: ``(position in
        unlabeled, "insult" or "not insult", confidence)``, most confident first; None for a
        classifier that makes none."""
        if not self.uses_unlabeled or not hasattr(self, "estimators_"):
            return None
        made = [
            (int(pos), name if int(value) == 1 else f"not {name}", float(conf))
            for name, model in zip(self.labels_, self.estimators_, strict=True)
            if model is not None
            for pos, value, conf in getattr(model, "pseudo_labels_", None) or []
        ]
        return sorted(made, key=lambda m: -m[2])

    def _cross_validated(self, X: Matrix, y: NDArray[np.int8]) -> NDArray[np.float64]:
        """Out-of-fold positive scores of one label: each row scored by a clone not fitted on it."""
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        scores = np.empty(len(y), dtype=np.float64)
        for train, test in folds.split(np.zeros(len(y)), y):
            model = clone(self.estimator).fit(take_rows(X, train), y[train])
            scores[test] = _positive_scores(model, take_rows(X, test))
        return scores

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """Per-label probabilities of the positive class.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_labels)
            Column ``j`` holds the probability (or, for a model without probabilities, the
            logistic function of the decision value) that each item carries label ``j``; a
            constant label's column is all 0.0 or all 1.0.
        """
        if not hasattr(self, "estimators_"):
            raise InvalidParameterError("this MultiLabelModel is not fitted yet; call fit first")
        Xc = check_matrix(X)
        if Xc.shape[1] != self.n_features_in_:
            raise InvalidDataError(
                f"X has {Xc.shape[1]} features but the model was fitted on {self.n_features_in_}"
            )
        out = np.empty((Xc.shape[0], len(self.labels_)), dtype=np.float64)
        for j, (name, model) in enumerate(zip(self.labels_, self.estimators_, strict=True)):
            if model is None:
                out[:, j] = float(self.constant_labels_[name])
            else:
                out[:, j] = _positive_scores(model, Xc)
        return out

    def predict(self, X: Any) -> NDArray[np.int8]:
        """Per-label decisions: 1 where the score reaches the label's threshold.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_labels) and dtype int8
            The predicted indicator matrix; a constant label's column is its constant.
        """
        proba = self.predict_proba(X)
        pred = (proba >= self.thresholds_[None, :]).astype(np.int8)
        for j, name in enumerate(self.labels_):
            if name in self.constant_labels_:
                pred[:, j] = self.constant_labels_[name]
        return pred

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Subset accuracy: the share of items whose whole predicted label set is right."""
        Y = check_indicator(y, n_samples=check_matrix(X, values=False).shape[0])
        return float(np.mean(np.all(self.predict(X) == Y, axis=1)))


class LabelSetClassifier(WrapsUnlabeled, ClassifierMixin, BaseEstimator):
    """A multi-label model that reads and predicts label sets in their stored form.

    Fitted on ``y``, one canonical string per item (a set of ``labels`` joined by ``;``, see
    :mod:`labelwise.label_sets`), so it fits where a single-label classifier fits: the pool keeps
    the strings as its classes, a committee bags them, cross-validation splits them. Inside, a
    :class:`MultiLabelModel` learns one classifier per label with per-label thresholds.

    Parameters
    ----------
    estimator : scikit-learn classifier
        The per-label classifier (any registry model, or a pipeline ending in one).
    labels : sequence of str
        The project's labels, in order: the columns of :meth:`predict_proba`.
    cv, random_state
        As for :class:`MultiLabelModel` (the folds choosing each label's threshold).

    Attributes
    ----------
    classes_ : ndarray of str, shape (n_labels,)
        The labels, aligned with the columns of :meth:`predict_proba` (per-label
        probabilities: the rows do not sum to one).
    thresholds_ : ndarray of shape (n_labels,)
        Per label, the probability at or above which it is predicted.
    model_ : MultiLabelModel
    multi_label : bool
        True: outputs are per-label probabilities (what
        :class:`~labelwise.models.registry.ModelOutputs` and the strategies look for).
    """

    multi_label = True

    def __init__(
        self,
        estimator: Any,
        labels: Sequence[str],
        *,
        cv: int = 3,
        random_state: int | None = 0,
    ) -> None:
        self.estimator = estimator
        self.labels = labels
        self.cv = cv
        self.random_state = random_state

    @property
    def pseudo_labels_(self) -> list[tuple[int, str, float]] | None:
        """The pseudo-labels of a semi-supervised per-label classifier (see
        :attr:`MultiLabelModel.pseudo_labels_`), for the dashboard; None before the fit."""
        model = getattr(self, "model_", None)
        return None if model is None else model.pseudo_labels_

    def fit(self, X: Any, y: Any, unlabeled: Any = None) -> LabelSetClassifier:
        """Fit on ``y``: a canonical label-set string per row of ``X``; ``unlabeled`` rows go
        to a semi-supervised per-label classifier."""
        names = [str(label) for label in self.labels]
        values = np.asarray(y, dtype=object).ravel()
        Y = label_sets.to_indicator([str(v) for v in values], names)
        self.model_ = MultiLabelModel(
            self.estimator, cv=self.cv, random_state=self.random_state, labels=names
        ).fit(X, Y, unlabeled)
        self.classes_ = np.asarray(names, dtype=object)
        self.thresholds_ = self.model_.thresholds_
        self.n_features_in_ = self.model_.n_features_in_
        return self

    def _fitted(self) -> MultiLabelModel:
        if not hasattr(self, "model_"):
            raise InvalidParameterError("this LabelSetClassifier is not fitted yet; call fit first")
        return self.model_

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """Per-label probabilities, shape (n_samples, n_labels)."""
        return self._fitted().predict_proba(X)

    def predict_indicator(self, X: Any) -> NDArray[np.int8]:
        """The predicted sets as an indicator matrix (each label at its own threshold)."""
        return self._fitted().predict(X)

    def predict(self, X: Any) -> NDArray[Any]:
        """The predicted set of each row, in its canonical string form."""
        return np.asarray(
            label_sets.from_indicator(self.predict_indicator(X), list(self.classes_)), dtype=object
        )
