"""Triage of new items: confident ones decided automatically, the rest to the experts.

The radiology workflow: a model trained on the labels so far predicts new items with
*calibrated* probabilities (scikit-learn's :class:`~sklearn.calibration.CalibratedClassifierCV`),
items it is sure enough about are accepted automatically, and experts see only the rest, plus a
random *audit* sample of the accepted ones that measures the error of the automatic decisions.

"Sure enough" is a threshold chosen on held-out predictions for the labeled items (nested
cross-validation: each labeled item is predicted by a calibrated model that never saw it), for
one of two targets:

- ``sensitivity`` of a ``positive`` class (pneumonia): only items predicted *not* positive are
  accepted, and only while the share of positive items that would be accepted that way stays
  within ``1 - level``. Positives always reach an expert.
- ``precision``: an item is accepted as its predicted class when that class's probability clears
  the class's threshold, chosen so that the accepted items of each class are right at least a
  ``level`` share of the time.

With ``conservative=True`` (the default) the threshold keeps the *upper* 95 % Wilson bound of the
error (missed positives, or wrong acceptances) within the target rather than the point estimate,
so a small labeled set accepts less instead of promising what it cannot show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from labelwise.exceptions import InvalidDataError, InvalidParameterError
from labelwise.learning.evaluate import wilson_interval

__all__ = [
    "TriageDecisions",
    "TriagePolicy",
    "TriageTarget",
    "calibrated_model",
    "check_audit",
    "fit_policy",
    "held_out_proba",
    "triage",
    "wilson_interval",
]


@dataclass(frozen=True)
class TriageTarget:
    """What the automatic decisions must guarantee.

    Parameters
    ----------
    kind : {"sensitivity", "precision"}
    level : float in (0, 1)
        Target sensitivity of ``positive``, or target precision of the accepted items.
    positive : str, optional
        The class that must not be missed (required for a sensitivity target).
    conservative : bool, default True
        Hold the upper 95 % bound of the error to the target, not its point estimate.
    """

    kind: Literal["sensitivity", "precision"]
    level: float
    positive: str | None = None
    conservative: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("sensitivity", "precision"):
            raise InvalidParameterError(
                f"triage target must be 'sensitivity' or 'precision', got {self.kind!r}"
            )
        if not isinstance(self.level, (int, float)) or not 0.0 < self.level < 1.0:
            raise InvalidParameterError(
                f"target {self.kind} must be a fraction between 0 and 1, got {self.level!r}"
            )
        if self.kind == "sensitivity" and not self.positive:
            raise InvalidParameterError(
                "a sensitivity target needs the positive class (the one not to miss)"
            )

    @classmethod
    def from_options(
        cls,
        *,
        sensitivity: float | None,
        precision: float | None,
        positive: str | None = None,
        point_estimate: bool = False,
        names: tuple[str, str] = ("sensitivity", "precision"),
    ) -> TriageTarget:
        """The target a command line or a request asks for: exactly one of ``sensitivity``
        (with ``positive``) and ``precision``; ``point_estimate`` holds the error's point
        estimate to the target rather than its upper bound. ``names`` are the two options as
        the caller spells them (``--sensitivity`` on the command line), for the error."""
        if (sensitivity is None) == (precision is None):
            raise InvalidParameterError(f"give exactly one target: {names[0]} or {names[1]}")
        if sensitivity is not None:
            return cls("sensitivity", sensitivity, positive, not point_estimate)
        assert precision is not None
        return cls("precision", precision, None, not point_estimate)

    def describe(self) -> str:
        if self.kind == "sensitivity":
            return f"sensitivity {self.level:g} for {self.positive}"
        return f"precision {self.level:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level": self.level,
            "positive": self.positive,
            "conservative": self.conservative,
        }


def _allowed_errors(n: int, level: float, conservative: bool) -> int:
    """The most errors among ``n`` held-out items that still meet ``level`` (-1: none allowed)."""
    return int(_allowed_errors_upto(n, level, conservative)[n])


def _allowed_errors_upto(n: int, level: float, conservative: bool) -> NDArray[np.intp]:
    """:func:`_allowed_errors` for every count 0..n in one pass (it never decreases with n)."""
    budget = 1.0 - level
    out = np.full(n + 1, -1, dtype=np.intp)
    m = -1
    for k in range(1, n + 1):
        if not conservative:
            m = math.floor(budget * k + 1e-9)
        else:
            while m + 1 <= k and wilson_interval(m + 1, k)[1] <= budget:
                m += 1
        out[k] = m
    return out


@dataclass(frozen=True)
class TriagePolicy:
    """Per-class probability thresholds for automatic acceptance.

    ``thresholds[c]`` is the calibrated probability of ``c`` an item needs to be accepted as
    ``c`` (absent: never); for a sensitivity target, ``max_positive`` also caps the positive
    class's probability. ``expected`` holds what the held-out predictions showed: the share
    accepted and the resulting sensitivity or precision.
    """

    classes: tuple[str, ...]
    target: TriageTarget
    thresholds: dict[str, float]
    max_positive: float | None = None
    expected: dict[str, Any] = field(default_factory=dict)

    def accepts(self, proba: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[Any]]:
        """Which rows of ``proba`` (columns in ``classes`` order) are accepted, and as what."""
        P = np.asarray(proba, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != len(self.classes):
            raise InvalidDataError(
                f"expected probabilities for {len(self.classes)} classes, got shape {P.shape}"
            )
        classes = np.asarray(self.classes, dtype=object)
        if self.max_positive is not None:
            pos = self.classes.index(str(self.target.positive))
            others = np.delete(np.arange(len(classes)), pos)
            best = others[np.argmax(P[:, others], axis=1)]
            accept = P[:, pos] < self.max_positive
        else:
            best = np.argmax(P, axis=1)
            limits = np.array([self.thresholds.get(c, np.inf) for c in self.classes])
            accept = P[np.arange(len(P)), best] >= limits[best]
        return accept, classes[best]

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "target": self.target.to_dict(),
            "thresholds": dict(self.thresholds),
            "max_positive": self.max_positive,
            "expected": dict(self.expected),
        }


def fit_policy(
    proba: ArrayLike, y: ArrayLike, classes: ArrayLike, target: TriageTarget
) -> TriagePolicy:
    """Choose thresholds on held-out probabilities ``proba`` of items whose labels are ``y``."""
    P = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(y).astype(str)
    names = tuple(str(c) for c in np.asarray(classes).tolist())
    if P.ndim != 2 or P.shape != (len(labels), len(names)):
        raise InvalidDataError(
            f"held-out probabilities of shape {P.shape} do not match {len(labels)} labels and "
            f"{len(names)} classes"
        )
    n = len(labels)
    if target.kind == "sensitivity":
        if target.positive not in names:
            raise InvalidParameterError(
                f"positive class {target.positive!r} is not among the classes {list(names)}"
            )
        pos = names.index(str(target.positive))
        scores = np.sort(P[labels == target.positive, pos])
        n_pos = len(scores)
        if n_pos == 0:
            raise InvalidDataError(
                f"no labeled {target.positive!r} item to measure the sensitivity on"
            )
        m = _allowed_errors(n_pos, target.level, target.conservative)
        # Accept when p(positive) < cap: at most m of the labeled positives fall below it.
        cap = 0.0 if m < 0 else float(scores[m]) if m < n_pos else 1.0 + 1e-9
        cap = min(cap, 0.5) if len(names) == 2 else cap  # accepted items are predicted negative
        policy = TriagePolicy(names, target, {}, max_positive=cap)
        note = None
        if m < 0:
            # Zero misses among n positives shows the level once the bound's n is large enough.
            budget = 1 - target.level
            needed = next(k for k in range(1, 10**6) if wilson_interval(0, k)[1] <= budget)
            note = (
                f"{n_pos} labeled {target.positive!r} items cannot show sensitivity "
                f"{target.level:g} at the 95 % upper bound; that takes at least {needed} (label "
                "more, or hold the point estimate to the target instead)"
            )
    else:
        thresholds: dict[str, float] = {}
        best = np.argmax(P, axis=1)
        for c, name in enumerate(names):
            mine = np.flatnonzero(best == c)
            if len(mine) == 0:
                continue
            order = mine[np.argsort(-P[mine, c], kind="stable")]
            wrong = np.cumsum(labels[order] != name)
            allowed = _allowed_errors_upto(len(order), target.level, target.conservative)[1:]
            ok = np.flatnonzero(wrong <= allowed)
            if len(ok):
                thresholds[name] = float(P[order[ok[-1]], c])
        policy = TriagePolicy(names, target, thresholds)
        note = (
            None
            if thresholds
            else f"no class reaches precision {target.level:g} on the {n} labeled items "
            "(label more, or lower the target)"
        )
    accept, as_label = policy.accepts(P)
    expected: dict[str, Any] = {
        "labeled": n,
        "accepted_share": float(accept.mean()) if n else 0.0,
        "accepted_error": float(np.mean(as_label[accept] != labels[accept]))
        if accept.any()
        else None,
    }
    if target.kind == "sensitivity":
        is_pos = labels == target.positive
        expected["sensitivity"] = float(1.0 - np.mean(accept[is_pos]))
    if note:
        expected["note"] = note
    return TriagePolicy(policy.classes, target, policy.thresholds, policy.max_positive, expected)


def calibrated_model(
    estimator: Any, X: Any, y: ArrayLike, *, method: str = "sigmoid", cv: int = 5
) -> CalibratedClassifierCV:
    """A calibrated clone of ``estimator`` fitted on ``X, y`` (the caller's object untouched)."""
    y = np.asarray(y)
    folds = _folds(y, cv)
    return CalibratedClassifierCV(clone(estimator), method=method, cv=folds).fit(X, y)


def held_out_proba(
    estimator: Any,
    X: Any,
    y: ArrayLike,
    *,
    method: str = "sigmoid",
    cv: int = 5,
    random_state: int = 0,
) -> tuple[NDArray[np.float64], NDArray[Any]]:
    """Calibrated probabilities of every labeled item from a model that never saw it.

    Returns the probabilities and their column order (the sorted classes).
    """
    y = np.asarray(y)
    folds = _folds(y, cv)
    outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    model = CalibratedClassifierCV(clone(estimator), method=method, cv=_folds(y, cv, inner=True))
    proba = cross_val_predict(model, X, y, cv=outer, method="predict_proba")
    return proba, np.unique(y)


def _folds(y: NDArray[Any], cv: int, *, inner: bool = False) -> int:
    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2:
        raise InvalidDataError("triage needs labeled items of at least two classes")
    smallest = int(counts.min())
    # The inner calibration splits see (folds - 1) / folds of the rarest class.
    usable = smallest * (cv - 1) // cv if inner else smallest
    folds = min(cv, usable)
    if folds < 2:
        raise InvalidDataError(
            f"triage needs at least {2 if not inner else 3} labeled items of every class for "
            f"calibration; the rarest class has {smallest}"
        )
    return folds


@dataclass(frozen=True)
class TriageDecisions:
    """What happens to each new item.

    Attributes
    ----------
    policy : TriagePolicy
    accepted : bool array
        Decided automatically (``labels`` holds the decision).
    labels : array
        The predicted class of every item (the decision where accepted).
    confidence : float array
        The calibrated probability of that class.
    audit : bool array
        Accepted items also sent to an expert, at random, to measure the decisions' error.
    """

    policy: TriagePolicy
    accepted: NDArray[np.bool_]
    labels: NDArray[Any]
    confidence: NDArray[np.float64]
    audit: NDArray[np.bool_]

    @property
    def to_experts(self) -> NDArray[np.bool_]:
        """Items an expert sees: the ones not accepted, and the audit sample."""
        return ~self.accepted | self.audit


def check_audit(audit: float) -> None:
    """Refuse an audit share that is not a fraction in [0, 1]."""
    if not 0.0 <= audit <= 1.0:
        raise InvalidParameterError(f"audit must be a fraction in [0, 1], got {audit!r}")


def triage(
    estimator: Any,
    X_labeled: Any,
    y_labeled: ArrayLike,
    X_new: Any,
    target: TriageTarget,
    *,
    audit: float = 0.05,
    method: str = "sigmoid",
    cv: int = 5,
    random_state: int | np.random.Generator | None = 0,
) -> TriageDecisions:
    """Decide the confident new items automatically; see the module docstring."""
    check_audit(audit)
    if method not in ("sigmoid", "isotonic"):
        raise InvalidParameterError(f"calibration must be 'sigmoid' or 'isotonic', got {method!r}")
    y = np.asarray(y_labeled).astype(str)
    rng = np.random.default_rng(random_state)
    seed = int(rng.integers(2**31))
    proba, classes = held_out_proba(
        estimator, X_labeled, y, method=method, cv=cv, random_state=seed
    )
    policy = fit_policy(proba, y, classes, target)
    model = calibrated_model(estimator, X_labeled, y, method=method, cv=cv)
    P = model.predict_proba(X_new)
    order = [list(model.classes_.astype(str)).index(c) for c in policy.classes]
    P = P[:, order]
    accepted, labels = policy.accepts(P)
    column = {c: i for i, c in enumerate(policy.classes)}
    confidence = P[np.arange(len(P)), [column[str(v)] for v in labels]]
    chosen = np.flatnonzero(accepted)
    n_audit = round(audit * len(chosen))
    if audit > 0 and len(chosen) and n_audit == 0:
        n_audit = 1  # every batch with automatic decisions gets checked at least once
    audited = np.zeros(len(P), dtype=bool)
    audited[rng.choice(chosen, size=n_audit, replace=False)] = True
    return TriageDecisions(policy, accepted, labels, confidence, audited)
