"""The bandit over strategies: held-out rewards, the choice they drive, and its state."""

import json

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from labelwise import ActiveLearner, InvalidParameterError, make_strategy
from labelwise.strategies.bandit import StrategyBandit, find_bandit
from labelwise.strategies.base import QueryContext


def _ctx(X, y, labeled, model_template, sample):
    labeled = np.asarray(sorted(labeled), dtype=np.intp)
    candidates = np.setdiff1d(np.arange(len(X)), labeled)
    model = model_template.fit(X[labeled], y[labeled])
    return QueryContext(
        X=X,
        candidates=candidates,
        labeled=labeled,
        y_labeled=y[labeled],
        model=model,
        estimator=model_template,
        random_sample=np.asarray(sample, dtype=np.intp),
    )


def test_rewards_use_predictions_from_models_that_never_saw_the_item():
    # Pure noise labels: a 1-nearest-neighbour model is right on every item it was trained
    # on, and right half the time on items it never saw.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = rng.integers(0, 2, size=400)
    labeled = np.arange(200)
    ctx = _ctx(X, y, labeled, KNeighborsClassifier(n_neighbors=1), sample=labeled)
    correct = StrategyBandit()._held_out_correct(ctx, labeled)
    assert set(correct) == set(labeled.tolist())
    assert 0.3 < np.mean(list(correct.values())) < 0.7


def test_the_reward_is_the_paired_change_of_held_out_correctness():
    X, y = make_classification(n_samples=500, n_features=8, random_state=1)
    bandit = StrategyBandit(arms=("margin", "random"))
    sample = list(range(30))
    rng = np.random.default_rng(0)
    first = _ctx(X, y, range(40), LogisticRegression(), sample)
    picks = bandit.select(first, 10, rng).indices
    arm = bandit.last_arm
    before = dict(bandit.last_correct)
    assert set(before) == set(sample)

    second = _ctx(X, y, set(range(40)) | set(picks.tolist()), LogisticRegression(), sample)
    after = bandit._held_out_correct(second, np.asarray(sample))
    bandit.select(second, 10, rng)
    expected = np.mean([float(after[i]) - float(before[i]) for i in sample])
    assert bandit.rewards[arm] == [pytest.approx(expected)]
    assert sum(len(r) for r in bandit.rewards.values()) == 1


def test_no_reward_without_enough_random_items():
    X, y = make_classification(n_samples=300, n_features=6, random_state=2)
    bandit = StrategyBandit(arms=("margin", "entropy"))  # no random arm adding to the sample
    rng = np.random.default_rng(0)
    labeled = set(range(30))
    for _ in range(3):
        ctx = _ctx(X, y, labeled, LogisticRegression(), sample=[0, 1])
        picks = bandit.select(ctx, 5, rng).indices
        labeled |= set(picks.tolist())
    assert all(r == [] for r in bandit.rewards.values())


def test_the_arm_with_the_better_record_is_played_most():
    bandit = StrategyBandit(arms=("margin", "random", "entropy"), floor=0.05)
    bandit.rewards = {
        "margin": [0.02, 0.03, 0.01, 0.02] * 5,
        "random": [0.0, -0.01, 0.01, 0.0] * 5,
        "entropy": [-0.01, 0.0, -0.02, 0.0] * 5,
    }
    rng = np.random.default_rng(0)
    played = [bandit.choose(rng) for _ in range(2000)]
    share = played.count("margin") / len(played)
    assert share > 0.85
    # Every arm keeps its floor: nothing is written off for good.
    assert played.count("entropy") / len(played) > 0.02
    probabilities = bandit.probabilities(np.random.default_rng(1))
    assert probabilities.sum() == pytest.approx(1.0)
    assert abs(probabilities[0] - share) < 0.05


def test_an_untried_bandit_plays_every_arm():
    bandit = StrategyBandit(arms=("margin", "random"))
    rng = np.random.default_rng(0)
    played = [bandit.choose(rng) for _ in range(400)]
    assert 0.35 < played.count("margin") / 400 < 0.65


def test_state_survives_json_and_a_new_process():
    X, y = make_classification(n_samples=400, n_features=6, random_state=3)
    strategy = make_strategy("bandit")
    learner = ActiveLearner(LogisticRegression(), X, strategy=strategy, random_state=0)
    seed = learner.initial_batch(30)
    learner.teach(seed.indices, y[seed.indices])
    for _ in range(6):
        batch = learner.query(10)
        learner.teach(batch.indices, y[batch.indices])
    bandit = find_bandit(strategy)
    assert bandit is not None
    assert sum(len(r) for r in bandit.rewards.values()) >= 4  # a reward from every round
    state = json.loads(json.dumps(bandit.state_dict()))
    restored = StrategyBandit().load_state(state)
    assert restored.state_dict() == bandit.state_dict()
    # A bandit with other arms does not take over a foreign state.
    other = StrategyBandit(arms=("entropy", "random")).load_state(state)
    assert all(r == [] for r in other.rewards.values()) and other.last_arm is None


def test_picks_name_the_arm_and_random_picks_count_as_exploration():
    X, y = make_classification(n_samples=300, n_features=6, random_state=4)
    ctx = _ctx(X, y, range(30), LogisticRegression(), sample=range(30))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        bandit = StrategyBandit(arms=("margin", "random"))
        selection = bandit.select(ctx, 5, rng)
        arm = bandit.last_arm
        seen.add(arm)
        assert all(d["arm"] == arm for d in selection.details)
        assert all(bool(d.get("exploration")) == (arm == "random") for d in selection.details)
    assert seen == {"margin", "random"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"arms": ("margin",)},
        {"arms": ("margin", "margin")},
        {"arms": ("margin", "bandit")},
        {"arms": ("margin", "no-such-strategy")},
        {"folds": 1},
        {"floor": 0.5},
        {"floor": -0.1},
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(kwargs):
    with pytest.raises(InvalidParameterError):
        StrategyBandit(**kwargs)
