"""The dashboard's figures for a multi-label project, where every answer is a label set
(:mod:`labelwise.label_sets`); :mod:`labelwise.services.dashboard` calls these in place of its
single-label ones.

- **Estimate**: on a version's exploration items (drawn uniformly at random), the answers
  against what the version predicted: micro and macro F1 with bootstrap intervals, per-label
  precision, recall and F1, Hamming loss and subset accuracy with its Wilson interval
  (:func:`labelwise.learning.multilabel_metrics.multilabel_scores`). The curve point keeps the
  single-label names where the meaning carries over (``accuracy`` is the subset accuracy: the
  whole set right), so the chart and the stopping verdict read it as they read any other.
- **Agreement** on items two or more annotators answered: Krippendorff's alpha with the MASI
  distance between sets, per-label Cohen's kappa, and both per pair of annotators
  (:mod:`labelwise.learning.set_agreement`).
- **Label counts**: how many items' training sets hold each label, and how many hold none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from labelwise.label_sets import decode, to_indicator
from labelwise.learning.multilabel_metrics import multilabel_scores
from labelwise.learning.set_agreement import krippendorff_alpha, per_label_kappa

__all__ = ["MIN_SHARED", "label_counts", "live_estimate", "set_agreement", "status_lines"]

#: Items two annotators must share before their agreement is given (as for the kappas of
#: single-label projects).
MIN_SHARED = 5


def live_estimate(pairs: Sequence[tuple[str, str]], labels: Sequence[str]) -> dict[str, Any]:
    """A version's unbiased estimate from (answer, predicted) pairs of canonical set strings.

    The keys of the single-label estimate (``n``, ``accuracy`` and its interval, ``macro_f1``
    and its interval) with ``accuracy`` the subset accuracy, plus ``micro_f1`` and its
    interval, ``hamming_loss`` and ``scores``: the whole
    :class:`~labelwise.learning.multilabel_metrics.MultiLabelMetrics` as plain data (per-label
    figures included).
    """
    truth = to_indicator([t for t, _ in pairs], labels)
    predicted = to_indicator([p for _, p in pairs], labels)
    scores = multilabel_scores(truth, predicted, labels)
    return {
        "n": scores.n_samples,
        "accuracy": scores.subset_accuracy,
        "accuracy_low": scores.subset_accuracy_interval[0],
        "accuracy_high": scores.subset_accuracy_interval[1],
        "macro_f1": scores.macro_f1,
        "macro_f1_low": scores.macro_f1_interval[0],
        "macro_f1_high": scores.macro_f1_interval[1],
        "micro_f1": scores.micro_f1,
        "micro_f1_low": scores.micro_f1_interval[0],
        "micro_f1_high": scores.micro_f1_interval[1],
        "hamming_loss": scores.hamming_loss,
        "scores": scores.to_dict(),
    }


def label_counts(values: Iterable[str], labels: Sequence[str]) -> tuple[dict[str, int], int]:
    """How many of the sets ``values`` hold each label (in label order), and how many are
    empty."""
    counts = dict.fromkeys(labels, 0)
    empty = 0
    for value in values:
        chosen = decode(value)
        if not chosen:
            empty += 1
        for label in chosen:
            if label in counts:
                counts[label] += 1
    return counts, empty


def _pair_figures(
    answers: Sequence[tuple[str, str]], labels: Sequence[str]
) -> tuple[float | None, dict[str, float | None]]:
    """Alpha (MASI) and per-label kappa of two annotators' answers on the items they share."""
    if len(answers) < MIN_SHARED:
        return None, dict.fromkeys(labels)
    first = [set(decode(x)) for x, _ in answers]
    second = [set(decode(y)) for _, y in answers]
    alpha = krippendorff_alpha([[x, y] for x, y in zip(first, second, strict=True)])
    return alpha, per_label_kappa(first, second, labels)


def set_agreement(
    shared: dict[int, dict[str, str]],
    pairs: dict[tuple[str, str], list[tuple[str, str]]],
    labels: Sequence[str],
) -> dict[str, Any]:
    """The agreement figures of label sets.

    Parameters
    ----------
    shared : dict
        Per item answered by two or more annotators: annotator name -> their set's string.
    pairs : dict
        Per pair of annotators (names in sorted order): their answers on each item they share.
    labels : sequence of str
        The project's labels.

    Returns
    -------
    dict
        ``alpha_masi``: Krippendorff's alpha with the MASI distance over every shared item and
        every annotator (None with fewer than MIN_SHARED items); ``per_label_kappa``: per label,
        Cohen's kappa of the pairs' answers pooled (each pair's first annotator as one coder,
        the second as the other; with two annotators, their kappa); ``pairwise``: per pair, the
        items, the share of identical sets, alpha and per-label kappa; ``fleiss_kappa`` None
        (a single-label measure).
    """
    names = sorted({name for answers in shared.values() for name in answers})
    units = [
        [set(decode(answers[n])) if n in answers else None for n in names]
        for answers in shared.values()
    ]
    alpha = krippendorff_alpha(units) if len(shared) >= MIN_SHARED else None
    pooled = [pair for answers in pairs.values() for pair in answers]
    _, kappas = _pair_figures(pooled, labels)
    pairwise = []
    for (a, b), answers in sorted(pairs.items()):
        pair_alpha, pair_kappas = _pair_figures(answers, labels)
        pairwise.append(
            {
                "a": a,
                "b": b,
                "items": len(answers),
                "agreement": sum(x == y for x, y in answers) / len(answers),
                "kappa": None,
                "alpha_masi": pair_alpha,
                "per_label_kappa": pair_kappas,
            }
        )
    return {
        "fleiss_kappa": None,
        "alpha_masi": alpha,
        "per_label_kappa": kappas,
        "pairwise": pairwise,
        "min_items": MIN_SHARED,
    }


def status_lines(figures: dict[str, Any]) -> list[str]:
    """The lines ``labelwise status`` prints for a multi-label project's estimate and
    agreement, from the dashboard's ``figures``."""
    est = figures["stopping"]["estimate"]
    if est is None:
        lines = ["estimate: not yet (needs answers on random exploration items)"]
    else:
        lines = [
            f"estimate (model v{est['version']}, {est['n']} random items): micro-F1 "
            f"{est['micro_f1']:.3f} [{est['micro_f1_low']:.3f}, {est['micro_f1_high']:.3f}], "
            f"macro-F1 {est['macro_f1']:.3f} [{est['macro_f1_low']:.3f}, "
            f"{est['macro_f1_high']:.3f}], subset accuracy {est['accuracy']:.3f} "
            f"[{est['accuracy_low']:.3f}, {est['accuracy_high']:.3f}], "
            f"Hamming loss {est['hamming_loss']:.3f}"
        ]
    agreement = figures["agreement"]
    alpha = agreement.get("alpha_masi")
    lines.append(
        f"agreement ({agreement['items']} items answered by two or more): "
        + (
            f"alpha (MASI) {alpha:.3f}"
            if alpha is not None
            else f"alpha (MASI) not yet (needs {MIN_SHARED} such items)"
        )
    )
    return lines
