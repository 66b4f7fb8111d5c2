"""An oracle model must come back, through inference, as the points it was built from.

The oracle learns nothing: for each image it recognises it returns the codec-encoded targets of that image's
known points -- at full resolution plus a half-resolution ``coarse`` output (like MSFA+FR), or only the
half-resolution maps as ``final`` (like MSFA alone). Whatever ``predict_batch`` / ``evaluate`` / ``predict`` do
between the heatmaps and the written coordinates must therefore give those points back, within the decode's
tolerance and checked on values. A half-pixel shift after decoding or a dropped grid change (the MSFA-alone path)
fails here; tools/mutations.py checks that it does.
"""
import importlib

import numpy as np
import pandas as pd
import pytest
import torch
from engine_helpers import tiny_config
from torch import nn

from farnet_lite.config import TrainConfig
from farnet_lite.data.isbi2015 import read_isbi2015
from farnet_lite.engine.evaluate import evaluate, predict_batch
from farnet_lite.engine.predict import predict
from farnet_lite.engine.runtime import network_input, run_codec
from farnet_lite.engine.splits import prepared_split
from farnet_lite.heatmaps import OFFICIAL_ORIGIN, HeatmapCodec
from farnet_lite.layers import HeatmapOutput

SIZE = (32, 32)       # (H, W) network input
SIGMA = 1.5


class Oracle(nn.Module):
    """Returns the encoded targets of the known points of whichever reference image each input is closest to.

    ``references`` ``(N, H, W)`` uint8 images at the input size; ``points`` ``(N, K, 2)`` ``(x, y)`` in the input
    grid. ``msfa_alone``: only half-resolution heatmaps, as ``final`` (the MSFA-alone system).
    """

    def __init__(self, references, points, sigma=SIGMA, msfa_alone=False, origin=0.0):
        super().__init__()
        self.register_buffer("keys", network_input(torch.as_tensor(np.asarray(references))))   # (N, 3, H, W)
        self.register_buffer("points", torch.as_tensor(np.asarray(points), dtype=torch.float64))  # (N, K, 2)
        self.sigma, self.msfa_alone, self.origin = sigma, msfa_alone, origin

    def forward(self, x):                                                    # (B, 3, H, W) normalised
        size = tuple(x.shape[-2:])
        which = torch.cdist(x.flatten(1).float(), self.keys.flatten(1)).argmin(dim=1)   # (B,) reference index
        points = self.points[which]                                          # (B, K, 2)
        half = HeatmapCodec(size, (size[0] // 2, size[1] // 2), self.sigma, self.origin).encode(points).float()
        if self.msfa_alone:
            return HeatmapOutput(half, None)                                 # (B, K, H/2, W/2)
        return HeatmapOutput(HeatmapCodec(size, size, self.sigma, self.origin).encode(points).float(), half)


def reference_images(count, seed=0):
    """``(count, H, W)`` uint8 random images, far apart from each other."""
    return torch.randint(0, 256, (count, *SIZE), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def exact_points(msfa_alone):
    """Points the argmax decoder returns bit-exactly: pixel centres of the grid the final heatmaps live on.
    Half grid: column j is x = 2 j + 0.5 in the input grid."""
    cols = torch.tensor([[3.0, 8.0, 12.0], [1.0, 14.0, 6.0]])             # (N=2, K=3) heatmap-grid columns
    rows = torch.tensor([[4.0, 11.0, 2.0], [13.0, 5.0, 9.0]])
    grid = torch.stack([cols, rows], dim=-1)                               # (2, 3, 2)
    return 2 * grid + 0.5 if msfa_alone else 2 * grid                      # (2, 3, 2) input grid


def decode_with(model, images, config):
    """``predict_batch`` with the run's codec, as evaluation calls it."""
    return predict_batch(model, images, run_codec(config), config)


def config_for(decode, **changes):
    return TrainConfig.preset("synthetic-isbi", "demo", input_size=SIZE, sigma=SIGMA, decode=decode, **changes)


@pytest.mark.parametrize("msfa_alone", [False, True], ids=["fr", "msfa-alone"])
def test_predict_batch_gives_back_pixel_centres_exactly_with_argmax(msfa_alone):
    images, points = reference_images(2), exact_points(msfa_alone)
    oracle = Oracle(images, points, msfa_alone=msfa_alone).eval()
    coords, scores = decode_with(oracle, images, config_for("argmax"))
    assert coords.shape == (2, 3, 2) and scores.shape == (2, 3)
    torch.testing.assert_close(coords, points, atol=0, rtol=0)
    torch.testing.assert_close(scores, torch.ones(2, 3))


@pytest.mark.parametrize("msfa_alone", [False, True], ids=["fr", "msfa-alone"])
def test_predict_batch_decodes_with_the_configs_origins(msfa_alone):
    """A model trained on the official 1-based targets: read on that grid it is exact; read 0-based (the official
    pipeline, decode_origin=0) every point moves one heatmap pixel up-left -- 2 input pixels on the half grid."""
    images, points = reference_images(2), exact_points(msfa_alone)
    oracle = Oracle(images, points, msfa_alone=msfa_alone, origin=OFFICIAL_ORIGIN).eval()
    same, _ = decode_with(oracle, images, config_for("argmax", origin=OFFICIAL_ORIGIN))
    torch.testing.assert_close(same, points, atol=0, rtol=0)
    official, _ = decode_with(oracle, images, config_for("argmax", origin=OFFICIAL_ORIGIN,
                                                                 decode_origin=0.0))
    torch.testing.assert_close(official, points - (2.0 if msfa_alone else 1.0), atol=0, rtol=0)


@pytest.mark.parametrize("msfa_alone", [False, True], ids=["fr", "msfa-alone"])
def test_predict_batch_gives_back_any_point_with_subpixel(msfa_alone):
    images = reference_images(3, seed=1)
    gen = torch.Generator().manual_seed(2)
    points = 2.0 + 27.0 * torch.rand(3, 5, 2, generator=gen)              # (3, 5, 2) non-integer, inside
    oracle = Oracle(images, points, msfa_alone=msfa_alone).eval()
    coords, _ = decode_with(oracle, images[[2, 0, 1]], config_for("subpixel"))   # any order
    torch.testing.assert_close(coords, points[[2, 0, 1]], atol=1e-3, rtol=0)


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    """The tiny synthetic ISBI run (engine_helpers), its Test1 cache and the Test1 originals with their labels."""
    tmp = tmp_path_factory.mktemp("oracle")
    config = tiny_config(tmp, decode="subpixel")
    cache = prepared_split(config, "test1")
    dataset = read_isbi2015(config.data_root, "test1")
    originals = [dataset[i].image for i in range(len(dataset))]
    truth = np.stack([dataset.landmarks(i) for i in range(len(dataset))])  # (N, 19, 2) original pixels
    return config, cache, originals, truth, tmp


def install_oracle(monkeypatch, config, cache, msfa_alone):
    """Make ``load_model`` (any checkpoint path) return an oracle of the Test1 cache and the tiny config."""
    oracle = Oracle(cache.images, cache.landmarks, sigma=config.sigma, msfa_alone=msfa_alone).eval()
    inference = importlib.import_module("farnet_lite.engine.evaluate")   # evaluate and predict load through it
    monkeypatch.setattr(inference, "load_model", lambda *args, **kwargs: (oracle, config))


@pytest.mark.parametrize("msfa_alone", [False, True], ids=["fr", "msfa-alone"])
def test_evaluate_scores_the_oracle_perfectly(tiny_split, monkeypatch, msfa_alone):
    config, cache, _, truth, tmp = tiny_split
    install_oracle(monkeypatch, config, cache, msfa_alone)
    out = tmp / f"eval-{msfa_alone}"
    result = evaluate(tmp / "oracle.pt", ["test1"], output_dir=out, device="cpu")["test1"]
    np.testing.assert_allclose(result.pred, truth, atol=2e-3, rtol=0)      # original pixels
    assert result.summary["mre"] < 1e-3                                   # mm (0.1 mm per original pixel)
    written = pd.read_csv(out / "predictions_test1.csv")
    xy = written[["x", "y"]].to_numpy().reshape(truth.shape)
    np.testing.assert_allclose(xy, truth, atol=2e-3, rtol=0)


@pytest.mark.parametrize("msfa_alone", [False, True], ids=["fr", "msfa-alone"])
def test_predict_on_original_images_gives_back_the_annotations(tiny_split, monkeypatch, msfa_alone):
    config, cache, originals, truth, tmp = tiny_split
    install_oracle(monkeypatch, config, cache, msfa_alone)
    frame = predict(tmp / "oracle.pt", originals, device="cpu", overlay=False)
    xy = frame[["x", "y"]].to_numpy().reshape(truth.shape)                # (N, 19, 2) original pixels
    np.testing.assert_allclose(xy, truth, atol=2e-3, rtol=0)
