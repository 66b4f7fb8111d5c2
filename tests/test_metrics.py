"""Metrics of §4.1 against numbers computed by hand."""
import numpy as np
import pytest

from farnet_lite.metrics import (hand_errors_mm, mre_sd, per_landmark_table, radial_errors, sdr,
                                 spine_mse_fraction, spine_pearson, summarize)


def test_radial_errors_in_mm():
    pred = np.array([[[0.0, 0.0], [10.0, 10.0]]])
    gt = np.array([[[3.0, 4.0], [10.0, 10.0]]])
    np.testing.assert_allclose(radial_errors(pred, gt, spacing=0.1), [[0.5, 0.0]])
    np.testing.assert_allclose(radial_errors(np.concatenate([pred, pred]), np.concatenate([gt, gt]),
                                             spacing=np.array([0.1, 1.0])), [[0.5, 0.0], [5.0, 0.0]])


def test_mre_sd_and_sdr():
    errors = np.array([[1.0, 2.0], [3.0, 5.0]])
    mre, sd = mre_sd(errors)
    assert mre == pytest.approx(2.75)
    assert sd == pytest.approx(np.sqrt(((1 - 2.75) ** 2 + (2 - 2.75) ** 2 + (3 - 2.75) ** 2 + (5 - 2.75) ** 2) / 4))
    assert sdr(errors, [2, 2.5, 4]) == {2.0: 50.0, 2.5: 50.0, 4.0: 75.0}   # success = error <= r
    summary = summarize(errors, [2, 4])
    assert summary["sdr_2"] == 50.0 and summary["n_images"] == 2


def test_per_landmark_table_is_one_based():
    errors = np.array([[1.0, 4.0], [3.0, 2.0]])
    table = per_landmark_table(errors, [2.0])
    assert list(table.index) == [1, 2]
    assert table.loc[1, "mre"] == 2.0 and table.loc[2, "sdr_2"] == 50.0


def test_hand_wrist_normalisation():
    gt = np.zeros((1, 37, 2))
    gt[0, 1] = [0.0, 0.0]
    gt[0, 5] = [60.0, 80.0]        # wrist width 100 px == 50 mm
    pred = gt.copy()
    pred[0, 10] += [6.0, 8.0]      # 10 px off == 5 mm
    errors = hand_errors_mm(pred, gt)
    assert errors.shape == (1, 37)
    assert errors[0, 10] == pytest.approx(5.0) and errors[0, 0] == 0.0


def test_spine_mse_fraction_and_pearson():
    gt = np.array([[[10.0, 20.0], [50.0, 100.0]]])
    pred = gt + np.array([10.0, 20.0])     # W = 100, H = 200: dx/W = dy/H = 0.1 everywhere
    assert spine_mse_fraction(pred, gt, (200, 100)) == pytest.approx(0.01)
    assert spine_pearson(gt, gt, (200, 100)) == pytest.approx(1.0)
    # normalised coordinates: gt (0.1, 0.1, 0.5, 0.5), pred (0.2, 0.2, 0.6, 0.6): a shift keeps rho = 1
    assert spine_pearson(pred, gt, np.array([[200, 100]])) == pytest.approx(1.0)
    noisy = gt.copy()
    noisy[0, 0] = [50.0, 20.0]             # normalised (0.5, 0.1, 0.5, 0.5) against (0.1, 0.1, 0.5, 0.5)
    x = np.array([0.5, 0.1, 0.5, 0.5]); y = np.array([0.1, 0.1, 0.5, 0.5])
    assert spine_pearson(noisy, gt, (200, 100)) == pytest.approx(np.corrcoef(x, y)[0, 1])
