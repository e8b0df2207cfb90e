"""The worker: retrains when enough new labels arrived, then publishes a new ranked queue.

One cycle (:func:`train_once`):

1. read the training labels (adjudications, else agreeing answers; conflicts wait for review);
2. if ``retrain_every`` labels arrived since the served version (or, for the first fit, ten
   labels of at least two classes), fit a clone of the project's model on them;
3. estimate its quality by cross-validation on the labeled set;
4. score the open items with the project's strategy and batch mix, add the nearest labeled
   examples to every reason, and mix in second-opinion items for overlap;
5. write the artefact file, then the version, its metrics and its queue in one transaction.

The server keeps serving the previous queue the whole time. A failure is recorded as a failed
version and changes nothing that is served; the next cycle tries again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import StandardScaler
from sqlalchemy import select
from threadpoolctl import threadpool_limits

from labelwise.bandit import find_bandit
from labelwise.evaluate import score_predictions
from labelwise.explain import (
    linear_contributions,
    near_duplicates,
    nearest_labeled,
    occlusion_map,
    term_weights,
    tree_contributions,
    vectorizer_highlights,
)
from labelwise.models import make_model
from labelwise.pool import Pool
from labelwise.query import Batch, BatchMix, query
from labelwise.semi import fit_model, unlabeled_sample
from labelwise.stopping import prediction_agreement
from labelwise.store.db import Database
from labelwise.store.features import load_features, tabular_fields
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Item, Label, ModelVersion, Project
from labelwise.store.projects import ProjectSettings, get_project, settings_of
from labelwise.store.review import resolved_labels
from labelwise.store.triage import audit_item_ids
from labelwise.store.versions import QueuedItem, record_failure, record_version
from labelwise.strategies import make_strategy

__all__ = ["TrainingOutcome", "run_worker", "train_once"]

log = logging.getLogger("labelwise.worker")

#: Labels the first fit waits for (fewer if ``retrain_every`` is smaller): a model of three
#: labels ranks the pool no better than chance and its "reasons" would mislead annotators.
FIRST_FIT = 10
#: Cross-validation is skipped above this many labels (it would cost five more fits).
_CV_LIMIT = 5000
#: Characters of an item shown beside a neighbour in the "why" panel.
_PREVIEW = 160
# Words shown as the drivers of a prediction, and how much of a text is searched for them.
_DRIVERS = 8
_PSEUDO_EXAMPLES = 20
_DRIVER_TEXT = 20_000
_DRIVER_SPANS = 300


@dataclass(frozen=True)
class TrainingOutcome:
    """What one cycle did: ``"trained"``, ``"failed"`` or ``"idle"`` (with why)."""

    status: str
    detail: str
    version: int | None = None


def _served(session: Any, project: Project) -> ModelVersion | None:
    if project.current_version_id is None:
        return None
    return session.get(ModelVersion, project.current_version_id)


def _cv_metrics(template: Any, X: Any, y: np.ndarray) -> dict[str, Any] | None:
    counts = Counter(y.tolist())
    folds = min(5, min(counts.values()))
    if folds < 2 or len(y) > _CV_LIMIT:
        return None
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    pred = cross_val_predict(clone(template), X, y, cv=cv)
    return score_predictions(y, pred, labels=sorted(counts)).to_dict()


def _predicted(reason: dict[str, Any]) -> str | None:
    split = reason.get("class_split") or []
    return str(split[0][0]) if split else None


def _queue(
    batch: Batch,
    X: Any,
    pool: Pool,
    rows_to_items: dict[int, Item],
    labeled_rows: np.ndarray,
    labels_by_row: dict[int, str],
    explanations: dict[int, dict[str, Any]] | None = None,
    duplicates: dict[int, list[tuple[int, float]]] | None = None,
) -> list[QueuedItem]:
    neighbours, similarity = nearest_labeled(X, batch.indices, labeled_rows, k=3)
    # "Unlike anything labeled so far" is relative: how close labeled items usually are to
    # their nearest labeled neighbour, in this representation.
    typical = _typical_closeness(X, labeled_rows)
    entries: list[tuple[int, str, float | None, str | None, dict[str, Any]]] = []
    for pos, (row, reason) in enumerate(zip(batch.indices, batch.reasons, strict=True)):
        info = reason.to_dict()
        info["neighbors"] = [
            {
                "item_id": rows_to_items[int(n)].id,
                "label": labels_by_row[int(n)],
                "similarity": round(float(s), 4),
                "preview": rows_to_items[int(n)].content[:_PREVIEW],
            }
            for n, s in zip(neighbours[pos], similarity[pos], strict=True)
        ]
        closest = float(similarity[pos][0]) if similarity.shape[1] else None
        info["far_from_labeled"] = bool(
            closest is not None and typical is not None and closest < 0.5 * typical
        )
        if explanations and int(row) in explanations:
            info.update(explanations[int(row)])
        if duplicates and int(row) in duplicates:
            # Near-duplicates the annotator may give the same answer (after confirming).
            info["duplicates"] = [
                {
                    "item_id": rows_to_items[d].id,
                    "similarity": round(sim, 4),
                    "preview": rows_to_items[d].content[:_PREVIEW],
                }
                for d, sim in duplicates[int(row)]
            ]
        item = rows_to_items[int(row)]
        entries.append((item.id, reason.kind, reason.utility, _predicted(info), info))
    return [
        QueuedItem(item_id=i, rank=r, kind=k, utility=u, predicted=p, reason=info)
        for r, (i, k, u, p, info) in enumerate(entries)
    ]


#: Items queued apart from the strategy's picks, at random places and without a prediction.
_OVERLAP = "second opinion: this item is labeled twice to measure agreement"
_AUDIT = "a random check of the automatic decisions: your answer measures their error"


def _insert_at_random(
    queue: list[QueuedItem], items: list[Item], kind: str, summary: str, rng: np.random.Generator
) -> list[QueuedItem]:
    """``items`` spread at random places of the queue (not all at the end, so they cannot be
    told by their position), then the queue re-ranked."""
    if not items:
        return queue
    entries = list(queue)
    for item in items:
        at = int(rng.integers(0, len(entries) + 1))
        reason = {"kind": kind, "summary": summary}
        entries.insert(at, QueuedItem(item.id, 0, kind, None, None, reason))
    return [
        QueuedItem(e.item_id, r, e.kind, e.utility, e.predicted, e.reason)
        for r, e in enumerate(entries)
    ]


def _random_sample_ids(session: Any, project: Project) -> set[int]:
    """Items whose standing label was given to a uniformly random pick (exploration, cold start)."""
    return set(
        session.scalars(
            select(Label.item_id).where(
                Label.project_id == project.id,
                Label.is_current.is_(True),
                Label.action == "label",
                Label.reason_kind.in_(("exploration", "cold-start")),
            )
        )
    )


def train_once(folder: ProjectFolder, db: Database, *, force: bool = False) -> TrainingOutcome:
    """Run one worker cycle for the folder's project (see the module docstring)."""
    with db.read() as session:
        project = get_project(session, name=folder.project_name)
        settings = settings_of(project)
        final, conflicts = resolved_labels(session, project)
        served = _served(session, project)
        bandit_state = (served.metrics or {}).get("bandit", {}).get("state") if served else None
        random_ids = _random_sample_ids(session, project)
        audit_ids = audit_item_ids(session, project)
        n_labels = len(final)
        classes = set(final.values())
        if len(classes) < 2:
            return TrainingOutcome("idle", "fewer than two classes labeled")
        new = n_labels - (served.n_labels if served else 0)
        needed = settings.retrain_every if served else min(FIRST_FIT, settings.retrain_every)
        if not force and new < needed:
            return TrainingOutcome("idle", f"{new} new labels of {needed} needed")
    try:
        # Inside the try: a pool that cannot be featurized is a failed cycle, not a dead worker.
        # The items are read only now: a poll that decides not to fit stays cheap.
        with db.read() as session:
            items = list(session.scalars(select(Item).where(Item.project_id == project.id)))
            X = load_features(session, project, folder)
        return _fit_and_publish(
            folder,
            db,
            project,
            settings,
            items,
            final,
            len(conflicts),
            X,
            bandit_state=bandit_state,
            random_ids=random_ids,
            audit_ids=audit_ids,
        )
    except Exception as exc:  # recorded, never silently dropped: the dashboard shows it
        log.exception("fit failed")
        with db.write() as session:
            version = record_failure(
                session,
                get_project(session, project_id=project.id),
                n_labels=n_labels,
                strategy=settings.strategy,
                model_name=settings.model,
                error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}",
            )
        return TrainingOutcome("failed", str(exc), version.version)


def _fit_and_publish(
    folder: ProjectFolder,
    db: Database,
    project: Project,
    settings: ProjectSettings,
    items: list[Item],
    final: dict[int, str],
    n_conflicts: int,
    X: Any,
    *,
    bandit_state: dict[str, Any] | None = None,
    random_ids: set[int] | frozenset[int] = frozenset(),
    audit_ids: list[int] | None = None,
) -> TrainingOutcome:
    audit_ids = audit_ids or []
    by_id = {item.id: item for item in items}
    rows_to_items = {item.row: item for item in items}
    pool = Pool(X, classes=project.label_set, validate=False)
    labeled_rows = np.asarray(sorted(by_id[i].row for i in final), dtype=np.intp)
    labels_by_row = {by_id[i].row: v for i, v in final.items()}
    pool.label(labeled_rows, [labels_by_row[r] for r in labeled_rows])
    y = np.asarray([labels_by_row[r] for r in labeled_rows], dtype=object).astype(str)

    template = make_model(settings.model, random_state=settings.seed)
    start = time.perf_counter()
    X_lab = X[labeled_rows]
    # A semi-supervised model also sees a sample of the unlabeled items (never stored as labels).
    extra = unlabeled_sample(
        template, pool.unlabeled, np.random.default_rng([settings.seed, len(labeled_rows)])
    )
    with threadpool_limits(limits=1):
        model = fit_model(template, X_lab, y, X[extra] if len(extra) else None)
        cv = _cv_metrics(template, X_lab, y)
    fit_seconds = time.perf_counter() - start
    pseudo = _pseudo_labels(model, extra, rows_to_items)

    stop_rows = _stop_set(X.shape[0], settings.seed)
    stop_predictions = np.asarray(model.predict(X[stop_rows])).astype(str)
    agreement = _agreement_with_served(folder, db, project, stop_rows, stop_predictions)

    # Open items: not labeled by anyone yet. Overlap items waiting for a second answer are
    # queued separately as second opinions.
    # Audit items of triage are queued apart, at random places and without the decision.
    audits = [by_id[i] for i in audit_ids if i in by_id][: settings.queue_size]
    audit_set = {i.id for i in audits}
    open_rows = np.asarray(
        sorted(i.row for i in items if not i.done and i.n_labels == 0 and i.id not in audit_set),
        dtype=np.intp,
    )
    second = [i for i in items if not i.done and i.n_labels > 0 and i.id in final]
    version_number = _next_number(db, project)
    rng = np.random.default_rng([settings.seed, version_number])
    queue: list[QueuedItem] = []
    strategy = make_strategy(settings.strategy)
    bandit = find_bandit(strategy)
    if bandit is not None:
        bandit.load_state(bandit_state)
    if len(open_rows):
        batch = query(
            pool,
            model,
            strategy=strategy,
            batch_size=min(settings.queue_size, len(open_rows)),
            mix=BatchMix(exploration=settings.exploration, routine=settings.routine),
            random_state=rng,
            estimator=template,
            candidates=open_rows,
            random_sample=np.asarray(
                sorted(by_id[i].row for i in random_ids if i in final), dtype=np.intp
            ),
        )
        n_second = min(len(second), max(1, round(settings.overlap * settings.queue_size)))
        picks: list[int] = rng.permutation(len(second))[:n_second].tolist() if second else []
        space = _neighbour_space(project, X)
        duplicates: dict[int, list[tuple[int, float]]] = {}
        if settings.max_group:
            found = near_duplicates(
                space,
                batch.indices,
                open_rows,
                threshold=settings.duplicate_similarity,
                k=settings.max_group,
            )
            duplicates = {int(r): f for r, f in zip(batch.indices, found, strict=True) if f}
        queue = _queue(
            batch,
            space,
            pool,
            rows_to_items,
            labeled_rows,
            labels_by_row,
            _explanations(project, folder, model, X, batch.indices, rows_to_items, labeled_rows),
            duplicates,
        )
        queue = _insert_at_random(queue, [second[i] for i in picks], "overlap", _OVERLAP, rng)
    # Audit items of triage: blind, neither the model's guess nor the decision is shown.
    queue = _insert_at_random(queue, audits, "audit", _AUDIT, rng)

    # The artefact is written under a temporary name first; it takes its version's name inside
    # the transaction that records the version, so the two always match.
    pending = folder.models_dir / f"pending-{uuid.uuid4().hex}.joblib"
    joblib.dump(
        {
            "model": model,
            "classes": list(model.classes_),
            "stop_rows": stop_rows,
            "stop_predictions": stop_predictions,
        },
        pending,
    )
    metrics: dict[str, Any] = {
        "cv": cv,
        "conflicts": n_conflicts,
        "agreement_with_previous": agreement,
        "pseudo_labels": pseudo,
    }
    if bandit is not None:
        metrics["bandit"] = {"state": bandit.state_dict(), "arms": bandit.summary()}
    try:
        with db.write() as session:
            version = record_version(
                session,
                get_project(session, project_id=project.id),
                n_labels=len(final),
                label_counts=dict(Counter(final.values())),
                metrics=metrics,
                strategy=settings.strategy,
                model_name=settings.model,
                artefact=str(pending.relative_to(folder.root)),
                fit_seconds=fit_seconds,
                queue=queue,
            )
            artefact = folder.artefact_path(version.version)
            os.replace(pending, artefact)
            version.artefact = str(artefact.relative_to(folder.root))
    finally:
        pending.unlink(missing_ok=True)
    log.info("model version %s on %s labels, %s queued", version.version, len(final), len(queue))
    return TrainingOutcome("trained", f"{len(queue)} items queued", version.version)


def _pseudo_labels(
    model: Any, rows: np.ndarray, rows_to_items: dict[int, Item]
) -> dict[str, Any] | None:
    """What a semi-supervised model made up: counts per class, mean confidence, and the most
    confident examples for the dashboard. None for other models."""
    made = getattr(model, "pseudo_labels_", None)
    if made is None:
        return None
    by_class = Counter(str(label) for _, label, _ in made)
    return {
        "count": len(made),
        "from": len(rows),
        "by_class": dict(by_class),
        "mean_confidence": float(np.mean([c for *_, c in made])) if made else None,
        "examples": [
            {
                "item_id": rows_to_items[int(rows[pos])].id,
                "label": str(label),
                "confidence": round(conf, 4),
                "preview": rows_to_items[int(rows[pos])].content[:_PREVIEW],
            }
            for pos, label, conf in made[:_PSEUDO_EXAMPLES]
        ],
    }


def _explanations(
    project: Project,
    folder: ProjectFolder,
    model: Any,
    X: Any,
    rows: np.ndarray,
    rows_to_items: dict[int, Item],
    labeled_rows: np.ndarray,
) -> dict[int, dict[str, Any]]:
    """What drives the model's prediction for each queued row, as reason entries.

    - text with a linear model: ``"drivers"``, the words with their exact contributions and
      their spans in the text (:func:`labelwise.explain.linear_contributions`);
    - tabular with a linear model: ``"drivers"``, the fields with their contributions; with a
      tree ensemble, the same from SHAP values (when the ``explain`` extra is installed);
    - images, any model: ``"occlusion"``, a coarse heat map of the drop in the predicted
      class's score when each patch is covered with the labeled items' mean image.

    Empty where none applies. Computed with the queue, so showing it never slows "next".
    """
    if not len(rows):
        return {}
    if project.kind == "image":
        return _occlusions(folder, model, X, rows, labeled_rows)
    found = linear_contributions(model, X[rows], top=_DRIVERS)
    if found is None and project.kind == "tabular":
        found = tree_contributions(model, X[rows], top=_DRIVERS)  # SHAP, if installed
    if found is None:
        return {}
    if project.kind == "tabular":
        first = rows_to_items[min(rows_to_items)]
        names = list(tabular_fields(first.content))
        return {
            int(row): {
                "drivers": {
                    "toward": c.toward,
                    "against": c.against,
                    "terms": [[t, round(w, 4)] for t, w in term_weights(c, names)],
                    "spans": [],
                }
            }
            for row, c in zip(rows, found, strict=True)
        }
    path = folder.features_dir / "featurizer.joblib"
    featurizer = joblib.load(path) if path.exists() else None
    vectorizer = getattr(featurizer, "vectorizer_", None)
    if featurizer is None or vectorizer is None:
        return {}
    names = featurizer.get_feature_names_out()
    out: dict[int, dict[str, Any]] = {}
    for row, contributions in zip(rows, found, strict=True):
        terms = [(t, round(w, 4)) for t, w in term_weights(contributions, names)]
        text = rows_to_items[int(row)].content[:_DRIVER_TEXT]
        spans = vectorizer_highlights(vectorizer, text, dict(terms))[:_DRIVER_SPANS]
        out[int(row)] = {
            "drivers": {
                "toward": contributions.toward,
                "against": contributions.against,
                "terms": [[t, w] for t, w in terms],
                "spans": [[s, e, round(w, 4)] for s, e, w in spans],
            }
        }
    return out


def _occlusions(
    folder: ProjectFolder, model: Any, X: Any, rows: np.ndarray, labeled_rows: np.ndarray
) -> dict[int, dict[str, Any]]:
    path = folder.features_dir / "featurizer.joblib"
    shape = getattr(joblib.load(path), "image_shape_", None) if path.exists() else None
    if shape is None:
        return {}
    baseline = np.asarray(X[labeled_rows], dtype=np.float64).mean(axis=0)
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        found = occlusion_map(model, np.asarray(X[int(row)]), tuple(shape), baseline=baseline)
        out[int(row)] = {
            "occlusion": {
                "target": found.target,
                "kind": found.kind,
                "patch": found.patch,
                "height": int(shape[0]),
                "width": int(shape[1]),
                "drop": np.round(found.drop, 4).tolist(),
            }
        }
    return out


def _typical_closeness(X: Any, labeled_rows: np.ndarray, sample: int = 500) -> float | None:
    """Median similarity of a labeled item to its nearest other labeled item (on a sample)."""
    if len(labeled_rows) < 3:
        return None
    rows = labeled_rows[:: max(1, len(labeled_rows) // sample)]
    _, sim = nearest_labeled(X, rows, labeled_rows, k=2)
    return float(np.median(sim[:, 1])) if sim.shape[1] > 1 else None


#: Items on which successive models' predictions are compared (stabilizing predictions).
STOP_SET_SIZE = 1000


def _stop_set(n_items: int, seed: int) -> np.ndarray:
    """A fixed random sample of rows: the same for every version while the pool is unchanged."""
    rng = np.random.default_rng([seed, n_items, 7])
    return np.sort(rng.choice(n_items, size=min(STOP_SET_SIZE, n_items), replace=False))


def _agreement_with_served(
    folder: ProjectFolder,
    db: Database,
    project: Project,
    stop_rows: np.ndarray,
    stop_predictions: np.ndarray,
) -> float | None:
    """Cohen's kappa between the served model's predictions on the stop set and the new ones
    (None when there is no served model or the pool changed since)."""
    with db.read() as session:
        served = _served(session, get_project(session, project_id=project.id))
    if served is None or not served.artefact:
        return None
    path = folder.inside(served.artefact, folder.models_dir.parent)
    if not path.is_relative_to(folder.models_dir.resolve()) or not path.is_file():
        return None
    previous = joblib.load(path)
    rows = previous.get("stop_rows")
    if rows is None or len(rows) != len(stop_rows) or not np.array_equal(rows, stop_rows):
        return None
    return round(prediction_agreement(previous["stop_predictions"], stop_predictions), 6)


def _neighbour_space(project: Project, X: Any) -> Any:
    """Where "most similar labeled item" is measured: tabular columns are standardised first,
    or the column with the largest numbers alone would decide; text and pixels as they are."""
    if project.kind != "tabular":
        return X
    dense = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
    return StandardScaler().fit_transform(dense)


def _next_number(db: Database, project: Project) -> int:
    from sqlalchemy import func

    with db.read() as session:
        last = session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project.id)
        )
    return int(last or 0) + 1


class _FolderLock:
    """One worker per project folder (an advisory file lock, released if the process dies)."""

    def __init__(self, path: Path):
        self.path = path
        self.fh: Any = None

    def acquire(self) -> bool:
        self.fh = self.path.open("a")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            self.fh = None
            return False
        return True

    def release(self) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


def run_worker(
    folder: ProjectFolder,
    db: Database,
    *,
    poll_seconds: float = 2.0,
    stop: threading.Event | None = None,
    max_cycles: int | None = None,
) -> None:
    """Cycle until ``stop`` is set (or ``max_cycles`` ran); one worker per folder at a time."""
    lock = _FolderLock(folder.root / "worker.lock")
    while not lock.acquire():
        log.info("another worker holds %s; waiting", lock.path)
        if stop is not None and stop.wait(poll_seconds):
            return
        if stop is None:
            time.sleep(poll_seconds)
    stop = stop or threading.Event()
    cycles = 0
    try:
        while not stop.is_set():
            try:
                outcome = train_once(folder, db)
            except Exception:  # a database outage must not end the worker: log, wait, retry
                log.exception("worker cycle failed; retrying")
                stop.wait(poll_seconds * 5)
                continue
            if outcome.status != "idle":
                log.info("%s: %s", outcome.status, outcome.detail)
            cycles += 1
            if max_cycles is not None and cycles >= max_cycles:
                return
            if outcome.status != "trained":
                stop.wait(poll_seconds)
    finally:
        lock.release()
