"""Gathering results into the paper's tables: matching by identity, preference, CV pooling, paper numbers."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from farnet_lite import metrics
from farnet_lite.config import TrainConfig
from farnet_lite.experiments import TABLES, table_experiments
from farnet_lite.tables import (METRICS, gather_table, load_paper_numbers, pool_folds, run_errors, table_markdown,
                                wide_table)

REAL_ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015"
COMMITTED = Path(__file__).resolve().parents[1] / "results" / "isbi2015" / "cpu-160x128-densenet121-randinit"


def test_paper_numbers_cover_every_row_and_are_plausible():
    for table in TABLES:
        paper = load_paper_numbers(table)
        assert list(paper.columns) == ["row", "split", "metric", "value", "kind", "source", "note"]
        assert not paper.duplicated(["row", "split", "metric"]).any()
        assert set(paper["kind"]) <= {"farnet", "backbone", "ablation", "literature"}
        assert paper["source"].str.contains(f"Table {table[-1]}").all()
        for exp in table_experiments(table):
            for split in exp.splits:
                for metric, _ in METRICS[exp.dataset]:
                    assert ((paper.row == exp.row) & (paper.split == split) & (paper.metric == metric)).any()
        known = paper.dropna(subset=["value"])
        sdr = known[known.metric.str.startswith("sdr_")]["value"]
        assert ((sdr >= 0) & (sdr <= 100)).all()
        assert (known[known.metric.isin(["mre", "sd", "mse_fraction"])]["value"] >= 0).all()
        # nothing is transcribed yet: an empty value must say why
        assert paper.loc[paper["value"].isna(), "note"].str.contains("not transcribed").all()


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
    _fake_run(tmp_path / "a", small, 10, dict(mre=1.0, sd=0.5, labelled_images=150), "test1")
    _fake_run(tmp_path / "b", large, 4, dict(mre=2.0, sd=0.5, labelled_images=150), "test1", device="GPU X")
    _fake_run(tmp_path / "c", other, 10, dict(mre=3.0, sd=0.5, labelled_images=150), "test1")
    frame = gather_table("table3", tmp_path)
    mre = frame[(frame.split == "test1") & (frame.metric == "mre")].iloc[0]
    # the finished 160x128 run beats the unfinished 800x640 one, although the latter scores worse or better
    assert mre.ours == 1.0 and mre.run.endswith("a") and "10/10 epochs" in mre.conditions
    table2 = gather_table("table2", tmp_path).set_index(["row", "metric"])
    assert table2.loc[("FPN", "mre"), "ours"] == 3.0 and math.isnan(table2.loc[("U-Net", "mre"), "ours"])
    assert table2.loc[("U-Net", "mre"), "conditions"] == "no run yet"
    assert table2.loc[("MSFA+FR+EWC", "mre"), "ours"] == 1.0       # the same run fills Table 2 and 3


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
            pooled = partial[(partial.row == "FARNet (3-fold CV)") & (partial.metric == "mre")].iloc[0]
            assert math.isnan(pooled.ours) and "2 of 3 folds done" in pooled.conditions
    frame = gather_table("table4", tmp_path)
    pooled = frame[frame.row == "FARNet (3-fold CV)"].set_index("metric")["ours"]
    direct = metrics.summarize(np.concatenate(list(errors.values())), (2, 4, 10))
    for metric in ("mre", "sd", "sdr_2", "sdr_4", "sdr_10"):
        assert pooled[metric] == pytest.approx(direct[metric], rel=1e-12)
    fold2 = frame[(frame.row == "FARNet (3-fold CV), fold 2") & (frame.metric == "mre")].iloc[0]
    assert fold2.ours == pytest.approx(errors[2].mean())
    wide = wide_table(frame)
    assert wide.shape[0] == 4 and ("MRE (mm)", "Δ") in wide.columns and ("conditions", "") in wide.columns
    markdown = table_markdown("table4", frame)
    assert "| FARNet (3-fold CV) | test folds |" in markdown and "n/a" in markdown
    assert "Quick mode" not in markdown


def test_gather_of_an_empty_results_folder(tmp_path):
    frame = gather_table("table5", tmp_path / "nothing")
    assert frame["ours"].isna().all() and set(frame["conditions"]) >= {"no run yet"}
    assert set(frame["row"]) >= {"FARNet (5-fold CV)", "FARNet (test set)", "FARNet (5-fold CV), fold 5"}


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
