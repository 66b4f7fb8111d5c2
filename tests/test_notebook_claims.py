"""docs/NOTEBOOKS.md's map "Where the course introduces each kit object" is true: every module and object a
notebook's line names is used by that notebook's code cells, and every core module appears in the map.

An object is used when a code cell imports it by name or reads it as an attribute (``farnet_lite.metrics.sdr``,
``config.preset``); a module alone when a cell imports it or uses one of its public functions / classes. The
package's docstrings carry no such tags (the map is the one place).
"""
import ast
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "farnet_lite"
MAP = REPO / "docs" / "NOTEBOOKS.md"
LINE = re.compile(r"^- \*\*(\d\d_[a-z0-9_]+)\*\* — (.*)$", re.M)
ENTRY = re.compile(r"`(farnet_lite[a-z0-9_.]*)`(?: \(module\))?(?:: ([^;]*))?")


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


def _public_names(module: str) -> list:
    path = REPO / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = REPO / module.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text())
    return [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            and not node.name.startswith("_")]


def parse_map(text: str):
    """``(notebook, module, symbol or None)`` for every entry of the map (``symbol`` None: the module itself)."""
    for notebook, rest in LINE.findall(text):
        for module, names in ENTRY.findall(rest):
            symbols = re.findall(r"`(\w+)`", names)
            if not symbols or "and the module" in names:
                yield notebook, module, None
            for symbol in symbols:
                yield notebook, module, symbol


def _claims():
    """``(module, symbol or None, notebook, public names of the module)`` for every entry of the map."""
    for notebook, module, symbol in parse_map(MAP.read_text()):
        yield module, symbol, notebook, _public_names(module)


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


def test_map_parsing():
    text = "- **04_msfa_module** — `farnet_lite.layers` (module); `farnet_lite.model`: `MSFA` and the module\n"
    assert list(parse_map(text)) == [("04_msfa_module", "farnet_lite.layers", None),
                                     ("04_msfa_module", "farnet_lite.model", None),
                                     ("04_msfa_module", "farnet_lite.model", "MSFA")]


def test_every_core_module_is_in_the_map_and_no_docstring_carries_a_tag():
    mapped = {module for _, module, _ in parse_map(MAP.read_text())}
    core = {f"farnet_lite.{p.stem}" for p in PACKAGE.glob("*.py")} - {"farnet_lite.__init__", "farnet_lite.cli",
                                                                       "farnet_lite.atomic", "farnet_lite.demo"}
    assert core - mapped == set(), f"core modules no notebook line names: {sorted(core - mapped)}"
    tagged = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if "Introduced in notebook" in p.read_text()]
    assert not tagged, f"docstrings tag notebooks again (the map in {MAP.name} is the one place): {tagged}"
