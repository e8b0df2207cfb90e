"""Adaptive strategy choice: a bandit over query strategies, rewarded on the random sample.

No single query strategy wins everywhere: margin sampling is best on most data but loses to random
sampling where the classes overlap (it spends its labels on noise near a wrong boundary). In the
spirit of *active learning by learning* (Hsu & Lin, AAAI 2015), :class:`StrategyBandit` treats
each strategy as an arm and learns, while labels come in, which one helps this project's model.

**Reward.** The *random sample* is the labeled items that were drawn uniformly at random (the
initial seed set and the exploration picks): an unbiased sample of the pool. Its items are split
into ``folds`` fixed folds; each round, one clone of the estimator per fold is fitted on every
labeled item except that fold and predicts it, so each item of the sample gets a prediction from
a model that never saw it. The reward of the arm chosen in the previous round is the change, on
the items present in both rounds, of the share predicted correctly: the accuracy gain its picks
brought (for a multi-label model, correct means the predicted label set is the answer's),
measured on held-out random items and paired item by item (so most of the noise of a
small sample cancels). Hsu & Lin reward with importance-weighted accuracy on the queried items,
which the model was trained on; holding the sample out keeps the reward honest for flexible
models that fit their training items perfectly.

**Choice.** Rewards are noisy and their scale shrinks as the model improves, so the arms are
compared by Thompson sampling on the mean reward (a normal posterior whose spread is the pooled
standard deviation of all rewards over ``sqrt(pulls + 1)``, shrunk towards zero by one pseudo
pull), and with probability ``floor`` per arm a uniformly random arm is played, so no arm is ever
written off for good on early luck.

**State.** The bandit is the one stateful strategy: its rewards and the previous round's
correctness live on the object. :meth:`StrategyBandit.state_dict` and
:meth:`StrategyBandit.load_state` carry them between processes (the labeling worker stores them
with each model version).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone

from labelwise.exceptions import InvalidParameterError
from labelwise.strategies.backends import strategy_needs
from labelwise.strategies.base import QueryContext, Selection, Strategy
from labelwise.strategies.registry import build_strategy
from labelwise.strategies.sampling import RandomSampling

__all__ = ["DEFAULT_ARMS", "MULTI_LABEL_ARMS", "StrategyBandit", "find_bandit"]

#: The arms of ``"bandit"``: uncertainty with diverse batches, uncertainty weighted by how
#: typical an item is, and uniform random sampling (the safe arm where uncertainty misleads).
DEFAULT_ARMS: tuple[str, ...] = ("margin+clusters", "margin+density", "random")

#: The arms of ``"bandit"`` in a multi-label project: the same three roles, with the
#: multi-label uncertainty (mean-margin) in place of margin.
MULTI_LABEL_ARMS: tuple[str, ...] = ("mean-margin+clusters", "mean-margin+density", "random")

# A reward needs this many items of the random sample with a prediction in both rounds.
_MIN_PAIRED = 6


@dataclass
class StrategyBandit:
    """Plays one of ``arms`` per round and learns from the random sample which one helps.

    Parameters
    ----------
    arms : sequence of str
        Strategy names (see :func:`labelwise.available_strategies`); at least two, no duplicates.
    folds : int, default 3
        Folds of the random sample for the held-out reward (``folds`` extra fits per round).
    floor : float, default 0.05
        Probability of a uniformly random arm, per arm (``floor × len(arms)`` must stay below 1).
    name : str
    """

    arms: tuple[str, ...] = DEFAULT_ARMS
    folds: int = 3
    floor: float = 0.05
    name: str = "bandit"
    needs_model: bool = True
    rewards: dict[str, list[float]] = field(default_factory=dict)
    last_arm: str | None = None
    last_correct: dict[int, bool] = field(default_factory=dict)
    _own_sample: set[int] = field(default_factory=set, repr=False)
    _strategies: dict[str, Strategy] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.arms = tuple(self.arms)
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise InvalidParameterError(
                f"a bandit needs at least two different arms, got {list(self.arms)}"
            )
        if any(arm.startswith("bandit") for arm in self.arms):
            raise InvalidParameterError("a bandit's arms cannot be bandits")
        if not isinstance(self.folds, int) or self.folds < 2:
            raise InvalidParameterError(f"folds must be an integer of at least 2, got {self.folds}")
        if self.floor < 0.0 or self.floor * len(self.arms) >= 1.0:
            raise InvalidParameterError(
                f"floor must be in [0, 1/{len(self.arms)}), got {self.floor}"
            )
        # Arms of either kind: each strategy refuses a model of the other kind when it runs.
        self._strategies = {arm: build_strategy(arm, multi_label=None) for arm in self.arms}
        for arm in self.arms:
            self.rewards.setdefault(arm, [])

    # -- persistence ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The learned state, JSON-serialisable."""
        return {
            "arms": list(self.arms),
            "rewards": {arm: [round(r, 6) for r in self.rewards[arm]] for arm in self.arms},
            "last_arm": self.last_arm,
            "last_correct": {str(k): bool(v) for k, v in self.last_correct.items()},
            "sample": sorted(self._own_sample),
        }

    def load_state(self, state: dict[str, Any] | None) -> StrategyBandit:
        """Continue from :meth:`state_dict` (of a bandit with the same arms; else start over)."""
        if not state or list(state.get("arms", [])) != list(self.arms):
            return self
        self.rewards = {arm: [float(r) for r in state["rewards"].get(arm, [])] for arm in self.arms}
        last = state.get("last_arm")
        self.last_arm = last if last in self.arms else None
        self.last_correct = {int(k): bool(v) for k, v in state.get("last_correct", {}).items()}
        self._own_sample = {int(i) for i in state.get("sample", [])}
        return self

    def summary(self) -> list[dict[str, Any]]:
        """Per arm: pulls, mean reward and the probability of playing it next (estimated)."""
        probabilities = self.probabilities(np.random.default_rng(0))
        return [
            {
                "arm": arm,
                "pulls": len(self.rewards[arm]),
                "mean_reward": float(np.mean(self.rewards[arm])) if self.rewards[arm] else None,
                "probability": float(probabilities[i]),
            }
            for i, arm in enumerate(self.arms)
        ]

    # -- choice -----------------------------------------------------------------------------

    def _posterior(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        every = [r for arm in self.arms for r in self.rewards[arm]]
        spread = float(np.std(every, ddof=1)) if len(every) >= 3 else 0.0
        spread = max(spread, 1e-3)  # before any reward, or when all rewards are equal
        pulls = np.array([len(self.rewards[arm]) for arm in self.arms], dtype=np.float64)
        sums = np.array([sum(self.rewards[arm]) for arm in self.arms], dtype=np.float64)
        return sums / (pulls + 1.0), spread / np.sqrt(pulls + 1.0)

    def choose(self, rng: np.random.Generator) -> str:
        """The arm to play this round."""
        k = len(self.arms)
        if rng.random() < self.floor * k:
            return self.arms[int(rng.integers(k))]
        mean, sd = self._posterior()
        return self.arms[int(np.argmax(rng.normal(mean, sd)))]

    def probabilities(self, rng: np.random.Generator, draws: int = 2000) -> NDArray[np.float64]:
        """Monte-Carlo estimate of each arm's chance of being played next."""
        k = len(self.arms)
        mean, sd = self._posterior()
        wins = np.bincount(np.argmax(rng.normal(mean, sd, size=(draws, k)), axis=1), minlength=k)
        return self.floor + (1.0 - self.floor * k) * wins / draws

    # -- reward -----------------------------------------------------------------------------

    def _held_out_correct(self, ctx: QueryContext, sample: NDArray[np.intp]) -> dict[int, bool]:
        """Each sample item's correctness under a model fitted without its fold."""
        template = ctx.estimator if ctx.estimator is not None else ctx.model
        labels = dict(zip(ctx.labeled.tolist(), np.asarray(ctx.y_labeled).tolist(), strict=True))
        fold_of = (sample * 2_654_435_761) % (2**32) % self.folds
        out: dict[int, bool] = {}
        for f in range(self.folds):
            test = sample[fold_of == f]
            train = np.setdiff1d(ctx.labeled, test)
            y_train = np.asarray([labels[i] for i in train.tolist()], dtype=object)
            if len(test) == 0 or len(set(y_train.tolist())) < 2:
                continue
            y_train = y_train.astype(np.asarray(ctx.y_labeled).dtype)
            model = clone(template).fit(ctx.backend.rows(train), y_train)
            predicted = np.asarray(model.predict(ctx.backend.rows(test)))
            out.update(
                (int(i), bool(p == labels[int(i)]))
                for i, p in zip(test.tolist(), predicted.tolist(), strict=True)
            )
        return out

    def _learn(self, ctx: QueryContext) -> None:
        labeled = set(ctx.labeled.tolist())
        given = set() if ctx.random_sample is None else set(np.asarray(ctx.random_sample).tolist())
        sample = np.asarray(sorted((given | self._own_sample) & labeled), dtype=np.intp)
        if len(sample) < self.folds:
            return
        correct = self._held_out_correct(ctx, sample)
        if self.last_arm is not None:
            paired = [i for i in correct if i in self.last_correct]
            if len(paired) >= _MIN_PAIRED:
                gain = np.mean([float(correct[i]) - float(self.last_correct[i]) for i in paired])
                self.rewards[self.last_arm].append(float(gain))
        self.last_correct = correct

    # -- the strategy protocol --------------------------------------------------------------

    @property
    def needs(self) -> frozenset[str]:
        """What any arm needs of the backend (see :mod:`labelwise.strategies.backends`)."""
        return frozenset().union(*(strategy_needs(s) for s in self._strategies.values()))

    def select(self, ctx: QueryContext, batch_size: int, rng: np.random.Generator) -> Selection:
        arm = self.begin_round(ctx, rng)
        return self.end_round(arm, self.strategy_of(arm).select(ctx, batch_size, rng))

    # A round in steps, for a caller that runs the arm's selection itself: ``begin_round``,
    # the arm's strategy selects, ``end_round``.

    def begin_round(self, ctx: QueryContext, rng: np.random.Generator) -> str:
        """Reward the previous round's arm and choose this round's. The pool is only read at
        the labeled rows (``ctx.backend.rows``)."""
        self._learn(ctx)
        arm = self.choose(rng)
        self.last_arm = arm
        return arm

    def strategy_of(self, arm: str) -> Strategy:
        return self._strategies[arm]

    def end_round(self, arm: str, picked: Selection) -> Selection:
        """The arm's picks marked with the arm (and as exploration, for the random arm)."""
        details = picked.details or tuple({} for _ in picked.indices)
        # The random arm's picks are uniform over the candidates: exploration items like any.
        uniform = isinstance(self._strategies[arm], RandomSampling)
        marks = {"arm": arm, **({"exploration": True} if uniform else {})}
        details = tuple({**d, **marks} for d in details)
        self._own_sample |= {
            int(i) for i, d in zip(picked.indices, details, strict=True) if d.get("exploration")
        }
        return replace(picked, details=details)


def find_bandit(strategy: Any) -> StrategyBandit | None:
    """The bandit inside a strategy (itself, or the base of an ``+explore`` wrapper), if any."""
    while strategy is not None:
        if isinstance(strategy, StrategyBandit):
            return strategy
        strategy = getattr(strategy, "base", None)
    return None
