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
import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sqlalchemy import select
from threadpoolctl import threadpool_limits

from labelwise.bandit import find_bandit
from labelwise.evaluate import score_predictions
from labelwise.exceptions import NotFoundError
from labelwise.features.auto import AutoRepresentation
from labelwise.features.scaling import PoolStatistics, pool_statistics
from labelwise.pool import Pool
from labelwise.query import TYPICAL_SUMMARY, Batch, BatchMix, query
from labelwise.selectors import typical_points
from labelwise.semi import fit_model, unlabeled_sample
from labelwise.stopping import prediction_agreement
from labelwise.store.db import Database
from labelwise.store.features import (
    ProjectFeatures,
    feature_source,
    model_template,
    project_features,
)
from labelwise.store.folder import ProjectFolder
from labelwise.store.items import count_items
from labelwise.store.models import Item, Label, ModelVersion, Project
from labelwise.store.pool_index import PoolItems
from labelwise.store.prediction_cache import write_predictions
from labelwise.store.projects import ProjectSettings, get_project, settings_of
from labelwise.store.review import resolved_labels
from labelwise.store.triage import audit_item_ids
from labelwise.store.versions import (
    COLD_START,
    DamagedArtefactError,
    QueuedItem,
    load_artefact,
    record_failure,
    record_version,
    served_version,
)
from labelwise.strategies import make_strategy
from labelwise.why import (
    duplicate_groups,
    explanations,
    neighbour_space,
    pseudo_labels,
    queue_entries,
    similarity_floor,
)

__all__ = ["TrainingOutcome", "run_worker", "sweep_artefacts", "train_once"]

log = logging.getLogger("labelwise.worker")

#: Labels the first fit waits for (fewer if ``retrain_every`` is smaller): a model of three
#: labels ranks the pool no better than chance and its "reasons" would mislead annotators.
FIRST_FIT = 10
#: The longest wait, in seconds, between retries of a fit that keeps failing.
FAILURE_BACKOFF_MAX = 300.0
#: Cross-validation is skipped above this many labels (it would cost five more fits).
_CV_LIMIT = 5000


@dataclass(frozen=True)
class TrainingOutcome:
    """What one cycle did: ``"trained"``, ``"failed"`` or ``"idle"`` (with why)."""

    status: str
    detail: str
    version: int | None = None


def _served(session: Any, project: Project) -> ModelVersion | None:
    return served_version(session, project)


def _cv_metrics(template: Any, X: Any, y: np.ndarray) -> dict[str, Any] | None:
    counts = Counter(y.tolist())
    folds = min(5, min(counts.values()))
    if folds < 2 or len(y) > _CV_LIMIT:
        return None
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    pred = cross_val_predict(clone(template), X, y, cv=cv)
    return score_predictions(y, pred, labels=sorted(counts)).to_dict()


#: Items queued apart from the strategy's picks, at random places and without a prediction.
_OVERLAP = "second opinion: this item is labeled twice to measure agreement"
_AUDIT = "a random check of the automatic decisions: your answer measures their error"


def _chosen_cv(model: Any, y: np.ndarray) -> dict[str, Any] | None:
    """The cross-validated metrics of an ``auto`` model's choice, from its own comparison."""
    if not isinstance(model, AutoRepresentation) or not model.scores_:
        return None
    truth = y[model.cv_rows_]
    return score_predictions(
        truth, model.cv_predictions_[model.choice_], labels=sorted(set(y.tolist()))
    ).to_dict()


def representation_record(
    model: Any, features: str, y: np.ndarray, random: np.ndarray
) -> dict[str, Any]:
    """What the model learned from, for the version's metrics: the ``features`` word and, for
    ``auto``, the block chosen and every candidate's cross-validated macro-F1 -- on all the
    labels compared and on the uniformly random ones among them (an unbiased sample, when
    there are enough: at least 20 of two classes or more)."""
    record: dict[str, Any] = {"features": features}
    if not isinstance(model, AutoRepresentation):
        return record
    record["choice"] = model.choice_
    record["cv_macro_f1"] = {name: round(v, 4) for name, v in model.scores_.items()}
    rows = model.cv_rows_
    unbiased = random[rows]
    truth = y[rows][unbiased]
    if model.scores_ and unbiased.sum() >= 20 and len(set(truth.tolist())) > 1:
        record["random_items"] = int(unbiased.sum())
        record["random_macro_f1"] = {
            name: round(float(f1_score(truth, predicted[unbiased], average="macro")), 4)
            for name, predicted in model.cv_predictions_.items()
        }
    return record


#: Pool statistics by feature source: a pool of millions is read once, not at every fit.
_STATISTICS: dict[str, PoolStatistics] = {}


def _statistics(features: ProjectFeatures) -> PoolStatistics:
    """The pool's column statistics (:func:`~labelwise.features.scaling.pool_statistics`),
    computed once per version of the feature files."""
    key = json.dumps(feature_source(features), sort_keys=True)
    found = _STATISTICS.get(key)
    if found is None:
        found = pool_statistics(features.X)
        _STATISTICS.clear()  # one project per worker process: keep the current pool only
        _STATISTICS[key] = found
    return found


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
        # A cold-start queue is served before the first model; it is no model to build on.
        fitted = served if served is not None and served.status != COLD_START else None
        bandit_state = (fitted.metrics or {}).get("bandit", {}).get("state") if fitted else None
        random_ids = _random_sample_ids(session, project)
        audit_ids = audit_item_ids(session, project)
        n_labels = len(final)
        classes = set(final.values())
        new = n_labels - (fitted.n_labels if fitted else 0)
        needed = settings.retrain_every if fitted else min(FIRST_FIT, settings.retrain_every)
        if len(classes) < 2 or (not force and new < needed):
            n_items = count_items(session, project)
            stale = served is None or (served.metrics or {}).get("n_items") != n_items
            if fitted is not None or not n_items or not stale:
                if len(classes) < 2:
                    return TrainingOutcome("idle", "fewer than two classes labeled")
                return TrainingOutcome("idle", f"{new} new labels of {needed} needed")
            fit = False  # no model yet: publish the cold-start queue instead
        else:
            fit = True
    if not fit:
        return _guarded(
            db,
            project,
            settings,
            n_labels,
            lambda: _cold_start(folder, db, project, settings, final),
        )
    log.info("fitting %s on %s labels (%s new)", settings.model, n_labels, new)

    def fit_and_publish() -> TrainingOutcome:
        # Inside the guard: a pool that cannot be featurized is a failed cycle, not a dead
        # worker. The items are read only now: a poll that decides not to fit stays cheap.
        with db.read() as session:
            features = project_features(session, project, folder)
        return _fit_and_publish(
            folder,
            db,
            project,
            settings,
            PoolItems(db, project, folder),
            final,
            len(conflicts),
            features,
            bandit_state=bandit_state,
            random_ids=random_ids,
            audit_ids=audit_ids,
            client=client,
        )

    return _guarded(db, project, settings, n_labels, fit_and_publish)


def _guarded(
    db: Database,
    project: Project,
    settings: ProjectSettings,
    n_labels: int,
    step: Callable[[], TrainingOutcome],
) -> TrainingOutcome:
    """``step()``, with any failure recorded as a failed version (the dashboard shows it) that
    changes nothing served; never silently dropped."""
    try:
        return step()
    except Exception as exc:
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


def _cold_start(
    folder: ProjectFolder,
    db: Database,
    project: Project,
    settings: ProjectSettings,
    final: dict[int, str],
) -> TrainingOutcome:
    """Before the first model: queue the most typical open item of each of ``queue_size``
    regions of the pool (:func:`labelwise.selectors.typical_points`, TypiClust), in the space
    where items are compared (the embedding when there is one), so the first labels cover the
    pool instead of a random draw's clumps. Published as a version of status "cold-start"
    (no model); a new one follows when the pool grows, until the first fit."""
    with db.read() as session:
        features = project_features(session, project, folder)
    items = PoolItems(db, project, folder)
    labeled = set(items.rows_of(final).values())
    open_rows = items.open_rows(exclude_rows=sorted(labeled))
    queue: list[QueuedItem] = []
    if len(open_rows):
        space = neighbour_space(features)
        rng = np.random.default_rng([settings.seed, len(open_rows), 3])
        k = min(settings.queue_size, len(open_rows))
        picked = open_rows[typical_points(_RowsOf(space, open_rows), k, rng)]
        items.prefetch(picked.tolist())
        reason = {"kind": "typical", "summary": TYPICAL_SUMMARY}
        queue = [
            QueuedItem(items[int(row)].id, rank, "typical", None, None, dict(reason))
            for rank, row in enumerate(picked)
        ]
    with db.write() as session:
        version = record_version(
            session,
            get_project(session, project_id=project.id),
            n_labels=len(final),
            label_counts=dict(Counter(final.values())),
            metrics={"n_items": int(features.X.shape[0]), "features": features.spec.name},
            strategy="typical",
            model_name=settings.model,
            artefact=None,
            fit_seconds=0.0,
            queue=queue,
            status=COLD_START,
        )
    return TrainingOutcome(COLD_START, f"{len(queue)} typical items queued", version.version)


class _RowsOf:
    """Rows ``rows`` of a space, as a matrix of their own (what ``typical_points`` reads)."""

    def __init__(self, space: Any, rows: np.ndarray) -> None:
        self.space = space
        self.rows = rows
        self.shape = (len(rows), space.shape[1])

    def __getitem__(self, picked: Any) -> Any:
        return self.space[self.rows[np.asarray(picked)]]


def _fit_and_publish(
    folder: ProjectFolder,
    db: Database,
    project: Project,
    settings: ProjectSettings,
    items: PoolItems,
    final: dict[int, str],
    n_conflicts: int,
    features: ProjectFeatures,
    *,
    bandit_state: dict[str, Any] | None = None,
    random_ids: set[int] | frozenset[int] = frozenset(),
    audit_ids: list[int] | None = None,
    client: Any = None,
) -> TrainingOutcome:
    audit_ids = audit_ids or []
    X = features.X
    # Rows and items are read as needed: a pool of millions is never a list of objects.
    rows_to_items = items
    row_of = items.rows_of([*final, *random_ids])
    pool = Pool(X, classes=project.label_set, validate=False)
    labeled_rows = np.asarray(sorted(row_of[i] for i in final), dtype=np.intp)
    labels_by_row = {row_of[i]: v for i, v in final.items()}
    pool.label(labeled_rows, [labels_by_row[r] for r in labeled_rows])
    y = np.asarray([labels_by_row[r] for r in labeled_rows], dtype=object).astype(str)

    statistics = _statistics(features)
    template = model_template(settings, features, statistics)
    start = time.perf_counter()
    X_lab = X[labeled_rows]
    # A semi-supervised model also sees a sample of the unlabeled items (never stored as labels).
    extra = unlabeled_sample(
        template, pool.unlabeled, np.random.default_rng([settings.seed, len(labeled_rows)])
    )
    with threadpool_limits(limits=1):
        model = fit_model(template, X_lab, y, X[extra] if len(extra) else None)
        # An auto model cross-validated its choice already: its scores serve (a little
        # optimistic, being the best of three); five more fits of it would cost fifteen.
        cv = _chosen_cv(model, y) or _cv_metrics(template, X_lab, y)
    fit_seconds = time.perf_counter() - start
    pseudo = pseudo_labels(model, extra, rows_to_items)
    random_rows = np.asarray(sorted(row_of[i] for i in random_ids if i in final), dtype=np.intp)

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
            random_sample=random_rows,
            source=features,
        )
        n_second = min(len(second), max(1, round(settings.overlap * settings.queue_size)))
        picks: list[int] = rng.permutation(len(second))[:n_second].tolist() if second else []
        space = neighbour_space(features, statistics)
        duplicates = duplicate_groups(
            features,
            space,
            batch.indices,
            open_rows,
            rows_to_items,
            threshold=settings.duplicate_similarity,
            k=settings.max_group,
        )
        queue = queue_entries(
            batch,
            space,
            rows_to_items,
            labeled_rows,
            labels_by_row,
            floor=similarity_floor(space, np.random.default_rng([settings.seed, 11])),
            explained=explanations(
                features, folder, model, batch.indices, rows_to_items, labeled_rows
            ),
            duplicates=duplicates,
        )
        queue = _insert_at_random(queue, [second[i] for i in picks], "overlap", _OVERLAP, rng)
    # Audit items of triage: blind, neither the model's guess nor the decision is shown.
    queue = _insert_at_random(queue, audits, "audit", _AUDIT, rng)

    # The artefact is written under a temporary name first; it takes its version's name inside
    # the transaction that records the version, so the two always match.
    pending = folder.models_dir / f"pending-{uuid.uuid4().hex}.joblib"
    artefact_record = {
        "model": model,
        "classes": list(model.classes_),
        "stop_rows": stop_rows,
        "stop_predictions": stop_predictions,
        # What the model was fitted on: predictions with it (labelwise.store.served) are
        # refused once these features are no longer the same (a TF-IDF rebuilt for new items).
        "features": feature_source(features),
    }
    try:
        with pending.open("wb") as fh:
            joblib.dump(artefact_record, fh)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename that publishes it
    except BaseException:
        pending.unlink(missing_ok=True)  # a full disk leaves no empty file behind
        raise
    metrics: dict[str, Any] = {
        "cv": cv,
        "conflicts": n_conflicts,
        "agreement_with_previous": agreement,
        "pseudo_labels": pseudo,
        "representation": representation_record(
            model, features.spec.name, y, np.isin(labeled_rows, random_rows)
        ),
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
    # After publishing (annotators get the new queue first): every item's prediction, for the
    # data browser and the export. Optional: a failure here costs that, not the fit.
    try:
        with threadpool_limits(limits=1):
            write_predictions(folder, version.version, model, X, list(project.label_set))
    except Exception as exc:
        log.warning("model version %s: predictions not written (%s)", version.version, exc)
    log.info("model version %s on %s labels, %s queued", version.version, len(final), len(queue))
    return TrainingOutcome("trained", f"{len(queue)} items queued", version.version)


def _rank(
    project: Project,
    folder: ProjectFolder,
    client: Any,
    pool: Pool,
    model: Any,
    *,
    source: ProjectFeatures,
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
        source=feature_source(source),
    )
    return scale.score_partitioned(
        parts, model, client=client, labeled=pool.labeled, y_labeled=pool.y_labeled, **options
    )


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
        previous = load_artefact(folder, served)
    except NotFoundError:
        return None
    except DamagedArtefactError as exc:  # the comparison is optional, the fit goes on
        log.warning("cannot compare with the served model: %s", exc)
        return None
    rows = previous.get("stop_rows")
    if rows is None or len(rows) != len(stop_rows) or not np.array_equal(rows, stop_rows):
        return None
    return round(prediction_agreement(previous["stop_predictions"], stop_predictions), 6)


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
    transaction that records the version, then writes its predictions
    (``pending-*.predictions.npy``, renamed to ``vNNNNN.predictions.npy``). A worker killed in
    between leaves a pending file, or a version file whose row never committed; neither is ever
    loaded, but they would pile up and mislead whoever reads the folder. Only the worker
    holding the folder's lock writes there, so when it starts, every such file is a leftover
    of a dead one. The predictions of a kept version stay.
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
    kept |= {p.with_name(p.name.removesuffix(".joblib") + ".predictions.npy") for p in kept}
    for pattern in (
        "pending-*.joblib",
        "v*.joblib",
        "pending-*.predictions.npy",
        "v*.predictions.npy",
    ):
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
        failures = 0
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
            # A fit that keeps failing (a damaged file, a full disk) is retried ever less
            # often, up to every FAILURE_BACKOFF_MAX seconds: not twenty failed versions a
            # minute. Any other outcome starts the count again.
            failures = failures + 1 if outcome.status == "failed" else 0
            if outcome.status != "trained":
                stop.wait(min(poll_seconds * 2**failures, FAILURE_BACKOFF_MAX))
    finally:
        lock.release()
