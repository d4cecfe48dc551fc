"""The package's shape: no import cycles, layers that only import downwards, small modules.

Every module of ``he_fed`` and of the CLI (``cli/``, installed as ``he_fed.cli``) is
parsed with :mod:`ast`. Imports inside functions count as much as module-level ones:
a lazy import hides a cycle from the interpreter, not from the design. Imports under
``if TYPE_CHECKING:`` never run, so they are left out of the cycle check (a key and
the vector it makes may name each other in annotations), but they must still point
down the layers. The layers, bottom to top, are listed in :data:`LAYERS`; a module
may import its own layer or any layer below it, never one above.

Run this file with ``-s`` to print the import arrows between layers.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Modules that sit in the application layer (beside the CLI) although their names
#: place them lower, with the reason. Flower apps name their ServerApp and ClientApp
#: by import path, so the app he-fed ships keeps the name existing apps point at; it
#: runs whole experiments, so it imports ``he_fed.experiment``, and nothing in the
#: runtime imports it.
ENTRY_POINTS: dict[str, str] = {
    "he_fed.runtime.flower.app": (
        "the Flower App's entry points he_fed.runtime.flower.app:server and :client; "
        "it runs an experiment (imports he_fed.experiment)"
    ),
}

#: Where each top-level package's sources live (the CLI is installed as he_fed.cli).
SOURCES: dict[str, Path] = {"he_fed": ROOT / "he_fed", "he_fed.cli": ROOT / "cli"}

#: Layers bottom to top. A module belongs to the layer with the longest matching
#: prefix; modules in one layer may import each other (without a cycle).
#: ``he_fed.runtime.flower`` shares the runtime layer: ``run_federation`` starts a
#: Flower simulation for the ``"flower"`` executor name (lazily, so that importing
#: he_fed never imports Flower).
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "he_fed.exceptions",
        "he_fed._version",
        "he_fed._files",
        "he_fed._validation",
        "he_fed._environment",
        "he_fed._lazy",
    ),
    ("he_fed.crypto",),
    ("he_fed.models", "he_fed.data"),
    ("he_fed.privacy",),
    ("he_fed.protocol",),
    ("he_fed.runtime",),
    (
        "he_fed.federated",
        "he_fed._history",
        "he_fed._adjust",
        "he_fed._estimator_doc",
        "he_fed._fit_settings",
        "he_fed._private_fit",
    ),
    ("he_fed.experiment", "he_fed._experiment_data", "he_fed._result_json"),
    ("he_fed.bench",),
    ("he_fed.cli", *ENTRY_POINTS),
    ("he_fed",),
)

#: Modules allowed to hold more lines than :data:`MAX_LINES`, with the reason.
MAX_LINES = 500
LONG_MODULES: dict[str, str] = {}


def _module_name(path: Path, package: str, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            found[_module_name(path, package, root)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(target: str) -> str | None:
    """The he_fed module that importing ``target`` from ``name`` loads, if any."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """Ids of the nodes inside ``if TYPE_CHECKING:`` blocks (imports that never run)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                inside.update(id(n) for n in ast.walk(statement))
    return inside


def _imports(name: str, *, type_checking: bool) -> set[str]:
    """Every he_fed module ``name`` imports, at module level or inside functions.

    With ``type_checking=False``, imports under ``if TYPE_CHECKING:`` are left out.
    """
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    skipped = set() if type_checking else _type_checking_nodes(tree)
    package = name if _is_package(name) else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # ``from pkg import sub`` imports the submodule pkg.sub when there is one.
            names = [f"{stem}.{alias.name}" for alias in node.names]
            names = [n if n in MODULES else stem for n in names]
        else:
            continue
        for target in names:
            if target.startswith("he_fed"):
                resolved = _resolve(target)
                if resolved is not None and resolved != name:
                    targets.add(resolved)
    return targets


#: Imports that run (module level and inside functions): these must form no cycle.
GRAPH: dict[str, set[str]] = {name: _imports(name, type_checking=False) for name in MODULES}
#: Every import, annotations-only ones included: these must point down the layers.
ALL_IMPORTS: dict[str, set[str]] = {name: _imports(name, type_checking=True) for name in MODULES}


def _layer(name: str) -> int:
    best, best_len = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same module."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == grey:
                return [*stack[stack.index(nxt) :], nxt]
            if colour[nxt] == white and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(graph):
        if colour[node] == white and (cycle := visit(node)) is not None:
            return cycle
    return None


def _layer_name(index: int) -> str:
    return "/".join(p.removeprefix("he_fed.") for p in LAYERS[index])


def layer_arrows() -> dict[tuple[int, int], list[tuple[str, str]]]:
    """Imports between different layers, keyed by (importing layer, imported layer)."""
    arrows: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)
    for name, targets in ALL_IMPORTS.items():
        for target in sorted(targets):
            pair = (_layer(name), _layer(target))
            if pair[0] != pair[1]:
                arrows[pair].append((name, target))
    return arrows


def test_every_module_has_a_layer() -> None:
    assert [name for name in MODULES if _layer(name) < 0] == []


def test_no_import_cycles() -> None:
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_point_down_the_layers() -> None:
    arrows = layer_arrows()
    print("\nlayers, bottom to top:")
    for index in range(len(LAYERS)):
        below = sorted({_layer_name(b) for (a, b) in arrows if a == index and b < index})
        print(f"  {index:2d} {_layer_name(index):<40} -> {', '.join(below) or '-'}")
    upward = [
        f"{name} -> {target}"
        for (a, b), pairs in sorted(arrows.items())
        if b > a
        for name, target in pairs
    ]
    assert upward == [], "imports pointing up the layers:\n" + "\n".join(upward)


def test_the_graph_sees_lazy_imports_and_resolves_names() -> None:
    # Function-level and relative imports count, and he_fed.cli resolves to cli/.
    assert "he_fed.federated" in GRAPH["he_fed.bench.estimate"]
    assert "he_fed.cli._roles" in GRAPH["he_fed.cli.ticket"]
    assert "he_fed.crypto.base" in ALL_IMPORTS["he_fed.crypto._vector"]
    assert "he_fed.crypto.base" not in GRAPH["he_fed.crypto._vector"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    if name in LONG_MODULES:
        pytest.skip(LONG_MODULES[name])
    assert lines <= MAX_LINES, f"{name} has {lines} lines (limit {MAX_LINES})"
