"""Labelwise: human-in-the-loop active learning.

The library core (no I/O beyond reading the files you name): a :class:`Pool` of items addressed by
index, scorers and selectors composed into named strategies, :func:`query` to build a batch with
its reasons, an :class:`ActiveLearner` that refits a clone of any scikit-learn classifier, stopping
criteria, and :func:`simulate` to compare strategies on a labeled dataset.

The names load on first use, so ``import labelwise`` (and every command's start) stays fast.
"""

import importlib
from typing import TYPE_CHECKING, Any

from labelwise.exceptions import (
    InvalidDataError,
    InvalidParameterError,
    LabelwiseError,
    ModelCapabilityError,
    PoolExhaustedError,
)

if TYPE_CHECKING:  # the names below load on first use, so `import labelwise` stays light
    from labelwise.learning.evaluate import ClassMetrics, Metrics, aubc, evaluate, score_predictions
    from labelwise.learning.history import Round
    from labelwise.learning.learner import ActiveLearner
    from labelwise.learning.loop import GroundTruthOracle, Oracle, RunResult, run_active_learning
    from labelwise.learning.simulate import SimulationConfig, SimulationResult, simulate
    from labelwise.learning.stopping import (
        Budget,
        ExpectedGain,
        Plateau,
        StabilizingPredictions,
        StoppingCriterion,
    )
    from labelwise.models.multilabel import LabelSetClassifier
    from labelwise.models.registry import available_models, make_model, model_outputs
    from labelwise.pool import Pool, open_features
    from labelwise.strategies.bandit import StrategyBandit
    from labelwise.strategies.base import QueryContext, Selection, Strategy
    from labelwise.strategies.committee import Committee
    from labelwise.strategies.factory import make_strategy
    from labelwise.strategies.query import Batch, BatchMix, query
    from labelwise.strategies.reasons import Reason
    from labelwise.strategies.registry import (
        DEFAULT_MULTI_LABEL_STRATEGY,
        DEFAULT_STRATEGY,
        available_strategies,
    )


#: The public names, by the module that defines them: the one list. ``__all__`` and the lazy
#: loading below are made from it, and a test checks the imports above for type checkers
#: name the same (tests/test_public_api.py).
_PUBLIC = {
    "labelwise.learning.evaluate": (
        "ClassMetrics",
        "Metrics",
        "aubc",
        "evaluate",
        "score_predictions",
    ),
    "labelwise.learning.history": ("Round",),
    "labelwise.learning.learner": ("ActiveLearner",),
    "labelwise.learning.loop": ("GroundTruthOracle", "Oracle", "RunResult", "run_active_learning"),
    "labelwise.pool": ("Pool", "open_features"),
    "labelwise.learning.simulate": ("SimulationConfig", "SimulationResult", "simulate"),
    "labelwise.learning.stopping": (
        "Budget",
        "ExpectedGain",
        "Plateau",
        "StabilizingPredictions",
        "StoppingCriterion",
    ),
    "labelwise.strategies.committee": ("Committee",),
    "labelwise.models.registry": ("available_models", "make_model", "model_outputs"),
    "labelwise.strategies.bandit": ("StrategyBandit",),
    "labelwise.strategies.base": ("QueryContext", "Selection", "Strategy"),
    "labelwise.strategies.query": ("Batch", "BatchMix", "query"),
    "labelwise.strategies.reasons": ("Reason",),
    "labelwise.strategies.factory": ("make_strategy",),
    "labelwise.strategies.registry": (
        "DEFAULT_MULTI_LABEL_STRATEGY",
        "DEFAULT_STRATEGY",
        "available_strategies",
    ),
    "labelwise.models.multilabel": ("LabelSetClassifier",),
}
_LAZY = {name: module for module, names in _PUBLIC.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labelwise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

_EAGER = (
    "InvalidDataError",
    "InvalidParameterError",
    "LabelwiseError",
    "ModelCapabilityError",
    "PoolExhaustedError",
    "__version__",
)


def _order(name: str) -> tuple[int, str]:
    """CONSTANTS, then Classes, then functions (the order ruff keeps literal lists in)."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


__all__ = sorted([*_EAGER, *_LAZY], key=_order)
