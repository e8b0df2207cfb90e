"""Label sets in the learning loop: reading a file's or a caller's sets into their stored form,
and scoring a multi-label model on a holdout.

A multi-label run keeps every answer as its canonical string (:mod:`labelwise.label_sets`):
the set's labels in label order joined by ``;``, the empty set as ``""``.
:func:`canonical_sets` turns what a caller gives into that form, :func:`label_names_of` finds
the labels a set of answers uses, and :func:`evaluate_label_sets` scores a fitted model with
:func:`~labelwise.learning.multilabel_metrics.multilabel_scores`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from labelwise import label_sets
from labelwise.exceptions import InvalidDataError
from labelwise.learning.multilabel_metrics import MultiLabelMetrics, multilabel_scores

__all__ = ["canonical_sets", "evaluate_label_sets", "label_names_of", "looks_multi_label"]


def _names(value: Any, row: int) -> list[str]:
    """The label names of one answer: None, NaN and ``""`` are the empty set."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    return label_sets.parse_label_list(value, what=f"label set of item {row}")


def label_names_of(values: Iterable[Any]) -> tuple[str, ...]:
    """Every label name the answers ``values`` use, sorted (the union of their sets)."""
    found: set[str] = set()
    for row, value in enumerate(values):
        found.update(_names(value, row))
    return tuple(sorted(found))


def canonical_sets(
    values: Iterable[Any],
    labels: Sequence[str],
    *,
    rows: Sequence[int] | NDArray[np.intp] | None = None,
) -> NDArray[Any]:
    """Each answer of ``values`` as its canonical string over ``labels`` (object array).

    An answer may be a canonical or any-order ``;``-joined string, a JSON list string, a list of
    names, or None/NaN/``""`` for the empty set. Raises :class:`InvalidDataError` naming the
    item (its position, or its entry of ``rows``) whose answer is not a set of ``labels``.
    """
    out = []
    for position, value in enumerate(values):
        row = position if rows is None else int(rows[position])
        names = _names(value, row)
        unknown = sorted(set(names) - set(labels))
        if unknown:
            raise InvalidDataError(
                f"the label set of item {row} holds {', '.join(map(repr, unknown))}, not among "
                f"the labels {', '.join(labels)}"
            )
        out.append(label_sets.encode(names, labels))
    return np.asarray(out, dtype=object)


def looks_multi_label(values: Iterable[Any]) -> bool:
    """Whether a label column holds label sets: some value is a list, or a string that
    contains ``;`` or is a JSON list (starts with ``[``)."""
    for value in values:
        if isinstance(value, (list, tuple)):
            return True
        if isinstance(value, str) and (
            label_sets.SEPARATOR in value or value.strip().startswith("[")
        ):
            return True
    return False


def evaluate_label_sets(
    model: Any, X: Any, y: Sequence[Any] | NDArray[Any], labels: Sequence[str]
) -> MultiLabelMetrics:
    """Multi-label scores of a fitted label-set model on the holdout ``(X, y)``.

    Parameters
    ----------
    model : fitted classifier
        Predicts canonical label-set strings (a
        :class:`~labelwise.models.multilabel.LabelSetClassifier`).
    X : matrix of shape (n_samples, n_features)
    y : sequence of shape (n_samples,)
        The true sets, in any form :func:`canonical_sets` reads.
    labels : sequence of str
        The labels, in order (the columns of the indicator matrices).
    """
    truth = canonical_sets(y, labels)
    if len(truth) == 0:
        raise InvalidDataError("cannot evaluate on an empty holdout")
    names = list(labels)
    predicted = [str(v) for v in np.asarray(model.predict(X), dtype=object)]
    return multilabel_scores(
        label_sets.to_indicator(list(truth), names),
        label_sets.to_indicator(predicted, names),
        names,
    )
