"""tools/ablate.py: paired variants trained from the same start, their table beside the floor, reuse of finished
runs, and that no paper table takes an ablation run as a row."""
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from engine_helpers import REPO, tiny_isbi

from farnet_lite.reproduction.runs import find_runs


def _tool():
    spec = importlib.util.spec_from_file_location("farnet_ablate_tool", REPO / "tools" / "ablate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_changes_are_read_as_json_else_text():
    tool = _tool()
    assert tool.parse_changes(["sigma=10", "sigma_scale=paper", "augment=true", "input_size=[64, 64]"]) == dict(
        sigma=10, sigma_scale="paper", augment=True, input_size=[64, 64])
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        tool.parse_changes(["sigma"])


def test_a_study_trains_each_variant_once_and_tables_them(tmp_path, monkeypatch):
    tool = _tool()
    root = tiny_isbi(tmp_path / "data")
    args = ["tiny", "--input-size", "32", "32", "--epochs", "1", "--data-root", str(root),
            "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs"),
            "--results-dir", str(tmp_path / "results" / "ablations"),
            "--variant", "wide", "sigma=3", "--variant", "narrow", "sigma=10", "sigma_scale=paper"]
    assert tool.main(args) == 0
    study = tmp_path / "results" / "ablations" / "tiny"
    table = pd.read_csv(study / "table.csv")
    assert table["variant"].tolist() == ["wide", "narrow"]
    for name, sigma in (("wide", 3.0), ("narrow", 10 * 32 / 800)):    # isbi2015: the paper grid is 800x640
        saved = json.loads((study / name / "config.json").read_text())
        assert saved["seed"] == 0 and saved["epochs"] == 1 and saved["input_size"] == [32, 32]
        metrics = json.loads((study / name / "metrics_test1.json").read_text())
        assert table.set_index("variant").loc[name, "mre"] == pytest.approx(metrics["mre"])
        assert f"σ {sigma:.3g} px" in table.set_index("variant").loc[name, "target"]
        assert json.loads((study / name / "provenance.json").read_text())["changes"]
    assert "| mean shape (no learning) |" in (study / "table.md").read_text()
    # a finished study is gathered again without training
    monkeypatch.setattr(tool, "train", lambda *a, **k: pytest.fail("a finished variant was trained again"))
    assert tool.main(args) == 0
    # ablation runs are no table's rows
    assert find_runs(tmp_path / "results") == []
