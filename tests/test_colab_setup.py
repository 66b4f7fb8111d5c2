"""The Colab opening of the notebooks: one repository setting, `set-repo` rewrites every badge and setup cell from it,
and the shared setup cell installs the kit only where it is missing, mounts Drive only when asked, and is a no-op here.

The last test does what a fresh Colab does -- a new virtual environment, an empty working folder, the setup cell run
with its KIT_URL pointed at a local clone (``file://``) -- and is skipped unless FARNET_COLAB_TEST=1 (it builds and
pip-installs the kit: about a minute, too slow for every test run).
"""
import contextlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("notebook_tools", REPO / "tools" / "notebooks.py")
nbtools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbtools)

TWO = ["00_setup_and_data.ipynb", "07_table1_backbones.ipynb"]   # one that explains the opening, one table notebook


def _copies(tmp_path):
    paths = []
    for name in TWO:
        shutil.copy(REPO / "notebooks" / name, tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def test_set_repo_rewrites_badge_and_install_line(tmp_path):
    paths = _copies(tmp_path)
    before = [nbtools.read_notebook(p) for p in paths]
    assert nbtools.set_repo(paths, "someone/my-fork", "dev") == paths
    for path, old in zip(paths, before):
        nb = nbtools.read_notebook(path)
        assert (f"(https://colab.research.google.com/github/someone/my-fork/blob/dev/notebooks/{path.name})"
                in nb.cells[0].source)
        assert "farnet-lite/farnet-lite" not in nb.cells[0].source
        setup = next(c for c in nb.cells if c.cell_type == "code").source
        assert 'KIT_URL, KIT_REF = "https://github.com/someone/my-fork", "dev"' in setup
        assert setup == nbtools.setup_source("someone/my-fork", "dev")
        assert nbtools.opening_problems(nb, path.name, repo=("someone/my-fork", "dev")) == []
        assert any("badge" in p for p in nbtools.opening_problems(nb, path.name, repo=("farnet-lite/x", "main")))
        # Only the title and the setup cell changed.
        others = [i for i, c in enumerate(nb.cells) if i > 0 and c.source != setup]
        assert len(others) == len(nb.cells) - 2 == len(old.cells) - 2
        assert [nb.cells[i].source for i in others] == [old.cells[i].source for i in others]
    # Idempotent: a second run changes no byte.
    text = [p.read_bytes() for p in paths]
    assert nbtools.set_repo(paths, "someone/my-fork", "dev") == []
    assert [p.read_bytes() for p in paths] == text


def test_set_repo_adds_a_missing_setup_cell_and_refuses_a_bad_name(tmp_path):
    path = tmp_path / "99_x.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 · X\n\n[![Open In Colab](https://colab.research.google.com/assets/"
                                              "colab-badge.svg)](https://colab.research.google.com/github/a/b/blob/"
                                              "main/notebooks/99_x.ipynb)"),
                nbformat.v4.new_code_cell("QUICK = True")]
    nbtools.write_notebook(nb, path)
    nbtools.set_repo([path], "me/kit", "v1.0")
    cells = nbtools.read_notebook(path).cells
    assert "github/me/kit/blob/v1.0/notebooks/99_x.ipynb" in cells[0].source
    assert cells[1].source == nbtools.setup_source("me/kit", "v1.0") and cells[2].source == "QUICK = True"
    with pytest.raises(SystemExit, match="OWNER/NAME"):
        nbtools.set_repo([path], "not a repo", "main")


def test_repo_setting_is_read_and_written_in_pyproject(tmp_path):
    copy = tmp_path / "pyproject.toml"
    shutil.copy(REPO / "pyproject.toml", copy)
    original = copy.read_text().splitlines()
    nbtools.write_repo_setting("someone/fork", "dev", copy)
    assert nbtools.read_repo_setting(copy) == ("someone/fork", "dev")
    changed = [(a, b) for a, b in zip(original, copy.read_text().splitlines()) if a != b]
    assert len(changed) == 2 and len(copy.read_text().splitlines()) == len(original)   # two lines, nothing else
    copy.write_text("[project]\nname = 'x'\n")
    with pytest.raises(SystemExit, match=r"\[tool.farnet-lite\]"):
        nbtools.read_repo_setting(copy)


def _run_setup(source):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "setup-cell", "exec"), {})
    return out.getvalue()


def test_setup_cell_is_a_noop_where_the_kit_is_installed(monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError(f"the setup cell ran {args} although farnet_lite is importable")
    monkeypatch.setattr(subprocess, "run", no_pip)
    for variable in ("FARNET_DATA", "FARNET_RUNS"):   # setenv first, so that teardown removes what the cell sets
        monkeypatch.setenv(variable, "unset")
        monkeypatch.delenv(variable)
    printed = _run_setup(nbtools.setup_source(*nbtools.read_repo_setting()))
    assert "Installing" not in printed and "| data and runs: local folders" in printed
    assert "FARNET_DATA" not in os.environ and "FARNET_RUNS" not in os.environ


def test_setup_cell_on_a_fresh_colab_installs_and_mounts_drive(monkeypatch):
    """Colab simulated in-process: google.colab present, farnet_lite missing until the pip command has run."""
    import farnet_lite
    calls = []

    def fake_pip(command, check):
        calls.append(command)
        sys.modules["farnet_lite"] = farnet_lite       # "installed"
    drive = types.SimpleNamespace(mount=lambda folder: calls.append(["mount", folder]))
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "farnet_lite", None)   # `import farnet_lite` raises ImportError
    monkeypatch.setattr(subprocess, "run", fake_pip)
    for variable in ("FARNET_DATA", "FARNET_RUNS"):   # setenv first, so that teardown removes what the cell sets
        monkeypatch.setenv(variable, "unset")
        monkeypatch.delenv(variable)
    source = nbtools.setup_source("me/fork", "dev").replace("USE_DRIVE = False", "USE_DRIVE = True")
    printed = _run_setup(source)
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/me/fork@dev"],
                     ["mount", "/content/drive"]]
    assert os.environ["FARNET_DATA"] == "/content/drive/MyDrive/farnet-lite/data"
    assert os.environ["FARNET_RUNS"] == "/content/drive/MyDrive/farnet-lite/runs"
    assert "Installing farnet-lite from https://github.com/me/fork@dev" in printed and "Google Drive" in printed


def _fresh_venv_with_colab_packages(folder: Path) -> Path:
    """A new venv (no system site-packages) that sees this environment's packages except the kit, as a fresh Colab
    has torch & co. preinstalled but not farnet-lite: one folder of links, put on sys.path by a .pth file."""
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    python = folder / "venv" / "bin" / "python"
    links = folder / "preinstalled"
    links.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if not name.startswith(("farnet", "__editable__", "_farnet")) and not name.endswith(".pth"):
            (links / entry.name).symlink_to(entry)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "colab_preinstalled.pth").write_text(f"{links}\n")
    return python


@pytest.mark.skipif(os.environ.get("FARNET_COLAB_TEST") != "1",
                    reason="creates a venv and pip-installs the kit (about a minute); set FARNET_COLAB_TEST=1")
def test_setup_cell_installs_the_kit_from_a_file_url_in_a_fresh_venv(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    branch = subprocess.run(["git", "-C", str(clone), "branch", "--show-current"], check=True,
                            capture_output=True, text=True).stdout.strip()
    python = _fresh_venv_with_colab_packages(tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    missing = subprocess.run([str(python), "-c", "import farnet_lite"], cwd=work, capture_output=True, text=True)
    assert missing.returncode != 0, "the fresh venv must not see the kit before the setup cell runs"
    source = nbtools.setup_source(*nbtools.read_repo_setting())
    url_line = next(line for line in source.splitlines() if line.startswith("KIT_URL, KIT_REF = "))
    cell = work / "setup_cell.py"
    cell.write_text(source.replace(url_line, f'KIT_URL, KIT_REF = "file://{clone}", "{branch}"'))
    first = subprocess.run([str(python), str(cell)], cwd=work, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"Installing farnet-lite from file://{clone}@{branch}" in first.stdout
    assert "| GPU: " in first.stdout and "data and runs: local folders" in first.stdout
    where = subprocess.run([str(python), "-c", "import farnet_lite; print(farnet_lite.__file__)"], cwd=work,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), where     # installed into the fresh venv, not found elsewhere
    again = subprocess.run([str(python), str(cell)], cwd=work, capture_output=True, text=True, check=True)
    assert "Installing" not in again.stdout                     # idempotent: a second run installs nothing
    assert sorted(p.name for p in work.iterdir()) == ["setup_cell.py"]   # nothing written to the working folder
