"""The public API: every name in ``__all__`` exists, the lists are sorted, nothing is missing."""

import importlib

import pytest

MODULES = [
    "labelwise",
    "labelwise.models.committee",
    "labelwise.io.load",
    "labelwise.learning.evaluate",
    "labelwise.exceptions",
    "labelwise.features",
    "labelwise.learning.history",
    "labelwise.learning.learner",
    "labelwise.learning.loop",
    "labelwise.models.registry",
    "labelwise.learning.pool",
    "labelwise.strategies.query",
    "labelwise.learning.report",
    "labelwise.strategies.scorers",
    "labelwise.strategies.selectors",
    "labelwise.learning.simulate",
    "labelwise.learning.stopping",
    "labelwise.strategies",
    "labelwise.benchmark.lu2023",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name):
    module = importlib.import_module(name)
    exported = module.__all__
    # isort-style order, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions.
    kind = lambda s: 0 if s.isupper() else 1 if s[0].isupper() else 2  # noqa: E731
    assert exported == sorted(exported, key=lambda s: (kind(s), s))
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


def test_top_level_reexports_every_public_class_of_the_core():
    import labelwise

    for attr in (
        "ActiveLearner",
        "Pool",
        "query",
        "BatchMix",
        "simulate",
        "make_strategy",
        "LabelwiseError",
        "PoolExhaustedError",
        "Budget",
        "Plateau",
    ):
        assert attr in labelwise.__all__


def test_exception_tree():
    from labelwise import exceptions as e

    for cls in (
        e.InvalidDataError,
        e.InvalidParameterError,
        e.PoolExhaustedError,
        e.ModelCapabilityError,
    ):
        assert issubclass(cls, e.LabelwiseError)
    assert issubclass(e.InvalidDataError, ValueError)
    assert issubclass(e.ModelCapabilityError, TypeError)
