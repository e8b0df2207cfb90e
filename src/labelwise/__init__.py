"""Labelwise: human-in-the-loop active learning.

The library core (no I/O beyond reading the files you name): a :class:`Pool` of items addressed by
index, scorers and selectors composed into named strategies, :func:`query` to build a batch with
its reasons, an :class:`ActiveLearner` that refits a clone of any scikit-learn classifier, stopping
criteria, and :func:`simulate` to compare strategies on a labeled dataset.
"""

from labelwise.bandit import StrategyBandit
from labelwise.committee import Committee
from labelwise.evaluate import ClassMetrics, Metrics, aubc, evaluate, score_predictions
from labelwise.exceptions import (
    InvalidDataError,
    InvalidParameterError,
    LabelwiseError,
    ModelCapabilityError,
    PoolExhaustedError,
)
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
