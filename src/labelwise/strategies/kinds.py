"""Which strategies suit which kind of model: single-label (one class per item) or multi-label
(a set of labels per item, per-label probabilities).

A strategy that reads the model's outputs is written for one kind: ``margin`` compares the two
most probable classes of a distribution, ``mean-margin`` averages per-label margins. Each checks
the model it is given (:func:`check_model_kind`, :func:`check_outputs_kind`) and refuses the other
kind with a :class:`~labelwise.exceptions.ModelCapabilityError` naming the strategies that do
work; the registry refuses such a name at build time when the project's kind is known.
"""

from __future__ import annotations

from typing import Any

from labelwise.exceptions import ModelCapabilityError

__all__ = [
    "BOTH_KINDS",
    "MULTI_LABEL_ONLY",
    "SINGLE_LABEL_ONLY",
    "check_model_kind",
    "check_outputs_kind",
    "is_multi_label",
    "working_strategies",
]

#: Scorers written for per-label probabilities (multi-label models only).
MULTI_LABEL_ONLY: tuple[str, ...] = ("mean-margin", "min-margin", "mmc", "lci")

#: Scorers and whole strategies written for one class per item (single-label models only).
SINGLE_LABEL_ONLY: tuple[str, ...] = (
    "least_confident",
    "margin",
    "entropy",
    "qbc-kl",
    "bald",
    "badge",
)

#: Strategies for either kind (``qbc`` votes on classes or on label sets, as the model predicts).
BOTH_KINDS: tuple[str, ...] = ("qbc", "random", "coreset")


def is_multi_label(model: Any) -> bool:
    """Whether ``model`` is a multi-label model (per-label probabilities, predicted label sets,
    as :class:`~labelwise.models.multilabel.LabelSetClassifier`)."""
    return bool(getattr(model, "multi_label", False))


def working_strategies(multi_label: bool) -> str:
    """The strategy names that work for models of this kind, for messages."""
    own = MULTI_LABEL_ONLY if multi_label else SINGLE_LABEL_ONLY
    return ", ".join((*own, *BOTH_KINDS))


def _refusal(strategy: str, multi_label_model: bool) -> ModelCapabilityError:
    kind = "a multi-label model" if multi_label_model else "a single-label model"
    wants = "single-label" if multi_label_model else "multi-label"
    return ModelCapabilityError(
        f"strategy {strategy!r} is for {wants} models and cannot score {kind}; strategies for "
        f"{kind} are: {working_strategies(multi_label_model)} (any with a selector such as "
        "+clusters, and +explore)"
    )


def check_model_kind(strategy: str, model: Any, *, multi_label: bool) -> None:
    """Refuse ``model`` unless it is of the kind the strategy is written for.

    Raises
    ------
    ModelCapabilityError
        Naming the strategy and the strategies that work for the model's kind.
    """
    if is_multi_label(model) != multi_label:
        raise _refusal(strategy, not multi_label)


def check_outputs_kind(strategy: str, outputs_multi_label: bool, *, multi_label: bool) -> None:
    """As :func:`check_model_kind`, from outputs already computed
    (:attr:`~labelwise.models.registry.ModelOutputs.multi_label`)."""
    if outputs_multi_label != multi_label:
        raise _refusal(strategy, not multi_label)
