"""Every committed result is reproduced from what is committed beside it: each run's metrics_<split>.json and
per_landmark_<split>.csv from its predictions CSV and the annotation files (``farnet_lite.reproduction.rescore``), each
mean-shape floor from the data alone; and a fresh run's CSV gives back its own metrics.

Rates (SDR, a count over the landmarks) must be equal; continuous numbers agree to 1e-9 relative: the run scored
ground truth that went through the cache's grid and back (``evaluate_cache``: about 1e-13 px), the rescoring
reads it from the annotation files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from engine_helpers import REPO, tiny_config

from farnet_lite.reproduction.mean_shape import write_mean_shape_floor
from farnet_lite.reproduction.rescore import DESCRIPTIVE_KEYS, rescore_metrics_file
from farnet_lite.reproduction.tables import FLOOR_FOLDER, FLOOR_TABLES

RESULTS = REPO / "results"
DATA = REPO.parent / "shared" / "data"
RUN_METRICS = sorted(p for p in RESULTS.glob("*/*/**/metrics_*.json") if FLOOR_FOLDER not in p.parts)
FLOOR_METRICS = sorted(RESULTS.glob(f"*/{FLOOR_FOLDER}/metrics_*.json"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")


def assert_same_numbers(recorded: dict, recomputed: dict, where) -> None:
    numbers = {k for k in recorded if k not in DESCRIPTIVE_KEYS and isinstance(recorded[k], (int, float))}
    assert numbers and numbers <= set(recomputed), (where, numbers - set(recomputed))
    for key in sorted(numbers):
        if key.startswith("sdr_") or key == "n_images":
            assert recomputed[key] == recorded[key], (where, key, recorded[key], recomputed[key])
        else:
            assert recomputed[key] == pytest.approx(recorded[key], rel=1e-9, abs=1e-12), (where, key)


def test_the_committed_results_are_found():
    names = {str(p.relative_to(RESULTS)) for p in RUN_METRICS}
    assert "isbi2015/cpu-320x256-densenet121-randinit/metrics_test1.json" in names
    assert "spine/cpu-384x192-densenet121-randinit-fold1/last_epoch/metrics_test50.json" in names
    assert len(RUN_METRICS) >= 9 and len(FLOOR_METRICS) >= 4


@needs_data
@pytest.mark.parametrize("path", RUN_METRICS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_metrics_are_recomputed_from_their_predictions_csv(path, monkeypatch):
    monkeypatch.chdir(REPO)                        # the runs record their data roots relative to the repository
    recorded, recomputed, errors = rescore_metrics_file(path)
    assert recomputed["labelled_images"] == recorded["labelled_images"]
    assert_same_numbers(recorded, recomputed, path)
    table = pd.read_csv(path.parent / f"per_landmark_{recorded['split']}.csv", index_col="landmark")
    assert len(table) == errors.shape[1]
    np.testing.assert_allclose(table["mre"].to_numpy(), np.nanmean(errors, axis=0), rtol=1e-9)


@needs_data
@pytest.mark.parametrize("table", FLOOR_TABLES)
def test_committed_mean_shape_floors_are_recomputed(table, tmp_path):
    fresh = write_mean_shape_floor(table, tmp_path, data_root=str(DATA))
    assert fresh
    for split, summary in fresh.items():
        committed = RESULTS / summary["dataset"] / FLOOR_FOLDER / f"metrics_{split}.json"
        recorded = json.loads(committed.read_text())
        assert_same_numbers(recorded, summary, committed)


def test_a_fresh_runs_csv_gives_back_its_metrics(tmp_path, monkeypatch):
    """Train a tiny run; its predictions CSV, scored again, gives the numbers of its metrics JSON."""
    from farnet_lite.engine.train import train

    result = train(tiny_config(tmp_path, epochs=1))
    assert set(result.metrics) == {"test1"}
    path = Path(result.run_dir) / "metrics_test1.json"
    recorded, recomputed, _ = rescore_metrics_file(path)
    assert_same_numbers(recorded, recomputed, path)
    # the written coordinates are the float64 values the metrics were computed from, digit for digit
    frame = pd.read_csv(Path(result.run_dir) / "predictions_test1.csv", dtype={"image_id": str})
    moved = frame.assign(x=frame.x + 1e-9)          # a shift far below the old CSV's 0.01 px is still seen
    moved.to_csv(Path(result.run_dir) / "predictions_test1.csv", index=False)
    _, shifted, _ = rescore_metrics_file(path)
    assert shifted["mre"] != recorded["mre"]
