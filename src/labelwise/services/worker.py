"""The worker: retrains when enough new labels arrived, then publishes a new ranked queue.

One cycle (:func:`train_once`) runs in three steps:

1. **read** (:func:`labelwise.services.training.read_snapshot`, one transaction): the training
   labels (adjudications, else agreeing answers; conflicts wait for review), the served version, and
   -- when ``retrain_every`` labels arrived since it (or, for the first fit, ten labels of at least
   two classes) -- which items are answered, waiting for a second opinion or for an audit: a
   :class:`~labelwise.services.training.TrainingSnapshot` of one moment;
2. **fit and rank** (:func:`labelwise.services.cycle.fit_cycle`, no database): fit a clone of the
   project's model on the snapshot's labels, estimate its quality by cross-validation, score
   the open items with the project's strategy and batch mix, add what the annotator is shown
   to every reason, and mix in second opinions and audits;
3. **publish** (:func:`publish`): the artefact file, then the version, its metrics and its
   queue in one write transaction, then every item's prediction.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
from sqlalchemy import select
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from labelwise import label_sets
from labelwise.exceptions import NotFoundError
from labelwise.services.cycle import CycleResult, cold_start_queue, fit_cycle
from labelwise.services.training import FIRST_FIT, TrainingSnapshot, read_snapshot
from labelwise.store.db import Database
from labelwise.store.features import ProjectFeatures, project_features
from labelwise.store.folder import ProjectFolder
from labelwise.store.models import ModelVersion
from labelwise.store.pool_index import PoolItems
from labelwise.store.prediction_cache import write_predictions
from labelwise.store.projects import get_project
from labelwise.store.versions import (
    COLD_START,
    DamagedArtefactError,
    QueuedItem,
    load_artefact,
    record_failure,
    record_version,
)

__all__ = ["FIRST_FIT", "TrainingOutcome", "run_worker", "sweep_artefacts", "train_once"]

log = logging.getLogger("labelwise.services.worker")

#: The longest wait, in seconds, between retries of a fit that keeps failing.
FAILURE_BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class TrainingOutcome:
    """What one cycle did: ``"trained"``, ``"failed"`` or ``"idle"`` (with why)."""

    status: str
    detail: str
    version: int | None = None


def train_once(
    folder: ProjectFolder, db: Database, *, force: bool = False, client: Any = None
) -> TrainingOutcome:
    """Run one worker cycle for the folder's project (see the module docstring).

    The steps: read a :class:`~labelwise.services.training.TrainingSnapshot` (one transaction),
    build the features, fit and rank on them (:func:`labelwise.services.cycle.fit_cycle`, no
    database), then publish (:func:`publish`: one write transaction, then the predictions file).
    With a ``distributed.Client``, the pool is scored on its Dask cluster (the same queue as on this
    machine, see :mod:`labelwise.scale`).
    """
    snapshot = read_snapshot(db, folder, force=force)
    if snapshot.plan == "idle":
        return TrainingOutcome("idle", snapshot.idle_detail)
    if snapshot.plan == COLD_START:
        return _guarded(db, snapshot, lambda: _cold_start(folder, db, snapshot))
    log.info(
        "fitting %s on %s labels (%s new)",
        snapshot.settings.model,
        len(snapshot.labels),
        snapshot.new_labels,
    )

    def fit_and_publish() -> TrainingOutcome:
        # Inside the guard: a pool that cannot be featurized is a failed cycle, not a dead
        # worker. The features are built only now: a poll that decides not to fit stays cheap.
        features, items = _features(folder, db, snapshot)
        result = fit_cycle(
            snapshot,
            features,
            items,
            previous=lambda: _served_artefact(folder, snapshot),
            partitions=folder.features_dir / "partitions",
            client=client,
        )
        return publish(folder, db, snapshot, result, features)

    return _guarded(db, snapshot, fit_and_publish)


def _features(
    folder: ProjectFolder, db: Database, snapshot: TrainingSnapshot
) -> tuple[ProjectFeatures, PoolItems]:
    """The pool's features, and its items read on demand (contents and previews, which never
    change for a row)."""
    with db.read() as session:
        project = get_project(session, project_id=snapshot.project_id)
        features = project_features(session, project, folder)
    return features, PoolItems(db, project, folder)


def _guarded(
    db: Database, snapshot: TrainingSnapshot, step: Callable[[], TrainingOutcome]
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
                get_project(session, project_id=snapshot.project_id),
                n_labels=len(snapshot.labels),
                strategy=snapshot.settings.strategy,
                model_name=snapshot.settings.model,
                error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}",
            )
        return TrainingOutcome("failed", str(exc), version.version)


def _cold_start(folder: ProjectFolder, db: Database, snapshot: TrainingSnapshot) -> TrainingOutcome:
    """Before the first model: publish the queue of typical items
    (:func:`labelwise.services.cycle.cold_start_queue`) as a version of status "cold-start" (no
    model); a new one follows when the pool grows, until the first fit."""
    features, items = _features(folder, db, snapshot)
    queue = cold_start_queue(snapshot, features, items)
    with db.write() as session:
        version = _record_version(
            session,
            snapshot,
            metrics={"n_items": int(features.X.shape[0]), "features": features.spec.name},
            strategy="typical",
            artefact=None,
            fit_seconds=0.0,
            queue=queue,
            status=COLD_START,
        )
    return TrainingOutcome(COLD_START, f"{len(queue)} typical items queued", version.version)


def _record_version(session: Session, snapshot: TrainingSnapshot, **fields: Any) -> ModelVersion:
    """:func:`~labelwise.store.versions.record_version` for the snapshot's project, with what
    the snapshot says: its labels (how many, of each label) and the model's name."""
    return record_version(
        session,
        get_project(session, project_id=snapshot.project_id),
        n_labels=len(snapshot.labels),
        label_counts=label_counts(snapshot),
        model_name=snapshot.settings.model,
        **fields,
    )


def label_counts(snapshot: TrainingSnapshot) -> dict[str, int]:
    """How many labeled items carry each label (in a multi-label project an item counts for
    every label of its set, so the counts may add up to more or fewer than the items)."""
    if not snapshot.settings.multi_label:
        return dict(Counter(snapshot.labels.values()))
    counts = Counter(
        name for value in snapshot.labels.values() for name in label_sets.decode(value)
    )
    return {label: counts[label] for label in snapshot.label_set}


def _served_artefact(folder: ProjectFolder, snapshot: TrainingSnapshot) -> dict[str, Any] | None:
    """The served model's file, to compare the new predictions with; None when there is none
    or it cannot be read (the comparison is optional, the fit goes on)."""
    served = snapshot.fitted
    if served is None or not served.artefact:
        return None
    version = ModelVersion(version=served.version, status=served.status, artefact=served.artefact)
    try:
        # A row pointing outside models/ (or a symlink out of it) raises: never unpickled.
        return load_artefact(folder, version)
    except NotFoundError:
        return None
    except DamagedArtefactError as exc:
        log.warning("cannot compare with the served model: %s", exc)
        return None


def publish(
    folder: ProjectFolder,
    db: Database,
    snapshot: TrainingSnapshot,
    result: CycleResult,
    features: ProjectFeatures,
) -> TrainingOutcome:
    """Make a fit the served version: its model file, then its version, metrics and queue in
    one write transaction, then every item's prediction.

    The model file is written under a temporary name (``models/pending-*.joblib``) and synced
    to disk; it takes its version's name inside the transaction that records the version, so
    the two always match (a worker killed in between leaves files that
    :func:`sweep_artefacts` removes). The predictions come after, once annotators have the new
    queue: a failure there costs them, not the fit.
    """
    pending = folder.models_dir / f"pending-{uuid.uuid4().hex}.joblib"
    try:
        with pending.open("wb") as fh:
            joblib.dump(result.artefact, fh)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename that publishes it
    except BaseException:
        pending.unlink(missing_ok=True)  # a full disk leaves no empty file behind
        raise
    queue: list[QueuedItem] = result.queue
    try:
        with db.write() as session:
            version = _record_version(
                session,
                snapshot,
                metrics=result.metrics,
                strategy=snapshot.settings.strategy,
                artefact=str(pending.relative_to(folder.root)),
                fit_seconds=result.fit_seconds,
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
            write_predictions(
                folder, version.version, result.model, features.X, list(snapshot.label_set)
            )
    except Exception as exc:
        log.warning("model version %s: predictions not written (%s)", version.version, exc)
    log.info(
        "model version %s on %s labels, %s queued",
        version.version,
        len(snapshot.labels),
        len(queue),
    )
    return TrainingOutcome("trained", f"{len(queue)} items queued", version.version)


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
    :func:`labelwise.store.media.sweep_media`); returns what was removed."""
    from labelwise.services.transfer import sweep_media

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
