"""Tables 1-5 as run configs, ``reproduce`` (resumable, skips finished runs) and ``farnet reproduce``."""
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from farnet_lite.cli import main
from farnet_lite.reproduction.experiments import (TABLES, Experiment, experiment_config, table_experiments, unique_runs,
                                                  write_quick_datasets)
from farnet_lite.reproduction.reproduce import reproduce, run_experiment


def test_tables_list_the_papers_rows():
    t1, t2, t3, t4, t5 = (table_experiments(t) for t in TABLES)
    assert [e.backbone for e in t1] == ["vgg16", "vgg19", "resnet101", "resnet152", "densenet121", "densenet169"]
    assert {e.system for e in t1} == {"msfa_fr"} and {e.loss for e in t1} == {"ewc"}
    assert [(e.row, e.system, e.loss) for e in t2] == [
        ("U-Net", "unet", "l2"), ("FPN", "fpn", "l2"), ("MSFA(+)", "msfa_add", "l2"), ("MSFA", "msfa", "l2"),
        ("MSFA+FR*", "msfa_fr_naive", "l2"), ("MSFA+FR", "msfa_fr", "l2"), ("MSFA+FR+AW", "msfa_fr", "aw"),
        ("MSFA+FR+EWC", "msfa_fr", "ewc")]
    assert len(t3) == 1 and t3[0].splits == ("test1", "test2")
    assert [e.fold for e in t4] == [1, 2, 3] and {e.dataset for e in t4} == {"hand"}
    assert [e.fold for e in t5] == [1, 2, 3, 4, 5] * 3 and {e.train_split for e in t5} == {None}   # cv-train
    assert [e.splits for e in t5[::5]] == [("test50",), ("cv-val",), ("test",)]       # Table 5 on the held-out 50
    with pytest.raises(ValueError, match="table1"):
        table_experiments("table9")


def test_one_run_fills_cells_of_three_tables():
    farnet = [e for t in ("table1", "table2", "table3") for e in table_experiments(t)
              if (e.system, e.backbone, e.loss) == ("msfa_fr", "densenet121", "ewc")]
    assert len(farnet) == 3 and len({(e.dataset, e.key) for e in farnet}) == 1
    every_isbi = [e for t in ("table1", "table2", "table3") for e in table_experiments(t)]
    assert len(unique_runs(every_isbi)) == 6 + 8 - 1     # DenseNet-121 FARNet is trained once
    keys = [e.key for e in table_experiments("table5")]
    assert keys[0].endswith("-fold1") and keys[4].endswith("-fold5") and len(set(keys)) == 5   # 5 runs, 3 rows


def test_experiment_config_paper_and_quick(tmp_path):
    exp = table_experiments("table5")[1]
    paper = experiment_config(exp, data_root=tmp_path, output_dir=tmp_path / "run", epochs=12)
    assert paper.dataset == "spine" and paper.input_size == (1024, 512) and paper.batch_size == 1
    assert paper.lr == 1e-4 and paper.epochs == 12 and paper.augment and paper.fold == 2
    assert (paper.train_split, paper.val_split) == ("cv-train", "cv-val")            # selects on fold 2 of the 431
    assert paper.eval_splits == ("test50", "cv-val", "test")                          # Table 5 on the held-out 50
    assert paper.data_root == str(tmp_path / "spine_aasce")
    hand = experiment_config(table_experiments("table4")[1], preset="fast", pretrained=True)
    assert hand.fold == 2 and hand.batch_size == 8 and hand.pretrained is True and hand.eval_splits == ("test",)
    quick = experiment_config(table_experiments("table1")[0], quick=True, pretrained=True, epochs=50)
    assert quick.dataset == "synthetic-isbi" and quick.input_size == (64, 64) and quick.epochs == 1
    assert quick.pretrained is False and quick.backbone == "vgg16"


@pytest.fixture(scope="module")
def quick_table3(tmp_path_factory):
    """``reproduce("table3", quick=True)`` once for the module (about 10 s on 2 CPU cores)."""
    root = tmp_path_factory.mktemp("repro")
    messages = []
    result = reproduce("table3", quick=True, runs_dir=root / "runs", results_dir=root / "results",
                       command="pytest quick table3", log=messages.append)
    return root, result, messages


def test_reproduce_quick_writes_table_and_provenance(quick_table3):
    root, result, messages = quick_table3
    assert [s.status for s in result.runs] == ["trained"] and "trained" in messages[0]
    result_dir = result.runs[0].result_dir
    assert not list(result_dir.glob("*.pt")) and not list(result.runs[0].run_dir.glob("*.pt"))  # quick: none
    assert (result.runs[0].run_dir / "log.csv").is_file()
    provenance = json.loads((result_dir / "provenance.json").read_text())
    assert provenance["command"] == "pytest quick table3" and provenance["quick"] is True
    assert provenance["device"].startswith("CPU") and provenance["epochs_reached"] == 1
    assert provenance["commit"] and provenance["wall_seconds_this_call"] > 0
    frame = result.frame
    test1 = frame[(frame.kit_row == "FARNet") & (frame.split == "test1") & (frame.metric == "mre")].iloc[0]
    metrics = json.loads((result_dir / "metrics_test1.json").read_text())
    assert test1.ours == pytest.approx(metrics["mre"]) and test1.paper == 1.12          # Table 3, FARNet(Our)
    assert test1["diff"] == pytest.approx(test1.ours - 1.12)
    assert "SYNTHETIC" in test1.conditions and "64×64" in test1.conditions
    test2 = frame[(frame.kit_row == "FARNet") & (frame.split == "test2") & (frame.metric == "mre")].iloc[0]
    assert math.isnan(test2.ours) and "labels not present in this copy" in test2.conditions
    assert (result_dir / "predictions_test2.csv").is_file()
    markdown = result.md_path.read_text()
    assert markdown == result.markdown and "Quick mode" in markdown
    assert "| FARNet(Our) | 64×64 / 800 × 640 | Test1 |" in markdown      # the paper's row name, ours / paper size
    assert "`results/synthetic-isbi/" in markdown            # runs named relative to the results folder's parent
    assert result.csv_path.is_file() and result.csv_path.parent == root / "results" / "tables"


def test_reproduce_skips_finished_runs(quick_table3):
    root, first, _ = quick_table3
    stamp = (first.runs[0].result_dir / "provenance.json").stat().st_mtime_ns
    again = reproduce("table3", quick=True, runs_dir=root / "runs", results_dir=root / "results", log=lambda m: None)
    assert [s.status for s in again.runs] == ["finished"]
    assert (first.runs[0].result_dir / "provenance.json").stat().st_mtime_ns == stamp
    pd.testing.assert_series_equal(again.frame["ours"], first.frame["ours"])


def test_run_with_checkpoints_resumes_instead_of_retraining(tmp_path):
    """A run whose result folder is missing but whose last.pt is complete is resumed (no epoch trained again)."""
    exp = table_experiments("table3")[0]
    data = write_quick_datasets(tmp_path / "data")
    config = dataclasses.replace(
        experiment_config(exp, quick=True, data_root=data["isbi2015"].parent, output_dir=tmp_path / "run",
                          cache_dir=tmp_path / "cache"), save_checkpoints=True, backbone="vgg16")
    result_dir = tmp_path / "result"
    first = run_experiment(exp, config, result_dir, quick=True, command="test")
    assert first.status == "trained" and (tmp_path / "run" / "last.pt").is_file()
    stamp = (tmp_path / "run" / "last.pt").stat().st_mtime_ns
    shutil.rmtree(result_dir)
    again = run_experiment(exp, config, result_dir, quick=True, command="test")
    provenance = json.loads((result_dir / "provenance.json").read_text())
    assert again.status == "trained" and provenance["resumed_after_epoch"] == 1
    assert (tmp_path / "run" / "last.pt").stat().st_mtime_ns == stamp          # nothing trained, nothing saved
    assert len((result_dir / "log.csv").read_text().splitlines()) == 2          # header + the one epoch
    assert run_experiment(exp, config, result_dir, quick=True, command="test").status == "finished"


def test_cli_reproduce_quick(quick_table3, capsys):
    root, _, _ = quick_table3
    code = main(["reproduce", "table3", "--quick", "--runs-dir", str(root / "runs"), "--results-dir",
                 str(root / "results")])
    out = capsys.readouterr().out
    assert code == 0 and "finished" in out and "table3.md" in out
    assert "| FARNet(Our) | 64×64 / 800 × 640 | Test1 |" in out


def test_cli_reproduce_dry_run_writes_nothing(tmp_path, capsys):
    code = main(["reproduce", "table1", "--dry-run", "--results-dir", str(tmp_path / "results"),
                 "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0 and out.count("planned") == 6 and "no run yet" in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_reproduce_real_data_needs_a_data_root(tmp_path, capsys):
    with pytest.raises(ValueError, match="quick"):
        reproduce("table3", runs_dir=tmp_path / "r", results_dir=tmp_path / "res", log=lambda m: None)
    code = main(["reproduce", "table3", "--runs-dir", str(tmp_path / "r"), "--results-dir", str(tmp_path / "s")])
    assert code == 1 and "data_root" in capsys.readouterr().err


def test_gather_only_reads_the_committed_results(tmp_path):
    repo_results = Path(__file__).resolve().parents[1] / "results"
    committed = repo_results / "isbi2015" / "cpu-160x128-densenet121-randinit-scratch"   # Table 3's run
    if not committed.is_dir():
        pytest.skip("no committed ISBI result in this checkout")
    result = reproduce("table3", results_dir=repo_results, runs_dir=tmp_path / "runs", train_missing=False,
                       dry_run=True, log=lambda m: None)
    frame = result.frame
    line = frame[(frame.kit_row == "FARNet") & (frame.split == "test1") & (frame.metric == "mre")].iloc[0]
    assert line.ours == pytest.approx(json.loads((committed / "metrics_test1.json").read_text())["mre"])
    assert "random init" in line.conditions and "24/24 epochs" in line.conditions
    assert result.md_path is None and not (tmp_path / "runs").exists()


def test_experiment_is_hashable_and_labelled():
    exp = Experiment("table4", "FARNet (3-fold CV)", "hand", fold=2, splits=("test",))
    assert exp.key == "msfa_fr-densenet121-ewc-fold2" and exp.label == "FARNet (3-fold CV), fold 2"
    assert len({exp, Experiment("table4", "FARNet (3-fold CV)", "hand", fold=2, splits=("test",))}) == 1
