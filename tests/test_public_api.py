"""The public API: every name in ``__all__`` exists, the lists are sorted, nothing is missing."""

import importlib

import pytest

MODULES = [
    "labelwise",
    "labelwise.strategies.committee",
    "labelwise.io.load",
    "labelwise.learning.evaluate",
    "labelwise.exceptions",
    "labelwise.features",
    "labelwise.learning.history",
    "labelwise.learning.learner",
    "labelwise.learning.loop",
    "labelwise.models.registry",
    "labelwise.pool",
    "labelwise.strategies.query",
    "labelwise.learning.report",
    "labelwise.strategies.scorers",
    "labelwise.strategies.selectors",
    "labelwise.learning.simulate",
    "labelwise.learning.stopping",
    "labelwise.strategies.registry",
    "labelwise.benchmark.lu2023",
    "labelwise.benchmark.comparison",
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


def test_one_list_of_public_names():
    """``_PUBLIC`` is the list: ``__all__`` is made from it, each name loads from its module,
    and the imports for type checkers name the same, module by module."""
    import ast
    from pathlib import Path

    import labelwise

    tree = ast.parse(Path(labelwise.__file__).read_text())
    checked: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module is not None
                checked.setdefault(imp.module, set()).update(a.name for a in imp.names)
    assert checked == {module: set(names) for module, names in labelwise._PUBLIC.items()}
    names = [n for ns in labelwise._PUBLIC.values() for n in ns]
    assert len(names) == len(set(names)), "a name is listed twice"
    assert set(labelwise.__all__) == set(names) | set(labelwise._EAGER)
    for module, listed in labelwise._PUBLIC.items():
        loaded = importlib.import_module(module)
        for name in listed:
            assert getattr(labelwise, name) is getattr(loaded, name), name
