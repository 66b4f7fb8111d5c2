"""The package's layout: imports go one way (no cycle, counting imports inside functions too) and modules stay small.

The import graph is read from the source with ``ast`` (nothing is imported): an edge A -> B for every
``import farnet_lite.B`` / ``from farnet_lite.B import x`` / ``from farnet_lite import B`` anywhere in A, at module
level or inside a function. Importing ``farnet_lite.data.x`` also runs ``farnet_lite/data/__init__.py``, so it adds
an edge to the subpackage ``farnet_lite.data`` as well. The top-level package ``farnet_lite`` is left out: Python
initialises it before any of its modules, and ``__init__`` only re-exports. The graph is drawn by tools/import_graph.py.
"""
import ast
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("farnet_import_graph", REPO / "tools" / "import_graph.py")
house = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = house
_spec.loader.exec_module(house)
find_cycle, import_graph, imported_names, module_files = (house.find_cycle, house.import_graph, house.imported_names,
                                                          house.module_files)
MAX_MODULE_LINES = house.MAX_MODULE_LINES


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
    assert "farnet_lite.data" in graph["farnet_lite.datasets"]  # importing data.hand runs data/__init__ too


def test_no_import_cycle_among_package_modules():
    cycle = find_cycle(import_graph())
    assert not cycle, f"import cycle: {' -> '.join(cycle)}; move the shared piece to a lower module"


def test_no_arrow_points_up_the_plan():
    """core, data, download <- pictures <- engine <- reproduction: the model never imports the engine, the engine never
    the paper's bookkeeping (the entry points cli and demo may import anything)."""
    assert house.upward_arrows(import_graph()) == []
    planted = {"farnet_lite.model": {"farnet_lite.engine.train"}, "farnet_lite.engine.train": set()}
    assert house.upward_arrows(planted) == ["farnet_lite.model -> farnet_lite.engine.train"]
    assert {house.wing(room) for room in import_graph()} == set(house.PLAN) | {"entry"}


def test_no_module_is_too_long():
    long = {name: n for name, path in module_files().items() if (n := len(path.read_text().splitlines()))
            > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"
