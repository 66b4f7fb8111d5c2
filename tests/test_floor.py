"""The mean-shape floor of Tables 3-5, by values."""
from __future__ import annotations

import json

import numpy as np
import pytest

from farnet_lite.datasets import DATASETS
from farnet_lite.engine.scoring import score_predictions
from farnet_lite.reproduction.mean_shape import mean_shape_baseline, write_mean_shape_floor
from farnet_lite.reproduction.tables import gather_table


def test_images_sharing_their_points_have_a_zero_floor():
    """Same normalised points in every image (two image sizes) -> the mean shape is exact: MRE 0, SDR 100 %."""
    unit = np.array([[0.25, 0.5], [0.75, 0.1], [0.5, 0.9]])   # (K, 2) image fractions: pixel edges at 0 and 1
    sizes = np.array([[100.0, 80.0], [200.0, 160.0], [100.0, 80.0]])          # (N, 2) as (H, W)
    points = unit[None] * sizes[:, None, ::-1] - 0.5          # (N, K, 2) as (x, y): pixel centres at integers
    pred = mean_shape_baseline(points, sizes, sizes)
    np.testing.assert_allclose(pred, points, atol=1e-9)
    summary, errors, _ = score_predictions(pred, points, sizes, DATASETS["isbi2015"])
    assert summary["mre"] == pytest.approx(0.0, abs=1e-9) and np.all(errors < 1e-9)


def test_floor_is_the_mean_position_and_a_shift_is_scored():
    train = np.array([[[9.5, 19.5]], [[29.5, 39.5]]])                          # mean (19.5, 29.5) in 100x100
    sizes = np.full((2, 2), 100.0)
    test_sizes = np.array([[200.0, 100.0]])                       # twice as high: y + 0.5 doubles (pixel centres)
    np.testing.assert_allclose(mean_shape_baseline(train, sizes, test_sizes), [[[19.5, 59.5]]])
    truth = np.array([[[22.5, 63.5]]])                                           # 5 px away
    summary, _, _ = score_predictions(mean_shape_baseline(train, sizes, test_sizes), truth, test_sizes,
                                      DATASETS["isbi2015"])
    assert summary["mre"] == pytest.approx(0.5)                                  # 0.1 mm/px


def test_floor_files_become_the_tables_row(tmp_path):
    results = write_mean_shape_floor("table3", tmp_path / "results", quick=True, cache_dir=tmp_path / "cache")
    assert set(results) == {"test1"} and 0 < results["test1"]["mre"] < 1e4           # the Test2 stand-in is unlabelled
    saved = json.loads((tmp_path / "results" / "isbi2015" / "mean-shape" / "metrics_test1.json").read_text())
    assert saved["mre"] == results["test1"]["mre"] and saved["folds"] == 1
    frame = gather_table("table3", tmp_path / "results", quick=True)
    floor = frame[(frame.row == "Mean shape (no learning)") & (frame.metric == "mre") & (frame.split == "test1")]
    assert floor.ours.tolist() == [pytest.approx(saved["mre"])]
