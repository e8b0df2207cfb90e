"""A multi-label strategy picks the same rows, with the same reasons, on a cluster as on one
machine: the utilities (the cardinality predictor of ``mmc`` shipped with them), the label-set
committee's votes and the multi-label reasons. The pool is small but cut into uneven partitions
scored in blocks that straddle them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from labelwise import BatchMix, Pool, label_sets
from labelwise.models.multilabel import LabelSetClassifier
from labelwise.scale import score_partitioned, supports, write_partitioned
from labelwise.scale.backend import PartitionedBackend
from labelwise.strategies.backends import MatrixBackend, Utility
from labelwise.strategies.query import query

pytestmark = pytest.mark.slow

LABELS = ["insult", "spam", "threat"]
CHUNK = 128


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(700, 5))
    Y = (X[:, :3] + 0.6 * rng.normal(size=(700, 3)) > 0.3).astype(int)
    y = np.asarray(label_sets.from_indicator(Y, LABELS), dtype=object)
    labeled = np.sort(rng.choice(len(X), 60, replace=False))
    pool = Pool(X)
    pool.label(labeled, y[labeled])
    template = LabelSetClassifier(LogisticRegression(max_iter=500), LABELS)
    parts = write_partitioned(X, tmp_path_factory.mktemp("ml") / "pool", rows_per_partition=173)
    return {
        "pool": pool,
        "parts": parts,
        "template": template,
        "model": clone(template).fit(X[labeled], y[labeled]),
    }


@pytest.mark.parametrize(
    "strategy",
    ["mean-margin", "min-margin+density", "mmc+clusters", "lci+kcenter", "qbc", "default"],
)
def test_multi_label_batch_is_the_same_on_a_cluster(case, client, strategy):
    assert supports(strategy)
    kw = {
        "strategy": strategy,
        "batch_size": 7,
        "random_state": 5,
        "estimator": case["template"],
        "chunk_size": CHUNK,
        "mix": BatchMix(exploration=0.2, routine=0.2),
    }
    pool = case["pool"]
    single = query(pool, case["model"], **kw)
    spread = score_partitioned(
        case["parts"],
        case["model"],
        client=client,
        labeled=pool.labeled,
        y_labeled=pool.y_labeled,
        **kw,
    )
    np.testing.assert_array_equal(spread.indices, single.indices)
    assert spread.reasons == single.reasons
    assert all(r.details["thresholds"] for r in single.reasons)


@pytest.mark.parametrize("spare", [0, 1])
def test_a_shortlist_of_nearly_every_candidate(case, client, spare):
    """Shards smaller than the shortlist keep every row (a density selector's shortlist of up to
    1000 rows covers a small pool): the client must not lose the rows on a shard's own lowest
    utility when that lies above the pool's k-th largest."""
    pool = case["pool"]
    backend = MatrixBackend(pool.X, CHUNK)
    spread = PartitionedBackend(client, case["parts"], CHUNK)
    utility = Utility(case["model"], scorer="min_margin")
    mine = backend.candidates(None, pool.labeled)
    theirs = spread.candidates(None, pool.labeled)
    k = len(mine) - spare
    try:
        single = backend.top(utility, mine, k, np.random.default_rng(3))
        cluster = spread.top(utility, theirs, k, np.random.default_rng(3))
    finally:
        spread.close()
    np.testing.assert_array_equal(cluster.rows, single.rows)
    np.testing.assert_array_equal(cluster.utilities, single.utilities)
