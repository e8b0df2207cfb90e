"""query(): batch mix, reasons, cold start, exploration and routine items."""

import json

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from labelwise import BatchMix, InvalidParameterError, Pool
from labelwise.strategies.query import describe_reason, percent, query
from labelwise.strategies.sampling import Explore
from labelwise.strategies.utility import UncertaintySampling


@pytest.fixture(scope="module")
def setup():
    X, y = make_classification(n_samples=400, n_features=5, n_informative=3, random_state=1)
    y = np.where(y == 1, "spam", "ham").astype(object)
    pool = Pool(X)
    labeled = np.arange(40)
    pool.label(labeled, y[labeled])
    model = LogisticRegression().fit(X[labeled], y[labeled].astype(str))
    return X, y, pool, model


def test_cold_start_queries_randomly_and_says_so():
    X = np.random.default_rng(0).normal(size=(50, 3))
    pool = Pool(X)
    pool.label([0, 1, 2], ["a", "a", "a"])
    batch = query(pool, None, strategy="margin", batch_size=5, random_state=0)
    assert len(batch) == 5
    assert set(batch.kinds) == {"cold-start"}
    assert "fewer than two classes" in batch.reasons[0].summary


def test_cold_start_when_model_given_but_one_class_labeled():
    X = np.random.default_rng(0).normal(size=(50, 3))
    pool = Pool(X)
    pool.label([0, 1], ["a", "a"])
    model = LogisticRegression().fit(X[:4], ["a", "b", "a", "b"])
    batch = query(pool, model, strategy="entropy", batch_size=3, random_state=0)
    assert set(batch.kinds) == {"cold-start"}


def test_margin_reasons_give_the_class_split(setup):
    X, y, pool, model = setup
    batch = query(pool, model, strategy="margin", batch_size=3, random_state=0)
    top = batch.reasons[0]
    assert top.kind == "strategy" and top.rank == 1 and top.strategy == "margin"
    labels = [label for label, _ in top.class_split]
    assert set(labels) == {"spam", "ham"}
    assert sum(v for _, v in top.class_split) == pytest.approx(1.0)
    assert top.summary.startswith("the model gives ")
    (a, pa), (b, pb) = top.class_split
    assert top.summary == f"the model gives {percent(pa)}% to {a} and {percent(pb)}% to {b}"
    # The top pick is the most uncertain: its split is closest to 50/50.
    proba = model.predict_proba(X[batch.indices])
    gaps = np.abs(proba[:, 0] - proba[:, 1])
    assert gaps[0] == pytest.approx(gaps.min())
    json.dumps([r.to_dict() for r in batch.reasons])  # serialisable for the app


def test_a_three_class_sentence_gives_the_bars_numbers_never_the_top_two_renormalised():
    X, y = make_classification(
        n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=2
    )
    names = np.asarray(["positive", "neutral", "negative"], dtype=object)[y]
    pool = Pool(X)
    pool.label(np.arange(60), names[:60])
    model = LogisticRegression().fit(X[:60], names[:60].astype(str))
    batch = query(pool, model, strategy="margin", batch_size=5, random_state=0)
    for reason in batch.reasons:
        assert len(reason.class_split) == 3
        shares = [f"{percent(p)}% to {label}" for label, p in reason.class_split]
        assert reason.summary == f"the model gives {shares[0]}, {shares[1]} and {shares[2]}"
    # 42/31/27 is said as it is shown, not as 58/42 of the first two
    split = (("positive", 0.42), ("neutral", 0.31), ("negative", 0.27))
    said = describe_reason("strategy", split, "proba", {})
    assert said == "the model gives 42% to positive, 31% to neutral and 27% to negative"
    # with more classes than the split lists, what the others share is said too
    split = (("a", 0.42), ("b", 0.31), ("c", 0.12))
    said = describe_reason("strategy", split, "proba", {})
    assert said == "the model gives 42% to a, 31% to b, 12% to c and 15% to the other classes"


@pytest.mark.parametrize(
    ("p", "shown"), [(0.425, 43), (0.005, 1), (0.0049, 0), (0.125, 13), (0.995, 100), (0.58, 58)]
)
def test_percent_rounds_as_the_page_bars_do(p, shown):
    # the bars write (100 * p).toFixed(0): half up on the double's exact value
    assert percent(p) == shown


def test_decision_value_reasons(setup):
    X, y, pool, _ = setup
    svm = SVC().fit(X[:40], y[:40].astype(str))
    batch = query(pool, svm, strategy="margin", batch_size=2, random_state=0)
    r = batch.reasons[0]
    assert r.output_kind == "decision"
    assert "close to the boundary" in r.summary


def test_committee_reasons_show_votes(setup):
    X, y, pool, model = setup
    batch = query(
        pool, model, strategy="qbc", batch_size=4, random_state=0, estimator=LogisticRegression()
    )
    votes = batch.reasons[0].details["votes"]
    assert sum(votes.values()) == 5
    assert batch.reasons[0].summary.startswith("the committee disagrees")


def test_coreset_reasons_mention_distance(setup):
    X, y, pool, model = setup
    batch = query(pool, model, strategy="coreset", batch_size=2, random_state=0)
    assert "nearest labeled item" in batch.reasons[0].summary


@pytest.mark.parametrize(("exploration", "routine"), [(0.3, 0.0), (0.0, 0.3), (0.2, 0.2)])
def test_batch_mix_fractions_hold_in_expectation(setup, exploration, routine):
    X, y, pool, model = setup
    mix = BatchMix(exploration=exploration, routine=routine)
    counts = {"exploration": 0, "routine": 0, "strategy": 0}
    for seed in range(40):
        batch = query(pool, model, strategy="margin", batch_size=10, mix=mix, random_state=seed)
        assert len(set(batch.indices.tolist())) == 10
        for kind in batch.kinds:
            counts[kind] += 1
    assert counts["exploration"] / 400 == pytest.approx(exploration, abs=0.06)
    assert counts["routine"] / 400 == pytest.approx(routine, abs=0.06)


def test_exploration_happens_with_batches_of_one(setup):
    X, y, pool, model = setup
    kinds = [
        query(
            pool,
            model,
            strategy="margin",
            batch_size=1,
            mix=BatchMix(exploration=0.5),
            random_state=s,
        ).kinds[0]
        for s in range(60)
    ]
    assert 15 < kinds.count("exploration") < 45


def test_routine_items_are_confident(setup):
    X, y, pool, model = setup
    batch = query(
        pool, model, strategy="margin", batch_size=10, mix=BatchMix(routine=0.5), random_state=0
    )
    proba = model.predict_proba(X[batch.indices]).max(axis=1)
    routine = np.array([k == "routine" for k in batch.kinds])
    assert routine.any()
    assert proba[routine].min() > proba[~routine].max()
    assert "routine check" in batch.reasons[int(np.flatnonzero(routine)[0])].summary


def test_exploration_items_are_uniform_over_the_pool(setup):
    X, y, pool, model = setup
    hits = np.zeros(len(X))
    for seed in range(300):
        batch = query(
            pool,
            model,
            strategy="margin",
            batch_size=5,
            mix=BatchMix(exploration=0.4),
            random_state=seed,
        )
        explore = [i for i, k in zip(batch.indices, batch.kinds, strict=True) if k == "exploration"]
        hits[explore] += 1
    assert hits[:40].sum() == 0  # never a labeled item
    # Uniform: the most and least confident halves are drawn about equally often.
    conf = model.predict_proba(X[40:]).max(axis=1)
    order = np.argsort(conf)
    low, high = hits[40:][order[:180]].sum(), hits[40:][order[180:]].sum()
    assert 0.8 < low / high < 1.25


def test_explore_wrapper_marks_its_random_picks(setup):
    X, y, pool, model = setup
    strategy = Explore(UncertaintySampling("margin", name="margin"), fraction=0.5, name="x")
    seen = set()
    for seed in range(10):
        batch = query(pool, model, strategy=strategy, batch_size=6, random_state=seed)
        seen |= set(batch.kinds)
        ranks = [r.rank for r in batch.reasons if r.kind == "strategy"]
        assert sorted(ranks) == list(range(1, len(ranks) + 1))
    assert seen == {"strategy", "exploration"}


def test_candidates_restrict_the_choice(setup):
    X, y, pool, model = setup
    cands = np.arange(100, 130)
    batch = query(pool, model, strategy="entropy", batch_size=5, candidates=cands, random_state=0)
    assert set(batch.indices.tolist()) <= set(cands.tolist())
    with pytest.raises(InvalidParameterError, match="candidate 3 is already labeled"):
        query(pool, model, strategy="entropy", batch_size=1, candidates=[3, 200])


@pytest.mark.parametrize(("exploration", "routine"), [(-0.1, 0), (0, 1.5), (0.6, 0.6)])
def test_bad_mix(exploration, routine):
    with pytest.raises(InvalidParameterError, match="exploration|routine"):
        BatchMix(exploration=exploration, routine=routine)


def test_subsample_candidates_by_count_share_or_all():
    from labelwise.strategies.sampling import MIN_CANDIDATES_PER_PICK, subsample_candidates

    rng = np.random.default_rng(0)
    cand = np.arange(0, 20_000, 2)
    by_count = subsample_candidates(cand, 500, 10, rng)
    assert len(by_count) == 500 and np.all(np.diff(by_count) > 0)
    assert np.isin(by_count, cand).all()
    assert len(subsample_candidates(cand, 0.05, 10, rng)) == 500
    # A share never leaves fewer than MIN_CANDIDATES_PER_PICK per batch item ...
    assert len(subsample_candidates(cand, 0.001, 10, rng)) == MIN_CANDIDATES_PER_PICK * 10
    # ... and a cap above the pool, or none, keeps every candidate.
    assert subsample_candidates(cand, 50_000, 10, rng) is cand
    assert subsample_candidates(cand, None, 10, rng) is cand


@pytest.mark.parametrize("name", ["badge(max_candidates=40)", "coreset(max_candidates=0.2)"])
def test_subsampled_diversity_strategies_pick_from_the_pool(setup, name):
    _, _, pool, model = setup
    batch = query(pool, model, strategy=name, batch_size=5, random_state=0)
    assert len(set(batch.indices.tolist())) == 5
    assert not np.isin(batch.indices, pool.labeled).any()


@pytest.mark.parametrize(
    "name", ["badge(max_candidates=0)", "coreset(max_candidates=1.5)", "badge(max_candidates=)"]
)
def test_bad_max_candidates_names_the_strategy(name):
    from labelwise import InvalidParameterError
    from labelwise.strategies.factory import make_strategy

    with pytest.raises(InvalidParameterError, match="max_candidates"):
        make_strategy(name)
