"""The strategy layer's modules: each imports alone, none imports in a circle, and what runs on
a cluster is what the strategies declare (no list kept beside them)."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from labelwise.scale import supports
from labelwise.strategies.backends import (
    CAPABILITIES,
    DRAWS_WHILE_SCORING,
    MatrixBackend,
    unsupported,
)
from labelwise.strategies.bandit import StrategyBandit
from labelwise.strategies.base import Selection
from labelwise.strategies.factory import make_strategy
from labelwise.strategies.registry import available_strategies
from labelwise.strategies.sampling import Explore

SRC = Path(__file__).resolve().parents[1] / "src"

#: The strategy layer, and what it stands on.
LAYER = [
    "labelwise.pool",
    "labelwise.strategies.selectors",
    "labelwise.strategies.committee",
    "labelwise.strategies.backends",
    "labelwise.strategies.base",
    "labelwise.strategies.among_top",
    "labelwise.strategies.utility",
    "labelwise.strategies.sampling",
    "labelwise.strategies.registry",
    "labelwise.strategies.bandit",
    "labelwise.strategies.factory",
    "labelwise.strategies",
    "labelwise.strategies.query",
    "labelwise.scale.topk",
    "labelwise.scale.shards",
    "labelwise.scale.backend",
    "labelwise.scale.score",
]


#: The modules of the strategies themselves, each imported first in a fresh interpreter.
STRATEGY_MODULES = [
    m
    for m in LAYER
    if m
    not in (
        "labelwise.pool",
        "labelwise.strategies.selectors",
        "labelwise.strategies.committee",
        "labelwise.scale.topk",
        "labelwise.scale.shards",
    )
]


@pytest.mark.parametrize("module", STRATEGY_MODULES)
def test_each_module_imports_alone(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)


def _imports(module: str, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``module`` imports, anywhere in it (inside functions too)."""
    path = SRC / Path(*module.split("."))
    source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return (found & known) - {module}


def test_no_import_circle_in_the_strategy_layer():
    known = set(LAYER)
    graph = {m: _imports(m, known) for m in LAYER}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path, module]))
        if module in done:
            return
        for dep in sorted(graph[module]):
            visit(dep, [*path, module])
        done.add(module)

    for module in LAYER:
        visit(module, [])
    assert "labelwise.strategies" not in graph["labelwise.strategies.bandit"]


@dataclass(frozen=True)
class _Drawing:
    """A strategy that declares it draws while it scores, as BALD does."""

    name: str = "drawing"
    needs_model: bool = True
    needs: ClassVar[frozenset[str]] = frozenset({DRAWS_WHILE_SCORING})

    def select(self, ctx, batch_size, rng):  # pragma: no cover - never run here
        return Selection(np.empty(0, np.intp), np.empty(0))


@dataclass(frozen=True)
class _Plain:
    """A strategy that declares nothing: it reads the pool through the backend only."""

    name: str = "plain"
    needs_model: bool = False

    def select(self, ctx, batch_size, rng):  # pragma: no cover - never run here
        return Selection(np.empty(0, np.intp), np.empty(0))


def test_what_runs_on_a_cluster_is_what_strategies_declare():
    runnable = {name for name in available_strategies() if supports(name)}
    assert runnable == set(available_strategies()) - {"bald"}
    assert not supports("bald+kmeans") and not supports("bald+explore")
    assert supports(_Plain()) and not supports(_Drawing())
    assert not supports(Explore(_Drawing()))
    assert not supports(StrategyBandit(arms=("margin", "bald")))
    assert supports(StrategyBandit(arms=("margin", "random")))


def test_a_refusal_says_why():
    from labelwise.scale.backend import PartitionedBackend

    why = unsupported(make_strategy("bald"), PartitionedBackend)
    assert why is not None
    assert why.startswith("strategy 'bald' cannot run on a cluster: ")
    assert CAPABILITIES[DRAWS_WHILE_SCORING] in why
    assert unsupported(make_strategy("bald"), MatrixBackend) is None
