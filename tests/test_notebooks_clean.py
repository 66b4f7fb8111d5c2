"""Committed notebooks are clean (tools/notebooks.py check) and share the opening of docs/NOTEBOOKS.md.

Executing the notebooks is nbval's job (`make test` runs `pytest --nbval-lax notebooks`); these tests only read them,
plus unit tests of the strip / check logic on notebooks built in memory.
"""
import copy
import importlib.util
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("notebook_tools", REPO / "tools" / "notebooks.py")
nbtools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbtools)

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS if p.name.startswith(("01_", "02_"))] == [
        "01_heatmap_ground_truth.ipynb", "02_ewc_loss.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_clean(path):
    nb = nbtools.read_notebook(path)
    problems = nbtools.check_notebook(nb)
    assert problems == [], f"{path.name} is not clean; run `python tools/notebooks.py refresh {path.name}`:\n" + \
        "\n".join(problems)
    # Stripping a clean notebook changes nothing (strip and check agree).
    stripped = copy.deepcopy(nb)
    assert nbtools.strip_notebook(stripped) == []
    assert nbformat.writes(stripped) == nbformat.writes(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_opening(path):
    nb = nbtools.read_notebook(path)
    assert nbtools.opening_problems(nb, path.name) == []
    number = path.stem.split("_")[0]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {number} · ")
    repository, branch = nbtools.read_repo_setting()          # pyproject's [tool.farnet-lite], the one place
    assert f"github/{repository}/blob/{branch}/notebooks/{path.name}" in nb.cells[0].source
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0] == nbtools.setup_source(repository, branch)     # the one shared setup cell, verbatim
    assert f'KIT_URL, KIT_REF = "https://github.com/{repository}", "{branch}"' in code[0]
    assert 'QUICK = os.environ.get("FARNET_QUICK"' in code[1]
    assert any(line.lstrip().startswith("assert ") for src in code for line in src.splitlines())
    # A few deterministic text cells are compared by nbval, and each of them stores its output.
    checked = [c for c in nb.cells if nbtools.is_checked_cell(c)]
    assert checked and all(c.outputs for c in checked)
    assert nb.metadata.kernelspec.name == "python3"


# ------------------------------------------------------------------------------------ the strip / check logic
def _dirty_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "farnet-lite", "display_name": "x", "language": "python"},
                   "language_info": {"name": "python", "version": "3.11.4"},
                   "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}}
    plain = nbformat.v4.new_code_cell("print(1)\n1 + 1", execution_count=3,
                                      metadata={"collapsed": True, "tags": ["keep-me"]})
    plain.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n"),
                     nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})]
    marked = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('shape (1, 2)')\n3", execution_count=4,
                                       metadata={"execution": {"iopub.status.busy": "2024"}})
    marked.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="shape (1, 2)\n"),
        nbformat.v4.new_output("stream", name="stderr", text="a warning\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "3"}, execution_count=4,
                               metadata={"foo": 1}),
    ]
    markdown = nbformat.v4.new_markdown_cell("# 99 · Title", metadata={"jp-MarkdownHeadingCollapsed": True})
    nb.cells = [markdown, plain, marked]
    return nb


def test_strip_keeps_only_marked_text():
    nb = _dirty_notebook()
    assert len(nbtools.check_notebook(nb)) >= 6
    warnings = nbtools.strip_notebook(nb)
    assert len(warnings) == 1 and "stderr stream" in warnings[0]          # the marked cell's stderr is dropped
    markdown, plain, marked = nb.cells
    assert nb.metadata == nbtools.CLEAN_METADATA
    assert markdown.metadata == {} and plain.metadata == {"tags": ["keep-me"]} and marked.metadata == {}
    assert plain.outputs == [] and plain.execution_count is None
    assert marked.execution_count == 4          # nbval ignores the stored outputs of a cell with a null count
    assert [o.output_type for o in marked.outputs] == ["stream", "execute_result"]
    assert marked.outputs[0].text == "shape (1, 2)\n"
    assert marked.outputs[1] == {"output_type": "execute_result", "data": {"text/plain": "3"}, "metadata": {},
                                 "execution_count": 4}
    assert nbtools.check_notebook(nb) == []
    nbformat.validate(nb)
    # Idempotent.
    before = nbformat.writes(nb)
    assert nbtools.strip_notebook(nb) == [] and nbformat.writes(nb) == before


def test_check_names_each_problem():
    problems = nbtools.check_notebook(_dirty_notebook())
    text = "\n".join(problems)
    assert "notebook metadata" in text and "widgets" in text
    assert "cell 1 (code: 'print(1)'): execution_count 3" in text
    assert "cell 1 (code: 'print(1)'): 2 output(s)" in text and "image/png" in text
    assert "cell 2 (code: '# NBVAL_CHECK_OUTPUT'): stderr stream in a marked cell" in text
    assert "cell 0 (markdown: '# 99 · Title'): cell metadata jp-MarkdownHeadingCollapsed" in text
    marked_without_output = nbformat.v4.new_notebook(metadata=dict(nbtools.CLEAN_METADATA))
    marked_without_output.cells = [nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(2)")]
    assert nbtools.check_notebook(marked_without_output) == [
        "cell 0 (code: '# NBVAL_CHECK_OUTPUT'): marked # NBVAL_CHECK_OUTPUT but has no stored output (run refresh)"]
    # A marked cell's stored output needs a count; strip gives it its position among the code cells.
    marked_without_output.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    assert "null execution_count" in nbtools.check_notebook(marked_without_output)[0]
    nbtools.strip_notebook(marked_without_output)
    assert marked_without_output.cells[0].execution_count == 1
    assert nbtools.check_notebook(marked_without_output) == []


def test_marked_cell_detection():
    assert nbtools.is_checked_cell(nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)"))
    assert not nbtools.is_checked_cell(nbformat.v4.new_code_cell("print(1)  # NBVAL_CHECK_OUTPUT"))
    assert not nbtools.is_checked_cell(nbformat.v4.new_markdown_cell("# NBVAL_CHECK_OUTPUT"))


def test_opening_problems_on_a_bare_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Heatmaps"), nbformat.v4.new_code_cell("x = 1")]
    problems = nbtools.opening_problems(nb, "07_something.ipynb")
    assert len(problems) == 7
    assert problems[0] == "the first cell must be a markdown title '# 07 · Title'"


def test_notebook_paths_resolve_bare_names():
    paths = nbtools.notebook_paths(["02_ewc_loss", "01_heatmap_ground_truth.ipynb"])
    assert [p.name for p in paths] == ["01_heatmap_ground_truth.ipynb", "02_ewc_loss.ipynb"]
    with pytest.raises(SystemExit, match="No notebook 'nope'"):
        nbtools.notebook_paths(["nope"])
