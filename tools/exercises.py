"""Student blanks and their solutions in one place: ``student``, ``check``, ``solve`` and ``list``.

    .venv/bin/python tools/exercises.py student [NOTEBOOK ...]        # write the blanks from notebooks/solutions/
    .venv/bin/python tools/exercises.py check   [NOTEBOOK ...]        # exit 1 if a blank is stale or unmatched (CI)
    .venv/bin/python tools/exercises.py solve NOTEBOOK -o OUT.ipynb   # a solved copy, for a teacher
    .venv/bin/python tools/exercises.py list    [NOTEBOOK ...]        # the blanks of each notebook

NOTEBOOK as in tools/notebooks.py (a path, a bare name in notebooks/, a folder; none = all).

The format (COURSE_PLAN.md / docs in README "Exercises"). ``notebooks/solutions/NN_name.py`` holds, for notebook
``NN_name.ipynb``, the full solved source of each exercise cell under a header line ``# %% [exercise] <id>``
(``[a-z0-9-]+``, unique in the file) up to the next ``# %%`` line; blank lines around it are dropped.
``# %% [answer] <id>`` blocks (answers to questions, as comments) and any other ``# %%`` block are not cells.
Each part the student writes lies between ``### BEGIN SOLUTION`` (optionally ``### BEGIN SOLUTION: <hint>``) and
``### END SOLUTION``, each on its own line. The student version replaces each such region by two lines at the
BEGIN line's indentation: ``# YOUR CODE HERE`` (plus `` (hint: <hint>)``) and ``raise NotImplementedError(...)``.

In a notebook an exercise cell is a code cell tagged ``exercise`` with ``metadata["exercise"] = <id>``; its
committed source is exactly the student version. ``student`` writes it; when no cell carries an id yet, the one
code cell whose source is the solution (with or without the marker lines) is tagged first. notebooks/conftest.py
puts the solved sources back when nbval runs the notebooks (``FARNET_STUDENT=1``: the blanks run as committed).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import re
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import nbformat

HEADER = re.compile(r"^# %%(?:\s+\[(\w+)\])?(?:\s+(.*?))?\s*$")   # any percent-format cell line: kind, rest
EXERCISE_ID = re.compile(r"^[a-z0-9-]+$")
BEGIN = re.compile(r"^(\s*)### BEGIN SOLUTION\b:?\s*(.*?)\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
TAG = "exercise"


class Exercise(NamedTuple):
    """One ``# %% [exercise]`` block of a solutions file: id, full solved source, file, line of the source's start."""
    id: str
    solved: str
    path: Path
    line: int


def _load_notebook_tools():
    """tools/notebooks.py (finding, reading, writing notebooks), by file path: this module is also loaded by path,
    from notebooks/conftest.py and the tests, where tools/ is not on sys.path."""
    spec = importlib.util.spec_from_file_location("farnet_notebook_tools", Path(__file__).with_name("notebooks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nbtools = _load_notebook_tools()


# --------------------------------------------------------------------------------------------- the solutions file
def solutions_path(notebook: Path) -> Path:
    """``notebooks/solutions/NN_name.py`` for ``notebooks/NN_name.ipynb`` (next to the notebook, wherever it is)."""
    return notebook.parent / "solutions" / f"{notebook.stem}.py"


def _python_lines(source: str) -> str:
    """``source`` with IPython magics / shell lines (``%``, ``!``) blanked, for a syntax check."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def student_source(exercise: Exercise, notebook_number: str) -> str:
    """The student version of ``exercise``: every BEGIN/END SOLUTION region -> a hint comment + ``raise``."""
    out: List[str] = []
    region: Optional[int] = None                         # line number of the open BEGIN marker
    where = f"{exercise.path.name}, exercise {exercise.id!r}"
    for number, line in enumerate(exercise.solved.splitlines(), start=exercise.line):
        begin = BEGIN.match(line)
        if begin and region is None:
            region = number
            indent, hint = begin.groups()
            out.append(f"{indent}# YOUR CODE HERE" + (f" (hint: {hint})" if hint else ""))
            out.append(f'{indent}raise NotImplementedError("Exercise {exercise.id} of notebook {notebook_number}: '
                       f'replace this line with your code.")')
        elif begin or (END.match(line) and region is None):
            raise SystemExit(f"{where}: line {number} has {'a nested BEGIN' if begin else 'an END'} SOLUTION "
                             f"marker without an open BEGIN SOLUTION; pair each BEGIN with one END.")
        elif END.match(line):
            region = None
        elif region is None:
            out.append(line)
    if region is not None:
        raise SystemExit(f"{where}: the BEGIN SOLUTION of line {region} has no END SOLUTION; add one.")
    student = "\n".join(out)
    if student == exercise.solved:
        raise SystemExit(f"{where}: no ### BEGIN SOLUTION / ### END SOLUTION region, so the student has nothing to "
                         f"write; mark the lines the student writes.")
    for version, text in (("solved", exercise.solved), ("student", student)):
        try:
            compile(_python_lines(text), f"{where} ({version})", "exec")
        except SyntaxError as err:
            raise SystemExit(f"{where}: the {version} version is not valid Python ({err.msg}, line {err.lineno} of "
                             f"the cell); fix the solution or move the markers.") from None
    return student


def _exercise(ident: str, block: List[str], first: int, path: Path) -> Exercise:
    """An Exercise from the lines after its header (``first``: the file line of ``block[0]``), blank ends dropped."""
    while block and not block[-1].strip():
        block = block[:-1]
    leading = next((i for i, line in enumerate(block) if line.strip()), len(block))
    return Exercise(ident, "\n".join(block[leading:]), path, first + leading)


def read_solutions(path: Path) -> Dict[str, Exercise]:
    """``{id: Exercise}`` of a solutions file, in file order ({} when the file does not exist)."""
    if not path.exists():
        return {}
    exercises: Dict[str, Exercise] = {}
    current: Optional[tuple] = None                     # (id, line number of the header, lines so far)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines() + ["# %%"], start=1):
        header = HEADER.match(line)
        if not header:
            if current is not None:
                current[2].append(line)
            continue
        if current is not None:
            exercises[current[0]] = _exercise(current[0], current[2], current[1] + 1, path)
        current = None
        kind, ident = header.groups()
        if kind == "exercise":
            if not ident or not EXERCISE_ID.match(ident):
                raise SystemExit(f"{path}: line {number}: exercise id {ident!r} is not [a-z0-9-]+; write "
                                 f"`# %% [exercise] my-id`.")
            if ident in exercises:
                raise SystemExit(f"{path}: line {number}: exercise {ident!r} is defined twice; give each one id.")
            current = (ident, number, [])
    return exercises


# --------------------------------------------------------------------------------------------- the notebooks
def notebook_number(notebook: Path) -> str:
    """``"04"`` for ``04_msfa_module.ipynb`` (the stem for a notebook not named NN_...)."""
    return notebook.stem[:2] if re.match(r"^\d\d_", notebook.name) else notebook.stem


def exercise_cells(nb) -> Dict[str, int]:
    """``{id: cell index}`` of the notebook's exercise cells (tagged ``exercise`` or carrying the metadata id)."""
    cells: Dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (TAG in cell.metadata.get("tags", []) or TAG in cell.metadata):
            cells.setdefault(str(cell.metadata.get(TAG, "")), index)
    return cells


def notebook_problems(path: Path) -> List[str]:
    """Everything ``check`` reports for one notebook and its solutions file (``[]``: in sync)."""
    nb, solutions = nbtools.read_notebook(path), read_solutions(solutions_path(path))
    students = {ident: student_source(exercise, notebook_number(path)) for ident, exercise in solutions.items()}
    problems, seen = [], set()
    for index, cell in enumerate(nb.cells):
        tagged, ident = TAG in cell.metadata.get("tags", []), cell.metadata.get(TAG)
        if cell.cell_type != "code" or not (tagged or ident):
            continue
        label = f"exercise {ident!r} (cell {index})"
        if not (tagged and ident):
            problems.append(f"cell {index}: needs both the tag 'exercise' and metadata exercise=<id> (has only "
                            f"{'the tag' if tagged else 'the id'})")
        elif ident in seen:
            problems.append(f"{label}: the id is used by an earlier cell too; ids are unique per notebook")
        elif ident not in solutions:
            problems.append(f"{label}: no `# %% [exercise] {ident}` in {solutions_path(path)}")
        elif cell.source != students[ident]:
            problems.append(f"{label}: stale, not the student version of its solution "
                            f"({_first_difference(cell.source, students[ident])})")
        seen.add(ident)
    problems += [f"exercise {ident!r} of {solutions_path(path).name} has no cell in the notebook (tag one, then run "
                 f"`student`)" for ident in solutions if ident not in seen]
    return problems


def _first_difference(have: str, want: str) -> str:
    have_lines, want_lines = have.splitlines(), want.splitlines()
    for number, (a, b) in enumerate(zip(have_lines, want_lines), start=1):
        if a != b:
            return f"line {number} is {a[:60]!r}, should be {b[:60]!r}"
    return f"{len(have_lines)} lines, should be {len(want_lines)}"


def _adopt(nb, exercise: Exercise) -> Optional[int]:
    """Tag the one untagged code cell whose source is ``exercise``'s solution (markers or not); its index or None."""
    unmarked = "\n".join(line for line in exercise.solved.splitlines() if not (BEGIN.match(line) or END.match(line)))
    matches = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and TAG not in cell.metadata
               and cell.source.strip() in (exercise.solved.strip(), unmarked.strip())]
    if len(matches) != 1:
        return None
    cell = nb.cells[matches[0]]
    cell.metadata[TAG] = exercise.id
    return matches[0]


def write_student(path: Path) -> List[str]:
    """Rewrite ``path``'s exercise cells as student versions (tagging cells that hold a solution); returns what
    could not be done (``check``'s problems that remain)."""
    nb, solutions = nbtools.read_notebook(path), read_solutions(solutions_path(path))
    students = {ident: student_source(exercise, notebook_number(path)) for ident, exercise in solutions.items()}
    before = nbformat.writes(nb)
    cells = exercise_cells(nb)
    for ident, exercise in solutions.items():
        index = cells.get(ident)
        if index is None:
            index = _adopt(nb, exercise)
            if index is None:
                continue
            print(f"{path.name}: tagged cell {index} as exercise {ident!r}")
        cell = nb.cells[index]
        cell.metadata.setdefault("tags", [])
        if TAG not in cell.metadata["tags"]:
            cell.metadata["tags"].append(TAG)
        cell.source = students[ident]
    if nbformat.writes(nb) != before:
        nbtools.write_notebook(nb, path)
        print(f"wrote the blanks of {path.name}")
    return notebook_problems(path)


def solved_notebook(path: Path):
    """A copy of the notebook with every exercise cell's source replaced by its solution."""
    problems = notebook_problems(path)
    if problems:
        raise SystemExit(f"{path.name}: " + "; ".join(problems) + ". Fix them first (`student`, then `check`).")
    nb, solutions = copy.deepcopy(nbtools.read_notebook(path)), read_solutions(solutions_path(path))
    for ident, index in exercise_cells(nb).items():
        nb.cells[index].source = solutions[ident].solved
    return nb


def solved_sources(path: Path) -> Dict[str, str]:
    """``{id: solved source}`` for notebook ``path`` ({} without a solutions file): what notebooks/conftest.py runs."""
    return {ident: exercise.solved for ident, exercise in read_solutions(solutions_path(path)).items()}


# --------------------------------------------------------------------------------------------- commands
def _all_paths(paths: Sequence[str]) -> List[Path]:
    """The notebooks named, plus (with none named) those of solutions files whose notebook is missing."""
    found = nbtools.notebook_paths(paths)
    if not paths:
        for orphan in sorted((nbtools.NOTEBOOK_DIR / "solutions").glob("*.py")):
            if not (nbtools.NOTEBOOK_DIR / f"{orphan.stem}.ipynb").exists():
                raise SystemExit(f"{orphan} names no notebook {orphan.stem}.ipynb; rename it after its notebook.")
    return found


def _report(problems: Dict[Path, List[str]], fix: str) -> int:
    for path, lines in problems.items():
        print(f"{path.name}:")
        for line in lines:
            print(f"    {line}")
    if problems:
        print(f"{len(problems)} notebook(s) with exercise problems: {fix}")
    return 1 if problems else 0


def cmd_student(paths: Sequence[str]) -> int:
    problems = {path: p for path in _all_paths(paths) if (p := write_student(path))}
    return _report(problems, "fix the solutions file or the cell's tag/metadata, then run `student` again.")


def cmd_check(paths: Sequence[str]) -> int:
    problems = {path: p for path in _all_paths(paths) if (p := notebook_problems(path))}
    return _report(problems, "`python tools/exercises.py student NAME` rewrites the blanks from notebooks/solutions/.")


def cmd_solve(path: str, out: str) -> int:
    (notebook,) = nbtools.notebook_paths([path])
    target = Path(out)
    if target.resolve() == notebook.resolve():
        raise SystemExit(f"solve would overwrite the committed student notebook {notebook}; give another -o path.")
    nbtools.write_notebook(solved_notebook(notebook), target)
    print(f"wrote {target} (the solved {notebook.name})")
    return 0


def _blank_names(exercise: Exercise) -> List[str]:
    """Where each blank sits: ``UpBlock.forward``, ``encode_heatmaps``; at top level its hint (or first code line)."""
    lines, names = exercise.solved.splitlines(), []
    code = [line.split("  #")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for index, line in enumerate(lines):
        begin = BEGIN.match(line)
        if not begin:
            continue
        indent, parts = len(line) - len(line.lstrip()), []
        for above in reversed(lines[:index]):               # the enclosing def / class lines, innermost first
            depth = len(above) - len(above.lstrip())
            found = re.match(r"\s*(?:async\s+)?(?:def|class)\s+(\w+)", above)
            if found and depth < indent:
                parts.insert(0, found.group(1))
                indent = depth
        names.append(".".join(parts) or begin.group(2) or (code[0] if code else "?"))
    return names


def cmd_list(paths: Sequence[str]) -> int:
    total = 0
    for path in _all_paths(paths):
        solutions = read_solutions(solutions_path(path))
        cells = exercise_cells(nbtools.read_notebook(path))
        if not solutions:
            continue
        blanks = {ident: _blank_names(exercise) for ident, exercise in solutions.items()}
        count = sum(len(names) for names in blanks.values())
        total += count
        print(f"{path.name}: {len(solutions)} exercise(s), {count} blank(s)")
        for ident, names in blanks.items():
            print(f"    {ident} (cell {cells.get(ident, '?')}): {', '.join(dict.fromkeys(n[:60] for n in names))}")
    print(f"{total} blank(s) in all")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("student", "write the student version of every exercise cell from notebooks/solutions/"),
                       ("check", "exit 1 if an exercise cell is stale or has no solution (or a solution no cell)"),
                       ("list", "the blanks of each notebook")):
        sub.add_parser(name, help=text).add_argument("paths", nargs="*", help="notebooks (default: all)")
    p = sub.add_parser("solve", help="write a copy of a notebook with its solutions filled in")
    p.add_argument("path", help="the notebook")
    p.add_argument("-o", "--output", required=True, help="where to write the solved copy (.ipynb)")
    args = parser.parse_args(argv)
    if args.command == "solve":
        return cmd_solve(args.path, args.output)
    return {"student": cmd_student, "check": cmd_check, "list": cmd_list}[args.command](args.paths)


if __name__ == "__main__":
    sys.exit(main())
