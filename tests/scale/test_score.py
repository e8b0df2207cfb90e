"""The contract: on a cluster, the batch equals the single-machine ``query`` for the same model,
seed and strategy -- rows, order, reasons, utilities, votes -- ties and random draws included.

Pools are small, but cut into uneven partitions (337 rows) and scored in blocks of 256 rows, so
that blocks straddle partitions, shards hold several blocks, and a strategy's top candidates
come from many shards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from labelwise import BatchMix, Pool
from labelwise.exceptions import (
    InvalidDataError,
    InvalidParameterError,
    ModelCapabilityError,
    PoolExhaustedError,
)
from labelwise.models.registry import make_model
from labelwise.scale import score_partitioned, supports, write_partitioned
from labelwise.strategies.among_top import KCenterAmongTop, select_among_top
from labelwise.strategies.backends import CandidateRows, Utility
from labelwise.strategies.base import Selection
from labelwise.strategies.query import query
from labelwise.strategies.sampling import Badge, CoreSet

pytestmark = pytest.mark.slow

ROWS_PER_PARTITION = 337
CHUNK = 256


def _blobs(n: int, d: int, classes: int, seed: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    centers = rng.normal(scale=1.5, size=(classes, d))
    X = (centers[y] + rng.normal(size=(n, d))).astype(dtype)
    return X, y


def _duplicated(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows drawn from 30 prototypes: utilities tie in large groups spread over every shard.
    A fifth of the labels flipped, so that the prototypes are not separable."""
    X_proto, y_proto = _blobs(30, d, 2, seed, np.float64)
    rng = np.random.default_rng(seed + 1)
    pick = rng.integers(0, 30, size=n)
    return X_proto[pick], y_proto[pick] ^ (rng.random(n) < 0.2)


def _case(
    X: Any, y: np.ndarray, tmp_path: Any, *, model: str = "logreg", storage: str | None = None
) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    labeled = np.sort(rng.choice(X.shape[0], size=60, replace=False))
    fitted = make_model(model, random_state=0).fit(X[labeled], y[labeled].astype(str))
    parts = write_partitioned(
        X, tmp_path / "pool", rows_per_partition=ROWS_PER_PARTITION, storage=storage
    )
    pool = Pool(X)
    pool.label(labeled, y[labeled].astype(str))
    return {
        "X": X,
        "pool": pool,
        "parts": parts,
        "model": fitted,
        "template": make_model(model, random_state=0),
    }


def _both(case: dict[str, Any], client: Any, **kw: Any) -> tuple[Any, Any]:
    pool = case["pool"]
    single = query(pool, case["model"], estimator=case["template"], chunk_size=CHUNK, **kw)
    spread = score_partitioned(
        case["parts"],
        case["model"],
        client=client,
        labeled=pool.labeled,
        y_labeled=pool.y_labeled,
        estimator=case["template"],
        chunk_size=CHUNK,
        **kw,
    )
    return single, spread


def _assert_same(single: Any, spread: Any) -> None:
    assert spread.indices.dtype == single.indices.dtype
    np.testing.assert_array_equal(spread.indices, single.indices)
    assert spread.reasons == single.reasons


@pytest.mark.parametrize(
    "strategy",
    [
        "entropy",
        "least_confident",
        "margin+kcenter",
        "entropy+density",
        "default",
        "qbc-kl",
        "random",
    ],
)
def test_dense_multiclass_with_mix(strategy, client, tmp_path):
    case = _case(*_blobs(2400, 6, 3, 0, np.float32), tmp_path)
    mix = BatchMix(exploration=0.1, routine=0.1)
    single, spread = _both(case, client, strategy=strategy, batch_size=12, mix=mix, random_state=3)
    _assert_same(single, spread)
    assert len(set(spread.indices.tolist())) == 12


@pytest.mark.parametrize("strategy", ["margin", "margin+kmeans", "default", "qbc+clusters"])
def test_heavy_ties_binary(strategy, client, tmp_path):
    """30 distinct rows over 2,400: the k-th largest utility is shared by rows in every shard,
    so the tie-break draws over the pool's tied rows that no single shard holds all of."""
    case = _case(*_duplicated(2400, 5, 1), tmp_path)
    for seed in (0, 1):
        single, spread = _both(case, client, strategy=strategy, batch_size=25, random_state=seed)
        _assert_same(single, spread)


@pytest.mark.parametrize("strategy", ["entropy", "qbc"])
def test_candidate_subset_is_scored_gathered(strategy, client, tmp_path):
    """A third of the pool as candidates: the single-machine path gathers its rows in blocks of
    candidates (not in place), and so do the shards."""
    case = _case(*_blobs(2400, 6, 2, 2, np.float64), tmp_path)
    candidates = np.setdiff1d(np.arange(0, 2400, 3), case["pool"].labeled)
    single, spread = _both(
        case, client, strategy=strategy, batch_size=10, candidates=candidates, random_state=5
    )
    _assert_same(single, spread)
    assert set(spread.indices.tolist()) <= set(candidates.tolist())


@pytest.mark.parametrize("strategy", ["margin", "default"])
def test_sparse_pool(strategy, client, tmp_path):
    rng = np.random.default_rng(4)
    X = sp.random(2000, 40, density=0.1, format="csr", random_state=4, dtype=np.float64)
    y = (np.asarray(X[:, :5].sum(axis=1)).ravel() > 0.25).astype(int) + rng.integers(0, 2, 2000)
    case = _case(X, y, tmp_path)
    assert case["parts"].storage == "npz"
    single, spread = _both(case, client, strategy=strategy, batch_size=8, random_state=1)
    _assert_same(single, spread)


@pytest.mark.parametrize("strategy", ["margin+kcenter"])
def test_parquet_pool(strategy, client, tmp_path):
    pytest.importorskip("pyarrow")
    case = _case(*_blobs(1500, 4, 3, 6, np.float32), tmp_path, storage="parquet")
    single, spread = _both(case, client, strategy=strategy, batch_size=10, random_state=2)
    _assert_same(single, spread)


@pytest.mark.parametrize(
    ("model", "strategy"),
    [("svm", "margin"), ("naive-bayes", "entropy")],
)
def test_other_models(model, strategy, client, tmp_path):
    """Models whose scores come from BLAS products over a block of rows (SVM kernels, naive
    Bayes) round a row differently in different blocks: equal only because the shards score
    the single-machine path's blocks."""
    X, y = _blobs(1800, 5, 2, 8, np.float64)
    if model == "naive-bayes":
        X = np.abs(X)
    case = _case(X, y, tmp_path, model=model)
    single, spread = _both(case, client, strategy=strategy, batch_size=10, random_state=0)
    _assert_same(single, spread)


@pytest.mark.parametrize("strategy", [CoreSet(max_candidates=500), Badge(max_candidates=500)])
def test_subsampling_strategies(strategy, client, tmp_path):
    case = _case(*_blobs(2400, 6, 3, 9, np.float32), tmp_path)
    single, spread = _both(case, client, strategy=strategy, batch_size=7, random_state=4)
    _assert_same(single, spread)


def test_subsampling_by_share(client, tmp_path):
    """A share of the candidates (``max_candidates=0.2``) draws the same sample as on one
    machine: the one ``subsample_candidates`` serves both."""
    case = _case(*_blobs(2400, 6, 3, 9, np.float32), tmp_path)
    for strategy in ("coreset(max_candidates=0.2)", "badge(max_candidates=0.1)"):
        single, spread = _both(case, client, strategy=strategy, batch_size=6, random_state=1)
        _assert_same(single, spread)


@dataclass(frozen=True)
class _EntropyOfHalf:
    """A strategy written against the backend only, known to no list of the cluster: entropy
    among a random half of the candidates, spread by k-center."""

    name: str = "entropy-of-half"
    needs_model: bool = True

    def select(self, ctx: Any, batch_size: int, rng: np.random.Generator) -> Any:
        half = CandidateRows(
            np.sort(
                ctx.candidates.take(
                    rng.choice(len(ctx.candidates), size=len(ctx.candidates) // 2, replace=False)
                )
            )
        )
        utility = Utility(ctx.model, scorer="entropy")
        top, positions = select_among_top(
            ctx.among(half), KCenterAmongTop(), utility, batch_size, rng
        )
        return Selection(top.rows[positions], top.utilities[positions])


def test_a_new_strategy_runs_on_the_cluster(client, tmp_path):
    case = _case(*_blobs(2400, 6, 3, 15, np.float32), tmp_path)
    assert supports(_EntropyOfHalf())
    mix = BatchMix(exploration=0.2)
    single, spread = _both(
        case, client, strategy=_EntropyOfHalf(), batch_size=8, mix=mix, random_state=2
    )
    _assert_same(single, spread)


def test_generator_is_consumed_alike(client, tmp_path):
    """A generator passed in ends in the same state: a loop of queries stays in step."""
    case = _case(*_blobs(1200, 4, 3, 10, np.float32), tmp_path)
    rng_single, rng_spread = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(2):
        single, spread = (
            query(
                case["pool"],
                case["model"],
                strategy="default",
                batch_size=9,
                random_state=rng_single,
                chunk_size=CHUNK,
            ),
            score_partitioned(
                case["parts"],
                case["model"],
                client=client,
                labeled=case["pool"].labeled,
                y_labeled=case["pool"].y_labeled,
                strategy="default",
                batch_size=9,
                random_state=rng_spread,
                chunk_size=CHUNK,
            ),
        )
        _assert_same(single, spread)
    assert rng_single.random() == rng_spread.random()


def test_the_bandit_plays_and_learns_alike(client, tmp_path):
    """The bandit over rounds: its reward (fits on the labeled rows, here on the client) and
    its arm's selection (on the cluster) give the single machine's batches and state."""
    from labelwise.strategies.bandit import find_bandit
    from labelwise.strategies.factory import make_strategy

    X, y = _blobs(1500, 5, 3, 21, np.float32)
    y = y.astype(str)
    parts = write_partitioned(X, tmp_path / "pool", rows_per_partition=ROWS_PER_PARTITION)
    rng = np.random.default_rng(4)
    seed = np.sort(rng.choice(len(X), size=30, replace=False))
    pool = Pool(X)
    pool.label(seed, y[seed])
    single_strategy, spread_strategy = make_strategy("bandit"), make_strategy("bandit")
    single_bandit, spread_bandit = find_bandit(single_strategy), find_bandit(spread_strategy)
    assert single_bandit is not None and spread_bandit is not None
    random_sample = seed.copy()
    arms = []
    for round_ in range(4):
        model = make_model("logreg", random_state=0).fit(X[pool.labeled], pool.y_labeled)
        kw = {
            "batch_size": 15,
            "random_state": round_,
            "chunk_size": CHUNK,
            "random_sample": random_sample,
            "estimator": make_model("logreg", random_state=0),
        }
        single = query(pool, model, strategy=single_strategy, **kw)
        spread = score_partitioned(
            parts,
            model,
            client=client,
            labeled=pool.labeled,
            y_labeled=pool.y_labeled,
            strategy=spread_strategy,
            **kw,
        )
        _assert_same(single, spread)
        assert spread_bandit.state_dict() == single_bandit.state_dict()
        arms.append(spread_bandit.last_arm)
        explored = [
            i for i, kind in zip(spread.indices, spread.kinds, strict=True) if kind == "exploration"
        ]
        random_sample = np.union1d(random_sample, explored).astype(np.intp)
        pool.label(spread.indices, y[spread.indices])
    assert sum(len(r) for r in spread_bandit.rewards.values()) >= 2, spread_bandit.rewards
    assert arms[0] is not None


def test_cold_start_is_random_and_equal(client, tmp_path):
    X, y = _blobs(900, 4, 2, 12, np.float32)
    parts = write_partitioned(X, tmp_path / "pool", rows_per_partition=200)
    pool = Pool(X)
    pool.label([3, 5], ["a", "a"])  # one class only
    single = query(pool, None, batch_size=6, random_state=0)
    spread = score_partitioned(
        parts,
        None,
        client=client,
        labeled=[5, 3],
        y_labeled=["a", "a"],
        batch_size=6,
        random_state=0,
    )
    _assert_same(single, spread)
    assert spread.kinds == ("cold-start",) * 6


def test_workers_keep_nothing_after_a_query(client, tmp_path):
    case = _case(*_blobs(1200, 4, 2, 13, np.float32), tmp_path)
    _both(case, client, strategy="qbc", batch_size=5, random_state=0)
    deadline = time.monotonic() + 10
    while client.who_has() and time.monotonic() < deadline:  # releasing is asynchronous
        time.sleep(0.05)
    assert not client.who_has()


def test_errors_name_what_is_wrong(client, tmp_path):
    case = _case(*_blobs(600, 4, 2, 14, np.float32), tmp_path)
    parts, model, pool = case["parts"], case["model"], case["pool"]
    kw = {"client": client, "labeled": pool.labeled, "y_labeled": pool.y_labeled}
    assert not supports("bald")
    with pytest.raises(InvalidParameterError, match="'bald' cannot run on a cluster"):
        score_partitioned(parts, model, strategy="bald", **kw)
    with pytest.raises(PoolExhaustedError, match="only 540 unlabeled"):
        score_partitioned(parts, model, batch_size=541, **kw)
    with pytest.raises(InvalidParameterError, match=f"candidate {pool.labeled[0]} is already"):
        score_partitioned(parts, model, candidates=pool.labeled[:2], **kw)
    with pytest.raises(InvalidParameterError, match="60 labeled rows but 59 labels"):
        score_partitioned(
            parts, model, client=client, labeled=pool.labeled, y_labeled=pool.y_labeled[1:]
        )
    with pytest.raises(InvalidParameterError, match="batch_size must be at least 1"):
        score_partitioned(parts, model, batch_size=0, **kw)
    with pytest.raises(InvalidParameterError, match="must be a PartitionedPool"):
        score_partitioned(case["X"], model, **kw)
    other = make_model("logreg").fit(case["X"][:40, :3], np.arange(40) % 2)
    with pytest.raises(InvalidDataError, match="fitted on 3 features but the pool has 4"):
        score_partitioned(parts, other, **kw)
    no_proba = make_model("svm").fit(case["X"][pool.labeled], pool.y_labeled)
    with pytest.raises(ModelCapabilityError, match="has no predict_proba"):
        score_partitioned(parts, no_proba, strategy="entropy", **kw)
