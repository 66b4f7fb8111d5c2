"""Keep the course notebooks clean and runnable: ``strip``, ``check``, ``refresh`` and ``run-all``.

Run it from anywhere with the project's interpreter (it needs nbformat; ``refresh`` / ``run-all`` nbclient too)::

    .venv/bin/python tools/notebooks.py strip   [NOTEBOOK ...]   # drop outputs, keep the marked cells' small text
    .venv/bin/python tools/notebooks.py check   [NOTEBOOK ...]   # exit 1 listing every unclean notebook / cell (CI)
    .venv/bin/python tools/notebooks.py refresh [NOTEBOOK ...]   # run in quick mode (FARNET_QUICK=1), then strip
    .venv/bin/python tools/notebooks.py run-all                  # run every notebook in order; figures -> figures/
    .venv/bin/python tools/notebooks.py set-repo [OWNER/NAME] [--branch B]   # Colab badges + setup cells -> a fork

A NOTEBOOK is a path (``notebooks/01_heatmap_ground_truth.ipynb``), a bare name found in ``notebooks/``
(``01_heatmap_ground_truth`` or ``01_heatmap_ground_truth.ipynb``) or a folder; none means every notebook.

What "clean" means (docs/NOTEBOOKS.md): no outputs, ``execution_count`` null, no cell metadata but ``tags`` and
``exercise`` (an exercise's id, tools/exercises.py), notebook metadata reduced to the ``python3`` kernelspec --
except in cells whose first line is ``# NBVAL_CHECK_OUTPUT``, which keep their stdout text and ``text/plain``
results, and an execution count (nbval refuses stored outputs of a cell whose count is null), so that ``pytest
--nbval-lax`` can compare them. Those cells must produce nothing else (no figure, no HTML table, no stderr warning):
``refresh`` refuses to write a notebook whose marked cell does, because nbval would then fail on it. ``check`` also
checks the opening that every notebook shares (title with Colab badge, setup cell, parameters cell, version line)
and that it has an exercise with a check cell.

The GitHub repository the notebooks install from on Colab is named in one place, ``[tool.farnet-lite]`` of
pyproject.toml (``repository = "OWNER/NAME"``, ``branch``). Every notebook's first code cell is ``SETUP_TEMPLATE``
below filled with it, and its title links the badge to it; ``check`` fails when one differs. ``set-repo OWNER/NAME``
writes the setting and rewrites every badge and setup cell (without arguments: from the current setting, e.g. after
editing ``SETUP_TEMPLATE``); running it twice changes nothing.

``refresh`` and ``run-all`` live in tools/notebook_run.py (how notebooks are executed: in ``notebooks/``, with this
interpreter, exercise cells solved from notebooks/solutions/ as under nbval).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import re
import string
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import nbformat

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
MARKER = "# NBVAL_CHECK_OUTPUT"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
CLEAN_METADATA = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
KEPT_CELL_METADATA = ("tags", "exercise")   # "exercise": the id of a blank (tools/exercises.py)
CELL_TIMEOUT_S = 300
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_LINK = "https://colab.research.google.com/github/"
PYPROJECT = REPO / "pyproject.toml"
REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")   # GitHub's OWNER/NAME
BRANCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")
SETTING = re.compile(r"^\[tool\.farnet-lite\][^\n]*\n(.*?)(?=^\[|\Z)", re.M | re.S)   # its body, group 1
BADGE_TARGET = re.compile(re.escape(COLAB_LINK) + r"[^/\s)]+/[^/\s)]+/blob/[^\s)]+?/notebooks/")
# The first code cell of every notebook ($url, $ref from [tool.farnet-lite]); `set-repo` writes it into each notebook.
SETUP_TEMPLATE = string.Template("""\
# Setup, the same in every notebook (tools/notebooks.py writes it; a fork: `python tools/notebooks.py set-repo`).
# Installs the kit only where `import farnet_lite` fails (a fresh Colab), keeps data and runs on Google Drive if you
# ask (USE_DRIVE, Colab only) and says which GPU runs. Where the kit is installed it installs and mounts nothing.
import os, subprocess, sys
KIT_URL, KIT_REF = "$url", "$ref"
USE_DRIVE = False   # Colab: True = data and runs in MyDrive/farnet-lite, which survive a disconnect
IN_COLAB = "google.colab" in sys.modules
try:
    import farnet_lite
except ImportError:
    print(f"Installing farnet-lite from {KIT_URL}@{KIT_REF} ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{KIT_URL}@{KIT_REF}"], check=True)
    import importlib
    importlib.invalidate_caches()
    import farnet_lite
if USE_DRIVE and IN_COLAB:
    from google.colab import drive
    drive.mount("/content/drive")
    for variable, folder in (("FARNET_DATA", "data"), ("FARNET_RUNS", "runs")):   # read by the parameters cell
        os.environ[variable] = os.path.join("/content/drive/MyDrive/farnet-lite", folder)
import torch
GPU = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none, CPU only"
WHERE = ("Google Drive, MyDrive/farnet-lite" if USE_DRIVE and IN_COLAB
         else "this session's disk (lost when it ends; USE_DRIVE = True keeps them)" if IN_COLAB else "local folders")
print(f"farnet_lite {farnet_lite.__version__} | GPU: {GPU} | data and runs: {WHERE}")""")


# --------------------------------------------------------------------------------------------- finding notebooks
def notebook_paths(paths: Sequence[str] = ()) -> List[Path]:
    """Resolve command-line names to notebook files, in run order (sorted by name); none -> all of notebooks/."""
    if not paths:
        paths = [str(NOTEBOOK_DIR)]
    found: List[Path] = []
    for name in paths:
        candidates = [Path(name), NOTEBOOK_DIR / name, NOTEBOOK_DIR / f"{name}.ipynb"]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise SystemExit(f"No notebook {name!r}: give a path, or a name that exists in {NOTEBOOK_DIR}.")
        if path.is_dir():
            found += sorted(p for p in path.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.suffix == ".ipynb":
            found.append(path)
        else:
            raise SystemExit(f"{path} is not a .ipynb notebook; pass a notebook or the notebooks/ folder.")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return sorted(unique, key=lambda p: p.name)


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook as nbformat v4 (a clear error naming the file if it is not valid JSON)."""
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as err:  # nbformat raises several JSON / validation types
        raise SystemExit(f"Cannot read notebook {path} ({err}); fix the JSON or restore it from git.") from err


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write atomically (temp file in the same folder, then rename): never a half-written notebook."""
    write_text(nbformat.writes(nb) + "\n", path)


def write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically, keeping the file's permissions."""
    umask = os.umask(0)
    os.umask(umask)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask   # mkstemp alone would give 0600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------- strip / check
def is_checked_cell(cell) -> bool:
    """True for a code cell whose first line is ``# NBVAL_CHECK_OUTPUT`` (its text output is kept and compared)."""
    if cell.get("cell_type") != "code":
        return False
    lines = cell.get("source", "").lstrip("\n").splitlines()
    return bool(lines) and lines[0].strip() == MARKER


def _cell_label(index: int, cell) -> str:
    first = next((line for line in cell.get("source", "").splitlines() if line.strip()), "")
    first = first if len(first) <= 50 else first[:47] + "..."
    return f"cell {index} ({cell.get('cell_type')}: {first!r})"


def _kept_output(output, execution_count: Optional[int] = None) -> Optional[dict]:
    """The comparable part of one output of a marked cell, or None if nothing of it may be kept."""
    kind = output.get("output_type")
    if kind == "stream" and output.get("name") == "stdout":
        return nbformat.v4.new_output("stream", name="stdout", text=output.get("text", ""))
    if kind == "execute_result" and "text/plain" in output.get("data", {}):
        if set(output["data"]) != {"text/plain"}:
            return None  # e.g. a DataFrame (text/html too): nbval would compare the HTML as well
        return nbformat.v4.new_output("execute_result", data={"text/plain": output["data"]["text/plain"]},
                                      execution_count=execution_count)
    return None


def _describe_output(output) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return f"{output.get('name')} stream"
    if kind == "error":
        return f"error {output.get('ename')}"
    return f"{kind} ({', '.join(sorted(output.get('data', {})))})"


def strip_notebook(nb: nbformat.NotebookNode) -> List[str]:
    """Clean ``nb`` in place (see the module docstring); returns warnings about marked cells whose outputs had to be
    dropped (those cells would fail ``pytest --nbval-lax``: make them print small deterministic text only)."""
    warnings: List[str] = []
    nb.metadata = nbformat.from_dict(copy.deepcopy(CLEAN_METADATA))
    ordinal = 0
    for index, cell in enumerate(nb.cells):
        cell.metadata = nbformat.from_dict({k: cell.metadata[k] for k in KEPT_CELL_METADATA
                                            if cell.get("metadata", {}).get(k)})
        if cell.cell_type != "code":
            continue
        ordinal += 1
        # A marked cell keeps its count (or gets its position among code cells, as a top-to-bottom run gives it).
        count = (cell.get("execution_count") or ordinal) if is_checked_cell(cell) else None
        kept = []
        if is_checked_cell(cell):
            for output in cell.get("outputs", []):
                clean = _kept_output(output, count)
                if clean is None:
                    warnings.append(f"{_cell_label(index, cell)}: marked {MARKER} but produced "
                                    f"{_describe_output(output)}, which cannot be kept")
                else:
                    kept.append(clean)
        cell.outputs = kept
        cell.execution_count = count if kept else None
    return warnings


def check_notebook(nb: nbformat.NotebookNode) -> List[str]:
    """Everything ``strip_notebook`` would change or refuse, as one line per problem ([] = clean)."""
    problems: List[str] = []
    if dict(nb.get("metadata", {})) != CLEAN_METADATA:
        extra = sorted(set(nb.get("metadata", {})) - set(CLEAN_METADATA))
        problems.append(f"notebook metadata is not the clean python3 kernelspec"
                        f"{' (extra keys: ' + ', '.join(extra) + ')' if extra else ''}")
    for index, cell in enumerate(nb.cells):
        label = _cell_label(index, cell)
        noise = sorted(k for k in cell.get("metadata", {}) if k not in KEPT_CELL_METADATA)
        if noise:
            problems.append(f"{label}: cell metadata {', '.join(noise)}")
        if cell.cell_type != "code":
            continue
        outputs = cell.get("outputs", [])
        count = cell.get("execution_count")
        if count is not None and not (is_checked_cell(cell) and outputs):
            problems.append(f"{label}: execution_count {count} (should be null)")
        if count is None and is_checked_cell(cell) and outputs:
            problems.append(f"{label}: marked cell with outputs but a null execution_count (nbval would refuse it)")
        if not is_checked_cell(cell):
            if outputs:
                kinds = ", ".join(_describe_output(o) for o in outputs)
                problems.append(f"{label}: {len(outputs)} output(s) ({kinds}) in a cell not marked {MARKER}")
            continue
        if not outputs:
            problems.append(f"{label}: marked {MARKER} but has no stored output (run refresh)")
        for output in outputs:
            clean = _kept_output(output, count)
            if clean is None:
                problems.append(f"{label}: {_describe_output(output)} in a marked cell (only stdout text and "
                                f"text/plain results may be kept)")
            elif output != clean:
                problems.append(f"{label}: {_describe_output(output)} carries extra fields (metadata, count)")
    return problems


def opening_problems(nb: nbformat.NotebookNode, name: str, repo: Optional[tuple] = None) -> List[str]:
    """The shared shape of docs/NOTEBOOKS.md: title + Colab badge, setup cell, parameters cell, version line, and an
    exercise with an ``assert`` check cell. ``name`` is the file name, e.g. ``01_heatmap_ground_truth.ipynb``;
    ``repo`` is (OWNER/NAME, branch) that the badge and setup cell must name (default: pyproject's setting)."""
    problems: List[str] = []
    repository, branch = repo or read_repo_setting()
    cells = nb.cells
    stem = Path(name).stem
    number = stem.split("_", 1)[0]
    title = cells[0].source if cells and cells[0].cell_type == "markdown" else ""
    if not re.match(rf"#\s+{re.escape(number)}\s+·\s+\S", title):
        problems.append(f"the first cell must be a markdown title '# {number} · Title'")
    if COLAB_BADGE not in title or colab_url(repository, branch, name) not in title:
        problems.append(f"the title cell must carry the 'Open in Colab' badge linking to "
                        f"{colab_url(repository, branch, name)} (run `python tools/notebooks.py set-repo`)")
    code = [c.source for c in cells if c.cell_type == "code"]
    setup = 0 if code and code[0] == setup_source(repository, branch) else None
    if setup is None:
        problems.append("the first code cell must be the shared setup cell of tools/notebooks.py "
                        "(run `python tools/notebooks.py set-repo` to write it)")
    params = next((i for i, src in enumerate(code) if re.search(r"^QUICK\s*=", src, re.M)), None)
    if params is None or 'os.environ.get("FARNET_QUICK"' not in code[params] or "DATA_ROOT" not in code[params]:
        problems.append("a parameters cell with QUICK = os.environ.get(\"FARNET_QUICK\", ...) and DATA_ROOT is missing")
    elif setup is not None and params < setup:
        problems.append("the parameters cell must come after the setup cell")
    if not any("farnet_lite.__version__" in src and "QUICK=" in src for src in code):
        problems.append("the imports cell must print the farnet_lite / torch versions, device and QUICK")
    if not any(c.cell_type == "markdown" and re.search(r"\bExercise\b", c.source) for c in cells):
        problems.append("no markdown cell introduces an Exercise")
    if not any(re.search(r"^\s*assert\b", src, re.M) for src in code):
        problems.append("no check cell with an assert statement")
    return problems


# --------------------------------------------------------------------------------------------- the repository
def read_repo_setting(pyproject: Path = PYPROJECT) -> tuple:
    """(OWNER/NAME, branch) from ``[tool.farnet-lite]`` of pyproject.toml: the one place naming the repository."""
    section = SETTING.search(pyproject.read_text())
    values = dict(re.findall(r'^(repository|branch)\s*=\s*"([^"]*)"', section.group(1), re.M)) if section else {}
    if set(values) != {"repository", "branch"}:
        raise SystemExit(f"{pyproject} lacks repository = \"OWNER/NAME\" and branch = \"...\" under "
                         f"[tool.farnet-lite]; add them (the repository Colab installs the kit from).")
    return values["repository"], values["branch"]


def write_repo_setting(repository: str, branch: str, pyproject: Path = PYPROJECT) -> None:
    """Set ``repository`` and ``branch`` of ``[tool.farnet-lite]`` in pyproject.toml, leaving every other line."""
    read_repo_setting(pyproject)                      # both keys are there (or a clear error)
    text = pyproject.read_text()
    section = SETTING.search(text)
    body = section.group(1)
    for key, value in (("repository", repository), ("branch", branch)):
        body = re.sub(rf'^{key}\s*=\s*"[^"]*"', f'{key} = "{value}"', body, count=1, flags=re.M)
    write_text(text[:section.start(1)] + body + text[section.end(1):], pyproject)


def colab_url(repository: str, branch: str, name: str) -> str:
    """The 'Open in Colab' link of notebook ``name`` (file name) on ``branch`` of GitHub's ``repository``."""
    return f"{COLAB_LINK}{repository}/blob/{branch}/notebooks/{Path(name).stem}.ipynb"


def setup_source(repository: str, branch: str) -> str:
    """The first code cell of every notebook, installing the kit from ``repository`` at ``branch`` on Colab."""
    return SETUP_TEMPLATE.substitute(url=f"https://github.com/{repository}", ref=branch)


def apply_repo(nb: nbformat.NotebookNode, repository: str, branch: str) -> None:
    """Point ``nb``'s badge and setup cell at ``repository``/``branch``: the title's Colab links are rewritten, the
    first code cell is replaced when it is a setup cell (starts with '# Setup') and inserted after the title if not."""
    title = nb.cells[0]
    title.source = BADGE_TARGET.sub(f"{COLAB_LINK}{repository}/blob/{branch}/notebooks/", title.source)
    setup = setup_source(repository, branch)
    first = next((c for c in nb.cells if c.cell_type == "code"), None)
    if first is not None and first.source.startswith("# Setup"):
        first.source = setup
    else:
        nb.cells.insert(1, nbformat.v4.new_code_cell(setup))


def set_repo(paths: Sequence[Path], repository: str, branch: str) -> List[Path]:
    """Rewrite the badge and setup cell of each notebook in ``paths``; returns the ones that changed."""
    if not REPO_NAME.match(repository) or not BRANCH_NAME.match(branch):
        raise SystemExit(f"set-repo needs a GitHub OWNER/NAME and a branch, got {repository!r} and {branch!r}; "
                         f"e.g. `python tools/notebooks.py set-repo you/farnet-lite --branch main`.")
    changed = []
    for path in paths:
        nb = read_notebook(path)
        before = nbformat.writes(nb)
        apply_repo(nb, repository, branch)
        if nbformat.writes(nb) != before:
            write_notebook(nb, path)
            changed.append(path)
    return changed


# --------------------------------------------------------------------------------------------- commands
def cmd_strip(paths: Sequence[str]) -> int:
    status = 0
    for path in notebook_paths(paths):
        nb = read_notebook(path)
        before = nbformat.writes(nb)
        warnings = strip_notebook(nb)
        if nbformat.writes(nb) != before:
            write_notebook(nb, path)
            print(f"stripped {path.name}")
        for warning in warnings:
            print(f"WARNING {path.name}: {warning}", file=sys.stderr)
            status = 1
    return status


def cmd_check(paths: Sequence[str]) -> int:
    bad = 0
    for path in notebook_paths(paths):
        nb = read_notebook(path)
        problems = check_notebook(nb) + opening_problems(nb, path.name)
        if problems:
            bad += 1
            print(f"{path.name}:")
            for problem in problems:
                print(f"    {problem}")
    if bad:
        print(f"{bad} notebook(s) not clean: outputs and metadata -> `python tools/notebooks.py refresh NAME` "
              f"(or `strip NAME`); a missing opening or exercise -> edit by hand (docs/NOTEBOOKS.md).")
    return 1 if bad else 0


def cmd_set_repo(repository: Optional[str], branch: Optional[str], paths: Sequence[str]) -> int:
    current, current_branch = read_repo_setting()
    repository, branch = repository or current, branch or current_branch
    changed = set_repo(notebook_paths(paths), repository, branch)   # validates both before writing anything
    if (repository, branch) != (current, current_branch):
        write_repo_setting(repository, branch)
        print(f"pyproject.toml [tool.farnet-lite]: repository = {repository}, branch = {branch}")
    for path in changed:
        print(f"rewrote the Colab badge and setup cell of {path.name}")
    print(f"{len(changed)} notebook(s) changed; Colab installs from https://github.com/{repository}@{branch}")
    return 0


def _runner():
    """tools/notebook_run.py (``refresh``, ``run-all``: the part that needs nbclient), loaded by file path."""
    spec = importlib.util.spec_from_file_location("farnet_notebook_run", Path(__file__).with_name("notebook_run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("strip", "remove outputs except the marked cells' text"),
                       ("check", "exit 1 if a notebook is not clean"),
                       ("refresh", "execute in quick mode, then strip")):
        p = sub.add_parser(name, help=text)
        p.add_argument("paths", nargs="*", help="notebooks (default: all of notebooks/)")
        if name == "refresh":
            p.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="per-cell timeout in seconds")
    p = sub.add_parser("run-all", help="execute every notebook in order (FARNET_QUICK from the environment)")
    p.add_argument("--timeout", type=int, default=None,
                   help=f"per-cell timeout in seconds (default: {CELL_TIMEOUT_S} in quick mode, none in full mode)")
    p = sub.add_parser("set-repo", help="point every Colab badge and setup cell at a GitHub repository (a fork)")
    p.add_argument("repository", nargs="?", help="OWNER/NAME on GitHub (default: pyproject's [tool.farnet-lite])")
    p.add_argument("--branch", default=None, help="branch, tag or commit (default: the current setting)")
    p.add_argument("--notebooks", nargs="*", default=(), help="notebooks (default: all of notebooks/)")
    args = parser.parse_args(argv)
    if args.command == "set-repo":
        return cmd_set_repo(args.repository, args.branch, args.notebooks)
    if args.command == "strip":
        return cmd_strip(args.paths)
    if args.command == "check":
        return cmd_check(args.paths)
    if args.command == "refresh":
        return _runner().cmd_refresh(args.paths, args.timeout)
    return _runner().cmd_run_all(args.timeout)


if __name__ == "__main__":
    sys.exit(main())
