"""nbval runs the notebooks *solved*: each exercise cell's committed blank is swapped for its solution at collection.

The committed notebooks hold the student versions (``raise NotImplementedError`` in every blank, written by
``tools/exercises.py student``); the solutions live in ``notebooks/solutions/NN_name.py``. `make test` runs
``pytest tests --nbval-lax --nbval-current-env notebooks``; this hook replaces the source that nbval executes
(``item.cell.source`` of its cell items) for every cell tagged ``exercise``, so the notebooks run as a student who
solved them would run them. ``FARNET_STUDENT=1`` switches this off: the blanks run as committed (and fail at the
first one, as a student's "Run all" does). Items that are not notebook cells, and notebooks without exercises, are
left alone.
"""
import importlib.util
import os
from pathlib import Path

import pytest

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "exercises.py"


def _exercise_tool():
    """tools/exercises.py, loaded by file path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("farnet_exercise_tool", _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FARNET_STUDENT") == "1":
        return
    cells = [item for item in items if getattr(item, "cell", None) is not None
             and "exercise" in item.cell.get("metadata", {}).get("tags", [])]
    if not cells:
        return
    tool, solutions = _exercise_tool(), {}
    for item in cells:
        notebook = Path(str(item.fspath))
        if notebook not in solutions:
            try:
                solutions[notebook] = tool.solved_sources(notebook)
            except SystemExit as err:        # the tool's one-sentence format errors
                raise pytest.UsageError(str(err)) from None
        ident = item.cell.metadata.get("exercise")
        if ident not in solutions[notebook]:
            raise pytest.UsageError(f"{notebook.name}: exercise cell {ident!r} has no solution in "
                                    f"{tool.solutions_path(notebook)}; `python tools/exercises.py check` lists all.")
        item.cell.source = solutions[notebook][ident]
