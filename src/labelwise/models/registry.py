"""Models: named scikit-learn classifiers, and reading their outputs over a pool in chunks.

Any scikit-learn classifier or ``Pipeline`` works; the names here are the shortcuts the CLI and
project settings use. A strategy never fits the caller's estimator: it works on a fitted clone.

:func:`model_outputs` reads a fitted model's probabilities (``predict_proba``) or, for a model
without them, its ``decision_function``, over selected rows of the pool, chunk by chunk, so a pool
of millions of rows never needs more than one chunk of outputs in memory at a time.

A model that draws Monte Carlo dropout samples (:class:`MCDropoutModel`, such as
``"mlp-torch"``) also gives BALD utilities over the pool: :func:`bald_utilities`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MaxAbsScaler, StandardScaler
from sklearn.svm import SVC, LinearSVC

from labelwise.exceptions import InvalidParameterError, ModelCapabilityError
from labelwise.features.scaling import PoolScaler
from labelwise.label_sets import from_indicator
from labelwise.models.auto import AutoRepresentation
from labelwise.pool import Matrix, take_rows

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MCDropoutModel",
    "ModelOutputs",
    "available_models",
    "final_step",
    "fit_clone",
    "has_decision_function",
    "has_predict_proba",
    "iter_chunks",
    "linear_form",
    "make_model",
    "map_outputs",
    "model_outputs",
    "read_in_place",
]

DEFAULT_CHUNK_SIZE = 65_536

OutputKind = Literal["proba", "decision"]


def _logreg(random_state: int | None) -> BaseEstimator:
    # Columns standardised with the whole pool's statistics (PoolScaler, bound by
    # fit_to_pool; text features, already of unit norm, pass through), never the labeled
    # rows': a scaler fitted on a few dozen labels distorts sparse TF-IDF badly.
    # Balanced class weights: labels are scarce and classes often skewed (spam, pneumonia,
    # abuse); unweighted, an early model predicts the majority class everywhere, its
    # uncertainty is flat, and the rare class is found late. Macro-F1 is what we report.
    return make_pipeline(
        PoolScaler(),
        LogisticRegression(max_iter=2000, class_weight="balanced", random_state=random_state),
    )


def _svm(random_state: int | None) -> BaseEstimator:
    return SVC(kernel="rbf", gamma="auto", C=1.0, random_state=random_state)


def _svm_proba(random_state: int | None) -> BaseEstimator:
    return SVC(kernel="rbf", gamma="scale", C=1.0, probability=True, random_state=random_state)


def _linear_svm(random_state: int | None) -> BaseEstimator:
    return make_pipeline(PoolScaler(), LinearSVC(random_state=random_state))


def _forest(random_state: int | None) -> BaseEstimator:
    return RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=random_state)


def _naive_bayes(random_state: int | None) -> BaseEstimator:
    return ComplementNB()


def _knn(random_state: int | None) -> BaseEstimator:
    return make_pipeline(PoolScaler(), KNeighborsClassifier(n_neighbors=5))


def _self_training(random_state: int | None) -> BaseEstimator:
    from labelwise.models.semi import SemiSupervised

    # scikit-learn's own default threshold: a regularised logistic regression is rarely more
    # than 90 % sure early on, so a stricter one would seldom pseudo-label anything.
    return SemiSupervised(_logreg(random_state), method="self-training", threshold=0.75)


def _label_spreading(random_state: int | None) -> BaseEstimator:
    from labelwise.models.semi import SemiSupervised

    return SemiSupervised(method="label-spreading")


def _mlp_torch(random_state: int | None) -> BaseEstimator:
    try:
        from labelwise.models.torch_model import MLPTorchClassifier
    except ImportError as exc:
        raise InvalidParameterError(
            f"model 'mlp-torch' needs PyTorch ({exc}); install it with: pip install "
            "'labelwise[torch]'"
        ) from None
    return MLPTorchClassifier(random_state=random_state)


_MODELS: dict[str, tuple[Callable[[int | None], BaseEstimator], str]] = {
    "logreg": (
        _logreg,
        "logistic regression, balanced class weights, columns scaled by the pool (probabilities)",
    ),
    "svm": (_svm, "RBF support vector machine, gamma='auto', C=1 (decision values only)"),
    "svm-proba": (_svm_proba, "RBF support vector machine with Platt probabilities"),
    "linear-svm": (_linear_svm, "linear support vector machine (decision values only)"),
    "forest": (_forest, "random forest, 100 trees (probabilities)"),
    "naive-bayes": (_naive_bayes, "complement naive Bayes, for counts and TF-IDF (probabilities)"),
    "knn": (_knn, "5 nearest neighbours (probabilities)"),
    "self-training": (
        _self_training,
        "semi-supervised: logreg that also fits on unlabeled items it is 75 % sure of",
    ),
    "label-spreading": (
        _label_spreading,
        "semi-supervised: labels spread over a 7-nearest-neighbour graph of all items",
    ),
    "mlp-torch": (
        _mlp_torch,
        "PyTorch MLP (2 x 128 ReLU, dropout 0.25), scores on CUDA when available; Monte Carlo "
        "dropout for 'bald' (needs the torch extra)",
    ),
}


def available_models() -> dict[str, str]:
    """Model names accepted by :func:`make_model`, with a one-line description each."""
    return {name: description for name, (_, description) in sorted(_MODELS.items())}


def make_model(name: str, *, random_state: int | None = None) -> BaseEstimator:
    """A fresh, unfitted classifier by name (see :func:`available_models`)."""
    try:
        factory, _ = _MODELS[name]
    except KeyError:
        known = ", ".join(sorted(_MODELS))
        raise InvalidParameterError(f"unknown model {name!r}; expected one of: {known}") from None
    return factory(random_state)


def final_step(model: Any) -> Any:
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def _chosen(model: Any) -> Any:
    """The model an :class:`~labelwise.models.auto.AutoRepresentation` wraps (fitted, else
    its template); any other model as it is."""
    while isinstance(model, AutoRepresentation):
        model = getattr(model, "estimator_", model.estimator)
    return model


def has_predict_proba(model: Any) -> bool:
    """Whether ``model`` (fitted or not) offers ``predict_proba``.

    ``SVC(probability=False)`` exposes the attribute but raises when called; this says False.
    """
    model = _chosen(model)
    final = final_step(model)
    if isinstance(final, SVC) and not final.probability:
        return False
    return hasattr(model, "predict_proba")


def has_decision_function(model: Any) -> bool:
    """Whether ``model`` offers ``decision_function``."""
    return hasattr(_chosen(model), "decision_function")


@dataclass(frozen=True)
class ModelOutputs:
    """A fitted model's outputs on some rows of the pool.

    Attributes
    ----------
    kind : {"proba", "decision"}
        Which method produced ``values``.
    values : ndarray of shape (n_rows, n_classes), or (n_rows,) for binary decision values
    classes : ndarray of shape (n_classes,)
        The model's ``classes_``, aligned with the columns of ``values``.
    """

    kind: OutputKind
    values: NDArray[np.floating]
    classes: NDArray[Any]
    #: For a multi-label model (:class:`~labelwise.models.multilabel.LabelSetClassifier`):
    #: each label's decision threshold, ``values`` then holding per-label probabilities (rows
    #: that do not sum to one) and ``classes`` the labels. None for a single-label model.
    thresholds: NDArray[np.floating] | None = None

    @property
    def multi_label(self) -> bool:
        """Whether ``values`` are per-label probabilities of a multi-label model."""
        return self.thresholds is not None

    def confidence(self) -> NDArray[np.float64] | None:
        """How sure the model is of each row's prediction: the probability of the predicted
        class; for a multi-label model the probability of its least sure label decision (of
        the label being there when predicted, of it being absent when not). None from
        decision values."""
        if self.kind != "proba":
            return None
        v = np.asarray(self.values, dtype=np.float64)
        if self.thresholds is None:
            return v.max(axis=1) if v.shape[1] else np.zeros(len(v))
        decided = np.where(v >= self.thresholds[None, :], v, 1.0 - v)
        return decided.min(axis=1) if v.shape[1] else np.ones(len(v))

    def explained_column(self, row: int = 0) -> int:
        """The column an explanation of ``row`` speaks for: the predicted class; for a
        multi-label model the label whose decision is least sure (the smallest
        :func:`decision_margins`), the one the margin strategies weigh most. For 2-D values."""
        v = np.asarray(self.values, dtype=np.float64)[row]
        if self.thresholds is not None:
            return int(np.argmin(decision_margins(v[None, :], self.thresholds)[0]))
        return int(np.argmax(v))

    def predicted(self) -> NDArray[Any]:
        """The predicted class of each row; for a multi-label model its predicted label set,
        in its stored form (:mod:`labelwise.label_sets`)."""
        v = self.values
        if self.thresholds is not None:
            on = v >= self.thresholds[None, :]
            return np.asarray(from_indicator(on, [str(c) for c in self.classes]), dtype=object)
        if v.ndim == 1:
            return self.classes[(v > 0).astype(np.intp)]
        return self.classes[np.argmax(v, axis=1)]


def decision_margins(P: NDArray[np.floating], thresholds: Any) -> NDArray[np.float64]:
    """How sure each label decision is: ``|p - t|`` scaled to ``[0, 1]`` on each side of the
    threshold ``t`` (``(p - t) / (1 - t)`` where ``p >= t`` predicts the label, ``(t - p) / t``
    below): zero on the threshold, one at 0 or 1; ``|2 p - 1|`` at ``t = 0.5``. ``P`` holds
    per-label probabilities, ``thresholds`` one per label (or one for all); unchecked here
    (:func:`labelwise.strategies.multilabel_scorers.label_margins` checks them)."""
    p = np.asarray(P, dtype=np.float64)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), p.shape)
    span = np.where(p >= t, 1.0 - t, t)
    # A zero span (t = 1 with p = 1, say) means p sits on the threshold: margin zero.
    return np.divide(np.abs(p - t), span, out=np.zeros_like(p), where=span > 0)


def iter_chunks(indices: NDArray[np.intp], chunk_size: int) -> Iterator[NDArray[np.intp]]:
    """Consecutive slices of ``indices`` of at most ``chunk_size`` entries."""
    for start in range(0, len(indices), chunk_size):
        yield indices[start : start + chunk_size]


def _choose_kind(model: ClassifierMixin, prefer: OutputKind | None) -> OutputKind:
    proba, decision = has_predict_proba(model), has_decision_function(model)
    if prefer == "proba" and not proba:
        raise ModelCapabilityError(
            f"{type(final_step(model)).__name__} has no predict_proba; choose a strategy that "
            "works from decision values (margin) or a model with probabilities"
        )
    if prefer == "decision" and not decision:
        raise ModelCapabilityError(f"{type(final_step(model)).__name__} has no decision_function")
    if prefer is not None:
        return prefer
    if proba:
        return "proba"
    if decision:
        return "decision"
    raise ModelCapabilityError(
        f"{type(final_step(model)).__name__} has neither predict_proba nor decision_function"
    )


def map_outputs(
    model: Any,
    X: Matrix,
    rows: NDArray[np.intp],
    fn: Callable[[ModelOutputs], NDArray[Any]],
    *,
    prefer: OutputKind | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> NDArray[Any]:
    """Apply ``fn`` to the model's outputs chunk by chunk and concatenate the results.

    This is how a pool is scored: only one chunk of probabilities exists at a time, and ``fn``
    reduces it (to utilities, predictions, ...) before the next chunk is predicted.
    """
    kind = _choose_kind(model, prefer)
    method = model.predict_proba if kind == "proba" else model.decision_function
    fast = _linear_proba(model) if kind == "proba" else None
    classes = np.asarray(model.classes_)
    thresholds = label_thresholds(model)

    def apply(block: Matrix) -> NDArray[Any]:
        values = fast(block) if fast is not None else None
        if values is None:
            values = np.asarray(method(block))
        return fn(ModelOutputs(kind, values, classes, thresholds))

    parts = []
    if read_in_place(X, rows):
        # Most of a dense pool is wanted: score consecutive slices (views, nothing gathered)
        # and keep the wanted rows' results, instead of copying the wanted rows out first.
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        for start in range(lo, hi, chunk_size):
            stop = min(start + chunk_size, hi)
            a, b = np.searchsorted(rows, [start, stop])
            out = apply(X[start:stop])
            parts.append(out if b - a == stop - start else out[rows[a:b] - start])
    else:
        parts = [apply(take_rows(X, chunk)) for chunk in iter_chunks(rows, chunk_size)]
    if parts:
        return np.concatenate(parts, axis=0)
    return fn(ModelOutputs(kind, _empty_values(kind, len(classes)), classes, thresholds))


def label_thresholds(model: Any) -> NDArray[np.float64] | None:
    """A fitted multi-label model's per-label thresholds; None for a single-label model."""
    if not getattr(model, "multi_label", False):
        return None
    return np.asarray(model.thresholds_, dtype=np.float64)


def read_in_place(X: Matrix, rows: NDArray[np.intp]) -> bool:
    """Whether ``rows`` (sorted, unique) cover most of the span of a dense ``X``."""
    if not isinstance(X, np.ndarray) or len(rows) < 2:
        return False
    span = int(rows[-1]) - int(rows[0]) + 1
    return len(rows) >= 0.75 * span and bool(np.all(rows[1:] > rows[:-1]))


def linear_form(model: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """``(W, b)`` with ``model``'s scores equal to ``X @ W.T + b`` on raw features, or None.

    For a fitted linear classifier (logistic regression, linear SVM, SGD, ridge) alone or after
    per-feature scalers (``PoolScaler``, ``MaxAbsScaler``, ``StandardScaler``): the scalers are
    affine maps of each feature, so they fold into the weights exactly and the pool is scored
    without transforming it first. ``W`` has one row per score (one for a binary model).
    """
    final = final_step(model)
    if not isinstance(final, _LINEAR) or not hasattr(final, "coef_"):
        return None
    if sp.issparse(final.coef_):
        return None
    W = np.atleast_2d(np.asarray(final.coef_, dtype=np.float64))  # binary ridge: 1-D coef_
    scale = np.ones(W.shape[1])
    shift = np.zeros(W.shape[1])  # the head maps x to scale * x + shift
    steps = model.steps[:-1] if isinstance(model, Pipeline) else []
    for _, step in steps:
        if isinstance(step, PoolScaler):
            affine = step.affine()
            if affine is not None:
                mean, std = affine
                scale, shift = scale / std, (shift - mean) / std
        elif isinstance(step, MaxAbsScaler):
            divide = np.asarray(step.scale_, dtype=np.float64)
            scale, shift = scale / divide, shift / divide
        elif isinstance(step, StandardScaler):
            mean = np.asarray(step.mean_ if step.with_mean else 0.0, dtype=np.float64)
            std = np.asarray(step.scale_ if step.with_std else 1.0, dtype=np.float64)
            scale, shift = scale / std, (shift - mean) / std
        else:
            return None
    intercept = np.broadcast_to(np.asarray(final.intercept_, dtype=np.float64), (W.shape[0],))
    return W * scale, intercept + W @ shift


_LINEAR = (LogisticRegression, LinearSVC, SGDClassifier, RidgeClassifier)


def _linear_proba(model: Any) -> Callable[[Matrix], NDArray[np.floating] | None] | None:
    """A faster ``predict_proba`` for logistic regression (alone or after per-feature scalers),
    or None for any other model.

    The scores are :func:`linear_form`'s ``X @ W.T + b`` in the pool's own float precision,
    then the link scikit-learn applies: the logistic function for two classes, the softmax for
    more. Sparse or non-float chunks fall back to ``predict_proba`` (None for them).
    """
    if type(final_step(model)) is not LogisticRegression:
        return None
    form = linear_form(model)
    if form is None:
        return None
    weights = {
        dt: (form[0].astype(dt), form[1].astype(dt)[:, None]) for dt in (np.float32, np.float64)
    }

    def proba(block: Matrix) -> NDArray[np.floating] | None:
        if not isinstance(block, np.ndarray) or block.dtype not in (np.float32, np.float64):
            return None
        W, b = weights[block.dtype.type]
        # Scores as (classes, rows): reductions over classes then run along contiguous rows,
        # about twice as fast as over the short rows of the (rows, classes) layout.
        z = W @ block.T
        z += b
        if z.shape[0] == 1:  # binary: the logistic function of the one score
            p1 = expit(z[0])
            return np.column_stack([1.0 - p1, p1])
        z -= z.max(axis=0)
        np.exp(z, out=z)
        z /= z.sum(axis=0)
        return z.T  # (rows, classes), column-major

    return proba


def _empty_values(kind: OutputKind, n_classes: int) -> NDArray[np.float64]:
    if kind == "decision" and n_classes == 2:
        return np.empty((0,))
    return np.empty((0, n_classes))


def model_outputs(
    model: Any,
    X: Matrix,
    rows: NDArray[np.intp] | None = None,
    *,
    prefer: OutputKind | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ModelOutputs:
    """Probabilities (or decision values) of a fitted ``model`` for ``rows`` of ``X``.

    Parameters
    ----------
    model : fitted classifier
    X : array-like or sparse matrix of shape (n_pool, n_features)
    rows : int array of shape (n_rows,), optional
        Which rows to read; all rows when omitted.
    prefer : {"proba", "decision"}, optional
        Demand one kind (``ModelCapabilityError`` when the model lacks it); by default
        probabilities when available, else decision values.
    chunk_size : int
        Rows predicted per call, bounding the memory used at once.
    """
    kind = _choose_kind(model, prefer)
    if rows is None:
        rows = np.arange(X.shape[0], dtype=np.intp)
    values = map_outputs(model, X, rows, lambda out: out.values, prefer=kind, chunk_size=chunk_size)
    return ModelOutputs(
        kind=kind,
        values=values,
        classes=np.asarray(model.classes_),
        thresholds=label_thresholds(model),
    )


@runtime_checkable
class MCDropoutModel(Protocol):
    """A fitted model that draws Monte Carlo dropout samples of its class probabilities.

    ``predict_proba_samples`` returns an array of shape ``(n_samples, n_rows, n_classes)``:
    ``n_samples`` stochastic forward passes, the same for the same ``random_state``. A model
    may also offer ``bald_scores(X, n_samples, *, random_state)`` returning
    :func:`labelwise.strategies.scorers.bald` of those samples, shape ``(n_rows,)``, computed where
    the samples are (on a GPU, say); :func:`bald_utilities` prefers it.
    """

    def predict_proba_samples(
        self, X: Any, n_samples: int, *, random_state: int | None = None
    ) -> NDArray[np.floating]: ...


def fit_clone(estimator: BaseEstimator, X: Matrix, y: NDArray[Any]) -> BaseEstimator:
    """A fitted clone of ``estimator``: the caller's object is never touched."""
    return clone(estimator).fit(X, y)
