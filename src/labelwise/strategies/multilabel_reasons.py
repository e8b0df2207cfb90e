"""What a multi-label model's reason says: every label with its probability, its thresholds, and
one sentence naming the labels the model is unsure about.

:func:`labelwise.strategies.query.assemble_batch` uses these for a model whose outputs are
per-label probabilities (:attr:`~labelwise.models.registry.ModelOutputs.multi_label`); a
single-label model's reasons are written by :mod:`labelwise.strategies.query` alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelwise.models.registry import ModelOutputs
from labelwise.strategies.multilabel_scorers import label_margins
from labelwise.strategies.reasons import labels_on, percent

__all__ = [
    "COLD_START_SUMMARY",
    "UNSURE_BAND",
    "describe_multi_label",
    "label_split",
    "label_thresholds",
    "unsure_labels",
]

#: A multi-label cold start's sentence: the batch is random until two different label sets
#: (the empty set counts as one) are labeled.
COLD_START_SUMMARY = (
    "random pick: fewer than two different label sets are labeled so far (cold start)"
)

#: A label counts as one the model is unsure about when its margin
#: (:func:`~labelwise.strategies.multilabel_scorers.label_margins`: the distance from its
#: threshold, as a share of the way to 0 or 1) is at most this: within 0.2 of a 0.5 threshold.
UNSURE_BAND = 0.4

# The sentence names at most this many labels (the nearest their thresholds).
_MAX_NAMED = 3


def label_split(out: ModelOutputs, row: int) -> tuple[tuple[str, float], ...]:
    """Every label with its probability on ``row``, in the model's label order."""
    return tuple((str(c), float(p)) for c, p in zip(out.classes, out.values[row], strict=True))


def label_thresholds(out: ModelOutputs) -> dict[str, float]:
    """Each label's threshold, in label order (what a reason's ``details["thresholds"]`` holds)."""
    assert out.thresholds is not None  # only asked of multi-label outputs
    return {str(c): float(t) for c, t in zip(out.classes, out.thresholds, strict=True)}


def unsure_labels(
    split: tuple[tuple[str, float], ...], thresholds: dict[str, float]
) -> list[tuple[str, float]]:
    """The labels the model is unsure about, in label order: those whose margin from their
    threshold is at most :data:`UNSURE_BAND` (at most three, the nearest), or else the one
    nearest its threshold. The margins are those the margin strategies rank by."""
    if not split:
        return []
    P = [[p for _, p in split]]
    gaps = label_margins(P, [thresholds.get(label, 0.5) for label, _ in split])[0].tolist()
    near = [i for i, g in enumerate(gaps) if g <= UNSURE_BAND]
    if not near:
        near = [int(np.argmin(gaps))]
    near = sorted(sorted(near, key=lambda i: gaps[i])[:_MAX_NAMED])
    return [split[i] for i in near]


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def describe_multi_label(
    kind: str,
    split: tuple[tuple[str, float], ...],
    details: dict[str, Any],
    *,
    scored: bool = True,
) -> str:
    """The sentence of a strategy or routine pick of a multi-label model (``details`` holds
    its ``thresholds``, and a committee's ``label_votes``). ``scored`` is False for a strategy
    pick made without a utility (random sampling): it then gives every label's probability
    instead of naming labels the model is unsure about."""
    thresholds: dict[str, float] = details.get("thresholds", {})
    if kind == "routine":
        on = labels_on(split, thresholds)
        if not on:
            return "routine check: the model is confident that no label applies"
        return f"routine check: the model is confident it is {_listed(on)}"
    if "label_votes" in details:
        members = int(details.get("members", 0))
        split_votes = [
            f"{n} of {members} say {label}"
            for label, n in details["label_votes"].items()
            if 0 < n < members
        ]
        if not split_votes:
            return "the committee agrees on every label"
        return "the committee disagrees: " + ", ".join(split_votes)
    if "distance_to_labeled" in details:
        return (
            f"unlike anything labeled so far: nearest labeled item at distance "
            f"{details['distance_to_labeled']:.3g}"
        )
    if not scored:
        return "the model gives " + _listed([f"{percent(p)}% to {label}" for label, p in split])
    unsure = unsure_labels(split, thresholds)
    if not unsure:
        return "chosen by the strategy"
    named = [f"{label} ({percent(p)}%)" for label, p in unsure]
    return f"the model is unsure about {_listed(named)}"
