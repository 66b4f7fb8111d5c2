"""Gathering results into the paper's tables: matching by identity, preference, CV pooling, paper numbers."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from farnet_lite import metrics
from farnet_lite.config import TrainConfig
from farnet_lite.reproduction.experiments import TABLES, table_experiments
from farnet_lite.reproduction.tables import (gather_table, load_paper_numbers, pool_folds, run_errors, table_markdown,
                                             wide_table)

REAL_ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015"
COMMITTED = Path(__file__).resolve().parents[1] / "results" / "isbi2015" / "cpu-160x128-densenet121-randinit"
LARGER = COMMITTED.parent / "cpu-320x256-densenet121-randinit"
SCRATCH = COMMITTED.parent / "cpu-160x128-densenet121-randinit-scratch"   # the finished run: preferred


@pytest.mark.parametrize("table", TABLES)
def test_every_paper_cell_is_in_the_gathered_table_in_the_papers_order(table, tmp_path):
    frame = gather_table(table, tmp_path / "nothing")
    paper = load_paper_numbers(table)
    printed_rows = list(dict.fromkeys(paper["row"]))
    assert list(dict.fromkeys(frame["row"]))[:len(printed_rows)] == printed_rows   # printed names and order first
    shown = frame[frame["printed"] != ""].set_index(["row", "split", "metric"])
    assert len(shown) == len(paper)                                                  # no cell more, none less
    for cell in paper.itertuples():
        line = shown.loc[(cell.row, cell.split, cell.metric)]
        assert line["printed"] == cell.printed and (line["paper"] == cell.value or math.isnan(cell.value))
    literature = frame[frame["kind"] == "literature"]
    assert literature["ours"].isna().all() and (literature["run"] == "").all()
    assert frame["ours"].isna().all()


def test_pool_folds_equals_scoring_all_folds_at_once():
    rng = np.random.default_rng(0)
    folds = [rng.gamma(2.0, 1.5, size=(n, 37)) for n in (5, 7, 4)]
    summaries = [dict(metrics.summarize(e, (2, 4, 10)), labelled_images=len(e)) for e in folds]
    everything = metrics.summarize(np.concatenate(folds), (2, 4, 10))
    for metric in ("mre", "sd", "sdr_2", "sdr_4", "sdr_10"):
        assert pool_folds(summaries, metric) == pytest.approx(everything[metric], rel=1e-12)
    assert pool_folds([dict(pearson=0.9, labelled_images=3), dict(pearson=0.7, labelled_images=9)],
                      "pearson") == pytest.approx(0.8)


def _fake_run(folder: Path, config: TrainConfig, epochs_logged: int, summary: dict, split: str, device="CPU"):
    folder.mkdir(parents=True)
    config.save(folder / "config.json")
    rows = "".join(f"{e},0.1,0.0001,1.0,1.0\n" for e in range(1, epochs_logged + 1))
    (folder / "log.csv").write_text("epoch,train_loss,lr,val_mre,seconds\n" + rows)
    (folder / f"predictions_{split}.csv").write_text("image_id,landmark,x,y,score\n")
    (folder / f"metrics_{split}.json").write_text(json.dumps(dict(summary, split=split)))
    (folder / "provenance.json").write_text(json.dumps({"device": device}))


def test_gather_prefers_paper_conditions_not_scores(tmp_path):
    base = dict(system="msfa_fr", backbone="densenet121", loss="ewc")
    small = TrainConfig.preset("isbi2015", input_size=(160, 128), epochs=10, **base)
    large = TrainConfig.preset("isbi2015", input_size=(800, 640), epochs=10, **base)
    other = TrainConfig.preset("isbi2015", input_size=(800, 640), epochs=10, system="fpn", loss="l2")
    _fake_run(tmp_path / "a", small, 10, dict(mre=1.0, sd=0.5, sdr_2=90.0, labelled_images=150), "test1")
    _fake_run(tmp_path / "b", large, 4, dict(mre=2.0, sd=0.5, labelled_images=150), "test1", device="GPU X")
    _fake_run(tmp_path / "c", other, 10, dict(mre=3.0, sd=0.7, labelled_images=150), "test1")
    frame = gather_table("table3", tmp_path).set_index(["row", "split", "metric"])
    mre = frame.loc[("FARNet(Our)", "test1", "mre")]
    # the finished 160x128 run beats the unfinished 800x640 one, although the latter scores worse or better
    assert mre.ours == 1.0 and mre.run.endswith("a") and "10/10 epochs" in mre.conditions
    assert mre.paper == 1.12 and mre["diff"] == pytest.approx(1.0 - 1.12) and mre.kit_row == "FARNet"
    assert mre.input_size == "160×128" and mre.paper_input_size == "800 × 640"
    assert frame.loc[("FARNet(Our)", "test1", "sdr_2"), "diff"] == pytest.approx(90.0 - 88.03)
    assert math.isnan(frame.loc[("Zhong et al.[38]", "test1", "mre"), "ours"])   # literature: the paper's only
    table2 = gather_table("table2", tmp_path).set_index(["row", "metric"])
    assert table2.loc[("FPN", "mre"), "ours"] == 3.0 and table2.loc[("FPN", "mre"), "diff"] == pytest.approx(3.0 - 1.19)
    assert math.isnan(table2.loc[("UNet", "mre"), "ours"]) and table2.loc[("UNet", "mre"), "paper"] == 1.38
    assert table2.loc[("UNet", "mre"), "conditions"] == "no run yet"
    assert table2.loc[("UNet", "mre"), "kit_row"] == "U-Net"
    # Table 2's rows compare at one size: FPN has a run at 800x640 only, so MSFA+FR+EWC takes its 800x640 run too
    assert table2.loc[("MSFA+FR+EWC", "mre"), "ours"] == 2.0 and table2.loc[("MSFA+FR+EWC", "mre"), "run"].endswith("b")
    sd = table2.loc[("FPN", "sd")]                                   # our SD: a column of its own, no paper cell
    assert sd.ours == 0.7 and sd.title.endswith("ours only") and sd.printed == "" and math.isnan(sd["diff"])
    markdown = table_markdown("table2", table2.reset_index())
    assert "| FPN | Test1 | 3.00 / 1.19 / +1.81 |" in markdown and "| 0.70 | " in markdown
    assert "| UNet | Test1 | n/a / 1.38 / n/a |" in markdown
    wide = wide_table(table2.reset_index())
    assert wide.loc[("FPN", "test1"), ("MRE (mm)", "Δ")] == pytest.approx(1.81)
    assert ("SD (mm) · ours only", "ours") in wide.columns and ("SD (mm) · ours only", "paper") not in wide.columns


def test_a_run_lands_in_its_own_row(tmp_path):
    vgg19 = TrainConfig.preset("isbi2015", backbone="vgg19", input_size=(160, 128), epochs=2)
    _fake_run(tmp_path / "vgg19", vgg19, 2, dict(mre=1.5, sd=0.5, labelled_images=150), "test1")
    frame = gather_table("table1", tmp_path).query("metric == 'mre'").set_index("row")
    assert list(frame.index) == ["VGG-16", "VGG-19", "ResNet-101", "ResNet-152", "DenseNet-169", "DenseNet-121"]
    assert frame.loc["VGG-19", "ours"] == 1.5 and frame.drop("VGG-19")["ours"].isna().all()
    assert frame.loc["VGG-19", "diff"] == pytest.approx(1.5 - 1.37)


def test_a_selected_run_also_shows_its_last_epoch(tmp_path):
    config = TrainConfig.preset("isbi2015", input_size=(160, 128), epochs=3)
    _fake_run(tmp_path / "run", config, 3, dict(mre=1.5, sd=0.5, labelled_images=150), "test1")
    (tmp_path / "run" / "last_epoch").mkdir()
    (tmp_path / "run" / "last_epoch" / "metrics_test1.json").write_text(json.dumps(dict(mre=1.75, sd=0.6)))
    frame = gather_table("table3", tmp_path).set_index(["row", "split", "metric"])
    selected, last = frame.loc[("FARNet(Our)", "test1", "mre")], frame.loc[("FARNet(Our) · last epoch", "test1", "mre")]
    assert selected.ours == 1.5 and last.ours == 1.75 and last["diff"] == pytest.approx(1.75 - 1.12)
    assert last.conditions.startswith("last epoch") and last.run.endswith("last_epoch")
    assert ("FARNet(Our) · last epoch", "test2", "mre") not in frame.index        # no test2 metrics: no line


def test_the_mean_shape_floor_is_an_ours_only_row_of_tables_3_to_5(tmp_path):
    floor = tmp_path / "isbi2015" / "mean-shape"
    floor.mkdir(parents=True)
    (floor / "metrics_test1.json").write_text(json.dumps(dict(mre=4.5, sd=2.0, sdr_2=20.0)))
    frame = gather_table("table3", tmp_path).set_index(["row", "split", "metric"])
    line = frame.loc[("Mean shape (no learning)", "test1", "mre")]
    assert line.ours == 4.5 and line.kind == "ours only" and math.isnan(line.paper) and line.printed == ""
    assert ("Mean shape (no learning)", "test2", "mre") not in frame.index
    assert "Mean shape (no learning)" not in set(gather_table("table1", tmp_path)["row"])   # Tables 3-5 only


def test_gather_pools_hand_folds_only_when_all_are_done(tmp_path):
    rng = np.random.default_rng(1)
    errors = {}
    for fold in (1, 2, 3):
        config = TrainConfig.preset("hand", fold=fold, epochs=2)
        errors[fold] = rng.gamma(2.0, 1.0, size=(3 + fold, 37))
        summary = dict(metrics.summarize(errors[fold], (2, 4, 10)), labelled_images=3 + fold)
        _fake_run(tmp_path / f"fold{fold}", config, 2, summary, "test")
        if fold == 2:
            partial = gather_table("table4", tmp_path)
            pooled = partial[(partial.row == "FARNet(Our)") & (partial.metric == "mre")].iloc[0]
            assert math.isnan(pooled.ours) and "2 of 3 folds done" in pooled.conditions
    frame = gather_table("table4", tmp_path)
    pooled = frame[frame.row == "FARNet(Our)"].set_index("metric")
    direct = metrics.summarize(np.concatenate(list(errors.values())), (2, 4, 10))
    for metric in ("mre", "sd", "sdr_2", "sdr_4", "sdr_10"):
        assert pooled.loc[metric, "ours"] == pytest.approx(direct[metric], rel=1e-12)
        assert pooled.loc[metric, "diff"] == pytest.approx(direct[metric] - pooled.loc[metric, "paper"], rel=1e-12)
    assert pooled.loc["sd", "paper"] == 0.55 and pooled.loc["sdr_10", "printed"] == "100"   # Table 4 prints Std
    fold2 = frame[(frame.row == "FARNet (3-fold CV), fold 2") & (frame.metric == "mre")].iloc[0]
    assert fold2.ours == pytest.approx(errors[2].mean()) and math.isnan(fold2.paper) and fold2.kind == "ours only"
    wide = wide_table(frame)
    assert wide.shape[0] == 5 + 1 + 3 and ("SD (mm)", "Δ") in wide.columns and ("conditions", "") in wide.columns
    assert wide.loc[("Payer et al[37]", "test"), ("input size", "paper")] == "512 × 512"
    markdown = table_markdown("table4", frame)
    assert "| Payer et al[37] | 512 × 512 | test | 0.66 | 0.74 | 94.99 | 99.27 | 99.99 |" in markdown
    h, w = config.input_size
    assert f"| FARNet(Our) | {h}×{w} / 512 × 512 | test | {direct['mre']:.2f} / 0.62 / " in markdown
    assert "Quick mode" not in markdown


def test_gather_of_an_empty_results_folder(tmp_path):
    frame = gather_table("table5", tmp_path / "nothing")
    assert frame["ours"].isna().all() and set(frame["conditions"]) >= {"no run yet"}
    rows = list(dict.fromkeys(frame["row"]))
    assert rows[:4] == ["SVR[27]", "RFR[21]", "BoostNet[33]", "FARNet(Our)"]
    assert set(rows) >= {e.label for e in table_experiments("table5")}       # every kit row, folds included


def test_run_errors_names_the_missing_file(tmp_path):
    TrainConfig.preset("synthetic-isbi").save(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="predictions_test1.csv"):
        run_errors(tmp_path, "test1")


@pytest.mark.skipif(not (REAL_ISBI.is_dir() and COMMITTED.is_dir()), reason="needs ../shared/data/isbi2015")
def test_run_errors_of_the_committed_real_run_match_its_metrics():
    result = run_errors(COMMITTED, "test1", data_root=REAL_ISBI)
    saved = json.loads((COMMITTED / "metrics_test1.json").read_text())
    assert result.errors.shape == (150, 19) and result.pred.shape == (150, 19, 2)
    assert result.summary["mre"] == pytest.approx(saved["mre"], abs=1e-4)
    assert result.summary["sdr_2"] == pytest.approx(saved["sdr_2"], abs=1e-6)
    frame = pd.read_csv(COMMITTED / "per_landmark_test1.csv")
    assert len(frame) == 19


@pytest.mark.skipif(not (COMMITTED.is_dir() and LARGER.is_dir()), reason="no committed ISBI results in this checkout")
def test_the_committed_real_runs_land_in_their_cells():
    results = COMMITTED.parents[1]
    ewc = json.loads((COMMITTED / "metrics_test1.json").read_text())                    # 160x128
    l2 = json.loads((results / "isbi2015" / "cpu-160x128-densenet121-l2-randinit" / "metrics_test1.json").read_text())
    scratch = json.loads((SCRATCH / "metrics_test1.json").read_text())                   # 160x128, finished
    last = json.loads((SCRATCH / "last_epoch" / "metrics_test1.json").read_text())
    assert ewc["mre"] > scratch["mre"]            # the older 160x128 run lost to the finished scratch run
    # a finished run comes first, then the larger input (the 320x256 run stopped early); Table 2 compares its rows
    # at the size both of them have (160x128)
    for table, row, saved in (("table1", "DenseNet-121", scratch), ("table1", "DenseNet-121 · last epoch", last),
                              ("table2", "MSFA+FR+EWC", scratch), ("table2", "MSFA+FR", l2),
                              ("table3", "FARNet(Our)", scratch)):
        frame = gather_table(table, results)
        cells = frame[(frame.row == row) & (frame.split == "test1")].set_index("metric")
        for metric in ("mre", "sd", "sdr_2", "sdr_2.5", "sdr_3", "sdr_4"):
            assert cells.loc[metric, "ours"] == pytest.approx(saved[metric]), (table, row, metric)
        assert cells.loc["mre", "diff"] == pytest.approx(saved["mre"] - cells.loc["mre", "paper"])
    filled = {t: set(gather_table(t, results).dropna(subset=["ours"])["row"]) for t in ("table1", "table2", "table3")}
    # plus the committed mean-shape floor of Table 3 (results/isbi2015/mean-shape), a row of ours only
    assert filled == {"table1": {"DenseNet-121", "DenseNet-121 · last epoch"},
                      "table2": {"MSFA+FR", "MSFA+FR+EWC", "MSFA+FR+EWC · last epoch"},
                      "table3": {"FARNet(Our)", "FARNet(Our) · last epoch", "Mean shape (no learning)"}}
    floor = json.loads((results / "isbi2015" / "mean-shape" / "metrics_test1.json").read_text())
    floor_cells = gather_table("table3", results).query("row == 'Mean shape (no learning)' and split == 'test1'")
    assert floor_cells.set_index("metric").loc["mre", "ours"] == pytest.approx(floor["mre"])
    assert floor["mre"] > 2 * ewc["mre"]   # the trained run is well clear of doing nothing
