"""Packaging: pyproject's dependencies (lower bounds, each one used), environment.yml in step with it, licence."""
import ast
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")          # Python >= 3.11 (the kit itself runs on 3.10 too)

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CONDA_NAMES = {"torch": "pytorch"}                 # PyPI name -> conda-forge / pytorch channel name
IMPORT_NAMES = {"pillow": "PIL", "jupyter_client": "jupyter_client"}
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(>=\s*[0-9][0-9.]*)?\s*$")


def _split(requirement: str):
    match = REQUIREMENT.match(requirement.split(";")[0])
    assert match, f"cannot read the requirement {requirement!r}"
    return match.group(1).lower(), (match.group(2) or "").replace(" ", "")


def _pyproject_requirements() -> dict:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    names = project["dependencies"] + extras["test"] + extras["notebooks"]
    return dict(_split(r) for r in names)


def _environment_requirements() -> dict:
    found, section = {}, None
    for line in (REPO / "environment.yml").read_text().splitlines():
        item = line.split("#")[0].strip()
        if not line.startswith(" ") and item.endswith(":"):
            section = item[:-1]                        # channels: / dependencies:
        elif item.startswith("- pip:"):
            section = "pip"
        elif section == "dependencies" and item.startswith("- "):
            name, bound = _split(item[2:])
            found[name] = bound
    return found


def test_every_dependency_has_a_lower_bound():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    for requirement in project["dependencies"] + extras["test"] + extras["notebooks"]:
        assert _split(requirement)[1].startswith(">="), requirement


def test_environment_yml_lists_what_pyproject_lists():
    expected = {CONDA_NAMES.get(name, name): bound for name, bound in _pyproject_requirements().items()}
    expected["python"] = PYPROJECT["project"]["requires-python"]
    expected["pip"] = ""
    found = _environment_requirements()
    assert found == expected, ("environment.yml and pyproject.toml disagree; make environment.yml list "
                               f"{sorted(set(expected.items()) ^ set(found.items()))} as pyproject does")


def test_dev_extra_is_test_plus_notebooks():
    assert PYPROJECT["project"]["optional-dependencies"]["dev"] == ["farnet-lite[test,notebooks]"]


def _imported_top_level_names() -> set:
    names = set()
    for path in (REPO / "farnet_lite").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_every_runtime_dependency_is_imported_by_the_package():
    imported = _imported_top_level_names()
    for requirement in PYPROJECT["project"]["dependencies"]:
        name = _split(requirement)[0]
        assert IMPORT_NAMES.get(name, name) in imported, f"{name} is a dependency that farnet_lite never imports"


def test_mit_licence_as_an_spdx_string():
    assert PYPROJECT["project"]["license"] == "MIT" and PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    setuptools = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert setuptools == ["setuptools>=77"]              # the first setuptools to read the SPDX string (PEP 639)


def test_make_writes_nothing_outside_the_repository_and_one_cache_folder():
    assert "--user" not in (REPO / "Makefile").read_text()
    for path in (REPO / "farnet_lite").rglob("*.py"):
        text = path.read_text()
        assert "farnet-lite\")" not in text and ".cache/farnet-lite" not in text, path   # ~/.cache/farnet_lite
