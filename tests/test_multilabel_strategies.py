"""Multi-label query strategies: the utilities in the one scoring path, the registry's names,
the refusals both ways, the reasons a multi-label pick carries, the bandit's arms and the
committee's votes, on a small synthetic multi-label problem (a LabelSetClassifier over a
logistic regression)."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from labelwise import InvalidParameterError, ModelCapabilityError, Pool, label_sets
from labelwise.models.multilabel import LabelSetClassifier
from labelwise.models.registry import ModelOutputs
from labelwise.store.projects import ProjectSettings
from labelwise.strategies.backends import Utility
from labelwise.strategies.bandit import DEFAULT_ARMS, MULTI_LABEL_ARMS, find_bandit
from labelwise.strategies.committee import Committee
from labelwise.strategies.factory import make_strategy
from labelwise.strategies.multilabel_reasons import describe_multi_label, unsure_labels
from labelwise.strategies.multilabel_scorers import (
    CardinalityPredictor,
    fit_cardinality,
    label_cardinality_inconsistency,
    label_set_vote_entropy,
    mean_margin_uncertainty,
    min_margin_uncertainty,
    mmc,
    predict_cardinality,
)
from labelwise.strategies.query import BatchMix, confident_picks, query
from labelwise.strategies.registry import (
    DEFAULT_MULTI_LABEL_STRATEGY,
    DEFAULT_STRATEGY,
    available_strategies,
    build_strategy,
)
from labelwise.strategies.utility import MultiLabelUncertainty, QueryByCommittee

LABELS = ["insult", "spam", "threat"]
ML_STRATEGIES = sorted(available_strategies(multi_label=True))


def _problem(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    Y = (X[:, :3] + 0.6 * rng.normal(size=(n, 3)) > 0.3).astype(int)
    y = np.asarray(label_sets.from_indicator(Y, LABELS), dtype=object)
    return X, y


@pytest.fixture(scope="module")
def case():
    X, y = _problem()
    labeled = np.random.default_rng(1).choice(len(X), 40, replace=False)
    pool = Pool(X)
    pool.label(labeled, y[labeled])
    template = LabelSetClassifier(LogisticRegression(max_iter=500), LABELS)
    model = clone(template).fit(X[labeled], y[labeled])
    return {"X": X, "y": y, "pool": pool, "template": template, "model": model}


@pytest.fixture(scope="module")
def single():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 4))
    y = np.where(X[:, 0] > 0, "a", "b")
    pool = Pool(X)
    labeled = np.arange(30)
    pool.label(labeled, y[labeled])
    model = LogisticRegression().fit(X[labeled], y[labeled])
    return {"X": X, "pool": pool, "model": model}


def _unlabeled(case):
    return np.flatnonzero(~case["pool"].labeled_mask)


def _labeled_sets(case):
    pool = case["pool"]
    labeled = pool.labeled
    return labeled, label_sets.to_indicator([str(v) for v in pool.labels_of(labeled)], LABELS)


def _top(utilities, rows, k):
    return rows[np.argsort(-utilities, kind="stable")[:k]]


# --- the cardinality predictor -----------------------------------------------------------


def test_fit_cardinality_predicts_as_predict_cardinality_and_pickles():
    rng = np.random.default_rng(0)
    P_lab = rng.random((30, 4))
    Y_lab = (P_lab > 0.5).astype(int)
    P = rng.random((12, 4))
    fitted = fit_cardinality(P_lab, Y_lab)
    assert isinstance(fitted, CardinalityPredictor) and fitted.model is not None
    np.testing.assert_array_equal(fitted.predict(P), predict_cardinality(P_lab, Y_lab, P))
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(P), fitted.predict(P))


def test_fit_cardinality_of_one_count_is_that_count():
    fitted = fit_cardinality([[0.9, 0.2], [0.3, 0.8]], [[1, 0], [0, 1]])
    assert fitted.constant == 1 and fitted.model is None
    np.testing.assert_array_equal(fitted.predict([[0.1, 0.1], [0.9, 0.9]]), [1, 1])


def test_cardinality_predictor_refuses_other_label_counts():
    fitted = fit_cardinality([[0.9, 0.2], [0.3, 0.8]], [[1, 0], [0, 1]])
    with pytest.raises(Exception, match="3 labels but P_labeled_sorted has 2"):
        fitted.predict([[0.1, 0.2, 0.3]])


def test_lci_takes_a_threshold_per_label():
    P = [[0.3, 0.6], [0.7, 0.2]]
    # With thresholds 0.25 and 0.65: row 0 predicts one label, row 1 one label.
    np.testing.assert_allclose(label_cardinality_inconsistency(P, 2.0, [0.25, 0.65]), [1.0, 1.0])
    with pytest.raises(InvalidParameterError, match="one per label"):
        label_cardinality_inconsistency(P, 1.0, [0.5, 0.5, 0.5])


# --- utilities in the one scoring path ----------------------------------------------------


@pytest.mark.parametrize(
    ("scorer", "expected"),
    [("mean_margin", mean_margin_uncertainty), ("min_margin", min_margin_uncertainty)],
)
def test_margin_utilities_score_per_label_probabilities(case, scorer, expected):
    rows = _unlabeled(case)
    got, votes = Utility(case["model"], scorer=scorer).score(case["X"], rows, 64)
    assert votes is None
    model = case["model"]
    assert (model.thresholds_ != 0.5).any()  # the margins are measured from the thresholds
    P = model.predict_proba(case["X"][rows])
    np.testing.assert_allclose(got, expected(P, model.thresholds_))
    assert not np.allclose(got, expected(P))


def test_mmc_utility_uses_the_cardinality_it_carries(case):
    rows = _unlabeled(case)
    P = case["model"].predict_proba(case["X"][rows])
    fitted = CardinalityPredictor(3, constant=2)
    got, _ = Utility(case["model"], scorer="mmc", cardinality=fitted).score(case["X"], rows, 64)
    np.testing.assert_allclose(got, mmc(P, 2))
    plain, _ = Utility(case["model"], scorer="mmc").score(case["X"], rows, 64)
    np.testing.assert_allclose(plain, mmc(P))


def test_lci_utility_counts_labels_at_the_models_thresholds(case):
    rows = _unlabeled(case)
    model = case["model"]
    P = model.predict_proba(case["X"][rows])
    got, _ = Utility(model, scorer="lci", mean_cardinality=1.25).score(case["X"], rows, 64)
    np.testing.assert_allclose(got, np.abs((model.thresholds_ < P).sum(axis=1) - 1.25))


def test_a_multi_label_utility_refuses_a_single_label_model(single):
    rows = np.arange(30, 60)
    with pytest.raises(ModelCapabilityError, match="'mean-margin' is for multi-label models"):
        Utility(single["model"], scorer="mean_margin").score(single["X"], rows, 64)


def test_a_single_label_utility_refuses_a_multi_label_model(case):
    with pytest.raises(ModelCapabilityError, match="mean-margin, min-margin, mmc, lci"):
        Utility(case["model"], scorer="entropy").score(case["X"], _unlabeled(case), 64)


# --- strategies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "scorer"),
    [("mean-margin", mean_margin_uncertainty), ("min-margin", min_margin_uncertainty)],
)
def test_margin_strategies_pick_the_most_uncertain(case, name, scorer):
    rows = _unlabeled(case)
    u = scorer(case["model"].predict_proba(case["X"][rows]), case["model"].thresholds_)
    batch = query(case["pool"], case["model"], strategy=name, batch_size=5, random_state=0)
    np.testing.assert_array_equal(batch.indices, _top(u, rows, 5))
    np.testing.assert_allclose([r.utility for r in batch.reasons], np.sort(u)[::-1][:5])


def test_mmc_fits_the_cardinality_on_the_labeled_set(case):
    model, rows = case["model"], _unlabeled(case)
    labeled, Y = _labeled_sets(case)
    P_lab = model.predict_proba(case["X"][labeled])
    P = model.predict_proba(case["X"][rows])
    u = mmc(P, predict_cardinality(P_lab, Y, P))
    assert len(np.unique(Y.sum(axis=1))) > 1  # something to learn
    batch = query(case["pool"], model, strategy="mmc", batch_size=5, random_state=0)
    np.testing.assert_array_equal(batch.indices, _top(u, rows, 5))


def test_lci_compares_with_the_labeled_sets_mean_cardinality(case):
    model, rows = case["model"], _unlabeled(case)
    _, Y = _labeled_sets(case)
    P = model.predict_proba(case["X"][rows])
    u = label_cardinality_inconsistency(P, Y.sum(axis=1).mean(), model.thresholds_)
    batch = query(case["pool"], model, strategy="lci", batch_size=5, random_state=0)
    np.testing.assert_allclose([r.utility for r in batch.reasons], np.sort(u)[::-1][:5])


def test_qbc_on_a_multi_label_model_votes_on_each_label(case):
    batch = query(
        case["pool"],
        case["model"],
        strategy="qbc",
        batch_size=4,
        random_state=0,
        estimator=case["template"],
    )
    for reason in batch.reasons:
        votes = reason.details["label_votes"]
        assert list(votes) == LABELS and reason.details["members"] == 5
        # Rebuild the members' votes from the counts: the utility is their label-set entropy.
        m = np.zeros((5, 1, 3), dtype=int)
        for j, n in enumerate(votes.values()):
            m[:n, 0, j] = 1
        assert reason.utility == pytest.approx(label_set_vote_entropy(m)[0])
        split = [f"{n} of 5 say {label}" for label, n in votes.items() if 0 < n < 5]
        assert reason.summary == "the committee disagrees: " + ", ".join(split)


def test_a_committee_of_multi_label_members_returns_label_votes(case):
    X, y = case["X"], case["y"]
    labeled = case["pool"].labeled
    committee = Committee.bagged(
        case["template"], X[labeled], y[labeled], n_members=3, rng=np.random.default_rng(0)
    )
    assert committee.multi_label
    rows = _unlabeled(case)[:50]
    utilities, votes = committee.disagreement(X, rows, chunk_size=16)
    assert votes.shape == (3, 50, 3)
    expected = np.stack([m.predict_indicator(X[rows]) for m in committee.members])
    np.testing.assert_array_equal(votes, expected)
    np.testing.assert_allclose(utilities, label_set_vote_entropy(expected))


@pytest.mark.parametrize("name", ["random", "coreset"])
def test_model_free_strategies_serve_both_kinds(case, name):
    batch = query(case["pool"], case["model"], strategy=name, batch_size=6, random_state=0)
    assert len(set(batch.indices.tolist())) == 6


# --- names, defaults and refusals -----------------------------------------------------------


def test_default_resolves_by_kind():
    multi = make_strategy("default", multi_label=True)
    assert multi.name == "default"
    assert isinstance(multi.base, MultiLabelUncertainty)
    assert multi.base.scorer == "mean_margin" and multi.base.selector.name == "clusters"
    assert DEFAULT_MULTI_LABEL_STRATEGY == "mean-margin+clusters+explore"
    assert make_strategy("default").base == build_strategy(DEFAULT_STRATEGY).base
    assert DEFAULT_MULTI_LABEL_STRATEGY in available_strategies(multi_label=True)["default"]


@pytest.mark.parametrize(
    "name", ["margin", "entropy+kmeans", "least_confident", "qbc-kl", "badge", "bald"]
)
def test_single_label_names_are_refused_for_a_multi_label_project(name):
    with pytest.raises(InvalidParameterError, match=r"mean-margin, min-margin, mmc, lci, qbc"):
        make_strategy(name, multi_label=True)
    with pytest.raises(InvalidParameterError, match="for single-label projects"):
        make_strategy(name + "+explore", multi_label=True)


@pytest.mark.parametrize("name", ["mean-margin", "min-margin+clusters", "mmc", "lci+density"])
def test_multi_label_names_are_refused_for_a_single_label_project(name):
    with pytest.raises(InvalidParameterError, match="for multi-label projects.*margin, entropy"):
        make_strategy(name)
    assert make_strategy(name, multi_label=True).name == name


def test_sampled_badge_is_refused_for_a_multi_label_project():
    with pytest.raises(InvalidParameterError, match="single-label projects"):
        make_strategy("badge(max_candidates=0.1)", multi_label=True)


def test_project_settings_check_the_strategy_against_the_kind():
    assert ProjectSettings(strategy="mean-margin", multi_label=True).strategy == "mean-margin"
    assert ProjectSettings(strategy="margin").strategy == "margin"
    with pytest.raises(InvalidParameterError, match="for multi-label projects"):
        ProjectSettings(strategy="mean-margin")
    with pytest.raises(InvalidParameterError, match="for single-label projects"):
        ProjectSettings(strategy="entropy", multi_label=True)


@pytest.mark.parametrize("name", ["margin", "least_confident", "qbc-kl", "badge"])
def test_single_label_strategies_refuse_multi_label_outputs_when_run(case, name):
    strategy = make_strategy(name, multi_label=None)  # kind unknown: built, refused when run
    with pytest.raises(ModelCapabilityError, match="mean-margin, min-margin, mmc, lci, qbc"):
        query(case["pool"], case["model"], strategy=strategy, batch_size=3, random_state=0)


@pytest.mark.parametrize("name", ["mean-margin", "mmc+clusters", "lci"])
def test_multi_label_strategies_refuse_single_label_outputs_when_run(single, name):
    strategy = make_strategy(name, multi_label=None)
    with pytest.raises(ModelCapabilityError, match="least_confident, margin, entropy"):
        query(single["pool"], single["model"], strategy=strategy, batch_size=3, random_state=0)


def test_query_builds_a_name_for_the_models_kind(case, single):
    # "qbc" and "default" are the same words for both kinds; query takes the model's.
    batch = query(case["pool"], case["model"], strategy="default", batch_size=5, random_state=0)
    assert all(r.strategy == "default" for r in batch.reasons)
    with pytest.raises(InvalidParameterError, match="for multi-label projects"):
        query(single["pool"], single["model"], strategy="mean-margin", batch_size=3)
    qbc = query(single["pool"], single["model"], strategy="qbc", batch_size=3, random_state=0)
    assert all("votes" in r.details for r in qbc.reasons)


def test_available_strategies_lists_each_kinds_own():
    multi = available_strategies(multi_label=True)
    single_names = available_strategies()
    for name in ("mean-margin", "min-margin", "mmc", "lci", "qbc", "random", "coreset"):
        assert name in multi
    assert not {"margin", "entropy", "badge", "bald", "qbc-kl"} & set(multi)
    assert not {"mean-margin", "mmc", "lci"} & set(single_names)
    assert isinstance(build_strategy("qbc", multi_label=True), QueryByCommittee)


# --- the bandit ---------------------------------------------------------------------------


def test_the_multi_label_bandit_plays_multi_label_arms(case):
    strategy = make_strategy("bandit", multi_label=True)
    bandit = find_bandit(strategy)
    assert bandit is not None and bandit.arms == MULTI_LABEL_ARMS
    assert find_bandit(make_strategy("bandit")).arms == DEFAULT_ARMS
    pool, X, y = case["pool"], case["X"], case["y"]
    pool = Pool(X)
    labeled = case["pool"].labeled
    pool.label(labeled, y[labeled])
    arms = set()
    for round_ in range(4):
        model = clone(case["template"]).fit(X[pool.labeled], pool.labels_of(pool.labeled))
        batch = query(
            pool,
            model,
            strategy=strategy,
            batch_size=8,
            random_state=round_,
            estimator=case["template"],
            random_sample=labeled,
        )
        arms |= {r.details["arm"] for r in batch.reasons if "arm" in r.details}
        pool.label(batch.indices, y[batch.indices])
    assert arms and arms <= set(MULTI_LABEL_ARMS)


# --- reasons ------------------------------------------------------------------------------


def test_a_multi_label_pick_shows_every_label_in_label_order(case):
    model = case["model"]
    batch = query(
        case["pool"],
        model,
        strategy="mean-margin",
        batch_size=6,
        random_state=0,
        mix=BatchMix(exploration=0.3, routine=0.3),
    )
    thresholds = dict(zip(LABELS, model.thresholds_.tolist(), strict=True))
    P = model.predict_proba(case["X"][batch.indices])
    assert {r.kind for r in batch.reasons} == {"strategy", "exploration", "routine"}
    for reason, p in zip(batch.reasons, P, strict=True):
        assert [label for label, _ in reason.class_split] == LABELS
        np.testing.assert_allclose([v for _, v in reason.class_split], p)
        assert reason.details["thresholds"] == pytest.approx(thresholds)
        assert reason.output_kind == "proba"
        if reason.kind == "strategy":
            assert reason.summary.startswith("the model is unsure about ")
        if reason.kind == "routine":
            assert reason.summary.startswith("routine check: the model is confident")


def test_unsure_sentence_is_hand_checkable():
    split = (("insult", 0.9), ("spam", 0.48), ("threat", 0.55))
    details = {"thresholds": {"insult": 0.5, "spam": 0.5, "threat": 0.5}}
    assert (
        describe_multi_label("strategy", split, details)
        == "the model is unsure about spam (48%) and threat (55%)"
    )
    # Nothing near its threshold: the nearest label is named.
    far = (("insult", 0.99), ("spam", 0.02), ("threat", 0.25))
    assert describe_multi_label("strategy", far, details) == (
        "the model is unsure about threat (25%)"
    )
    # Each label against its own threshold, as a share of the way to 0 or 1: insult
    # (0.99 - 0.95) / 0.05 = 0.8, spam (0.5 - 0.02) / 0.5 = 0.96, threat (0.9 - 0.25) / 0.9 = 0.72.
    shifted = {"thresholds": {"insult": 0.95, "spam": 0.5, "threat": 0.9}}
    assert unsure_labels(far, shifted["thresholds"]) == [("threat", 0.25)]
    # insult (0.99 - 0.98) / 0.02 = 0.5 is out of the band (0.4), spam (0.5 - 0.48) / 0.5 = 0.04
    # and threat (0.99 - 0.95) / 0.05 = 0.8: spam alone.
    near = (("insult", 0.99), ("spam", 0.48), ("threat", 0.99))
    rare = {"insult": 0.98, "spam": 0.5, "threat": 0.95}
    assert unsure_labels(near, rare) == [("spam", 0.48)]
    # Decided from 0.1: 0.08 is close to the threshold ((0.1 - 0.08) / 0.1 = 0.2), 0.7 is not
    # ((0.7 - 0.1) / 0.9 = 0.67), though 0.7 is nearer 0.5.
    assert unsure_labels((("a", 0.08), ("b", 0.7)), {"a": 0.1, "b": 0.1}) == [("a", 0.08)]
    assert (
        describe_multi_label("strategy", split, details, scored=False)
        == "the model gives 90% to insult, 48% to spam and 55% to threat"
    )


def test_routine_and_committee_sentences():
    details = {"thresholds": {"insult": 0.5, "spam": 0.3, "threat": 0.5}}
    split = (("insult", 0.9), ("spam", 0.35), ("threat", 0.1))
    assert (
        describe_multi_label("routine", split, details)
        == "routine check: the model is confident it is insult and spam"
    )
    none = (("insult", 0.1), ("spam", 0.05), ("threat", 0.1))
    assert describe_multi_label("routine", none, details) == (
        "routine check: the model is confident that no label applies"
    )
    votes = {**details, "label_votes": {"insult": 5, "spam": 2, "threat": 0}, "members": 5}
    assert describe_multi_label("strategy", split, votes) == (
        "the committee disagrees: 2 of 5 say spam"
    )


def test_routine_picks_are_the_most_certain_on_every_label():
    values = np.array([[0.5, 0.99], [0.99, 0.01], [0.9, 0.6], [0.02, 0.98]])
    out = ModelOutputs("proba", values, np.array(["a", "b"]), np.array([0.5, 0.5]))
    rows = np.arange(4, dtype=np.intp)
    picks = confident_picks(rows, out, 2, np.random.default_rng(0))
    assert sorted(picks.tolist()) == [1, 3]  # min-margin uncertainty 0.02 and 0.04


def test_cold_start_until_two_different_label_sets(case):
    X, y = case["X"], case["y"]
    pool = Pool(X)
    same = np.flatnonzero(y == y[0])[:5]
    pool.label(same, y[same])
    model = clone(case["template"])
    batch = query(pool, model, strategy="mean-margin", batch_size=3, random_state=0)
    assert set(batch.kinds) == {"cold-start"}
    assert "two different label sets" in batch.reasons[0].summary


def test_single_label_reasons_are_unchanged(single):
    batch = query(single["pool"], single["model"], strategy="margin", batch_size=3, random_state=0)
    for reason in batch.reasons:
        assert reason.details == {}
        assert reason.summary.startswith("the model gives ")
        assert len(reason.class_split) == 2


# --- the contract, for every multi-label name ------------------------------------------------


@pytest.mark.parametrize("name", ML_STRATEGIES)
def test_multi_label_contract(case, name):
    pool = case["pool"]
    kw = {"strategy": name, "batch_size": 9, "estimator": case["template"]}
    a = query(pool, case["model"], random_state=3, **kw)
    b = query(pool, case["model"], random_state=3, **kw)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert len(set(a.indices.tolist())) == 9
    assert not pool.labeled_mask[a.indices].any()
    ranks = [r.rank for r in a.reasons if r.kind == "strategy"]
    assert ranks == list(range(1, len(ranks) + 1))
    for reason in a.reasons:
        assert [label for label, _ in reason.class_split] == LABELS
        assert set(reason.details["thresholds"]) == set(LABELS)


def test_diversity_is_measured_where_the_per_label_models_learn(case):
    from sklearn.preprocessing import StandardScaler

    from labelwise.strategies.base import QueryContext, represent

    X, y, pool = case["X"], case["y"], case["pool"]
    scaled = LabelSetClassifier(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), LABELS
    ).fit(X[pool.labeled] * 10.0, y[pool.labeled])
    rows = _unlabeled(case)[:20]
    ctx = QueryContext(X, rows, pool.labeled, pool.labels_of(pool.labeled), scaled)
    head = next(e for e in scaled.model_.estimators_ if e is not None)[:-1]
    np.testing.assert_allclose(represent(ctx, rows), head.transform(X[rows]))


def test_routine_items_are_those_far_from_their_thresholds():
    # One label decided from 0.1: 0.9 is (0.9 - 0.1) / 0.9 = 0.89 of the way to 1, 0.02 only
    # (0.1 - 0.02) / 0.1 = 0.8 of the way to 0 (measured from 0.5, 0.02 would look surer).
    out = ModelOutputs(
        "proba", np.array([[0.02], [0.9], [0.12]]), np.array(["rare"]), np.array([0.1])
    )
    picked = confident_picks(np.arange(3), out, 1, np.random.default_rng(0))
    assert picked.tolist() == [1]
