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
version and changes nothing that is served; the next cycle tries again. A worker killed
mid-fit changes nothing served either; the next worker removes the model file it may have left
(:func:`sweep_artefacts`) and fits again.
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
from labelwise.exceptions import NotFoundError
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
from labelwise.store.features import feature_source, load_features
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import Item, Label, ModelVersion, Project
from labelwise.store.pool_index import PoolItems
from labelwise.store.projects import ProjectSettings, get_project, settings_of
from labelwise.store.review import resolved_labels
from labelwise.store.triage import audit_item_ids
from labelwise.store.versions import QueuedItem, record_failure, record_version
from labelwise.strategies import make_strategy

__all__ = ["TrainingOutcome", "run_worker", "sweep_artefacts", "train_once"]

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
    rows_to_items: PoolItems,
    labeled_rows: np.ndarray,
    labels_by_row: dict[int, str],
    explanations: dict[int, dict[str, Any]] | None = None,
    duplicates: dict[int, list[tuple[int, float]]] | None = None,
) -> list[QueuedItem]:
    neighbours, similarity = nearest_labeled(X, batch.indices, labeled_rows, k=3)
    rows_to_items.prefetch(
        [*batch.indices.tolist(), *neighbours.ravel().tolist()]
        + [d for found in (duplicates or {}).values() for d, _ in found]
    )
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
                "preview": rows_to_items.preview(int(n), _PREVIEW),
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
                    "preview": rows_to_items.preview(d, _PREVIEW),
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


def train_once(
    folder: ProjectFolder, db: Database, *, force: bool = False, client: Any = None
) -> TrainingOutcome:
    """Run one worker cycle for the folder's project (see the module docstring).

    With a ``distributed.Client``, the pool is scored on its Dask cluster (the same queue as
    on this machine, see :mod:`labelwise.scale`).
    """
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
    log.info("fitting %s on %s labels (%s new)", settings.model, n_labels, new)
    try:
        # Inside the try: a pool that cannot be featurized is a failed cycle, not a dead worker.
        # The items are read only now: a poll that decides not to fit stays cheap.
        with db.read() as session:
            X = load_features(session, project, folder)
        items = PoolItems(db, project, folder)
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
            client=client,
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
    items: PoolItems,
    final: dict[int, str],
    n_conflicts: int,
    X: Any,
    *,
    bandit_state: dict[str, Any] | None = None,
    random_ids: set[int] | frozenset[int] = frozenset(),
    audit_ids: list[int] | None = None,
    client: Any = None,
) -> TrainingOutcome:
    audit_ids = audit_ids or []
    # Rows and items are read as needed: a pool of millions is never a list of objects.
    rows_to_items = items
    row_of = items.rows_of([*final, *random_ids])
    pool = Pool(X, classes=project.label_set, validate=False)
    labeled_rows = np.asarray(sorted(row_of[i] for i in final), dtype=np.intp)
    labels_by_row = {row_of[i]: v for i, v in final.items()}
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
    audits = items.by_id(audit_ids)[: settings.queue_size]
    # The labels were read before the fit, the open items only now: an answer undone in
    # between makes its item open again while the model trained on it. It stays out of this
    # queue (ranking a labeled row is refused); the next cycle sees it open.
    open_rows = items.open_rows(exclude_rows=[*(i.row for i in audits), *labeled_rows.tolist()])
    second = items.waiting_for_second(final)
    version_number = _next_number(db, project)
    rng = np.random.default_rng([settings.seed, version_number])
    queue: list[QueuedItem] = []
    strategy = make_strategy(settings.strategy)
    bandit = find_bandit(strategy)
    if bandit is not None:
        bandit.load_state(bandit_state)
    if len(open_rows):
        batch = _rank(
            project,
            folder,
            client,
            pool,
            model,
            strategy=strategy,
            batch_size=min(settings.queue_size, len(open_rows)),
            mix=BatchMix(exploration=settings.exploration, routine=settings.routine),
            random_state=rng,
            estimator=template,
            candidates=open_rows,
            random_sample=np.asarray(
                sorted(row_of[i] for i in random_ids if i in final), dtype=np.intp
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


def _rank(
    project: Project,
    folder: ProjectFolder,
    client: Any,
    pool: Pool,
    model: Any,
    **options: Any,
) -> Batch:
    """The queue's batch: :func:`~labelwise.query.query` here, or the same batch scored on the
    client's Dask cluster from a partitioned copy of the features (``features/partitions``,
    rewritten when the features change)."""
    from labelwise import scale

    if client is None or not scale.supports(options["strategy"]):
        if client is not None:
            log.warning("strategy %s cannot run on a cluster: ranking here", options["strategy"])
        return query(pool, model, **options)
    parts = scale.ensure_partitioned(
        pool.X,
        folder.features_dir / "partitions",
        source=feature_source(project, folder, pool.X.shape[0]),
    )
    return scale.score_partitioned(
        parts, model, client=client, labeled=pool.labeled, y_labeled=pool.y_labeled, **options
    )


def _pseudo_labels(model: Any, rows: np.ndarray, rows_to_items: PoolItems) -> dict[str, Any] | None:
    """What a semi-supervised model made up: counts per class, mean confidence, and the most
    confident examples for the dashboard. None for other models."""
    made = getattr(model, "pseudo_labels_", None)
    if made is None:
        return None
    by_class = Counter(str(label) for _, label, _ in made)
    rows_to_items.prefetch(int(rows[pos]) for pos, _, _ in made[:_PSEUDO_EXAMPLES])
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
                "preview": rows_to_items.preview(int(rows[pos]), _PREVIEW),
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
    rows_to_items: PoolItems,
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
        names = list(rows_to_items.field_names())
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
    featurizer = _featurizer(folder)
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


def _featurizer(folder: ProjectFolder) -> Any:
    """The fitted featurizer saved beside the feature matrix, or None when there is none."""
    try:
        return joblib.load(folder.loadable("features/featurizer.joblib", folder.features_dir))
    except NotFoundError:
        return None


def _occlusions(
    folder: ProjectFolder, model: Any, X: Any, rows: np.ndarray, labeled_rows: np.ndarray
) -> dict[int, dict[str, Any]]:
    shape = getattr(_featurizer(folder), "image_shape_", None)
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
    try:
        # A row pointing outside models/ (or a symlink out of it) raises: never unpickled.
        path = folder.loadable(served.artefact, folder.models_dir)
    except NotFoundError:
        return None
    previous = joblib.load(path)
    rows = previous.get("stop_rows")
    if rows is None or len(rows) != len(stop_rows) or not np.array_equal(rows, stop_rows):
        return None
    return round(prediction_agreement(previous["stop_predictions"], stop_predictions), 6)


class _Standardized:
    """A dense pool seen with every column standardised, row by row as rows are read.

    ``space[rows]`` is ``StandardScaler().fit_transform(X)[rows]`` (a constant column is
    left unscaled, as there) in ``X``'s float precision, but the column means and deviations
    (float64) come from one pass over
    ``X`` a chunk at a time, merged exactly (Chan et al.), and only the rows read are ever
    transformed: a memory-mapped pool of millions of rows is never copied.
    """

    def __init__(self, X: Any, chunk: int = 262_144) -> None:
        self.X = X
        self.shape = X.shape
        # Rows come out in the pool's precision (float32 pools stay float32: half the memory
        # traffic when all open rows are compared with the queue), never below float32.
        self.dtype = np.result_type(X.dtype, np.float32)
        n = 0
        mean = np.zeros(X.shape[1])
        m2 = np.zeros(X.shape[1])  # sum of squared deviations from the mean
        for start in range(0, X.shape[0], chunk):
            block = np.asarray(X[start : start + chunk])
            k = len(block)
            block_mean = block.mean(axis=0, dtype=np.float64)
            # Deviations in the pool's own precision, their squares summed in float64.
            deviation = block - block_mean.astype(block.dtype)
            block_m2 = np.einsum("ij,ij->j", deviation, deviation, dtype=np.float64)
            delta = block_mean - mean
            mean = mean + delta * k / (n + k)
            m2 = m2 + block_m2 + delta**2 * n * k / (n + k)
            n += k
        scale = np.sqrt(m2 / max(n, 1))
        self.mean = mean
        self.scale = np.where(scale > 10 * np.finfo(np.float64).eps * np.abs(mean), scale, 1.0)

    def __getitem__(self, rows: Any) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.ndim == 1 and len(rows) > 1 and rows[-1] - rows[0] == len(rows) - 1:
            block = self.X[int(rows[0]) : int(rows[-1]) + 1]  # a run of rows: read in place
        else:
            block = self.X[rows]
        values = np.array(block, dtype=self.dtype)  # a copy: the pool is read-only
        values -= self.mean.astype(self.dtype)
        values /= self.scale.astype(self.dtype)
        return values


def _neighbour_space(project: Project, X: Any) -> Any:
    """Where "most similar labeled item" is measured: tabular columns are standardised first,
    or the column with the largest numbers alone would decide; text and pixels as they are."""
    if project.kind != "tabular":
        return X
    if hasattr(X, "toarray"):
        return StandardScaler().fit_transform(X.toarray())
    return _Standardized(X)


def _next_number(db: Database, project: Project) -> int:
    from sqlalchemy import func

    with db.read() as session:
        last = session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project.id)
        )
    return int(last or 0) + 1


def sweep_artefacts(folder: ProjectFolder, db: Database) -> list[Path]:
    """Remove the model files no version refers to; returns what was removed.

    A fit writes ``models/pending-*.joblib`` and renames it to its version's name inside the
    transaction that records the version. A worker killed in between leaves a pending file, or
    a version file whose row never committed; neither is ever loaded, but they would pile up
    and mislead whoever reads the folder. Only the worker holding the folder's lock writes
    there, so when it starts, every such file is a leftover of a dead one.
    """
    with db.read() as session:
        project = get_project(session, name=folder.project_name)
        named = session.scalars(
            select(ModelVersion.artefact).where(
                ModelVersion.project_id == project.id, ModelVersion.artefact.is_not(None)
            )
        )
        kept = {(folder.root / str(a)).resolve() for a in named}
    removed = []
    for pattern in ("pending-*.joblib", "v*.joblib"):
        for path in sorted(folder.models_dir.glob(pattern)):
            if path.resolve() not in kept and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    if removed:
        log.info("removed %s model file(s) left by an interrupted fit", len(removed))
    return removed


def sweep_leftover_media(folder: ProjectFolder, db: Database) -> list[Path]:
    """Remove the image folders a killed import left in ``media/`` (see
    :func:`labelwise.store.transfer.sweep_media`); returns what was removed."""
    from labelwise.store.transfer import sweep_media

    with db.read() as session:
        project = get_project(session, name=folder.project_name)
        removed = sweep_media(session, project, folder)
    if removed:
        log.info("removed %s image folder(s) left by an interrupted import", len(removed))
    return removed


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
    client: Any = None,
) -> None:
    """Cycle until ``stop`` is set (or ``max_cycles`` ran); one worker per folder at a time.

    ``client``: a ``distributed.Client`` whose cluster scores the pool (see :func:`train_once`).
    """
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
        try:
            sweep_artefacts(folder, db)
            sweep_leftover_media(folder, db)
        except Exception:  # housekeeping: a database outage here must not stop the worker
            log.exception("could not check models/ and media/ for what a killed process left")
        while not stop.is_set():
            try:
                outcome = train_once(folder, db, client=client)
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
