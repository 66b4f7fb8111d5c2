"""HeatmapCodec: encode / decode round trips in the input grid, at full and half resolution, both origins.

Values, not shapes: a decode shifted by half a pixel, a dropped grid change, an encode origin off by one or a
sigma that is ignored must each fail here (tools/mutations.py applies those mutations and checks they do).
"""
import math

import numpy as np
import pytest
import torch

from farnet_lite.heatmaps import OFFICIAL_ORIGIN, HeatmapCodec, encode_heatmaps, rescale_points

INPUT = (64, 48)                       # (H, W) network input
HALF = (32, 24)                        # the MSFA grid


def random_points(seed, num=19, size=INPUT, margin=2.0):
    """(2, num, 2) non-integer (x, y) inside the input grid, ``margin`` px from its border."""
    gen = torch.Generator().manual_seed(seed)
    span = torch.tensor([size[1] - 1 - 2 * margin, size[0] - 1 - 2 * margin])
    return margin + torch.rand(2, num, 2, generator=gen, dtype=torch.float64) * span


@pytest.mark.parametrize("heatmap_size", [INPUT, HALF], ids=["full", "half"])
def test_round_trip_subpixel_is_exact(heatmap_size):
    codec = HeatmapCodec(INPUT, heatmap_size, sigma=2.0)
    points = random_points(0)
    maps = codec.encode(points)
    assert maps.shape == (2, 19, *heatmap_size) and maps.dtype == torch.float64
    back, scores = codec.decode(maps, "subpixel")
    assert back.shape == (2, 19, 2) and scores.shape == (2, 19)
    assert back.dtype == torch.float32                                           # decoding works in float32
    torch.testing.assert_close(back.double(), points, atol=1e-4, rtol=0)


@pytest.mark.parametrize("heatmap_size", [INPUT, HALF], ids=["full", "half"])
def test_round_trip_argmax_within_half_a_heatmap_pixel(heatmap_size):
    codec = HeatmapCodec(INPUT, heatmap_size, sigma=2.0)
    points = random_points(1).float()
    back, _ = codec.decode(codec.encode(points), "argmax")
    step = torch.tensor([INPUT[1] / heatmap_size[1], INPUT[0] / heatmap_size[0]])   # input px per heatmap px
    assert ((back - points).abs() <= 0.5 * step + 1e-5).all()
    # the decoded point is the centre of the hottest heatmap pixel, mapped to the input grid
    nearest = rescale_points(rescale_points(points, INPUT, heatmap_size).round(), heatmap_size, INPUT)
    torch.testing.assert_close(back, nearest)


def test_argmax_is_exact_on_heatmap_pixel_centres():
    """Input points that sit on half-grid pixel centres (x = 2 j + 0.5) come back bit-exact through argmax."""
    cols, rows = torch.tensor([3.0, 10.0, 20.0]), torch.tensor([5.0, 17.0, 30.0])
    points = torch.stack([2 * cols + 0.5, 2 * rows + 0.5], dim=-1)[None]          # (1, 3, 2) input grid
    codec = HeatmapCodec(INPUT, HALF, sigma=1.5)
    maps = codec.encode(points)
    assert maps[0, 1, 17, 10].item() == 1.0                                      # peak at (row 17, col 10)
    back, scores = codec.decode(maps, "argmax")
    assert torch.equal(back, points) and torch.equal(scores, torch.ones(1, 3))


def test_encode_values_by_hand_on_the_half_grid():
    """x = 10.5 in the 48-wide input is 5.0 in the 24-wide half grid; sigma is in half-grid pixels."""
    codec = HeatmapCodec(INPUT, HALF, sigma=2.0)
    maps = codec.encode(torch.tensor([[[10.5, 6.5], [float("nan"), 3.0]]]))       # (1, 2, 32, 24)
    assert maps[0, 0, 3, 5].item() == pytest.approx(1.0)                          # (y, x) = (3, 5)
    assert maps[0, 0, 3, 6].item() == pytest.approx(math.exp(-1 / 8))             # one half-grid pixel right
    assert maps[0, 0, 5, 5].item() == pytest.approx(math.exp(-4 / 8))             # two rows down
    assert torch.count_nonzero(maps[0, 1]) == 0                                   # NaN: no target
    torch.testing.assert_close(maps, encode_heatmaps(rescale_points(
        torch.tensor([[[10.5, 6.5], [float("nan"), 3.0]]]), INPUT, HALF), HALF, sigma=2.0))


def test_sigma_is_used():
    points = torch.tensor([[[20.0, 30.0]]])
    narrow = HeatmapCodec(INPUT, INPUT, sigma=1.0).encode(points)
    wide = HeatmapCodec(INPUT, INPUT, sigma=4.0).encode(points)
    assert narrow[0, 0, 30, 21].item() == pytest.approx(math.exp(-0.5))
    assert wide[0, 0, 30, 21].item() == pytest.approx(math.exp(-1 / 32))


@pytest.mark.parametrize("heatmap_size", [INPUT, HALF], ids=["full", "half"])
def test_official_origin_round_trips_and_its_official_decoding_is_biased(heatmap_size):
    points = random_points(2, num=5)
    same = HeatmapCodec(INPUT, heatmap_size, sigma=2.0, origin=OFFICIAL_ORIGIN)
    maps = same.encode(points)
    # the target really is drawn on the 1-based grid: its peak sits one heatmap pixel up-left of the 0-based one
    zero_based = HeatmapCodec(INPUT, heatmap_size, sigma=2.0).encode(points)
    torch.testing.assert_close(maps[..., :-1, :-1], zero_based[..., 1:, 1:])
    torch.testing.assert_close(same.decode(maps, "subpixel")[0].double(), points, atol=1e-4, rtol=0)
    # the official pipeline: the same targets read 0-based -> one heatmap pixel up-left = s input pixels
    official = HeatmapCodec(INPUT, heatmap_size, sigma=2.0, origin=OFFICIAL_ORIGIN, decode_origin=0.0)
    step = torch.tensor([INPUT[1] / heatmap_size[1], INPUT[0] / heatmap_size[0]], dtype=torch.float64)
    torch.testing.assert_close(official.decode(maps, "subpixel")[0].double(), points - step, atol=1e-4, rtol=0)


def test_official_bias_on_isbi_grid_by_hand():
    """800x640 input, targets on the 1-based 400x320 MSFA grid decoded 0-based: -2 input px per axis."""
    codec = HeatmapCodec((800, 640), (400, 320), sigma=10.0, origin=OFFICIAL_ORIGIN, decode_origin=0.0)
    point = torch.tensor([[[100.5, 200.5]]])          # half-grid pixel centre (50, 100)
    back, _ = codec.decode(codec.encode(point), "argmax")
    assert back.tolist() == [[[98.5, 198.5]]]


def test_numpy_points_and_integer_points():
    codec = HeatmapCodec(INPUT, INPUT, sigma=2.0)
    from_numpy = codec.encode(np.array([[[4.0, 7.0]]]))
    assert from_numpy.dtype == torch.float64 and from_numpy[0, 0, 7, 4] == 1.0
    from_int = codec.encode(torch.tensor([[[4, 7]]]))
    assert from_int.dtype == torch.float32 and from_int[0, 0, 7, 4] == 1.0


def test_decode_refuses_heatmaps_of_another_grid():
    codec = HeatmapCodec(INPUT, HALF, sigma=2.0)
    with pytest.raises(ValueError, match="build the codec with the output's own size"):
        codec.decode(torch.zeros(1, 1, *INPUT))
