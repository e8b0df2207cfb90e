"""Semi-supervised models: the unlabeled pool helps the fit.

:class:`SemiSupervised` wraps scikit-learn's ``SelfTrainingClassifier`` (a base classifier
labels the unlabeled rows it is confident about and refits on them) or
``LabelSpreading`` (labels spread over a nearest-neighbour graph of
labeled and unlabeled rows). Its ``fit(X, y, unlabeled=...)`` takes the unlabeled rows beside
the labeled ones; :func:`fit_model` passes them to any model that asks (``uses_unlabeled``).

The labels it makes up (*pseudo-labels*) stay inside the model: ``pseudo_labels_`` lists the
ones in use with their confidence, for the dashboard; they are never stored as anyone's answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier

from labelwise.exceptions import InvalidParameterError
from labelwise.pool import Matrix, take_rows

__all__ = ["SemiSupervised", "WrapsUnlabeled", "fit_model", "unlabeled_sample"]

METHODS = ("self-training", "label-spreading")


class SemiSupervised(ClassifierMixin, BaseEstimator):
    """A classifier fitted on labeled rows and a sample of unlabeled ones.

    Parameters
    ----------
    base : classifier with ``predict_proba``
        The model self-training refits (ignored by label spreading).
    method : {"self-training", "label-spreading"}
    threshold : float
        Self-training: the confidence from which an unlabeled row gets a pseudo-label. (Label
        spreading gives every unlabeled row its labels reach a distribution; all of them are
        in use and reported.)
    max_unlabeled : int
        Most unlabeled rows used per fit (a random sample beyond that): the fit stays cheap on
        large pools.
    n_neighbors : int
        Label spreading's graph.
    alpha : float in (0, 1)
        Label spreading: how much a node takes from its neighbours rather than keeping its own
        label (Zhou et al. 2004 use 0.99; scikit-learn's 0.2 barely spreads beyond the
        labeled items' neighbours when labels are few, which is exactly our case).
    max_iter : int
        Self-training rounds (label spreading iterates to convergence, at most 1,000 times).

    Attributes
    ----------
    classes_ : ndarray
    pseudo_labels_ : list of (position in ``unlabeled``, label, confidence)
        The pseudo-labels in use after the fit, most confident first.
    """

    uses_unlabeled = True

    def __init__(
        self,
        base: Any = None,
        *,
        method: str = "self-training",
        threshold: float = 0.9,
        max_unlabeled: int = 5000,
        n_neighbors: int = 7,
        alpha: float = 0.9,
        max_iter: int = 10,
    ) -> None:
        self.base = base
        self.method = method
        self.threshold = threshold
        self.max_unlabeled = max_unlabeled
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.max_iter = max_iter

    def fit(self, X: Matrix, y: Any, unlabeled: Matrix | None = None) -> SemiSupervised:
        if self.method not in METHODS:
            raise InvalidParameterError(
                f"method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        if not 0.0 < self.threshold <= 1.0:
            raise InvalidParameterError(f"threshold must be in (0, 1], got {self.threshold}")
        y = np.asarray(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        n = X.shape[0]
        if unlabeled is not None and unlabeled.shape[0]:
            if unlabeled.shape[1] != X.shape[1]:
                raise InvalidParameterError(
                    f"unlabeled rows have {unlabeled.shape[1]} features, labeled ones {X.shape[1]}"
                )
            X_all = (
                sp.vstack([X, unlabeled], format="csr")
                if sp.issparse(X)
                else np.vstack([np.asarray(X), np.asarray(unlabeled)])
            )
        else:
            X_all = X
        y_all = np.concatenate([codes, np.full(X_all.shape[0] - n, -1)])
        if self.method == "self-training" and self.base is None:
            raise InvalidParameterError("self-training needs a base classifier")
        if X_all.shape[0] == n and self.method == "self-training":
            # Nothing unlabeled (cross-validation folds, a fully labeled pool): the base alone.
            self.model_ = clone(self.base).fit(X, codes)
            self.pseudo_labels_ = []
            return self
        if self.method == "self-training":
            self.model_ = SelfTrainingClassifier(
                clone(self.base), threshold=self.threshold, max_iter=self.max_iter
            ).fit(X_all, y_all)
            chosen = np.flatnonzero(self.model_.labeled_iter_[n:] > 0)
            confidence = (
                self.model_.predict_proba(take_rows(X_all, n + chosen)).max(axis=1)
                if len(chosen)
                else np.empty(0)
            )
            labels = self.model_.transduction_[n + chosen]
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                self.model_ = LabelSpreading(
                    kernel="knn", n_neighbors=self.n_neighbors, alpha=self.alpha, max_iter=1000
                ).fit(X_all, y_all)
            # Every unlabeled row the labels reached takes part in the fit.
            spread = np.nan_to_num(self.model_.label_distributions_[n:], nan=0.0)
            best = spread.max(axis=1) if len(spread) else np.empty(0)
            chosen = np.flatnonzero(best > 0)
            confidence = best[chosen]
            labels = self.model_.transduction_[n + chosen]
        order = np.argsort(-confidence, kind="stable")
        self.pseudo_labels_ = [
            (int(chosen[i]), self.classes_[int(labels[i])], float(confidence[i])) for i in order
        ]
        return self

    def predict_proba(self, X: Matrix) -> NDArray[np.float64]:
        # Label spreading gives rows no label reached (a graph component without labels)
        # all-zero weights: those get no opinion, a uniform distribution.
        with np.errstate(invalid="ignore", divide="ignore"):
            proba = np.asarray(self.model_.predict_proba(X), dtype=np.float64)
        unknown = ~np.isfinite(proba).all(axis=1)
        proba[unknown] = 1.0 / len(self.classes_)
        return proba

    def predict(self, X: Matrix) -> NDArray[Any]:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])


class WrapsUnlabeled:
    """For a model that wraps an ``estimator`` which may be semi-supervised: it takes unlabeled
    rows when its estimator does (``uses_unlabeled``), and as many (``max_unlabeled``), so that
    :func:`unlabeled_sample` and :func:`fit_model` treat the wrapper as they treat the model."""

    estimator: Any

    @property
    def uses_unlabeled(self) -> bool:
        """Whether the wrapped model also learns from unlabeled rows (semi-supervised)."""
        return bool(getattr(self.estimator, "uses_unlabeled", False))

    @property
    def max_unlabeled(self) -> int | None:
        """The wrapped model's bound on the unlabeled rows it takes."""
        return getattr(self.estimator, "max_unlabeled", None)


def unlabeled_sample(
    estimator: Any, candidates: NDArray[np.intp], rng: np.random.Generator
) -> NDArray[np.intp]:
    """The unlabeled rows ``estimator`` should see: none unless it uses them, at most its
    ``max_unlabeled`` (drawn at random, returned sorted)."""
    if not getattr(estimator, "uses_unlabeled", False) or not len(candidates):
        return np.empty(0, np.intp)
    k = min(len(candidates), int(getattr(estimator, "max_unlabeled", len(candidates))))
    return np.sort(rng.choice(candidates, size=k, replace=False)).astype(np.intp)


def fit_model(estimator: Any, X: Matrix, y: Any, unlabeled: Matrix | None = None) -> Any:
    """A fitted clone of ``estimator``; a semi-supervised one also gets ``unlabeled``."""
    model = clone(estimator)
    if getattr(model, "uses_unlabeled", False):
        return model.fit(X, y, unlabeled=unlabeled)
    return model.fit(X, y)
