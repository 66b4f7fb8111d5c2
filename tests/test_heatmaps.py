"""Heatmap codec: Eq. 1 values by hand, the pixel-centre convention, round trips, the official-grid option."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from farnet_lite.heatmaps import OFFICIAL_ORIGIN, decode_heatmaps, encode_heatmaps, rescale_points


def test_encode_values_by_hand():
    points = torch.tensor([[[3.0, 2.0], [0.5, 0.25]]])  # (B=1, K=2, 2) as (x, y)
    maps = encode_heatmaps(points, (5, 6), sigma=1.0)
    assert maps.shape == (1, 2, 5, 6)
    assert maps[0, 0, 2, 3].item() == pytest.approx(1.0)                      # row y=2, column x=3
    assert maps[0, 0, 2, 4].item() == pytest.approx(math.exp(-0.5))           # one pixel right
    assert maps[0, 0, 3, 4].item() == pytest.approx(math.exp(-1.0))           # diagonal: d^2 = 2
    # non-quantised: pixel (0, 0) is 0.5 px left and 0.25 px above the point
    assert maps[0, 1, 0, 0].item() == pytest.approx(math.exp(-(0.25 + 0.0625) / 2))
    assert maps.max().item() <= 1.0


def test_encode_sigma_ten_and_missing_points():
    points = torch.tensor([[[10.0, 20.0], [float("nan"), 4.0]]])
    maps = encode_heatmaps(points, (40, 30), sigma=10.0)
    assert maps[0, 0, 20, 20].item() == pytest.approx(math.exp(-100 / 200))  # 10 px right of the centre
    assert torch.count_nonzero(maps[0, 1]) == 0


def test_encode_accepts_numpy_and_float64():
    maps = encode_heatmaps(np.array([[[1.0, 1.0]]]), (3, 3), sigma=1.0)
    assert maps.dtype == torch.float64 and maps[0, 0, 1, 1] == 1.0


@pytest.mark.parametrize("num_landmarks", [19, 37, 68])
def test_round_trip_random_points(num_landmarks):
    gen = torch.Generator().manual_seed(num_landmarks)
    size = (64, 48)
    points = torch.rand(2, num_landmarks, 2, generator=gen) * torch.tensor([47.0, 63.0])
    maps = encode_heatmaps(points, size, sigma=3.0)
    argmax, scores = decode_heatmaps(maps, "argmax")
    assert argmax.shape == (2, num_landmarks, 2) and scores.shape == (2, num_landmarks)
    assert (argmax - points).abs().max() <= 0.5
    subpixel, _ = decode_heatmaps(maps, "subpixel")
    assert (subpixel - points).abs().max() <= 0.05


@pytest.mark.parametrize("x, y", [(0.0, 0.0), (47.0, 63.0), (-0.4, 10.3), (47.45, 63.4), (0.2, 62.9)])
def test_round_trip_at_the_border(x, y):
    points = torch.tensor([[[x, y]]])
    maps = encode_heatmaps(points, (64, 48), sigma=10.0)
    argmax, _ = decode_heatmaps(maps, "argmax")
    assert (argmax - points).abs().max() <= 0.5
    subpixel, _ = decode_heatmaps(maps, "subpixel")
    assert (subpixel - points).abs().max() <= 0.05


def test_subpixel_falls_back_on_flat_maps():
    maps = torch.zeros(1, 1, 8, 8)
    maps[0, 0, 3, 5] = 1.0  # a single hot pixel: log is not a parabola, the step is bounded by 1 px
    coords, score = decode_heatmaps(maps, "subpixel")
    assert (coords - torch.tensor([5.0, 3.0])).abs().max() <= 1.0 and score.item() == 1.0
    with pytest.raises(ValueError, match="method"):
        decode_heatmaps(maps, "soft-argmax")


def test_official_grid_is_one_pixel_up_left():
    """The official code draws targets on linspace(1, W, W) and decodes 0-based: a -1 px bias per axis."""
    points = torch.tensor([[[20.0, 30.0], [7.0, 9.0]]])
    maps = encode_heatmaps(points, (64, 48), sigma=10.0, origin=OFFICIAL_ORIGIN)
    biased, _ = decode_heatmaps(maps, "argmax")
    assert torch.equal(biased, points - 1.0)
    consistent, _ = decode_heatmaps(maps, "argmax", origin=OFFICIAL_ORIGIN)
    assert torch.equal(consistent, points)


def test_rescale_points_by_hand():
    # 640 px wide -> 320 px: edges map onto edges, x -> (x + 0.5) * 0.5 - 0.5
    out = rescale_points(np.array([[0.0, 0.0], [639.0, 799.0]]), (800, 640), (400, 320))
    np.testing.assert_allclose(out, [[-0.25, -0.25], [319.25, 399.25]])
    edges = rescale_points(np.array([[-0.5, -0.5], [799.5, 0.5]]), (1, 800), (1, 100))
    np.testing.assert_allclose(edges, [[-0.5, -0.5], [99.5, 0.5]])   # the image edges stay the edges


def test_rescale_points_matches_interpolate_convention():
    """Bilinear resampling of a ramp I(x) = x returns, at each output pixel, the source x of its centre."""
    width = 64
    ramp = torch.arange(width, dtype=torch.float64).repeat(8, 1)[None, None]   # (1, 1, 8, 64)
    half = F.interpolate(ramp, size=(4, 32), mode="bilinear", align_corners=False)
    src_x = rescale_points(torch.stack([torch.arange(32.0), torch.zeros(32)], -1).double(), (4, 32), (8, 64))
    torch.testing.assert_close(half[0, 0, 0], src_x[:, 0])


def test_rescale_points_round_trip_and_per_image_sizes():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 1000, size=(3, 19, 2))
    sizes = np.array([[2400, 1935], [2000, 1500], [1024, 512]])  # (N, 2) as (H, W)
    net = rescale_points(points, sizes, (800, 640))
    back = rescale_points(net, (800, 640), sizes)
    np.testing.assert_allclose(back, points, atol=1e-9)
    # per-image scale really used: image 2 has W=512 -> 640, so x grows
    assert net[2, 0, 0] > points[2, 0, 0]
    torch_back = rescale_points(torch.from_numpy(net), (800, 640), torch.from_numpy(sizes))
    np.testing.assert_allclose(torch_back.numpy(), points, atol=1e-9)


def test_encode_runs_batched_on_the_points_device():
    points = torch.rand(4, 19, 2) * 30
    maps = encode_heatmaps(points, (32, 32), sigma=2.0)
    assert maps.device == points.device and maps.dtype == torch.float32
    for b in range(4):  # same as encoding one image at a time
        torch.testing.assert_close(maps[b:b + 1], encode_heatmaps(points[b:b + 1], (32, 32), sigma=2.0))
