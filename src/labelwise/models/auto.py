"""``auto``: a model that chooses, at every fit, which representation it learns from.

No single representation wins everywhere: pretrained embeddings carry meaning that TF-IDF
cannot learn from a few hundred labels (sentiment, spam), while on topic text the words
themselves are the signal and TF-IDF wins. :class:`AutoRepresentation` takes the combined
matrix (the blocks of :func:`labelwise.features.combine`) and, each time it is fitted,
compares the model on every single block and on all blocks together by cross-validation on
the labels it is given, then fits the best on all of them. Every candidate sees the same
folds, so the comparison is paired. What it chose and the scores it compared are kept
(``choice_``, ``scores_``) and recorded with each model version.

It is an ordinary scikit-learn classifier: it is cloned, fitted, pickled, and used by
committees, the worker and a Dask cluster like any other model.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.preprocessing import normalize
from sklearn.utils.metaestimators import available_if

from labelwise import label_sets
from labelwise.exceptions import InvalidParameterError
from labelwise.features.combined import Blocks
from labelwise.features.spec import FeatureSpec
from labelwise.models.semi import WrapsUnlabeled

__all__ = ["ALL_BLOCKS", "AutoRepresentation", "macro_f1", "model_for_features"]

#: The name of the candidate that uses every block.
ALL_BLOCKS = "all"
# Most labeled rows cross-validated per fit (a stratified sample beyond that).
_MAX_CV_ROWS = 3000
# Fewest rows per fold when label sets are compared (unstratified folds).
_MIN_SET_FOLD_ROWS = 10


class AutoRepresentation(WrapsUnlabeled, ClassifierMixin, BaseEstimator):
    """Fit ``estimator`` on whichever column blocks of ``X`` cross-validate best.

    Parameters
    ----------
    estimator : classifier
        The model every candidate clones.
    blocks : dict of name -> (start, stop)
        Column blocks of the matrices it will see (see :func:`labelwise.features.combine`).
    normalize : bool
        Scale a single block's rows to unit L2 norm before the model sees them (the combined
        rows were normalised as a whole, which shrinks each block).
    folds : int
        Cross-validation folds (fewer when a class has fewer labels).
    random_state : int
        Seeds the folds and the sample of rows compared on large labeled sets.

    Attributes
    ----------
    choice_ : str
        The block used (``"all"`` for every block together). Every block together is kept
        unless a single block cross-validates better by more than one standard error of the
        paired, fold-by-fold difference in macro-F1.
    scores_ : dict of str -> float
        Cross-validated macro-F1 of every candidate (empty when the labels were too few to
        cross-validate: the model then uses every block).
    cv_predictions_ : dict of str -> ndarray
        Each candidate's out-of-fold predictions, aligned with ``cv_rows_`` (positions in the
        rows given to ``fit``).
    estimator_ : fitted classifier
    classes_ : ndarray
    """

    def __init__(
        self,
        estimator: Any,
        blocks: dict[str, tuple[int, int]],
        *,
        normalize: bool = True,
        folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.estimator = estimator
        self.blocks = blocks
        self.normalize = normalize
        self.folds = folds
        self.random_state = random_state

    def _candidates(self) -> list[str]:
        if not self.blocks:
            raise InvalidParameterError("AutoRepresentation needs at least one block of columns")
        names = list(self.blocks)
        return [ALL_BLOCKS, *names] if len(names) > 1 else names

    def _view(self, X: Any, name: str) -> Any:
        if name == ALL_BLOCKS or len(self.blocks) == 1:
            return X
        start, stop = self.blocks[name]
        part = X[:, start:stop]
        if sp.issparse(part):
            part = sp.csr_matrix(part)
        return normalize(part, copy=True) if self.normalize else part

    def select(self, X: Any) -> Any:
        """The columns of ``X`` the fitted model learns from (renormalised when asked)."""
        return self._view(X, self.choice_)

    @property
    def multi_label(self) -> bool:
        """Whether the wrapped model predicts label sets (a
        :class:`~labelwise.models.multilabel.LabelSetClassifier`)."""
        return bool(getattr(self.estimator, "multi_label", False))

    @property
    def thresholds_(self) -> NDArray[np.float64]:
        """The fitted multi-label model's per-label thresholds."""
        return np.asarray(self.estimator_.thresholds_)

    @property
    def pseudo_labels_(self) -> Any:
        """The wrapped semi-supervised model's pseudo-labels (see :mod:`labelwise.models.semi`)."""
        return getattr(self.estimator_, "pseudo_labels_", None)

    def fit(self, X: Any, y: Any, unlabeled: Any = None) -> AutoRepresentation:
        """Compare the candidates by cross-validation on ``(X, y)``, then fit the best on all
        of it; ``unlabeled`` rows (for a semi-supervised model) are seen in the same columns
        by the final fit."""
        y = np.asarray(y)
        candidates = self._candidates()
        self.scores_: dict[str, float] = {}
        self.cv_predictions_: dict[str, NDArray[Any]] = {}
        labels = list(self.estimator.labels) if self.multi_label else None
        rows = _cv_rows(y, _MAX_CV_ROWS, self.random_state)
        self.cv_rows_ = rows
        if labels is not None:
            # Label sets are too many to stratify on: plain shuffled folds of enough rows each.
            folds = min(self.folds, len(rows) // _MIN_SET_FOLD_ROWS)
        else:
            folds = min(self.folds, min(Counter(y[rows].tolist()).values())) if len(rows) else 0
        self.choice_ = candidates[0]
        if len(candidates) > 1 and folds >= 2:
            X_cv, y_cv = X[rows], y[rows]
            cv = (KFold if labels is not None else StratifiedKFold)(
                n_splits=folds, shuffle=True, random_state=self.random_state
            )
            splits = [test for _, test in cv.split(np.zeros(len(y_cv)), y_cv)]
            per_fold: dict[str, NDArray[np.float64]] = {}
            for name in candidates:
                predicted = cross_val_predict(
                    clone(self.estimator), self._view(X_cv, name), y_cv, cv=_fold_pairs(splits)
                )
                self.cv_predictions_[name] = predicted
                self.scores_[name] = macro_f1(y_cv, predicted, labels)
                per_fold[name] = np.array([macro_f1(y_cv[t], predicted[t], labels) for t in splits])
            self.choice_ = _one_standard_error(candidates, per_fold)
        final = clone(self.estimator)
        if unlabeled is not None and self.uses_unlabeled:
            final.fit(self._view(X, self.choice_), y, unlabeled=self._view(unlabeled, self.choice_))
        else:
            final.fit(self._view(X, self.choice_), y)
        self.estimator_ = final
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = int(X.shape[1])
        return self

    def predict(self, X: Any) -> NDArray[Any]:
        return self.estimator_.predict(self.select(X))

    @available_if(lambda self: _offers(self.estimator, "proba"))
    def predict_proba(self, X: Any) -> NDArray[np.floating]:
        return self.estimator_.predict_proba(self.select(X))

    @available_if(lambda self: _offers(self.estimator, "decision"))
    def decision_function(self, X: Any) -> NDArray[np.floating]:
        return self.estimator_.decision_function(self.select(X))

    @available_if(lambda self: hasattr(self.estimator, "predict_proba_samples"))
    def predict_proba_samples(
        self, X: Any, n_samples: int, *, random_state: int | None = None
    ) -> NDArray[np.floating]:
        """The wrapped model's Monte Carlo dropout samples on the chosen columns (for ``bald``,
        see :class:`labelwise.models.registry.MCDropoutModel`)."""
        return self.estimator_.predict_proba_samples(
            self.select(X), n_samples, random_state=random_state
        )

    @available_if(lambda self: hasattr(self.estimator, "bald_scores"))
    def bald_scores(
        self, X: Any, n_samples: int, *, random_state: int | None = None
    ) -> NDArray[np.floating]:
        """The wrapped model's BALD scores on the chosen columns."""
        return self.estimator_.bald_scores(self.select(X), n_samples, random_state=random_state)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _fold_pairs(tests: list[NDArray[np.intp]]) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """(train, test) pairs for the given test folds (every candidate gets the same folds)."""
    n = sum(len(t) for t in tests)
    everything = np.arange(n)
    return [(np.setdiff1d(everything, t, assume_unique=True), t) for t in tests]


def macro_f1(y: NDArray[Any], predicted: NDArray[Any], labels: list[str] | None = None) -> float:
    """Macro-F1 of predictions: over the classes, or with ``labels`` (label sets in their
    stored form, :mod:`labelwise.label_sets`) over each label's yes/no decisions."""
    if labels is None:
        return float(f1_score(y, predicted, average="macro", zero_division=0))
    truth = label_sets.to_indicator([str(v) for v in y], labels)
    guess = label_sets.to_indicator([str(v) for v in predicted], labels)
    return float(f1_score(truth, guess, average="macro", zero_division=0))


def _one_standard_error(candidates: list[str], per_fold: dict[str, NDArray[np.float64]]) -> str:
    """The first candidate (every block together) unless another beats it, fold by fold, by
    more than one standard error of the paired difference (Breiman's one-standard-error rule:
    a choice made on a few dozen labels must not follow noise)."""
    default = candidates[0]
    best = max(candidates, key=lambda name: float(per_fold[name].mean()))
    if best == default:
        return default
    diff = per_fold[best] - per_fold[default]
    se = float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else np.inf
    return best if float(diff.mean()) > se else default


def _offers(estimator: Any, kind: str) -> bool:
    from labelwise.models.registry import has_decision_function, has_predict_proba

    return has_predict_proba(estimator) if kind == "proba" else has_decision_function(estimator)


def _cv_rows(y: NDArray[Any], limit: int, seed: int) -> NDArray[np.intp]:
    """Every row, or a stratified random ``limit`` of them when there are more."""
    n = len(y)
    if n <= limit:
        return np.arange(n, dtype=np.intp)
    rng = np.random.default_rng(seed)
    keep: list[NDArray[np.intp]] = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        take = max(1, round(limit * len(members) / n))
        keep.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(keep)).astype(np.intp)


def model_for_features(
    estimator: Any, spec: FeatureSpec, blocks: Blocks, *, random_state: int = 0
) -> Any:
    """The model to fit on features of ``spec``: ``estimator`` itself, or for ``auto`` an
    :class:`AutoRepresentation` that chooses among ``blocks`` at
    every fit."""
    if not spec.auto:
        return estimator
    return AutoRepresentation(estimator, blocks, random_state=random_state)
