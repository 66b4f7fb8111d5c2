"""The package's house as drawn from its imports: rooms (modules), arrows (imports between them), floors.

    python tools/import_graph.py            # rooms, arrows, floors, the longest chain, each wing's rooms
    python tools/import_graph.py --edges    # also every arrow, one per line

A room is a module of ``farnet_lite`` (a package's ``__init__`` counts as a room of its own; the top-level
``farnet_lite/__init__.py`` is left out: Python initialises it before any of its modules, and it only
re-exports); an arrow is an ``import`` (at module level or inside a function) from one room to another, plus one
to each subpackage whose ``__init__`` that import runs; the floors are the rooms on the longest chain of arrows.
``tests/test_layout.py`` checks on the same graph that it has no circle and that no arrow points from a wing
down the plan (core, data, download <- pictures <- engine <- reproduction) back up.
"""
from __future__ import annotations

import argparse
import ast
import functools
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "farnet_lite"
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


def longest_chain(graph: Dict[str, Set[str]]) -> List[str]:
    """The longest chain of arrows (the graph must have no circle)."""
    @functools.lru_cache(maxsize=None)
    def below(room):
        chains = [below(t) for t in graph[room]]
        return (room,) + max(chains, key=len, default=())

    return list(max((below(room) for room in sorted(graph)), key=len))


ENTRY_POINTS = ("farnet_lite", "farnet_lite.cli", "farnet_lite.demo")
"""The package itself and the commands: they stand above every wing."""
PLAN = ("core", "data", "download", "pictures", "engine", "reproduction")
"""The wings from the bottom up: an arrow may point down the plan or within a wing, never up (data and download
stand beside the core, which reads the datasets' specs through ``datasets``)."""
RANK = {"core": 0, "data": 0, "download": 0, "pictures": 1, "engine": 2, "reproduction": 3}


def wing(room: str) -> str:
    """``farnet_lite.engine.train`` -> ``engine``; a top-level module -> ``core``; the entry points -> ``entry``."""
    if room in ENTRY_POINTS:
        return "entry"
    parts = room.split(".")
    return parts[1] if (PACKAGE / parts[1]).is_dir() else "core"


def upward_arrows(graph: Dict[str, Set[str]]) -> List[str]:
    """Every arrow from a room to a wing above its own (``"a -> b"``); the entry points may import anything."""
    wrong = []
    for room, targets in sorted(graph.items()):
        if wing(room) == "entry":
            continue
        for target in sorted(targets):
            if wing(target) == "entry" or RANK[wing(target)] > RANK[wing(room)]:
                wrong.append(f"{room} -> {target}")
    return wrong


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="also print every arrow")
    args = parser.parse_args(argv)
    graph = import_graph()
    cycle = find_cycle(graph)
    files = module_files()
    empty = {room for room, path in files.items() if path.name == "__init__.py" and not imported_names(
        ast.parse(path.read_text()))}                      # folders whose __init__ imports nothing
    to_empty = sum(1 for targets in graph.values() for target in targets if target in empty)
    print(f"rooms {len(graph)}, arrows {sum(map(len, graph.values()))} ({to_empty} of them into package folders "
          f"whose __init__ imports nothing), circle: {' -> '.join(cycle) or 'none'}")
    if not cycle:
        chain = longest_chain(graph)
        print(f"floors {len(chain)}: " + " -> ".join(r.replace("farnet_lite.", "") for r in chain))
    print(f"arrows up the plan: {', '.join(upward_arrows(graph)) or 'none'}")
    wings: Dict[str, List[str]] = {}
    for room in graph:
        wings.setdefault(wing(room), []).append(room.replace("farnet_lite.", "") or "farnet_lite")
    for name, rooms in sorted(wings.items()):
        print(f"{name:13s} {len(rooms):2d}: {', '.join(sorted(rooms))}")
    if args.edges:
        for room in sorted(graph):
            for target in sorted(graph[room]):
                print(f"{room} -> {target}")


if __name__ == "__main__":
    main()
