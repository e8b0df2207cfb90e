"""Labelwise: human-in-the-loop active learning.

The library core (no I/O beyond reading the files you name): a :class:`Pool` of items addressed by
index, scorers and selectors composed into named strategies, :func:`query` to build a batch with
its reasons, an :class:`ActiveLearner` that refits a clone of any scikit-learn classifier, stopping
criteria, and :func:`simulate` to compare strategies on a labeled dataset.

The names load on first use, so ``import labelwise`` (and every command's start) stays fast.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from labelwise.exceptions import (
    InvalidDataError,
    InvalidParameterError,
    LabelwiseError,
    ModelCapabilityError,
    PoolExhaustedError,
)

if TYPE_CHECKING:  # the names below load on first use, so `import labelwise` stays light
    from labelwise.bandit import StrategyBandit
    from labelwise.committee import Committee
    from labelwise.evaluate import ClassMetrics, Metrics, aubc, evaluate, score_predictions
    from labelwise.history import Round
    from labelwise.learner import ActiveLearner
    from labelwise.loop import GroundTruthOracle, Oracle, RunResult, run_active_learning
    from labelwise.models import available_models, make_model, model_outputs
    from labelwise.pool import Pool, open_features
    from labelwise.query import Batch, BatchMix, Reason, query
    from labelwise.simulate import SimulationConfig, SimulationResult, simulate
    from labelwise.stopping import (
        Budget,
        ExpectedGain,
        Plateau,
        StabilizingPredictions,
        StoppingCriterion,
    )
    from labelwise.strategies import (
        DEFAULT_STRATEGY,
        QueryContext,
        Selection,
        Strategy,
        available_strategies,
        make_strategy,
    )


_LAZY = {
    "StrategyBandit": "labelwise.bandit",
    "Committee": "labelwise.committee",
    "ClassMetrics": "labelwise.evaluate",
    "Metrics": "labelwise.evaluate",
    "aubc": "labelwise.evaluate",
    "evaluate": "labelwise.evaluate",
    "score_predictions": "labelwise.evaluate",
    "Round": "labelwise.history",
    "ActiveLearner": "labelwise.learner",
    "GroundTruthOracle": "labelwise.loop",
    "Oracle": "labelwise.loop",
    "RunResult": "labelwise.loop",
    "run_active_learning": "labelwise.loop",
    "available_models": "labelwise.models",
    "make_model": "labelwise.models",
    "model_outputs": "labelwise.models",
    "Pool": "labelwise.pool",
    "open_features": "labelwise.pool",
    "Batch": "labelwise.query",
    "BatchMix": "labelwise.query",
    "Reason": "labelwise.query",
    "query": "labelwise.query",
    "SimulationConfig": "labelwise.simulate",
    "SimulationResult": "labelwise.simulate",
    "simulate": "labelwise.simulate",
    "Budget": "labelwise.stopping",
    "ExpectedGain": "labelwise.stopping",
    "Plateau": "labelwise.stopping",
    "StabilizingPredictions": "labelwise.stopping",
    "StoppingCriterion": "labelwise.stopping",
    "DEFAULT_STRATEGY": "labelwise.strategies",
    "QueryContext": "labelwise.strategies",
    "Selection": "labelwise.strategies",
    "Strategy": "labelwise.strategies",
    "available_strategies": "labelwise.strategies",
    "make_strategy": "labelwise.strategies",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labelwise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Keeps ``labelwise.query`` (and the other names shared with a submodule) the function:
    importing the submodule would otherwise bind the module over the lazy name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__version__ = "0.1.0"

__all__ = [
    "DEFAULT_STRATEGY",
    "ActiveLearner",
    "Batch",
    "BatchMix",
    "Budget",
    "ClassMetrics",
    "Committee",
    "ExpectedGain",
    "GroundTruthOracle",
    "InvalidDataError",
    "InvalidParameterError",
    "LabelwiseError",
    "Metrics",
    "ModelCapabilityError",
    "Oracle",
    "Plateau",
    "Pool",
    "PoolExhaustedError",
    "QueryContext",
    "Reason",
    "Round",
    "RunResult",
    "Selection",
    "SimulationConfig",
    "SimulationResult",
    "StabilizingPredictions",
    "StoppingCriterion",
    "Strategy",
    "StrategyBandit",
    "__version__",
    "aubc",
    "available_models",
    "available_strategies",
    "evaluate",
    "make_model",
    "make_strategy",
    "model_outputs",
    "open_features",
    "query",
    "run_active_learning",
    "score_predictions",
    "simulate",
]
