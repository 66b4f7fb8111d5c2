"""The exercise machinery: the checks of farnet_lite/exercises.py judge by value, tools/exercises.py writes blanks
from notebooks/solutions/ and catches stale ones, notebooks/conftest.py runs the solved cells under nbval.

The tool is exercised on a small notebook + solutions file in a temporary folder; the last tests read the committed
notebooks (every blank in sync with its solution, and checked right after it).
"""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

from farnet_lite.exercises import ExerciseNotDone, check_function, check_module
from farnet_lite.heatmaps import encode_heatmaps
from farnet_lite.layers import HeatmapOutput, UpBlock, conv_bn_relu, upsample_like

REPO = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


extool = _load("exercise_tool", REPO / "tools" / "exercises.py")
POINTS = torch.tensor([[[10.3, 5.0], [3.0, 7.5]]])   # (B=1, K=2, 2) (x, y)


# --------------------------------------------------------------------------------------------- check_function
def test_check_function_says_the_blank_is_empty():
    def blank(points, size, sigma=10.0):
        raise NotImplementedError("Exercise encode-heatmaps of notebook 01: replace this line with your code.")
    with pytest.raises(ExerciseNotDone, match=r"Eq\. 1: the blank above is still empty.*Hint: one Gaussian"):
        check_function(blank, encode_heatmaps, POINTS, (16, 20), sigma=2.0, name="Eq. 1", hint="one Gaussian")


def test_check_function_names_the_largest_difference_of_a_shifted_gaussian():
    def shifted(points, size, sigma=10.0):          # the official code's grid: one pixel off
        return encode_heatmaps(points, size, sigma, origin=1.0)
    with pytest.raises(ExerciseNotDone) as err:
        check_function(shifted, encode_heatmaps, POINTS, (16, 20), sigma=2.0, name="Eq. 1")
    message = str(err.value)
    assert "does not match farnet_lite.heatmaps.encode_heatmaps" in message and "max |difference|" in message
    expected = encode_heatmaps(POINTS, (16, 20), 2.0)
    gap = (encode_heatmaps(POINTS, (16, 20), 2.0, origin=1.0) - expected).abs()
    index = tuple(int(i) for i in np.unravel_index(int(gap.argmax()), gap.shape))
    assert f"max |difference| {float(gap.max()):.4g} at index {index}" in message


def test_check_function_passes_the_package_itself(capsys):
    check_function(lambda p, s, sigma: encode_heatmaps(p, s, sigma), encode_heatmaps, POINTS, (16, 20), sigma=2.0,
                   name="Eq. 1")
    assert "✓ Eq. 1 matches the package" in capsys.readouterr().out


def test_check_function_compares_structure_and_fields():
    ref = lambda x: HeatmapOutput(final=2 * x, coarse=x)                     # noqa: E731
    wrong_final = lambda x: HeatmapOutput(final=2 * x + 1e-3, coarse=x)      # noqa: E731
    x = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ExerciseNotDone, match=r"your output\.final differs: max \|difference\| 0\.001"):
        check_function(wrong_final, ref, x)
    with pytest.raises(ExerciseNotDone, match=r"missing `return`"):
        check_function(lambda x: None, ref, x)
    with pytest.raises(ExerciseNotDone, match=r"numpy\.ndarray .* the package's is a torch\.Tensor"):
        check_function(lambda x: x.numpy(), lambda x: x, x)
    with pytest.raises(ExerciseNotDone, match=r"your output\['loss'\] differs"):
        check_function(lambda v: {"loss": v + 1.0}, lambda v: {"loss": v}, 1.0)
    with pytest.raises(ExerciseNotDone, match=r"has shape \(3, 3\), the package's has \(1, 2, 3, 3\)"):
        check_function(lambda x: x[0, 0], lambda x: x, x)


def test_an_in_place_edit_does_not_leak_into_the_other_call():
    def doubles_in_place(x):
        return x.mul_(2)
    x = torch.ones(3)
    check_function(doubles_in_place, lambda x: 2 * x, x)
    assert torch.equal(x, torch.ones(3))


# --------------------------------------------------------------------------------------------- check_module
class SwappedUpBlock(nn.Module):
    """UpBlock with the concat in the wrong order: same names and shapes, different values."""

    def __init__(self, x_ch, skip_ch, out_ch):
        super().__init__()
        self.lateral = None
        self.conv = conv_bn_relu(x_ch + skip_ch, out_ch, 1)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, upsample_like(x, skip)], dim=1))


class RenamedUpBlock(SwappedUpBlock):
    def __init__(self, x_ch, skip_ch, out_ch):
        nn.Module.__init__(self)
        self.fuse = conv_bn_relu(x_ch + skip_ch, out_ch, 1)


class WideKernelUpBlock(SwappedUpBlock):
    def __init__(self, x_ch, skip_ch, out_ch):
        super().__init__(x_ch, skip_ch, out_ch)
        self.conv = conv_bn_relu(x_ch + skip_ch, out_ch, 3)


X, SKIP = torch.randn(2, 8, 4, 4), torch.randn(2, 6, 8, 8)


def test_check_module_finds_a_swapped_concat():
    with pytest.raises(ExerciseNotDone, match=r"with the package's weights\) does not match .*max \|difference\|"):
        check_module(lambda: SwappedUpBlock(8, 6, 4), UpBlock(8, 6, 4), X, SKIP, name="UpBlock")


def test_check_module_lists_renamed_parameters():
    with pytest.raises(ExerciseNotDone) as err:
        check_module(RenamedUpBlock(8, 6, 4), UpBlock(8, 6, 4), X, SKIP)
    message = str(err.value)
    assert "missing conv.0.bias, conv.0.weight" in message and "unexpected fuse.0.bias" in message
    assert "name your attributes as farnet_lite.layers.UpBlock does" in message


def test_check_module_reports_shapes_and_empty_blanks():
    with pytest.raises(ExerciseNotDone, match=r"conv\.0\.weight: yours \(4, 14, 3, 3\), the package's \(4, 14, 1, 1\)"):
        check_module(WideKernelUpBlock(8, 6, 4), UpBlock(8, 6, 4), X, SKIP)

    def blank():
        raise NotImplementedError("Exercise up-block of notebook 04: replace this line with your code.")
    with pytest.raises(ExerciseNotDone, match="UpBlock: the blank above is still empty"):
        check_module(blank, UpBlock(8, 6, 4), X, SKIP, name="UpBlock")


def test_check_module_passes_the_right_module_and_restores_modes(capsys):
    student, reference = UpBlock(8, 6, 4), UpBlock(8, 6, 4)
    reference.eval()
    check_module(student, reference, X, SKIP, name="UpBlock")
    assert "✓ UpBlock matches farnet_lite.layers.UpBlock (" in capsys.readouterr().out
    assert student.training and not reference.training
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), reference.state_dict().values()))


# --------------------------------------------------------------------------------------------- tools/exercises.py
SOLUTIONS = '''"""Solutions of notebook 07_demo."""

# %% [exercise] double
def double(x):
    """Twice x."""
    ### BEGIN SOLUTION: multiply by two
    return 2 * x
    ### END SOLUTION

# %% [answer] why-two
# Because the question asked for two.

# %% [exercise] square
def square(x):
    if x is None:
        return None
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION
'''


@pytest.fixture
def demo(tmp_path):
    """notebooks/07_demo.ipynb whose cells hold the solutions (untagged), and notebooks/solutions/07_demo.py."""
    (tmp_path / "notebooks" / "solutions").mkdir(parents=True)
    (tmp_path / "notebooks" / "solutions" / "07_demo.py").write_text(SOLUTIONS)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo"),
                nbformat.v4.new_code_cell('def double(x):\n    """Twice x."""\n    return 2 * x'),
                nbformat.v4.new_code_cell("assert double(2) == 4"),
                nbformat.v4.new_code_cell("def square(x):\n    if x is None:\n        return None\n    return x * x"),
                nbformat.v4.new_code_cell("assert square(3) == 9")]
    path = tmp_path / "notebooks" / "07_demo.ipynb"
    nbformat.write(nb, str(path))
    return path


def _sources(path):
    return [c.source for c in nbformat.read(str(path), as_version=4).cells]


def test_student_then_solve_round_trip(demo, tmp_path):
    assert len(extool.notebook_problems(demo)) == 2               # two solutions without a tagged cell
    assert extool.write_student(demo) == []
    cells = nbformat.read(str(demo), as_version=4).cells
    assert [(c.metadata.get("tags"), c.metadata.get("exercise")) for c in cells[1::2]] == [
        (["exercise"], "double"), (["exercise"], "square")]
    assert cells[1].source == ('def double(x):\n    """Twice x."""\n    # YOUR CODE HERE (hint: multiply by two)\n'
                               '    raise NotImplementedError("Exercise double of notebook 07: replace this line '
                               'with your code.")')
    namespace = {}
    exec(cells[3].source, namespace)
    assert namespace["square"](None) is None                      # the code outside the markers stays
    with pytest.raises(NotImplementedError, match="Exercise square of notebook 07"):
        namespace["square"](3)
    assert extool.main(["check", str(demo)]) == 0
    assert extool.main(["solve", str(demo), "-o", str(tmp_path / "solved.ipynb")]) == 0
    solved = _sources(tmp_path / "solved.ipynb")
    assert solved[1] == extool.read_solutions(demo.parent / "solutions" / "07_demo.py")["double"].solved
    assert "### BEGIN SOLUTION" in solved[3] and solved[2::2] == _sources(demo)[2::2]
    assert extool.write_student(demo) == [] and _sources(demo) == [c.source for c in cells]   # idempotent


def test_check_fails_when_a_cell_or_a_solution_changes(demo, capsys):
    extool.write_student(demo)
    nb = nbformat.read(str(demo), as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace("# YOUR CODE HERE", "# your code here")
    nbformat.write(nb, str(demo))
    assert extool.main(["check", str(demo)]) == 1
    assert "exercise 'double' (cell 1): stale" in capsys.readouterr().out
    extool.write_student(demo)
    assert extool.main(["check", str(demo)]) == 0
    solutions = demo.parent / "solutions" / "07_demo.py"
    solutions.write_text(SOLUTIONS.replace("return x * x", "return x ** 2"))   # inside the markers: blank unchanged
    assert extool.main(["check", str(demo)]) == 0
    solutions.write_text(SOLUTIONS.replace("if x is None", "if x is None or x == 0"))
    assert extool.main(["check", str(demo)]) == 1
    assert "exercise 'square' (cell 3): stale" in capsys.readouterr().out
    solutions.write_text(SOLUTIONS.replace("[exercise] square", "[exercise] cube"))
    assert extool.main(["check", str(demo)]) == 1
    out = capsys.readouterr().out
    assert "'square' (cell 3): no `# %% [exercise] square`" in out
    assert "exercise 'cube' of 07_demo.py has no cell" in out


@pytest.mark.parametrize("change, message", [
    (("    ### END SOLUTION\n\n# %% [answer]", "\n# %% [answer]"),
     r"07_demo\.py, exercise 'double': the BEGIN .*line 6"),
    (("### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION\n", "return x * x\n"), "'square': no ### BEGIN"),
    (("[exercise] square", "[exercise] double"), "'double' is defined twice"),
    (("[exercise] square", "[exercise] Square"), "'Square' is not"),
    (("return 2 * x", "return 2 *"), r"'double': the solved version is not valid Python"),
])
def test_format_errors_name_the_file_and_the_exercise(demo, change, message):
    (demo.parent / "solutions" / "07_demo.py").write_text(SOLUTIONS.replace(*change))
    with pytest.raises(SystemExit, match=message):
        extool.write_student(demo)


# --------------------------------------------------------------------------------------------- notebooks/conftest.py
def test_conftest_runs_the_solutions_unless_student(demo, monkeypatch):
    conftest = _load("notebooks_conftest", REPO / "notebooks" / "conftest.py")
    extool.write_student(demo)
    nb = nbformat.read(str(demo), as_version=4)
    items = [types.SimpleNamespace(cell=copy, fspath=demo) for copy in nb.cells if copy.cell_type == "code"]
    items.append(types.SimpleNamespace(name="test_something_else"))      # not a notebook cell: left alone
    solved = extool.solved_sources(demo)
    monkeypatch.setenv("FARNET_STUDENT", "1")
    conftest.pytest_collection_modifyitems(None, items)
    assert [i.cell.source for i in items[:4]] == [c.source for c in nb.cells if c.cell_type == "code"]
    monkeypatch.delenv("FARNET_STUDENT")
    conftest.pytest_collection_modifyitems(None, items)
    assert [i.cell.source for i in items[:4]] == [solved["double"], nb.cells[2].source, solved["square"],
                                                  nb.cells[4].source]


def test_nbval_executes_the_solved_cells(demo, tmp_path):
    """End to end: pytest --nbval-lax on the student notebook passes only because the conftest swaps in solutions."""
    extool.write_student(demo)
    shutil.copy(REPO / "notebooks" / "conftest.py", demo.parent / "conftest.py")
    (tmp_path / "tools").mkdir()                                 # the conftest finds ../tools/exercises.py
    for name in ("exercises.py", "notebooks.py"):
        shutil.copy(REPO / "tools" / name, tmp_path / "tools" / name)
    env = {k: v for k, v in os.environ.items() if k != "FARNET_STUDENT"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                          "--nbval-current-env", "notebooks"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "4 passed" in run.stdout, run.stdout[-2000:]


def test_refresh_and_run_all_execute_the_solutions_and_keep_the_blanks(demo, monkeypatch):
    runner = _load("notebook_run", REPO / "tools" / "notebook_run.py")
    extool.write_student(demo)
    executed = []

    class RecordingClient:                         # stands in for nbclient: records what would run
        def __init__(self, nb, **kwargs):
            self.nb = nb

        def execute(self):
            executed.extend(c.source for c in self.nb.cells if c.cell_type == "code")

    monkeypatch.setattr(runner, "NotebookClient", RecordingClient)
    monkeypatch.delenv("FARNET_STUDENT", raising=False)
    nb, _ = runner.execute_notebook(demo)
    solved = extool.solved_sources(demo)
    assert executed[0] == solved["double"] and executed[2] == solved["square"]
    assert [c.source for c in nb.cells] == _sources(demo)           # refresh writes the blanks back
    monkeypatch.setenv("FARNET_STUDENT", "1")
    executed.clear()
    runner.execute_notebook(demo)
    assert executed == [c.source for c in nb.cells if c.cell_type == "code"]


# --------------------------------------------------------------------------------------------- the committed notebooks
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_committed_blanks_are_in_sync_with_the_solutions(capsys):
    assert extool.main(["check"]) == 0, capsys.readouterr().out


def _checks(source: str) -> bool:
    """True when ``source`` calls check_function / check_module or has an ``assert`` statement."""
    return any(re.match(r"\s*(assert\b|.*\bcheck_(function|module)\()", line) for line in source.splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_each_exercise_cell_is_checked_right_after(path):
    """A check follows every blank: after the cell's last ``raise NotImplementedError``, or in the next 2 code cells."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for index, cell in enumerate(cells):
        if "exercise" not in cell["metadata"].get("tags", []):
            continue
        after_blank = "".join(cell["source"]).rpartition("raise NotImplementedError")[2]
        following = ["".join(c["source"]) for c in cells[index + 1:index + 3]]
        assert any(_checks(src) for src in [after_blank] + following), \
            f"{path.name}: exercise {cell['metadata'].get('exercise')!r} has no check_function / check_module / " \
            f"assert after its blank or in the next two code cells"


def test_the_structural_check_recognises_checks():
    assert _checks("check_module(lambda: UpBlock(8, 6, 4), kit.UpBlock(8, 6, 4), x, skip)")
    assert _checks("if ok:\n    assert my_mre > 0")
    assert not _checks("from farnet_lite.exercises import check_function\nmy_mre = 1.0  # assert later")
