"""Fidelity to the paper: presets, the official pipeline's options, protocols, MSFA(+)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from farnet_lite.config import PAPER_EPOCHS, VGG_EPOCHS, TrainConfig
from farnet_lite.data import spine
from farnet_lite.data.cache import PreparedCache
from farnet_lite.data.synthetic import write_synthetic_spine
from farnet_lite.datasets import DATASETS
from farnet_lite.engine.evaluate import evaluate_cache, predict_cache
from farnet_lite.engine.runtime import build_optimizer, network_input
from farnet_lite.heatmaps import encode_heatmaps
from farnet_lite.layers import DownBlock, HeatmapOutput, UpBlock
from farnet_lite.systems import build_model

SHARED_SPINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "spine_aasce"


# ------------------------------------------------------------------------------------------------ presets
def test_paper_preset_is_what_produced_the_published_numbers():
    paper = TrainConfig.preset("isbi2015", "paper")
    assert (paper.optimizer, paper.lr, paper.lr_schedule, paper.batch_size) == ("adam", 1e-4, "step", 1)
    assert paper.epochs == PAPER_EPOCHS == 300 and paper.pretrained is True          # ImageNet weights (§3.1)
    assert (paper.sigma, paper.alpha, paper.input_size, paper.val_split) == (10.0, 40.0, (800, 640), "test1")
    assert TrainConfig.preset("isbi2015", "paper", backbone="vgg19").epochs == VGG_EPOCHS == 900   # §4.3
    assert TrainConfig.preset("hand", "paper").input_size == (512, 512)
    assert TrainConfig.preset("synthetic-isbi", "paper").pretrained is False          # offline stand-in
    assert build_optimizer(TrainConfig(optimizer="adadelta"), [nn.Parameter(torch.zeros(1))]).__class__ is \
        torch.optim.Adadelta


def test_official_preset_switches_on_every_official_choice():
    official = TrainConfig.preset("isbi2015", "official")
    assert (official.origin, official.decode_origin, official.official_scaling, official.c0_kernel) == \
        (1.0, 0.0, True, 1)
    assert official.eval_batchnorm is False and official.truncate_truth is True
    assert (official.optimizer, official.lr_schedule, official.val_split) == ("adam", "step", "")  # last epoch
    assert official.eval_splits == ("test1",)                                         # Test2 never evaluated
    defaults = TrainConfig()
    assert (defaults.origin, defaults.c0_kernel, defaults.official_scaling, defaults.eval_batchnorm,
            defaults.truncate_truth, defaults.decode_origin) == (0.0, 3, False, True, False, None)
    with pytest.raises(ValueError, match="official code handles ISBI 2015 only"):
        TrainConfig.preset("hand", "official")


def test_c0_kernel_option_builds_a_1x1_c0():
    official = build_model("msfa_fr", 19, c0_kernel=1)
    paper = build_model("msfa_fr", 19)
    assert official.backbone.stem0[0].kernel_size == (1, 1)
    assert paper.backbone.stem0[0].kernel_size == (3, 3)


def test_official_scaling_skips_the_division_by_255():
    images = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    kit = network_input(images)
    official = network_input(images, official_scaling=True)
    assert kit[0, 0, 0, 0].item() == pytest.approx((1.0 - 0.485) / 0.229, rel=1e-5)
    assert official[0, 0, 0, 0].item() == pytest.approx((255.0 - 0.485) / 0.229, rel=1e-5)


# ------------------------------------------------------------------- evaluation options on a stub model
class PeakModel(nn.Module):
    """Returns one heatmap with its peak at (10, 20) of a 32x32 grid; records its mode and batch sizes."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, x.shape[0]))
        peak = torch.tensor([[[10.0, 20.0]]]).expand(x.shape[0], 1, 2)
        return HeatmapOutput(encode_heatmaps(peak, (32, 32), sigma=1.0))


def _stub_cache(n=3):
    points = np.tile([[[10.5, 20.5]]], (n, 1, 1))                                      # half-pixel truth
    return PreparedCache(images=np.zeros((n, 32, 32), np.uint8), landmarks=points,
                         original_sizes=np.full((n, 2), 32), ids=tuple(f"i{k}" for k in range(n)), size=(32, 32))


def test_eval_batchnorm_off_predicts_in_training_mode_one_image_at_a_time():
    config = TrainConfig(dataset="synthetic-isbi", batch_size=4, input_size=(32, 32))
    model = PeakModel()
    predict_cache(model, _stub_cache(), config, "cpu")
    assert model.calls == [(False, 3)]
    model.calls.clear()
    predict_cache(model, _stub_cache(), TrainConfig(dataset="synthetic-isbi", eval_batchnorm=False,
                                                 input_size=(32, 32)), "cpu")
    assert model.calls == [(True, 1)] * 3


def test_truncate_truth_scores_against_the_truncated_ground_truth():
    kit = evaluate_cache(PeakModel(), _stub_cache(), TrainConfig(dataset="synthetic-isbi", input_size=(32, 32)), "cpu")
    official = evaluate_cache(PeakModel(), _stub_cache(), TrainConfig(dataset="synthetic-isbi", input_size=(32, 32),
                                                                       truncate_truth=True), "cpu")
    np.testing.assert_allclose(kit.pred[0, 0], [10.0, 20.0])
    assert kit.summary["mre"] == pytest.approx(0.1 * np.hypot(0.5, 0.5))             # ISBI spacing 0.1 mm/px
    assert official.summary["mre"] == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------------------- MSFA(+)
def test_msfa_plus_processes_the_sum_with_a_3x3_convolution():
    up, down = UpBlock(8, 4, 8, fusion="add"), DownBlock(8, 4, 16, fusion="add", kernel_size=1)
    assert up.conv[0].kernel_size == (3, 3) and up.lateral[0].kernel_size == (1, 1)
    assert down.conv[0].kernel_size == (3, 3)
    assert UpBlock(8, 4, 8).conv[0].kernel_size == (1, 1)                             # MSFA: concat + 1x1
    assert DownBlock(8, 4, 16, kernel_size=1).conv[0].kernel_size == (1, 1)


# --------------------------------------------------------------------------------------------- protocols
def test_hand_never_selects_on_the_reported_fold():
    hand = TrainConfig.preset("hand", "paper")
    assert hand.val_split == "" and hand.eval_splits == ("test",)


def test_spine_split_file_has_431_plus_50_unique_images():
    with open(spine.SPINE_SPLIT_FILE, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = [row["image"] for row in rows]
    assert len(names) == len(set(names)) == 481
    assert sum(row["subset"] == "test50" for row in rows) == 50
    assert sum(row["subset"] == "trainval" for row in rows) == 431
    assert names == sorted(names)


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_SPINE.is_dir(), reason="needs ../shared/data/spine_aasce")
def test_committed_spine_split_is_the_documented_function_of_the_images():
    names = [p.name for p in spine.read_spine(SHARED_SPINE, split="training").paths]
    assert spine.paper_split(names, seed=spine.SPINE_SPLIT_SEED) == spine.read_split_file()


def test_paper_split_is_seeded_and_independent_of_name_order():
    names = [f"img{i:03d}.jpg" for i in range(481)]
    split = spine.paper_split(names)
    assert split == spine.paper_split(list(reversed(names)))
    assert sum(v == "test50" for v in split.values()) == 50
    assert split != spine.paper_split(names, seed=1)
    assert sum(v == "test50" for v in spine.paper_split(names[:24]).values()) == 2     # same share, synthetic


def test_spine_protocol_splits_on_synthetic_data(tmp_path):
    root = write_synthetic_spine(tmp_path / "spine", n_training=24, n_test=3)
    reader = DATASETS["spine"].reader
    trainval = reader(root, "trainval", fold=1, annotation="mean")
    test50 = reader(root, "test50", fold=1, annotation="mean")
    assert len(trainval) == 22 and len(test50) == 2 and not set(trainval.ids) & set(test50.ids)
    folds = [set(reader(root, "cv-val", fold=k, annotation="mean").ids) for k in range(1, 6)]
    assert set().union(*folds) == set(trainval.ids) and sum(map(len, folds)) == 22   # a partition of the 22
    assert not set(reader(root, "cv-train", fold=2, annotation="mean").ids) & folds[1]
    assert DATASETS["spine"].eval_splits == ("cv-val", "test50", "test")


def test_selection_json_reports_the_selected_and_the_last_epoch(tmp_path, capsys, monkeypatch):
    """Epoch 2 ends with every weight zeroed (constant heatmaps: each landmark decoded at the first pixel), so it
    is worse than epoch 1 on any machine: Test1 selects epoch 1, and the last epoch is evaluated too, into
    last_epoch/."""
    import inspect

    import torch
    from engine_helpers import tiny_config

    from farnet_lite.engine import train as train_module

    original = train_module.train_one_epoch
    signature = inspect.signature(original)
    spoiled = []

    def spoil_epoch_2(*args, **kwargs):
        loss = original(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        model = bound.arguments["model"]
        if bound.arguments["epoch"] == 2:
            spoiled.append(2)
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
        return loss

    monkeypatch.setattr(train_module, "train_one_epoch", spoil_epoch_2)
    result = train_module.train(tiny_config(tmp_path, epochs=2, lr_schedule="constant"))
    assert spoiled == [2]
    run = Path(result.run_dir)
    selection = json.loads((run / "selection.json").read_text())
    assert result.best_epoch == selection["best_epoch"] == 1 and selection["last_epoch"] == 2
    assert selection["selected_on"] == "test1" and selection["last_epoch_files"] == "last_epoch/"
    best = json.loads((run / "metrics_test1.json").read_text())["mre"]
    last = json.loads((run / "last_epoch" / "metrics_test1.json").read_text())["mre"]
    assert best == pytest.approx(result.history[0]["val_mre"]) == pytest.approx(selection["metrics"]["test1"]["mre"])
    assert last == pytest.approx(result.history[1]["val_mre"]) == pytest.approx(result.last_metrics["test1"]["mre"])
    assert last > best
    assert (run / "last_epoch" / "predictions_test2.csv").is_file()                  # unlabelled: predictions only
    assert selection["labels_not_present"] == ["test2"] and not (run / "metrics_test2.json").exists()
    assert "test2: labels not present in this copy" in capsys.readouterr().out
