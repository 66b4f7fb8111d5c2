"""Every "Introduced in notebook NN_name" in a farnet_lite docstring names notebooks whose code uses the symbol.

The claim belongs to the object whose docstring holds it: a function, class or method, or a constant (the string
right after its assignment) -- the notebook's code cells must import it by name or read it as an attribute -- or a
module (the notebook imports it, or uses one of its public functions / classes). Notebooks named inside parentheses ("(inline in 02_ewc_loss)") are remarks,
not claims; every other NN_name of the sentence is checked.
"""
import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "farnet_lite"
CLAIM = re.compile(r"Introduced in notebooks? (.*?)(?:\.\s|\.$|$)", re.S)
NAME = re.compile(r"\b(\d\d_[a-z0-9_]+)")


def _parse_cell(source: str) -> ast.AST:
    """A code cell as Python: IPython magics and shell lines (``%``, ``!``) blanked out."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])


def _notebook_uses() -> dict:
    """``{"06_training_on_gpu": (modules imported, names imported or read as attributes)}`` from code cells."""
    uses = {}
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        modules, names = set(), set()
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            for node in ast.walk(_parse_cell("".join(cell["source"]))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    modules.add(node.module)
                    modules.update(f"{node.module}.{alias.name}" for alias in node.names)
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.Attribute):
                    names.add(node.attr)
        uses[path.stem] = (modules, names)
    return uses


def _documented(tree: ast.Module):
    """``(symbol, docstring)`` for the module, its functions, classes, methods and documented constants."""
    yield None, ast.get_docstring(tree) or ""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, ast.get_docstring(node) or ""
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for before, after in zip(body, body[1:]):      # NAME = value followed by a string: an attribute docstring
            if (isinstance(before, (ast.Assign, ast.AnnAssign)) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                targets = before.targets if isinstance(before, ast.Assign) else [before.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        yield target.id, after.value.value


def _public_names(tree: ast.Module) -> list:
    return [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            and not node.name.startswith("_")]


def _claims():
    """``(module, symbol or None, notebook, public names of the module)`` for every claim."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        for symbol, doc in _documented(tree):
            for sentence in CLAIM.findall(doc):
                outside = re.sub(r"\([^)]*\)", "", sentence)
                for notebook in NAME.findall(outside):
                    yield module, symbol, notebook, _public_names(tree)


def _uses(used: tuple, module: str, symbol, names) -> bool:
    """A symbol: imported by name, or read as an attribute (``farnet_lite.metrics.sdr``, ``config.preset``).
    A module: imported, or one of its public functions / classes used."""
    modules, used_names = used
    if symbol is None:
        return module in modules or any(name in used_names for name in names)
    return symbol in used_names


def test_claims_are_found():
    assert sum(1 for _ in _claims()) > 50


def test_every_claim_names_a_notebook_that_uses_the_symbol():
    uses = _notebook_uses()
    wrong = []
    for module, symbol, notebook, names in _claims():
        if notebook not in uses:
            wrong.append(f"{module}.{symbol or ''}: no notebook {notebook}")
        elif not _uses(uses[notebook], module, symbol, names):
            wrong.append(f"{module}.{symbol or '(module)'}: {notebook} never uses it")
    assert not wrong, f"{len(wrong)} false claims:\n" + "\n".join(wrong)


@pytest.mark.parametrize("doc, expected", [
    ("Introduced in notebook 04_msfa_module.", ["04_msfa_module"]),
    ("Introduced in notebooks 04_msfa_module (UpBlock) and 05_fr_module.", ["04_msfa_module", "05_fr_module"]),
    ("Introduced in notebook 12_paper_figures (inline in 02_ewc_loss).", ["12_paper_figures"]),
])
def test_claim_parsing(doc, expected):
    found = [NAME.findall(re.sub(r"\([^)]*\)", "", s)) for s in CLAIM.findall(doc)]
    assert [n for names in found for n in names] == expected
