"""Losses against values worked out by hand (Eq. 2, Eq. 3, Adaptive Wing, coarse-to-fine)."""
import math
from collections import namedtuple

import pytest
import torch

from farnet_lite.heatmaps import encode_heatmaps, rescale_points
from farnet_lite.losses import adaptive_wing_loss, coarse_to_fine_loss, ewc_loss, ewc_weight, l2_loss

Output = namedtuple("Output", ["final", "coarse"])


def test_l2_by_hand():
    pred = torch.tensor([[[[0.0, 0.5], [1.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    assert l2_loss(pred, target).item() == pytest.approx((1 + 0 + 1 + 0) / 4)


def test_ewc_by_hand():
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    # (1)^2 * 40^1 + (0.5)^2 * 40^0.5 + 0 + 0, averaged over 4 pixels
    expected = (40.0 + 0.25 * math.sqrt(40.0)) / 4
    assert ewc_loss(pred, target).item() == pytest.approx(expected)
    assert ewc_loss(pred, target, alpha=1.0).item() == pytest.approx(l2_loss(pred, target).item())
    assert ewc_weight(1.0) == 40.0 and ewc_weight(0.0) == 1.0


def test_adaptive_wing_by_hand():
    omega, theta, eps, alpha = 14.0, 0.5, 1.0, 2.1
    # small error branch: y = 0, y_hat = 0.2 -> omega * ln(1 + 0.2^2.1)
    small = adaptive_wing_loss(torch.full((1, 1, 1, 1), 0.2), torch.zeros(1, 1, 1, 1))
    assert small.item() == pytest.approx(omega * math.log(1 + 0.2 ** 2.1), rel=1e-5)
    # large error branch: y = 1, y_hat = 0 -> A * 1 - C with power alpha - y = 1.1
    p = alpha - 1.0
    a = omega / (1 + (theta / eps) ** p) * p * (theta / eps) ** (p - 1) / eps
    c = theta * a - omega * math.log(1 + (theta / eps) ** p)
    large = adaptive_wing_loss(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert large.item() == pytest.approx(a - c, rel=1e-5)


def test_adaptive_wing_is_continuous_at_theta():
    target = torch.full((1, 1, 1, 1), 0.3)
    below = adaptive_wing_loss(target + 0.5 - 1e-4, target)
    above = adaptive_wing_loss(target + 0.5 + 1e-4, target)
    assert below.item() == pytest.approx(above.item(), abs=1e-2)


def test_coarse_to_fine_targets_in_each_grid():
    points = torch.tensor([[[10.0, 6.0]]])               # input grid 16 x 24 (H, W)
    final, coarse = torch.zeros(1, 1, 16, 24), torch.zeros(1, 1, 8, 12)
    t_full = encode_heatmaps(points, (16, 24), sigma=2.0)
    t_half = encode_heatmaps(rescale_points(points, (16, 24), (8, 12)), (8, 12), sigma=2.0)
    expected = (t_full ** 2).mean() + (t_half ** 2).mean()
    value, parts = coarse_to_fine_loss(Output(final, coarse), points, (16, 24), sigma=2.0, loss="l2",
                                       return_parts=True)
    assert value.item() == pytest.approx(expected.item())
    assert set(parts) == {"final", "coarse"}
    # only the final output when there is no coarse one (U-Net, FPN, FR*)
    only = coarse_to_fine_loss(Output(final, None), points, (16, 24), sigma=2.0, loss="l2")
    assert only.item() == pytest.approx((t_full ** 2).mean().item())
    # perfect predictions cost nothing, for every loss
    for name in ("ewc", "l2", "aw"):
        assert coarse_to_fine_loss(Output(t_full, t_half), points, (16, 24), sigma=2.0, loss=name).item() \
            == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="loss"):
        coarse_to_fine_loss(Output(final, None), points, (16, 24), loss="l1")


def test_losses_are_float32_under_half_precision_inputs():
    pred = torch.rand(1, 2, 4, 4).to(torch.bfloat16)
    target = torch.rand(1, 2, 4, 4)
    assert ewc_loss(pred, target).dtype == torch.float32
