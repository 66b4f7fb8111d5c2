"""The audit of the official code's divergences (farnet_lite/reproduction/audit.py), on hand-made values."""
import numpy as np
import pytest
import torch
from torch import nn

from farnet_lite.reproduction import audit

ISBI = np.array([[2400.0, 1935.0]])          # (H0, W0) of every ISBI 2015 image


def test_grid_shift_is_one_output_pixel_up_and_left_in_original_pixels():
    pred = np.array([[[100.0, 200.0], [1000.5, 7.0]]])                           # (1, 2, 2) (x, y)
    shifted = audit.official_grid_shift(pred, ISBI, (800, 640))
    np.testing.assert_allclose(shifted - pred, [[[-1935 / 640, -3.0]] * 2])
    shifted = audit.official_grid_shift(pred, ISBI, (160, 128))                   # coarser grid: bigger step
    np.testing.assert_allclose(shifted[0, 0], [100 - 1935 / 128, 200 - 15.0])


def test_grid_shift_cost_on_a_perfect_predictor_is_the_step_length():
    truth = np.array([[[500.0, 600.0]]])
    shifted = audit.official_grid_shift(truth, ISBI, (800, 640))
    mm = audit.score_mm(shifted, truth)["mre"]
    assert mm == pytest.approx(0.1 * np.hypot(1935 / 640, 3.0))                # ~0.43 mm


def test_truncated_truth_drops_the_fraction_towards_zero():
    truth = np.array([[[10.5, 20.0], [7.9, 0.5]]])
    np.testing.assert_array_equal(audit.truncated_truth(truth), [[[10.0, 20.0], [7.0, 0.0]]])


def test_oracle_is_the_truth_rounded_on_the_network_grid():
    # 800x640 on 2400x1935: y = 3 * j + 1 for grid row j (pixel-centre convention), x = 1935/640 * (i + 0.5) - 0.5
    truth = np.array([[[1000.0, 301.0], [1.0, 2.2]]])
    oracle = audit.oracle_predictions(truth, ISBI, (800, 640))
    assert oracle[0, 0, 1] == pytest.approx(301.0)                               # row 100 exactly
    sx = 1935 / 640
    i = np.rint((1000.0 + 0.5) / sx - 0.5)
    assert oracle[0, 0, 0] == pytest.approx((i + 0.5) * sx - 0.5)
    assert np.abs(oracle - truth).max() <= sx / 2 + 1e-9                          # within half a grid pixel


def test_scale_error_is_zero_for_isbi_and_not_for_another_size():
    np.testing.assert_allclose(audit.official_scale_error(ISBI), 0.0, atol=1e-9)
    other = audit.official_scale_error(np.array([[2000.0, 1600.0]]))              # (H0, W0)
    np.testing.assert_allclose(other, [[1935 - 1600, 2400 - 2000]])


def test_decode_audit_rows_and_deltas():
    truth = np.array([[[100.5, 200.5], [300.0, 400.0]]])
    rows = audit.decode_audit(truth.copy(), truth, ISBI, (800, 640))
    names = [row["divergence"] for row in rows]
    assert names[1] == "1-based target grid" and names[2] == "ground truth truncated by the scorer"
    assert rows[0]["mre"] == 0 and rows[0]["delta_mre"] == 0
    assert rows[2]["mre"] == pytest.approx(0.1 * np.hypot(0.5, 0.5) / 2)          # one of two points moves
    assert rows[1]["delta_mre"] == pytest.approx(0.1 * np.hypot(1935 / 640, 3.0))


def test_selection_gap_between_best_and_last_epoch():
    history = [{"epoch": 1, "val_mre": 3.0}, {"epoch": 2, "val_mre": 2.0}, {"epoch": 3, "val_mre": 2.5}]
    gap = audit.selection_gap(history)
    assert gap == {"best_epoch": 2, "best": 2.0, "last_epoch": 3, "last": 2.5, "delta": 0.5}
    with pytest.raises(ValueError, match="not validated"):
        audit.selection_gap([{"epoch": 1, "train_loss": 1.0}])
