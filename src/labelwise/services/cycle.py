"""One worker cycle's work, with no database: a snapshot and the features in, a model and a
ranked queue out.

:func:`fit_cycle` fits the project's model on a
:class:`~labelwise.services.training.TrainingSnapshot`'s labels, estimates its quality by
cross-validation, compares it with the served model, goes on from the served bandit's state, ranks
the open items with the project's strategy and batch mix, groups near-duplicates, adds to every
reason what the annotator is shown about it (:mod:`labelwise.services.why`), and mixes in second
opinions and audits. :func:`cold_start_queue` is the queue before any model. Items are read through
an :class:`~labelwise.services.why.ItemSource` (the project's, read on demand; or one held in
memory), the features from their files: the database is the worker's business
(:mod:`labelwise.services.worker`), read before and written after.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from labelwise import label_sets
from labelwise.features.scaling import PoolStatistics, pool_statistics
from labelwise.learning.evaluate import score_predictions
from labelwise.learning.multilabel_metrics import multilabel_scores
from labelwise.learning.stopping import prediction_agreement
from labelwise.models.auto import AutoRepresentation, macro_f1
from labelwise.models.semi import fit_model, unlabeled_sample
from labelwise.pool import Pool
from labelwise.services.drivers import explanations
from labelwise.services.training import TrainingSnapshot
from labelwise.services.why import (
    ItemSource,
    duplicate_groups,
    neighbour_space,
    pseudo_labels,
    queue_entries,
    similarity_floor,
)
from labelwise.store.features import ProjectFeatures, feature_source, model_template
from labelwise.store.versions import QueuedItem
from labelwise.strategies.bandit import find_bandit
from labelwise.strategies.factory import make_strategy
from labelwise.strategies.query import Batch, BatchMix, query
from labelwise.strategies.reasons import Kind, Reason
from labelwise.strategies.selectors import typical_points

__all__ = ["STOP_SET_SIZE", "CycleResult", "cold_start_queue", "fit_cycle"]

log = logging.getLogger("labelwise.services.worker")

#: Cross-validation is skipped above this many labels (it would cost five more fits).
_CV_LIMIT = 5000
#: Items on which successive models' predictions are compared (stabilizing predictions).
STOP_SET_SIZE = 1000


@dataclass(frozen=True)
class CycleResult:
    """What a fit produced, ready to publish.

    Attributes
    ----------
    model : estimator
        The fitted model.
    artefact : dict
        What its model file holds (see :func:`labelwise.store.versions.load_artefact`).
    metrics : dict
        The version's metrics: cross-validation, conflicts, agreement with the served model,
        pseudo-labels, the representation chosen, the bandit's state.
    queue : list of QueuedItem
        The ranked queue, each entry with its reason.
    fit_seconds : float
        How long the fit and its cross-validation took.
    """

    model: Any
    artefact: dict[str, Any]
    metrics: dict[str, Any]
    queue: list[QueuedItem]
    fit_seconds: float


def fit_cycle(
    snapshot: TrainingSnapshot,
    features: ProjectFeatures,
    items: ItemSource,
    *,
    previous: Callable[[], dict[str, Any] | None] = lambda: None,
    partitions: Path | None = None,
    client: Any = None,
) -> CycleResult:
    """Fit on ``snapshot``'s labels and rank its open items (see the module docstring).

    ``previous``: reads the served model's file (its ``stop_rows`` and ``stop_predictions``),
    to measure how much the predictions moved (read after the fit: one model in memory at a
    time while fitting); ``client`` a ``distributed.Client`` whose cluster
    scores the pool from a partitioned copy of the features kept in ``partitions``.
    """
    settings = snapshot.settings
    X = features.X
    final, row_of = snapshot.labels, snapshot.rows
    pool = Pool(X, classes=list(snapshot.label_set), validate=False)
    labeled_rows = np.asarray(sorted(row_of[i] for i in final), dtype=np.intp)
    labels_by_row = {row_of[i]: v for i, v in final.items()}
    pool.label(labeled_rows, [labels_by_row[r] for r in labeled_rows])
    y = np.asarray([labels_by_row[r] for r in labeled_rows], dtype=object).astype(str)

    statistics = _statistics(features)
    labels = list(snapshot.label_set) if settings.multi_label else None
    template = model_template(settings, features, statistics, labels=snapshot.label_set)
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
        cv = _chosen_cv(model, y, labels) or _cv_metrics(template, X_lab, y, labels)
    fit_seconds = time.perf_counter() - start
    pseudo = pseudo_labels(model, extra, items)
    random_rows = np.asarray(
        sorted(row_of[i] for i in snapshot.random_ids if i in final), dtype=np.intp
    )

    stop_rows = _stop_set(X.shape[0], settings.seed)
    stop_predictions = np.asarray(model.predict(X[stop_rows])).astype(str)

    # Open items: nobody's answer yet. Items answered once that wait for a second answer are
    # queued apart as second opinions; audit items of triage too, blind (neither the model's
    # guess nor the decision is shown), at random places.
    answered = [*snapshot.answered_rows, *(a.row for a in snapshot.audits)]
    open_rows = _open_rows(snapshot.n_rows, [*answered, *labeled_rows.tolist()])
    second = snapshot.second_opinions
    rng = np.random.default_rng([settings.seed, snapshot.next_version])
    queue: list[QueuedItem] = []
    strategy = make_strategy(settings.strategy, multi_label=settings.multi_label)
    bandit = find_bandit(strategy)
    if bandit is not None:
        bandit.load_state(snapshot.bandit_state)
    if len(open_rows):
        batch = _rank(
            pool,
            model,
            client=client,
            partitions=partitions,
            source=features,
            strategy=strategy,
            batch_size=min(settings.queue_size, len(open_rows)),
            mix=BatchMix(exploration=settings.exploration, routine=settings.routine),
            random_state=rng,
            estimator=template,
            candidates=open_rows,
            random_sample=random_rows,
        )
        n_second = min(len(second), max(1, round(settings.overlap * settings.queue_size)))
        picks: list[int] = rng.permutation(len(second))[:n_second].tolist() if second else []
        space = neighbour_space(features, statistics)
        duplicates = duplicate_groups(
            features,
            space,
            batch.indices,
            open_rows,
            items,
            threshold=settings.duplicate_similarity,
            k=settings.max_group,
        )
        queue = queue_entries(
            batch,
            space,
            items,
            labeled_rows,
            labels_by_row,
            floor=similarity_floor(space, np.random.default_rng([settings.seed, 11])),
            explained=explanations(
                features, items.folder, model, batch.indices, items, labeled_rows
            ),
            duplicates=duplicates,
        )
        queue = _insert_at_random(queue, [second[i] for i in picks], Kind.OVERLAP, rng)
    queue = _insert_at_random(queue, [a.id for a in snapshot.audits], Kind.AUDIT, rng)

    metrics: dict[str, Any] = {
        "cv": cv,
        "conflicts": snapshot.n_conflicts,
        "agreement_with_previous": _agreement(previous(), stop_rows, stop_predictions),
        "pseudo_labels": pseudo,
        "representation": representation_record(
            model, features.spec.name, y, np.isin(labeled_rows, random_rows), labels
        ),
    }
    if bandit is not None:
        metrics["bandit"] = {"state": bandit.state_dict(), "arms": bandit.summary()}
    artefact = {
        "model": model,
        "classes": list(model.classes_),
        "stop_rows": stop_rows,
        "stop_predictions": stop_predictions,
        # What the model was fitted on: predictions with it (labelwise.store.served) are
        # refused once these features are no longer the same (a TF-IDF rebuilt for new items).
        "features": feature_source(features),
    }
    return CycleResult(model, artefact, metrics, queue, fit_seconds)


def cold_start_queue(
    snapshot: TrainingSnapshot, features: ProjectFeatures, items: ItemSource
) -> list[QueuedItem]:
    """Before the first model: the most typical open item of each of ``queue_size`` regions of
    the pool (:func:`labelwise.strategies.selectors.typical_points`, TypiClust), in the space where
    items are compared (the embedding when there is one), so the first labels cover the pool instead
    of a random draw's clumps."""
    settings = snapshot.settings
    labeled = {snapshot.rows[i] for i in snapshot.labels if i in snapshot.rows}
    open_rows = _open_rows(snapshot.n_rows, [*snapshot.answered_rows, *labeled])
    if not len(open_rows):
        return []
    space = neighbour_space(features)
    rng = np.random.default_rng([settings.seed, len(open_rows), 3])
    k = min(settings.queue_size, len(open_rows))
    picked = open_rows[typical_points(_RowsOf(space, open_rows), k, rng)]
    items.prefetch(picked.tolist())
    reason = Reason.of(Kind.TYPICAL)
    return [
        QueuedItem(items[int(row)].id, rank, Kind.TYPICAL.value, None, None, reason)
        for rank, row in enumerate(picked)
    ]


def _open_rows(n_rows: int, exclude_rows: list[int]) -> np.ndarray:
    """Rows of the pool less ``exclude_rows``, ascending: a mask, never a list of items."""
    mask = np.ones(n_rows, dtype=bool)
    mask[np.asarray(exclude_rows, dtype=np.intp)] = False
    return np.flatnonzero(mask)


class _RowsOf:
    """Rows ``rows`` of a space, as a matrix of their own (what ``typical_points`` reads)."""

    def __init__(self, space: Any, rows: np.ndarray) -> None:
        self.space = space
        self.rows = rows
        self.shape = (len(rows), space.shape[1])

    def __getitem__(self, picked: Any) -> Any:
        return self.space[self.rows[np.asarray(picked)]]


def _cv_metrics(
    template: Any, X: Any, y: np.ndarray, labels: list[str] | None = None
) -> dict[str, Any] | None:
    if len(y) > _CV_LIMIT:
        return None
    if labels is not None:
        # Label sets: shuffled folds of at least ten items (too many sets to stratify on).
        folds = min(5, len(y) // 10)
        if folds < 2:
            return None
        cv: Any = KFold(n_splits=folds, shuffle=True, random_state=0)
        return _set_scores(y, cross_val_predict(clone(template), X, y, cv=cv), labels)
    counts = Counter(y.tolist())
    folds = min(5, min(counts.values()))
    if folds < 2:
        return None
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    pred = cross_val_predict(clone(template), X, y, cv=cv)
    return score_predictions(y, pred, labels=sorted(counts)).to_dict()


def _set_scores(y: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Multi-label scores of predicted label sets (stored form), marked as such."""
    scores = multilabel_scores(
        label_sets.to_indicator([str(v) for v in y], labels),
        label_sets.to_indicator([str(v) for v in predicted], labels),
        labels,
    ).to_dict()
    return {**scores, "multi_label": True}


def _chosen_cv(model: Any, y: np.ndarray, labels: list[str] | None = None) -> dict[str, Any] | None:
    """The cross-validated metrics of an ``auto`` model's choice, from its own comparison."""
    if not isinstance(model, AutoRepresentation) or not model.scores_:
        return None
    truth = y[model.cv_rows_]
    predicted = model.cv_predictions_[model.choice_]
    if labels is not None:
        return _set_scores(truth, predicted, labels)
    return score_predictions(truth, predicted, labels=sorted(set(y.tolist()))).to_dict()


def representation_record(
    model: Any,
    features: str,
    y: np.ndarray,
    random: np.ndarray,
    labels: list[str] | None = None,
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
            name: round(macro_f1(truth, predicted[unbiased], labels), 4)
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
    queue: list[QueuedItem], item_ids: list[int], kind: Kind, rng: np.random.Generator
) -> list[QueuedItem]:
    """Items queued apart from the strategy's picks (second opinions, audits), without a
    prediction, at random places of the queue (not all at the end, so they cannot be told by
    their position); then the queue re-ranked."""
    if not item_ids:
        return queue
    entries = list(queue)
    for item_id in item_ids:
        at = int(rng.integers(0, len(entries) + 1))
        entries.insert(at, QueuedItem(item_id, 0, kind.value, None, None, Reason.of(kind)))
    return [
        QueuedItem(e.item_id, r, e.kind, e.utility, e.predicted, e.reason)
        for r, e in enumerate(entries)
    ]


def _rank(
    pool: Pool,
    model: Any,
    *,
    client: Any,
    partitions: Path | None,
    source: ProjectFeatures,
    **options: Any,
) -> Batch:
    """The queue's batch: :func:`~labelwise.strategies.query.query` here, or the same batch scored
    on the client's Dask cluster from a partitioned copy of the features (in ``partitions``,
    rewritten when the features change)."""
    from labelwise import scale

    if client is None or partitions is None or not scale.supports(options["strategy"]):
        if client is not None:
            log.warning("strategy %s cannot run on a cluster: ranking here", options["strategy"])
        return query(pool, model, **options)
    parts = scale.ensure_partitioned(pool.X, partitions, source=feature_source(source))
    return scale.score_partitioned(
        parts, model, client=client, labeled=pool.labeled, y_labeled=pool.y_labeled, **options
    )


def _stop_set(n_items: int, seed: int) -> np.ndarray:
    """A fixed random sample of rows: the same for every version while the pool is unchanged."""
    rng = np.random.default_rng([seed, n_items, 7])
    return np.sort(rng.choice(n_items, size=min(STOP_SET_SIZE, n_items), replace=False))


def _agreement(
    previous: dict[str, Any] | None, stop_rows: np.ndarray, stop_predictions: np.ndarray
) -> float | None:
    """Cohen's kappa between the served model's predictions on the stop set and the new ones
    (None when there is no served model or the pool changed since)."""
    rows = previous.get("stop_rows") if previous is not None else None
    if previous is None or rows is None:
        return None
    if len(rows) != len(stop_rows) or not np.array_equal(rows, stop_rows):
        return None
    return round(prediction_agreement(previous["stop_predictions"], stop_predictions), 6)
