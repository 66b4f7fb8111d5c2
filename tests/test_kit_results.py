"""farnet_lite.reproduction.kit_results: the table notebooks' view of results/ -- plan-only quick mode, the rows and their runs,
per-row errors, adopting a run made outside reproduce, and the ISBI FARNet run shared by notebooks 06-09."""
import json
from pathlib import Path

import numpy as np
import pytest

from farnet_lite.config import TrainConfig
from farnet_lite.data.isbi2015 import read_isbi2015
from farnet_lite.data.synthetic import write_synthetic_isbi
from farnet_lite.engine.outputs import predictions_frame, write_frame
from farnet_lite.reproduction.experiments import conditions_tag
from farnet_lite.reproduction.kit_results import (adopt_run, describe_table, paper_run_config, real_name, row_errors,
                                                  run_summary, run_table, table_runs)
from farnet_lite.reproduction.tables import gather_table

RESULTS = Path(__file__).resolve().parents[1] / "results"
COMMITTED = RESULTS / "isbi2015" / "cpu-160x128-densenet121-randinit-scratch"   # the run behind Table 1
ABLATION = COMMITTED                                          # Table 2's EWC row: the size its L2 row has


def _snapshot(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_quick_mode_plans_trains_nothing_writes_nothing_and_gathers_the_committed_runs(tmp_path):
    before = _snapshot(RESULTS)
    lines = []
    result = run_table("table1", quick=True, results=RESULTS, runs_root=tmp_path / "runs", log=lines.append)
    assert _snapshot(RESULTS) == before and not (tmp_path / "runs").exists()
    assert [s.status for s in result.runs] == ["planned"] * 6 and len(lines) == 6
    assert all(str(s.run_dir).startswith(str(tmp_path / "runs" / "reproduce" / "isbi2015")) for s in result.runs)
    mre = json.loads((COMMITTED / "metrics_test1.json").read_text())["mre"]
    line = result.frame.set_index(["row", "metric"]).loc[("DenseNet-121", "mre")]
    assert line.ours == pytest.approx(mre) and Path(line.run) == COMMITTED


def test_table_runs_and_description_name_each_row_with_its_run():
    frame = gather_table("table2", RESULTS)
    runs = {r.row: r for r in table_runs(frame)}
    assert set(runs) == {"MSFA+FR", "MSFA+FR+EWC", "MSFA+FR+EWC · last epoch"}   # the committed CPU runs of Table 2
    ewc = json.loads((ABLATION / "metrics_test1.json").read_text())
    assert runs["MSFA+FR+EWC"].metric == "mre" and runs["MSFA+FR+EWC"].value == pytest.approx(ewc["mre"])
    assert Path(runs["MSFA+FR+EWC"].run) == ABLATION and "160×128" in runs["MSFA+FR+EWC"].conditions
    text = describe_table(frame)
    assert text.startswith("3 of 9 rows of ours have a number:")
    assert f"MSFA+FR+EWC: mre {ewc['mre']:.4g}" in text
    assert text.splitlines()[-1] == "no run yet: UNet, FPN, MSFA(+), MSFA, MSFA+FR*, MSFA+FR+AW"


def _synthetic_run(tmp_path: Path, shift=(3.0, 4.0)) -> Path:
    """A finished-looking run on a tiny synthetic ISBI whose Test1 predictions are the truth moved by ``shift`` px."""
    root = write_synthetic_isbi(tmp_path / "data" / "isbi2015", n_train=2, n_test1=3, n_test2=1)
    config = TrainConfig.preset("synthetic-isbi", "demo", data_root=str(root), input_size=(64, 64), epochs=2)
    run = tmp_path / "runs" / "06_quick"
    run.mkdir(parents=True)
    config.save(run / "config.json")
    (run / "log.csv").write_text("epoch,train_loss,lr,val_mre,seconds\n1,0.2,0.001,5.0,1.5\n2,0.1,0.001,4.0,2.0\n")
    test1 = read_isbi2015(root, split="test1")
    truth = np.stack([test1.landmarks(i) for i in range(len(test1))])                  # (3, 19, 2) (x, y)
    write_frame(run / "predictions_test1.csv",
                predictions_frame(test1.ids, truth + np.array(shift), np.ones(truth.shape[:2])), index=False)
    (run / "metrics_test1.json").write_text(json.dumps(dict(mre=0.5, sd=0.0, labelled_images=3, split="test1")))
    return run


def test_row_errors_rescore_each_rows_predictions(tmp_path):
    run = _synthetic_run(tmp_path)                                 # every landmark 5 px = 0.5 mm off
    frame = gather_table("table3", tmp_path / "nothing")
    frame.loc[frame["kit_row"] == "FARNet", "run"] = str(run)
    errors = row_errors(frame, "test1")
    assert list(errors) == ["FARNet(Our)"] and errors["FARNet(Our)"].shape == (3, 19)
    assert np.allclose(errors["FARNet(Our)"], 0.5)
    lines = []
    frame.loc[frame["kit_row"] == "FARNet", "run"] = str(_moved(run, tmp_path))
    assert row_errors(frame, "test1", log=lines.append) == {} and "not re-scored" in lines[0]


def _moved(run: Path, tmp_path: Path) -> Path:
    """A copy of ``run`` whose config points at a data folder that does not exist."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    config = TrainConfig.load(run / "config.json")
    TrainConfig.from_dict(dict(config.to_dict(), data_root=str(tmp_path / "gone"))).save(other / "config.json")
    (other / "predictions_test1.csv").write_text((run / "predictions_test1.csv").read_text())
    return other


def test_an_adopted_run_fills_its_table_cell_with_its_provenance(tmp_path):
    run = _synthetic_run(tmp_path)
    results = tmp_path / "quick_results"
    dest = adopt_run(run, results, command="test")
    config = TrainConfig.load(run / "config.json")
    assert dest == results / "synthetic-isbi" / f"msfa_fr-densenet121-ewc-{conditions_tag(config)}"
    assert conditions_tag(config).startswith("64x64-randinit-2ep")
    provenance = json.loads((dest / "provenance.json").read_text())
    assert provenance["adopted_from"] == str(run) and provenance["epochs_reached"] == 2
    assert provenance["train_seconds_all_epochs"] == 3.5 and provenance["synthetic"] is True
    assert run_summary(dest, "test1")["mre"] == 0.5 and run_summary(dest, "test2") is None
    table3 = gather_table("table3", results, quick=True).set_index(["row", "split", "metric"])
    assert table3.loc[("FARNet(Our)", "test1", "mre"), "ours"] == 0.5
    assert Path(table3.loc[("FARNet(Our)", "test1", "mre"), "run"]) == dest
    table1 = gather_table("table1", results, quick=True).set_index(["row", "metric"])
    assert table1.loc[("DenseNet-121", "mre"), "ours"] == 0.5 and np.isnan(table1.loc[("VGG-16", "mre"), "ours"])
    assert adopt_run(run, results, command="again") == dest           # adopting again replaces it


def test_adopt_run_needs_predictions(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json with predictions"):
        adopt_run(tmp_path, tmp_path / "results", command="test")


def test_real_name_maps_stand_ins_to_the_papers_datasets():
    assert [real_name(n) for n in ("isbi2015", "synthetic-isbi", "synthetic-hand", "spine")] == \
        ["isbi2015", "isbi2015", "hand", "spine"]
    with pytest.raises(ValueError, match="not one of the paper's datasets"):
        real_name("custom")


def test_paper_run_config_is_the_run_reproduce_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                                      # no ../shared/data from here
    (tmp_path / "data" / "isbi2015" / "RawImage").mkdir(parents=True)
    config = paper_run_config(tmp_path / "runs", "data", preset="paper", epochs=7)
    assert Path(config.output_dir) == tmp_path / "runs" / "reproduce" / "isbi2015" / "msfa_fr-densenet121-ewc"
    assert Path(config.data_root) == (tmp_path / "data" / "isbi2015").resolve()
    assert (config.dataset, config.system, config.backbone, config.loss) == ("isbi2015", "msfa_fr", "densenet121", "ewc")
    assert config.pretrained is not False and config.epochs == 7 and config.eval_splits == ("test1", "test2")
    plan = run_table("table1", quick=True, results=tmp_path / "results", runs_root=tmp_path / "runs",
                     log=lambda line: None, preset="paper", epochs=7)
    densenet = next(s for s in plan.runs if s.experiment.backbone == "densenet121")
    assert Path(densenet.run_dir) == Path(config.output_dir)          # where Table 1 looks for it
    with pytest.raises(FileNotFoundError, match="notebook 00"):
        paper_run_config(tmp_path / "runs", "elsewhere")
