"""The layers of docs/ARCHITECTURE.md hold: each module imports only its own layer and those
below it (imports inside functions included), and no imports form a circle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import labelwise

PACKAGE = Path(labelwise.__file__).parent

#: Lower numbers are lower layers; a module may import its own layer or a lower one.
LAYERS = {
    "exceptions": 0,
    "pool": 0,
    "label_sets": 0,
    "io": 1,
    "datasets": 1,
    "features": 2,
    "models": 3,
    "strategies": 4,
    "learning": 5,
    "benchmark": 6,
    "scale": 6,
    "store": 6,
    "services": 7,
    "server": 8,
    "cli": 9,
}
#: Parts of a layer that stand beside each other and must not import one another.
APART = [("scale", "store"), ("benchmark", "store"), ("benchmark", "scale")]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(path: Path, *, top_level: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    if top_level:
        for node in tree.body:
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                continue
            nodes.extend(node.body if isinstance(node, (ast.If, ast.Try)) else [node])
    else:
        nodes = list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labelwise"):
            found.update(f"{node.module}.{a.name}" for a in node.names)
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("labelwise"))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_part_of_the_package_has_a_layer():
    parts = {_layer(m) for m in _modules()} - {None}
    assert parts <= set(LAYERS), f"not in docs/ARCHITECTURE.md's layers: {parts - set(LAYERS)}"


def test_modules_import_only_their_layer_and_the_ones_below():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        here = _layer(name)
        if here is None:  # labelwise/__init__.py: the public names, loaded lazily
            continue
        for imported in _imports(path, top_level=False):
            there = _layer(imported)
            if there is None or there == here or there not in LAYERS:  # a name, not a module
                continue
            if LAYERS[there] > LAYERS[here] or {here, there} in map(set, APART):
                wrong.append(f"{name} imports {imported}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle():
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path, top_level=True) if m in modules and m != name}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(modules):
        if name not in state:
            visit(name, [])
    # a package imports its own submodules as it loads: not a circle
    circles = [c for c in circles if not (len(c) == 3 and c[1].startswith(c[0] + "."))]
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_no_module_is_over_500_lines():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not long, long
