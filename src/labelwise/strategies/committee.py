"""Committees for query-by-committee: bagged clones of one estimator, or models you supply.

A bagged committee fits each member on a *stratified* bootstrap of the labeled set (each class
resampled within itself), so every member sees every class even when only a handful of labels
exist. The caller's estimator is never fitted: members are clones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone

from labelwise.exceptions import InvalidParameterError
from labelwise.models.registry import (
    DEFAULT_CHUNK_SIZE,
    has_predict_proba,
    iter_chunks,
    linear_form,
    read_in_place,
)
from labelwise.pool import Matrix, take_rows
from labelwise.strategies import scorers
from labelwise.strategies.kinds import is_multi_label
from labelwise.strategies.multilabel_scorers import label_set_vote_entropy

__all__ = ["Committee", "stratified_bootstrap"]


def stratified_bootstrap(y: NDArray[Any], rng: np.random.Generator) -> NDArray[np.intp]:
    """Bootstrap positions into ``y`` that keep every class's count (resampled within class)."""
    positions = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        positions.append(rng.choice(members, size=len(members), replace=True))
    return np.sort(np.concatenate(positions)).astype(np.intp)


class Committee:
    """Several fitted classifiers sharing one label set.

    Parameters
    ----------
    members : sequence of fitted classifiers
        All must have been fitted on the same classes (``classes_`` equal).
    """

    def __init__(self, members: Sequence[Any]):
        if len(members) < 2:
            raise InvalidParameterError(f"a committee needs at least 2 members, got {len(members)}")
        classes = [np.asarray(m.classes_) for m in members]
        if any(len(c) != len(classes[0]) or (c != classes[0]).any() for c in classes[1:]):
            raise InvalidParameterError("committee members were fitted on different classes")
        self.members = list(members)
        self.classes_ = classes[0]

    @classmethod
    def bagged(
        cls,
        estimator: Any,
        X: Matrix,
        y: NDArray[Any],
        *,
        n_members: int,
        rng: np.random.Generator,
    ) -> Committee:
        """Fit ``n_members`` clones of ``estimator``, each on a stratified bootstrap sample."""
        if n_members < 2:
            raise InvalidParameterError(f"n_members must be at least 2, got {n_members}")
        members = []
        for _ in range(n_members):
            rows = stratified_bootstrap(y, rng)
            members.append(clone(estimator).fit(take_rows(X, rows), y[rows]))
        return cls(members)

    @property
    def multi_label(self) -> bool:
        """Whether the members predict label sets (multi-label models): they then vote on
        each label, present or not."""
        return all(is_multi_label(m) for m in self.members)

    @property
    def has_proba(self) -> bool:
        return all(has_predict_proba(m) for m in self.members)

    def disagreement(
        self,
        X: Matrix,
        rows: NDArray[np.intp],
        *,
        kind: Literal["vote", "kl"] = "vote",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> tuple[NDArray[np.float64], NDArray[Any]]:
        """How much the members disagree on each row, computed chunk by chunk.

        Returns
        -------
        utilities : ndarray of shape (n_rows,)
            Vote entropy (``kind="vote"``) or mean KL divergence to the consensus (``"kl"``).
            For multi-label members, the vote entropy of each label averaged over the labels
            (:func:`~labelwise.strategies.multilabel_scorers.label_set_vote_entropy`).
        votes : int array of shape (n_members, n_rows), or (n_members, n_rows, n_labels)
            Class index each member predicts (``int8`` for up to 127 classes); for
            multi-label members, whether each member predicts each label present (0/1).
        """
        if kind == "vote" and self.multi_label:
            return self._label_set_votes(X, rows, chunk_size)
        utilities = np.empty(len(rows))
        # Class indices fit a byte for any realistic label set: 8x less memory to fill.
        vote_type = np.int8 if len(self.classes_) <= 127 else np.intp
        votes = np.empty((len(self.members), len(rows)), dtype=vote_type)
        n_classes = len(self.classes_)
        stacked = self._stacked_scores() if kind == "vote" else None
        if stacked is not None and read_in_place(X, rows) and X.dtype.kind == "f":
            # Most of a dense pool: vote on consecutive slices and keep the wanted rows.
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            for start in range(lo, hi, chunk_size):
                stop = min(start + chunk_size, hi)
                a, b = np.searchsorted(rows, [start, stop])
                block = stacked(X[start:stop])
                votes[:, a:b] = block if b - a == stop - start else block[:, rows[a:b] - start]
            return scorers.vote_entropy(votes, n_classes), votes
        for start, chunk in zip(
            range(0, len(rows), chunk_size), iter_chunks(rows, chunk_size), strict=True
        ):
            Xc = take_rows(X, chunk)
            part = slice(start, start + len(chunk))
            if kind == "kl":
                proba = np.stack([m.predict_proba(Xc) for m in self.members])
                utilities[part] = scorers.kl_to_consensus(proba)
                votes[:, part] = proba.argmax(axis=2)
            elif stacked is not None and isinstance(Xc, np.ndarray) and Xc.dtype.kind == "f":
                votes[:, part] = stacked(Xc)
                utilities[part] = scorers.vote_entropy(votes[:, part], n_classes)
            else:
                # scikit-learn keeps classes_ sorted, so a binary search maps labels to indices.
                for m, member in enumerate(self.members):
                    votes[m, part] = np.searchsorted(self.classes_, np.asarray(member.predict(Xc)))
                utilities[part] = scorers.vote_entropy(votes[:, part], n_classes)
        return utilities, votes

    def _label_set_votes(
        self, X: Matrix, rows: NDArray[np.intp], chunk_size: int
    ) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
        """Label-set vote entropy of multi-label members, chunk by chunk."""
        votes = np.empty((len(self.members), len(rows), len(self.classes_)), dtype=np.int8)
        for start, chunk in zip(
            range(0, len(rows), chunk_size), iter_chunks(rows, chunk_size), strict=True
        ):
            Xc = take_rows(X, chunk)
            for m, member in enumerate(self.members):
                votes[m, start : start + len(chunk)] = member.predict_indicator(Xc)
        if len(rows) == 0:
            return np.empty(0), votes
        return label_set_vote_entropy(votes), votes

    def _stacked_scores(self) -> Any:
        """Every member's vote from one matrix product, for linear members (else None).

        The members' weights (scalers folded in, see :func:`~labelwise.models.registry.linear_form`)
        are stacked so that a chunk is read once for the whole committee; a member votes for the
        class of its largest score (for a binary member: the second class when its score is
        positive), exactly as its ``predict`` does.
        """
        forms = [linear_form(m) for m in self.members]
        if any(f is None for f in forms):
            return None
        W = np.concatenate([f[0] for f in forms if f is not None])
        b = np.concatenate([f[1] for f in forms if f is not None])[:, None]
        n_members, per = len(forms), W.shape[0] // len(forms)
        weights: dict[Any, tuple[NDArray[Any], NDArray[Any]]] = {
            dt: (W.astype(dt), b.astype(dt)) for dt in (np.float32, np.float64)
        }

        def votes(block: NDArray[np.floating]) -> NDArray[Any]:
            Wd, bd = weights.get(block.dtype.type, weights[np.float64])
            z = Wd @ block.T
            z += bd
            if per == 1:
                return z > 0  # True = the second class, as predict decides
            return np.argmax(z.reshape(n_members, per, -1), axis=1)

        return votes
