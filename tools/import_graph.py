"""The package's house as drawn from its imports: rooms (modules), arrows (imports between them), floors.

    python tools/import_graph.py            # rooms, arrows, floors, the longest chain, each wing's rooms
    python tools/import_graph.py --edges    # also every arrow, one per line

A room is a module of ``farnet_lite`` (a package's ``__init__`` counts as a room of its own); an arrow is an
``import`` (at module level or inside a function) from one room to another; the floors are the rooms on the
longest chain of arrows. ``tests/test_layout.py`` reads the same graph to check that it has no circle and that
no arrow points from the core up into a wing.
"""
from __future__ import annotations

import argparse
import ast
import functools
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "farnet_lite"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported(node: ast.AST, here: str, is_package: bool) -> List[str]:
    """The modules an ``import`` / ``from ... import`` statement names (``from m import n`` names ``m`` and,
    where ``m.n`` is a module, ``m.n``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = here.split(".") if is_package else here.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        return [module] + [f"{module}.{alias.name}" for alias in node.names]
    return []


def import_graph() -> Dict[str, Set[str]]:
    """``{room: {rooms it imports}}`` over every module of farnet_lite."""
    paths = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            for module in _imported(node, name, path.name == "__init__.py"):
                if module in paths and module != name:
                    targets.add(module)
        graph[name] = targets
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One circle of imports (its rooms in order), or ``[]``."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(room):
        state[room] = 1
        stack.append(room)
        for target in sorted(graph[room]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[room] = 2
        return []

    for room in sorted(graph):
        if room not in state:
            found = visit(room)
            if found:
                return found
    return []


def longest_chain(graph: Dict[str, Set[str]]) -> List[str]:
    """The longest chain of arrows (the graph must have no circle)."""
    @functools.lru_cache(maxsize=None)
    def below(room):
        chains = [below(t) for t in graph[room]]
        return (room,) + max(chains, key=len, default=())

    return list(max((below(room) for room in sorted(graph)), key=len))


def wing(room: str) -> str:
    """``farnet_lite.engine.train`` -> ``engine``; a top-level module -> ``core``."""
    parts = room.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "core"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="also print every arrow")
    args = parser.parse_args(argv)
    graph = import_graph()
    cycle = find_cycle(graph)
    print(f"rooms {len(graph)}, arrows {sum(map(len, graph.values()))}, circle: {' -> '.join(cycle) or 'none'}")
    if not cycle:
        chain = longest_chain(graph)
        print(f"floors {len(chain)}: " + " -> ".join(r.replace("farnet_lite.", "") for r in chain))
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
