"""benchmarks/input_pipeline.py on a tiny synthetic ISBI copy saved as JPEGs (so the kit decodes it in draft mode).

An untrained FPN at 64x64 from 320x320 images (a 5x downscale): the four inputs' grey levels, the kit's own cache
reproduced, identical inputs scored identically, and the command line end to end.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from farnet_lite.config import TrainConfig
from farnet_lite.data.cache import load_cache, prepare_cache
from farnet_lite.data.synthetic import write_synthetic_isbi
from farnet_lite.engine.checkpoint import save_checkpoint
from farnet_lite.engine.splits import open_split
from farnet_lite.systems import build_model_from_config

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "input_pipeline.py"


def load_script():
    spec = importlib.util.spec_from_file_location("input_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(script module, config, Test1 dataset of 4 JPEGs, untrained model, checkpoint path)."""
    torch.set_num_threads(1)
    root = write_synthetic_isbi(tmp_path_factory.mktemp("data") / "isbi", n_train=2, n_test1=4, n_test2=0,
                                size=(320, 320), seed=0)
    for bmp in sorted((root / "RawImage").rglob("*.bmp")):      # JPEG copies, as the real ISBI data
        Image.open(bmp).convert("RGB").save(bmp.with_suffix(".jpg"), quality=90)
        bmp.unlink()
    config = TrainConfig.preset("synthetic-isbi", "paper", data_root=str(root), input_size=(64, 64),
                                system="fpn", pretrained=False, batch_size=4)
    torch.manual_seed(0)
    model = build_model_from_config(config).eval()
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt", model=model, config=config, epoch=1)
    return load_script(), config, open_split(config, "test1"), model, path


def test_inputs_and_scores(setup, tmp_path):
    script, config, dataset, model, _ = setup
    assert dataset.reduced_image(0, (128, 128)).scale == 2                # the kit's path does use a draft
    result = script.measure(model, config, dataset)
    images, rows = result["images"], result["variants"]
    assert all(stack.shape == (4, 64, 64) and stack.dtype == np.uint8 for stack in images.values())
    # (a) is exactly the cache the kit builds (draft decode, PIL antialias, JPEG q93)
    kit = load_cache(prepare_cache(dataset, (64, 64), tmp_path / "a.npz", num_workers=0, progress=False))
    assert np.array_equal(images["a"], kit.images)
    # the kit's variants lie within a few grey levels of the lossless full decode; JPEG adds to the draft's
    assert rows["b"]["grey_diff_vs_c"] < rows["a"]["grey_diff_vs_c"] < 3.0
    assert 0 < rows["b"]["grey_diff_vs_c"] < 1.0
    assert rows["c"]["grey_diff_vs_c"] == 0.0
    # sampling 2x2 neighbours of a 5x downscale (no antialias) moves the pixels more than the draft decode does
    assert rows["d"]["grey_diff_vs_c"] > 2 * rows["b"]["grey_diff_vs_c"]
    for row in rows.values():
        assert np.isfinite([row[m] for m in script.METRICS]).all() and 0 <= row["sdr_2"] <= row["sdr_4"] <= 100
    # identical inputs, identical scores
    again = script.measure(model, config, dataset)["variants"]
    assert all(again[k][m] == rows[k][m] for k in rows for m in script.METRICS)


def test_torch_fallback_matches_cv2():
    """The fallback samples like cv2.resize INTER_LINEAR (within cv2's fixed-point rounding of 1 grey level)."""
    cv2 = pytest.importorskip("cv2")
    script = load_script()
    image = np.random.default_rng(0).integers(0, 256, (300, 242), dtype=np.uint8)
    ours, impl = script.inter_linear(image, (96, 64), use_cv2=False)
    assert impl.startswith("torch")
    theirs = cv2.resize(image, (64, 96), interpolation=cv2.INTER_LINEAR)
    assert np.abs(ours.astype(int) - theirs).max() <= 1


def test_command_line_writes_json(setup, tmp_path):
    script, config, _, _, path = setup
    out = tmp_path / "out.json"
    script.main(["--checkpoint", str(path), "--data-root", config.data_root, "--out", str(out),
                 "--grey-sizes", "32x32"])
    report = json.loads(out.read_text())
    assert set(report["variants"]) == {"a", "b", "c", "d"} and report["n_images"] == 4
    assert report["checkpoint_config"]["input_size"] == [64, 64] and report["checkpoint_config"]["pretrained"] is False
    assert set(report["grey_diff_vs_c_other_sizes"]["32x32"]) == {"a", "b", "d"}
    provenance = report["provenance"]
    assert len(provenance["commit"]) == 40 and isinstance(provenance["dirty"], bool)
    assert provenance["torch"] == torch.__version__ and provenance["wall_time_s"] >= 0
