"""The dashboard's figures, computed from the stored rows: what the dashboard page, its API
route and ``labelwise status`` all show.

- **Learning curve**: for each model version, accuracy and macro-F1 on the *exploration* items
  it served (drawn uniformly at random, so an unbiased sample of the unlabeled pool), with 95 %
  intervals (Wilson for accuracy, bootstrap for macro-F1); beside it the cross-validated scores
  on the labeled set (available early, but biased by what the strategy chose to label).
- **Per class**: precision, recall and F1 from cross-validation of the served model.
- **Annotators**: answers, skips, median seconds per item, answers in the last hour, and their
  agreement with others on items labeled twice (Cohen's kappa per pair, Fleiss' kappa overall).
- **Fatigue**: per annotator, signs of tiredness against their own history (see
  :mod:`labelwise.store.fatigue`).
- **Stopping**: the latest unbiased estimate (exploration items only) with its interval; the
  gain the next 100 labels should bring, from a learning curve fitted to the scores so far; and
  a verdict from that gain, the plateau of the scores and the agreement of successive models.

A multi-label project (answers are label sets) gets the same figures in their multi-label form
from :mod:`labelwise.services.dashboard_sets`: the estimate's micro and macro F1, per-label
scores, Hamming loss and subset accuracy (the ``accuracy`` of its curve points), agreement as
Krippendorff's alpha with the MASI distance and per-label kappa, and per-label counts; the
verdict reads macro-F1 as for single-label projects.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from itertools import combinations
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelwise.learning.evaluate import score_predictions, wilson_interval
from labelwise.learning.stopping import (
    ExpectedGain,
    Plateau,
    StabilizingPredictions,
    prediction_agreement,
)
from labelwise.services import dashboard_sets
from labelwise.services.training import labels_for_next_fit
from labelwise.services.triage import triage_report
from labelwise.store.fatigue import assess, recent_answers
from labelwise.store.models import Annotator, Label, ModelVersion, Project, utcnow
from labelwise.store.projects import ProjectSettings, feature_spec, settings_of
from labelwise.store.review import resolved_labels
from labelwise.store.stats import item_progress

__all__ = ["dashboard", "fleiss_kappa", "hide_colleagues", "item_progress", "wilson_interval"]

#: Exploration answers a version needs before its estimate is shown.
MIN_LIVE = 5
#: The stopping rule: over the last WINDOW versions, macro-F1 gained less than MIN_GAIN and
#: every version agreed with its predecessor at kappa >= MIN_KAPPA on the stop set.
WINDOW, MIN_GAIN, MIN_KAPPA = 3, 0.005, 0.99
#: The expected gain is that of the next MORE labels, from a fit to at least FIT_POINTS versions.
MORE, FIT_POINTS = 100, 4


def _bootstrap_f1(
    truth: list[str], pred: list[str], labels: list[str], rng: np.random.Generator, n: int = 200
) -> tuple[float, float]:
    t, p = np.asarray(truth, dtype=object), np.asarray(pred, dtype=object)
    scores = []
    for _ in range(n):
        idx = rng.integers(0, len(t), len(t))
        scores.append(score_predictions(t[idx], p[idx], labels=labels).macro_f1)
    return float(np.percentile(scores, 2.5)), float(np.percentile(scores, 97.5))


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa from an (items × categories) matrix of rater counts, equal raters per item."""
    if counts.size == 0:
        return None
    n_raters = counts.sum(axis=1)
    if len(set(n_raters.tolist())) != 1 or n_raters[0] < 2:
        return None
    m = float(n_raters[0])
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = ((counts * counts).sum(axis=1) - m) / (m * (m - 1))
    p_bar, p_e = float(p_i.mean()), float((p_j * p_j).sum())
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else None
    return (p_bar - p_e) / (1 - p_e)


def _curve(
    session: Session, project: Project, versions: list[ModelVersion], multi_label: bool = False
) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Label.model_version_id, Label.value, Label.predicted).where(
            Label.project_id == project.id,
            Label.action == "label",
            Label.is_current.is_(True),
            Label.reason_kind == "exploration",
            Label.predicted.is_not(None),
        )
    ).all()
    by_version: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for version_id, value, predicted in rows:
        if version_id is not None and value is not None and predicted is not None:
            by_version[version_id].append((value, predicted))
    rng = np.random.default_rng(0)
    curve = []
    for v in versions:
        if v.status != "ready":
            continue
        cv = (v.metrics or {}).get("cv") or {}
        point: dict[str, Any] = {
            "version": v.version,
            "labels": v.n_labels,
            "created_at": v.created_at.isoformat() + "Z",
            "cv_accuracy": cv.get("subset_accuracy" if multi_label else "accuracy"),
            "cv_macro_f1": cv.get("macro_f1"),
            "agreement_with_previous": (v.metrics or {}).get("agreement_with_previous"),
            "live": None,
        }
        pairs = by_version.get(v.id, [])
        if len(pairs) >= MIN_LIVE and multi_label:
            point["live"] = dashboard_sets.live_estimate(pairs, project.label_set)
        elif len(pairs) >= MIN_LIVE:
            truth = [t for t, _ in pairs]
            pred = [p for _, p in pairs]
            hits = sum(t == p for t, p in pairs)
            low, high = wilson_interval(hits, len(pairs))
            f1 = score_predictions(truth, pred, labels=project.label_set).macro_f1
            f1_low, f1_high = _bootstrap_f1(truth, pred, project.label_set, rng)
            point["live"] = {
                "n": len(pairs),
                "accuracy": hits / len(pairs),
                "accuracy_low": low,
                "accuracy_high": high,
                "macro_f1": f1,
                "macro_f1_low": f1_low,
                "macro_f1_high": f1_high,
            }
        curve.append(point)
    return curve


def _annotators(session: Session, project: Project) -> list[dict[str, Any]]:
    since = utcnow() - timedelta(hours=1)
    out = []
    for a in session.scalars(
        select(Annotator).where(Annotator.project_id == project.id).order_by(Annotator.id)
    ):
        rows = session.execute(
            select(Label.action, Label.duration_ms, Label.created_at).where(
                Label.annotator_id == a.id,
                Label.is_current.is_(True),
                Label.action.in_(("label", "skip")),
            )
        ).all()
        if not rows and a.disabled:
            continue
        durations = [r.duration_ms for r in rows if r.duration_ms is not None]
        out.append(
            {
                "name": a.name,
                "role": a.role,
                "labels": sum(r.action == "label" for r in rows),
                "skips": sum(r.action == "skip" for r in rows),
                "median_seconds": float(np.median(durations)) / 1000 if durations else None,
                "last_hour": sum(r.created_at >= since for r in rows),
                "fatigue": assess(recent_answers(session, a.id), utcnow()).to_dict(),
            }
        )
    return out


def _agreement(session: Session, project: Project, multi_label: bool = False) -> dict[str, Any]:
    rows = session.execute(
        select(Label.item_id, Annotator.name, Label.value)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .where(Label.project_id == project.id, Label.action == "label", Label.is_current.is_(True))
    ).all()
    by_item: dict[int, dict[str, str]] = defaultdict(dict)
    for item_id, name, value in rows:
        if value is not None:
            by_item[item_id][name] = value
    shared = {i: v for i, v in by_item.items() if len(v) >= 2}
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for answers in shared.values():
        for a, b in combinations(sorted(answers), 2):
            pairs[(a, b)].append((answers[a], answers[b]))
    per_annotator: dict[str, list[bool]] = defaultdict(list)
    for answers in shared.values():
        for name, value in answers.items():
            others = [v for n, v in answers.items() if n != name]
            per_annotator[name].extend(v == value for v in others)
    common = {
        "items": len(shared),
        "percent_agreement": (
            sum(len(set(v.values())) == 1 for v in shared.values()) / len(shared)
            if shared
            else None
        ),
        "per_annotator": {n: sum(v) / len(v) for n, v in per_annotator.items()},
    }
    if multi_label:
        return {**common, **dashboard_sets.set_agreement(shared, pairs, project.label_set)}
    pairwise = [
        {
            "a": a,
            "b": b,
            "items": len(v),
            "agreement": sum(x == y for x, y in v) / len(v),
            "kappa": prediction_agreement([x for x, _ in v], [y for _, y in v])
            if len(v) >= 5
            else None,
        }
        for (a, b), v in sorted(pairs.items())
    ]
    counts = Counter(len(v) for v in shared.values())
    raters = counts.most_common(1)[0][0] if counts else 0
    matrix = np.asarray(
        [
            [list(v.values()).count(label) for label in project.label_set]
            for v in shared.values()
            if len(v) == raters
        ],
        dtype=float,
    )
    return {
        **common,
        "fleiss_kappa": fleiss_kappa(matrix) if len(matrix) >= 5 else None,
        "pairwise": pairwise,
    }


#: The dashboard's criteria: the core's, with its settings.
PLATEAU = Plateau(patience=WINDOW, min_delta=MIN_GAIN)
STABLE = StabilizingPredictions(threshold=MIN_KAPPA, window=WINDOW)
GAIN = ExpectedGain(more=MORE, min_gain=MIN_GAIN, min_points=FIT_POINTS)


def _expected_gain(curve: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, bool]:
    """The macro-F1 the next MORE labels should add, from a learning curve fitted to the versions,
    and whether that falls short of MIN_GAIN.

    The unbiased exploration estimates are used when FIT_POINTS versions have one; until then
    the cross-validated scores (biased low under active learning, but their trend is what the
    fit needs).
    """
    live = [(p["labels"], p["live"]["macro_f1"]) for p in curve if p["live"]]
    cv = [(p["labels"], p["cv_macro_f1"]) for p in curve if p["cv_macro_f1"] is not None]
    source, points = (
        ("exploration items", live) if len(live) >= FIT_POINTS else ("cross-validation", cv)
    )
    if len(points) < FIT_POINTS:
        return None, False
    forecast = GAIN.forecast(
        [n for n, _ in points], [y for _, y in points], at=int(curve[-1]["labels"])
    )
    if forecast is None:
        return None, False
    expected = {
        "more": forecast.more,
        "gain": forecast.gain,
        "at": forecast.at,
        "asymptote": forecast.fit.asymptote,
        "source": source,
        "points": forecast.fit.n_points,
    }
    return expected, forecast.flat


def _verdict(curve: list[dict[str, Any]], window: int = WINDOW) -> dict[str, Any]:
    """The stopping verdict on the learning curve: the core's :class:`~labelwise.learning.stopping.
    Plateau`, :class:`~labelwise.learning.stopping.StabilizingPredictions` and
    :class:`~labelwise.learning.stopping.ExpectedGain`, asked of the versions' scores (the unbiased
    estimate where a version has one, else cross-validation) and agreements."""
    plateau_rule, stable_rule = PLATEAU, STABLE
    if window != WINDOW:
        plateau_rule = Plateau(patience=window, min_delta=MIN_GAIN)
        stable_rule = StabilizingPredictions(threshold=MIN_KAPPA, window=window)
    reasons = []
    scores = [
        p["live"]["macro_f1"] if p["live"] else p["cv_macro_f1"]
        for p in curve
        if p["live"] or p["cv_macro_f1"] is not None
    ]
    gain = plateau_rule.improvement(scores)
    plateau = plateau_rule.flat(scores)
    if gain is not None:
        reasons.append(f"macro-F1 changed by {gain:+.3f} over the last {window} versions")
    kappas = [p["agreement_with_previous"] for p in curve]
    stable = stable_rule.stable(kappas)
    if kappas and kappas[-1] is not None:
        reasons.append(f"latest model agrees with the previous one at κ = {kappas[-1]:.3f}")
    expected, flattening = _expected_gain(curve)
    if expected is not None:
        reasons.append(
            f"the next {expected['more']} labels should change macro-F1 by "
            f"{expected['gain']:+.3f} (learning curve fitted to {expected['source']})"
        )
    estimate = next((p for p in reversed(curve) if p["live"]), None)
    if (plateau or flattening) and stable:
        verdict = "consider stopping"
    elif not curve:
        verdict = "no model yet"
    else:
        verdict = "keep labeling"
    return {
        "verdict": verdict,
        "plateau": plateau,
        "stable": stable,
        "flattening": flattening,
        "expected_gain": expected,
        "estimate": {"version": estimate["version"], **estimate["live"]} if estimate else None,
        "reasons": reasons,
        "rule": {"window": window, "min_gain": MIN_GAIN, "min_kappa": MIN_KAPPA},
    }


def hide_colleagues(figures: dict[str, Any], name: str) -> None:
    """Trim the figures an annotator (not an admin) sees to their own individual numbers."""
    figures["annotators"] = [a for a in figures["annotators"] if a["name"] == name]
    figures["agreement"]["pairwise"] = []
    figures["agreement"]["per_annotator"] = {
        k: v for k, v in figures["agreement"]["per_annotator"].items() if k == name
    }


def _representation(project: Project, current: ModelVersion | None) -> dict[str, Any]:
    """The served model's representation (the project's setting before the first model)."""
    record = dict((current.metrics or {}).get("representation") or {}) if current else {}
    record.setdefault("features", feature_spec(project).name)
    scores = record.get("cv_macro_f1") or {}
    unbiased = record.get("random_macro_f1") or {}
    record["candidates"] = [
        {
            "name": name,
            "label": _CANDIDATE_LABELS.get(name, name),
            "cv_macro_f1": value,
            "random_macro_f1": unbiased.get(name),
            "chosen": name == record.get("choice"),
        }
        for name, value in sorted(scores.items(), key=lambda kv: -kv[1])
    ]
    return record


_CANDIDATE_LABELS = {
    "all": "TF-IDF and embedding together",
    "embedding": "embedding alone",
    "tfidf": "TF-IDF alone",
}


def dashboard(session: Session, project: Project) -> dict[str, Any]:
    """Every figure of the dashboard, as plain data."""
    final, conflicts = resolved_labels(session, project)
    progress = item_progress(session, project)
    label_rows = session.execute(
        select(Label.action, func.count(Label.id))
        .where(Label.project_id == project.id, Label.is_current.is_(True))
        .group_by(Label.action)
    ).all()
    actions = {a: int(n) for a, n in label_rows}
    versions = list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project.id)
            .order_by(ModelVersion.version)
        )
    )
    settings = settings_of(project)
    multi_label = settings.multi_label
    curve = _curve(session, project, versions, multi_label)
    current = next((v for v in versions if v.id == project.current_version_id), None)
    cv = ((current.metrics or {}).get("cv") or {}) if current else {}
    distribution: dict[str, int] = Counter(final.values())
    extra: dict[str, Any] = {}
    if multi_label:
        distribution, empty = dashboard_sets.label_counts(final.values(), project.label_set)
        extra["multi_label"] = {"empty_sets": empty, "cv": cv or None}
    accuracy_key = "subset_accuracy" if multi_label else "accuracy"
    return {
        "project": {
            "id": project.id,
            "name": project.name,
            "kind": project.kind,
            "labels": project.label_set,
        },
        "progress": {
            **progress,
            # Items with a training label: done and agreed, adjudicated, or waiting for a
            # second opinion (not the "done" count: conflicts are done but not labeled).
            "labeled_items": len(final),
            "conflicts": len(conflicts),
            "labels": actions.get("label", 0),
            "skips": actions.get("skip", 0),
        },
        "distribution": {label: distribution.get(label, 0) for label in project.label_set},
        "curve": curve,
        "per_class": cv.get("per_label" if multi_label else "per_class", {}),
        # A semi-supervised model's own labels for unlabeled items: in the model, never answers.
        "pseudo_labels": ((current.metrics or {}).get("pseudo_labels") if current else None),
        # The adaptive strategy's arms: how often each was played and what it gained.
        "bandit": ((current.metrics or {}).get("bandit", {}).get("arms") if current else None),
        # What the served model learns from; for auto features, the comparison it chose by.
        "representation": _representation(project, current),
        "triage": triage_report(session, project),
        "annotators": _annotators(session, project),
        "agreement": _agreement(session, project, multi_label),
        "versions": [
            {
                "version": v.version,
                "status": v.status,
                "labels": v.n_labels,
                "created_at": v.created_at.isoformat() + "Z",
                "fit_seconds": v.fit_seconds,
                "strategy": v.strategy,
                "model": v.model_name,
                "cv_accuracy": ((v.metrics or {}).get("cv") or {}).get(accuracy_key),
                "error": (v.error or "").splitlines()[0] if v.error else None,
                "current": v.id == project.current_version_id,
            }
            for v in versions
        ],
        "stopping": _verdict(curve),
        "first_model": _first_model(settings, final, versions),
        **extra,
    }


def _first_model(
    settings: ProjectSettings, final: dict[int, str], versions: list[ModelVersion]
) -> dict[str, Any] | None:
    """Before any model: what the first fit waits for (labels, and two different answers),
    as the worker decides it. None once a version is ready."""
    if any(v.status == "ready" for v in versions):
        return None
    return {
        "needed": labels_for_next_fit(settings, fitted=False),
        "labels": len(final),
        "answers_differ": len(set(final.values())) >= 2,
    }
