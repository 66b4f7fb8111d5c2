"""Execution for tools/notebooks.py: its ``refresh`` and ``run-all`` commands (the part that needs nbclient).

Use it through tools/notebooks.py (``refresh [NOTEBOOK ...]``, ``run-all``). Notebooks run in ``notebooks/`` (their
relative paths ``data`` and ``../figures`` resolve there), on the kernel named ``python3`` but always started with
*this* interpreter, so a stray user-level ``python3`` kernelspec cannot pick another environment. They run *solved*:
each exercise cell executes its solution from ``notebooks/solutions/`` (tools/exercises.py), as under nbval, and
``refresh`` writes the committed student version back (``FARNET_STUDENT=1``: the blanks run as committed).
``run-all`` does not rewrite the committed notebooks; it only regenerates what they save.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError


def _load(name: str):
    """A sibling tool (tools/<name>.py), by file path: tools/ is not a package."""
    spec = importlib.util.spec_from_file_location(f"farnet_tool_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nbtools, extool = _load("notebooks"), _load("exercises")


class ThisPythonKernelManager(AsyncKernelManager):
    """The ``python3`` kernel, always started by the interpreter running this script (e.g. ``.venv/bin/python``)."""

    @property
    def kernel_spec(self):
        spec = AsyncKernelManager.kernel_spec.fget(self)
        if spec is not None:
            spec.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        return spec


def execute_notebook(path: Path, quick: Optional[bool] = None, timeout: Optional[int] = nbtools.CELL_TIMEOUT_S):
    """Run a notebook top to bottom in notebooks/ -> (executed copy, seconds). quick=None keeps FARNET_QUICK as is.
    Exercise cells run their solutions; the returned copy holds their committed (student) sources again."""
    nb = nbtools.read_notebook(path)
    committed = {}
    if os.environ.get("FARNET_STUDENT") != "1":
        solved = extool.solved_sources(path)
        for ident, index in extool.exercise_cells(nb).items():
            if ident in solved:
                committed[index], nb.cells[index].source = nb.cells[index].source, solved[ident]
    saved = os.environ.get("FARNET_QUICK")
    if quick is not None:
        os.environ["FARNET_QUICK"] = "1" if quick else "0"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", coalesce_streams=True,
                            kernel_manager_class=ThisPythonKernelManager,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        if quick is not None:
            if saved is None:
                os.environ.pop("FARNET_QUICK", None)
            else:
                os.environ["FARNET_QUICK"] = saved
    for index, source in committed.items():
        nb.cells[index].source = source
    return nb, time.perf_counter() - start


def _run(path: Path, quick: Optional[bool], timeout: Optional[int]):
    """execute_notebook with a one-paragraph failure message instead of a kernel traceback dump."""
    try:
        return execute_notebook(path, quick, timeout)
    except (CellExecutionError, CellTimeoutError) as err:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()   # drop terminal colours
        tail = "\n    ".join(message[-12:])
        print(f"FAILED {path.name}:\n    {tail}", file=sys.stderr)
        return None, 0.0


def cmd_refresh(paths: Sequence[str], timeout: int) -> int:
    for path in nbtools.notebook_paths(paths):
        nb, seconds = _run(path, quick=True, timeout=timeout)
        if nb is None:
            return 1
        warnings = nbtools.strip_notebook(nb)
        if warnings:
            for warning in warnings:
                print(f"ERROR {path.name}: {warning}", file=sys.stderr)
            print(f"{path.name} left unchanged: make the marked cells print small text only.", file=sys.stderr)
            return 1
        nbtools.write_notebook(nb, path)
        print(f"refreshed {path.name} in {seconds:.1f} s (quick mode)")
    return 0


def cmd_run_all(timeout: Optional[int]) -> int:
    quick = os.environ.get("FARNET_QUICK") == "1"
    mode = "quick" if quick else "full" if os.environ.get("FARNET_QUICK") == "0" else "default (quick without a GPU)"
    if timeout is None and quick:
        timeout = nbtools.CELL_TIMEOUT_S
    print(f"running every notebook in {nbtools.NOTEBOOK_DIR}, {mode} mode")
    total = 0.0
    for path in nbtools.notebook_paths():
        nb, seconds = _run(path, quick=None, timeout=timeout)
        if nb is None:
            return 1
        total += seconds
        print(f"{path.name}: {seconds:.1f} s", flush=True)
    print(f"all notebooks ran in {total:.1f} s; figures are in {nbtools.REPO / 'figures'}")
    return 0
