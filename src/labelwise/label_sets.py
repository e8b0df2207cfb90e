"""Label sets: the answers of a multi-label project, as every layer reads and writes them.

In a multi-label project an answer is a *set* of the project's labels, possibly empty ("none of
these"). It is stored, compared and sent as one canonical string, the set's labels in the
project's label order joined by :data:`SEPARATOR` (the empty set is the empty string), so that
two answers are the same set exactly when their strings are equal: history, undo, overlap and
conflicts work on it as on a single label. The models and metrics read sets as an indicator
matrix (:func:`to_indicator`).

- :func:`parse_label_list`: what a user or a file gives (``"a;b"``, a JSON list, a list) as
  label names;
- :func:`encode` / :func:`decode`: label names to the canonical string and back;
- :func:`to_indicator` / :func:`from_indicator`: canonical strings to an indicator matrix and
  back.

Labels of a multi-label project may not contain :data:`SEPARATOR` (:func:`check_label_names`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labelwise.exceptions import InvalidDataError, InvalidParameterError

__all__ = [
    "SEPARATOR",
    "check_label_names",
    "decode",
    "encode",
    "from_indicator",
    "parse_label_list",
    "to_indicator",
]

#: Joins the labels of a set in its stored and exported form (``"insult;threat"``).
SEPARATOR = ";"


def check_label_names(labels: Sequence[str]) -> None:
    """Labels of a multi-label project must not contain :data:`SEPARATOR`."""
    bad = [label for label in labels if SEPARATOR in label]
    if bad:
        raise InvalidParameterError(
            f"labels of a multi-label project must not contain {SEPARATOR!r} (it joins the "
            f"labels of an answer): {', '.join(repr(b) for b in bad)}"
        )


def parse_label_list(raw: Any, *, what: str = "label list") -> list[str]:
    """The label names ``raw`` holds, in its order, each once, stripped.

    Accepts a list or tuple of names, a JSON list (``'["insult", "threat"]'``), a string of
    names joined by :data:`SEPARATOR` (``"insult;threat"``), or an empty string, ``None``,
    ``"[]"`` or ``[]`` for the empty set. Raises :class:`InvalidDataError`, naming ``what``,
    for anything else (a number, a JSON object, a list of non-strings).
    """
    if raw is None:
        return []
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidDataError(f"{what} {raw!r} is not a JSON list: {exc.msg}") from None
        else:
            raw = text.split(SEPARATOR) if text else []
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)):
        raise InvalidDataError(
            f"{what} must be a list of label names or names joined by {SEPARATOR!r}, got {raw!r}"
        )
    names: dict[str, None] = {}  # an ordered set: a long list is read in linear time
    for entry in raw:
        if not isinstance(entry, str):
            raise InvalidDataError(f"{what} must hold label names (text), got {entry!r}")
        name = entry.strip()
        if name:
            names[name] = None
    return list(names)


def encode(labels: Iterable[str], label_set: Sequence[str]) -> str:
    """The canonical string of a set of ``labels`` (each one of ``label_set``): its labels in
    ``label_set`` order joined by :data:`SEPARATOR`; ``""`` for the empty set.

    Raises :class:`InvalidParameterError` naming any label not in ``label_set``.
    """
    chosen = set(labels)
    unknown = sorted(chosen - set(label_set))
    if unknown:
        raise InvalidParameterError(
            f"{', '.join(repr(u) for u in unknown)} "
            f"{'is not a label' if len(unknown) == 1 else 'are not labels'} of this project; "
            f"expected some of {', '.join(label_set)}"
        )
    return SEPARATOR.join(label for label in label_set if label in chosen)


def decode(value: str | None) -> list[str]:
    """The labels of a canonical string (``""`` or None: the empty set)."""
    if not value:
        return []
    return value.split(SEPARATOR)


def to_indicator(values: Sequence[str | None], label_set: Sequence[str]) -> NDArray[np.int8]:
    """An ``int8`` indicator matrix (``len(values)``, ``len(label_set)``) of canonical strings.

    Raises :class:`InvalidDataError` naming a label that is not in ``label_set``.
    """
    index = {label: j for j, label in enumerate(label_set)}
    Y = np.zeros((len(values), len(label_set)), dtype=np.int8)
    for i, value in enumerate(values):
        for label in decode(value):
            j = index.get(label)
            if j is None:
                raise InvalidDataError(
                    f"answer {value!r} holds {label!r}, which is not one of the labels "
                    f"{', '.join(label_set)}"
                )
            Y[i, j] = 1
    return Y


def from_indicator(Y: ArrayLike, label_set: Sequence[str]) -> list[str]:
    """The canonical string of each row of an indicator matrix (or of one row, as a list of
    one)."""
    arr = np.atleast_2d(np.asarray(Y))
    if arr.shape[1] != len(label_set):
        raise InvalidDataError(
            f"an indicator matrix of {len(label_set)} labels needs {len(label_set)} columns, "
            f"got {arr.shape[1]}"
        )
    return [
        SEPARATOR.join(label for label, on in zip(label_set, row, strict=True) if on) for row in arr
    ]
