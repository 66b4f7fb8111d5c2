"""The package's layout: imports go one way (no cycle, counting imports inside functions too) and modules stay small.

The import graph is read from the source with ``ast`` (nothing is imported): an edge A -> B for every
``import farnet_lite.B`` / ``from farnet_lite.B import x`` / ``from farnet_lite import B`` anywhere in A, at module
level or inside a function. Importing ``farnet_lite.data.x`` also runs ``farnet_lite/data/__init__.py``, so it adds
an edge to the subpackage ``farnet_lite.data`` as well. The top-level package ``farnet_lite`` is left out: Python
initialises it before any of its modules, and ``__init__`` only re-exports.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "farnet_lite"
MAX_MODULE_LINES = 420


def module_files() -> Dict[str, Path]:
    """``{dotted module name: file}`` for every .py file of the package (``__init__`` named after its folder)."""
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _resolve(name: str, modules: Dict[str, Path]) -> str:
    """The longest module of the package that ``name`` (a module, or a module + attribute) refers to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def imported_names(tree: ast.AST) -> List[str]:
    """Every absolute ``farnet_lite...`` name imported anywhere in ``tree`` (``from m import x`` gives ``m`` and
    ``m.x``: x may be a submodule)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return [n for n in names if n == "farnet_lite" or n.startswith("farnet_lite.")]


def import_graph() -> Dict[str, Set[str]]:
    """``{module: modules it imports}``, with the subpackages whose ``__init__`` such an import runs."""
    modules = module_files()
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in imported_names(ast.parse(path.read_text(), str(path))):
            target = _resolve(target, modules)
            while target and target != "farnet_lite":
                if target != name and not name.startswith(target + "."):  # not itself nor its own packages
                    edges.add(target)
                target = target.rpartition(".")[0]
        graph[name] = edges
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle as ``[a, b, ..., a]``, or ``[]`` when the graph is acyclic (depth-first search)."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: finished
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return []


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    tree = ast.parse("import os\nfrom farnet_lite import layers\ndef f():\n    from farnet_lite.data.errors import X\n")
    assert imported_names(tree) == ["farnet_lite", "farnet_lite.layers", "farnet_lite.data.errors",
                                    "farnet_lite.data.errors.X"]


def test_graph_sees_function_level_imports_and_subpackages():
    graph = import_graph()
    assert {"farnet_lite.layers"} <= graph["farnet_lite.model"]
    assert {"farnet_lite.model", "farnet_lite.baselines"} <= graph["farnet_lite.systems"]
    assert "farnet_lite.data" in graph["farnet_lite.datasets"]  # data/__init__ runs before data.hand


def test_no_import_cycle_among_package_modules():
    cycle = find_cycle(import_graph())
    assert not cycle, f"import cycle: {' -> '.join(cycle)}; move the shared piece to a lower module"


def test_no_module_is_too_long():
    long = {name: n for name, path in module_files().items() if (n := len(path.read_text().splitlines()))
            > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"
