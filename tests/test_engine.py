"""The training engine: presets, schedules, splits, scoring, a tiny end-to-end run, checkpoints, failures."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from engine_helpers import tiny_config

from farnet_lite.config import DATASETS, TrainConfig
from farnet_lite.datasets import cv_fold_indices
from farnet_lite.engine import train as train_module
from farnet_lite.engine.checkpoint import (capture_rng, check_compatible, load_checkpoint, load_model, restore_rng,
                                           save_checkpoint)
from farnet_lite.engine.evaluate import evaluate
from farnet_lite.engine.outputs import read_predictions
from farnet_lite.engine.runtime import lr_factor
from farnet_lite.engine.scoring import score_predictions
from farnet_lite.engine.splits import open_split
from farnet_lite.engine.train import NonFiniteLossError, train


def test_paper_presets_follow_the_paper():
    ceph = TrainConfig.preset("isbi2015", "paper")
    assert ceph.input_size == (800, 640) and not ceph.augment
    assert (ceph.sigma, ceph.alpha, ceph.lr, ceph.epochs, ceph.batch_size) == (10.0, 40.0, 1e-4, 300, 1)
    assert (ceph.optimizer, ceph.loss, ceph.system, ceph.precision) == ("adam", "ewc", "msfa_fr", "fp32")
    assert ceph.val_split == "test1" and "test2" in ceph.eval_splits and ceph.val_split != "test2"
    hand, spine = TrainConfig.preset("hand", "paper"), TrainConfig.preset("spine", "paper")
    assert hand.input_size == (512, 512) and hand.augment and hand.num_landmarks == 37
    assert spine.input_size == (1024, 512) and spine.augment and spine.num_landmarks == 68
    assert (spine.train_split, spine.val_split) == ("cv-train", "cv-val")
    assert DATASETS["isbi2015"].radii == (2.0, 2.5, 3.0, 4.0) and DATASETS["hand"].radii == (2.0, 4.0, 10.0)
    fast = TrainConfig.preset("isbi2015", "fast")
    assert fast.batch_size == 8 and fast.precision == "auto" and fast.channels_last
    assert fast.lr_schedule == "cosine" and fast.lr == pytest.approx(1e-4 * math.sqrt(8), rel=1e-3)
    assert TrainConfig.preset("hand", "paper", optimizer="adadelta", lr=1.0).optimizer == "adadelta"


def test_config_json_round_trip_and_validation(tmp_path):
    config = TrainConfig.preset("spine", "fast", fold=3, eval_splits=["test"])
    again = TrainConfig.load(config.save(tmp_path / "config.json"))
    assert again == config and again.input_size == (1024, 512) and again.eval_splits == ("test",)
    with pytest.raises(ValueError, match="multiples of 32"):
        TrainConfig(input_size=(100, 64))
    with pytest.raises(ValueError, match="Unknown dataset"):
        TrainConfig.preset("mnist")


def test_lr_schedules_by_hand():
    step = TrainConfig(epochs=300, lr_schedule="step")
    assert lr_factor(step, 199 * 10 + 9, 10) == 1.0 and lr_factor(step, 200 * 10, 10) == 0.1  # x0.1 at 200
    cosine = TrainConfig(epochs=10, lr_schedule="cosine", warmup_epochs=2)
    assert lr_factor(cosine, 0, 5) == pytest.approx(1 / 10)            # warm-up: (step + 1) / 10 steps
    assert lr_factor(cosine, 9, 5) == pytest.approx(1.0)
    assert lr_factor(cosine, 10 + 20, 5) == pytest.approx(0.5)        # half-way through the 40 cosine steps
    assert lr_factor(cosine, 50, 5) == pytest.approx(0.0, abs=1e-12)


def test_spine_cross_validation_folds_partition_the_ids():
    ids = [f"img{i:02d}" for i in (5, 3, 9, 0, 1, 7, 2, 8, 6, 4, 10, 11)]
    vals = [cv_fold_indices(ids, fold)[1] for fold in range(1, 6)]
    assert sorted(i for v in vals for i in v) == list(range(12))       # every image validated exactly once
    train1, val1 = cv_fold_indices(ids, 1)
    assert sorted(ids[i] for i in val1) == ["img00", "img05", "img10"]  # sorted ids 0, 5, 10 -> fold 1
    assert set(train1).isdisjoint(val1) and cv_fold_indices(ids, 1) == (train1, val1)


def test_spine_cv_splits_from_synthetic_layout(tmp_path):
    from farnet_lite.data.synthetic import write_synthetic_spine

    root = write_synthetic_spine(tmp_path / "spine", n_training=10, n_test=2, size=(64, 32))
    config = TrainConfig.preset("synthetic-spine", "paper", data_root=str(root), fold=2)
    train_ids, val_ids = open_split(config, "cv-train").ids, open_split(config, "cv-val").ids
    held_out = open_split(config, "test50").ids                  # the paper's hold-out: 1 of 10 (50 of 481)
    assert len(held_out) == 1 and len(train_ids) == 7 and len(val_ids) == 2   # folds of the other 9
    assert not set(train_ids) & set(val_ids) and not set(held_out) & (set(train_ids) | set(val_ids))
    assert len(open_split(config, "test")) == 2


def test_scores_by_hand():
    truth = np.zeros((2, 2, 2))
    truth[:, 1] = [10.0, 0.0]
    pred = truth.copy()
    pred[0, 0] += [3.0, 4.0]                                          # 5 px off = 0.5 mm at 0.1 mm/px
    summary, errors, labelled = score_predictions(pred, truth, np.full((2, 2), 100.0), DATASETS["isbi2015"])
    assert errors.tolist() == [[0.5, 0.0], [0.0, 0.0]] and labelled.all()
    assert summary["mre"] == pytest.approx(0.125) and summary["sdr_2"] == 100.0
    truth_nan = truth.copy()
    truth_nan[1] = np.nan                                              # an unlabelled image is not scored
    summary, errors, labelled = score_predictions(pred, truth_nan, np.full((2, 2), 100.0), DATASETS["isbi2015"])
    assert errors.shape == (1, 2) and labelled.tolist() == [True, False]
    summary, _, _ = score_predictions(pred, truth, np.array([[100.0, 50.0]] * 2), DATASETS["spine"])
    # (3/50)^2 and (4/100)^2 for one of 8 coordinates
    assert summary["mse_fraction"] == pytest.approx(((3 / 50) ** 2 + (4 / 100) ** 2) / 8)


def test_rng_states_round_trip():
    gen = torch.Generator().manual_seed(3)
    state = capture_rng({"data": gen})
    first = (np.random.rand(), torch.rand(2), torch.randperm(5, generator=gen))
    restore_rng(state, {"data": gen})
    second = (np.random.rand(), torch.rand(2), torch.randperm(5, generator=gen))
    assert first[0] == second[0] and torch.equal(first[1], second[1]) and torch.equal(first[2], second[2])


def test_tiny_run_end_to_end(tmp_path, capsys):
    config = tiny_config(tmp_path)
    result = train(config)
    run = result.run_dir
    assert "Training in fp32 on cpu; CPU: " in capsys.readouterr().out        # the paper preset pins fp32
    assert json.loads((run / "selection.json").read_text())["precision"] == "fp32"
    for name in ("config.json", "log.csv", "last.pt", "best.pt", "predictions_test1.csv",
                 "predictions_test2.csv", "metrics_test1.json", "per_landmark_test1.csv"):
        assert (run / name).is_file(), name
    assert not (run / "metrics_test2.json").exists()                   # Test2 is unlabelled: predictions only
    assert not list(run.glob(".*tmp*"))                                 # nothing half-written left behind
    log = pd.read_csv(run / "log.csv")
    assert list(log.columns) == ["epoch", "train_loss", "lr", "val_mre", "seconds"] and len(log) == 2
    assert np.isfinite(log.train_loss).all() and result.best_epoch in (1, 2)
    assert result.best_metric == pytest.approx(log.val_mre.min(), rel=1e-5)
    pred = pd.read_csv(run / "predictions_test2.csv", dtype={"image_id": str})
    assert list(pred.columns) == ["image_id", "landmark", "x", "y", "score"]
    assert len(pred) == 2 * 19 and sorted(pred.landmark.unique()) == list(range(1, 20))
    points = read_predictions(run / "predictions_test2.csv")
    assert list(points) == ["301", "302"] and points["302"].shape == (19, 2)
    np.testing.assert_allclose(points["301"], pred[pred.image_id == "301"][["x", "y"]].to_numpy())
    assert pred.image_id.iloc[0] == "301" and pred.x.between(-0.5, 51.5).all() and pred.y.between(-0.5, 63.5).all()
    metrics = json.loads((run / "metrics_test1.json").read_text())
    assert metrics["n_images"] == 4 and metrics["unit"] == "mm"
    assert metrics["mre"] == pytest.approx(result.metrics["test1"]["mre"])
    assert len(pd.read_csv(run / "per_landmark_test1.csv")) == 19
    assert TrainConfig.load(run / "config.json") == config

    # the checkpoint loads with weights_only=True, in eval mode, and evaluating it again gives the same numbers
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and isinstance(state["config"], str) and len(state["history"]) == 2
    model, saved = load_model(run / "best.pt")
    assert not model.training and saved == config
    again = evaluate(run / "best.pt", ["test1"], output_dir=tmp_path / "again")
    assert again["test1"].summary["mre"] == pytest.approx(metrics["mre"], abs=1e-9)


def test_augmented_hand_run_with_wrist_metric(tmp_path):
    from farnet_lite.data.synthetic import write_synthetic_hand

    root = write_synthetic_hand(tmp_path / "hand", n=6, size=(64, 48))
    config = TrainConfig.preset("synthetic-hand", "paper", data_root=str(root), cache_dir=str(tmp_path / "c"),
                                output_dir=str(tmp_path / "run"), input_size=(32, 32), system="fpn", epochs=1,
                                batch_size=4, lr=1e-3, sigma=1.5, progress=False)
    assert config.augment
    result = train(config)
    assert set(result.metrics) == {"test"} and result.metrics["test"]["n_images"] == 2
    assert "sdr_10" in result.metrics["test"] and np.isfinite(result.metrics["test"]["mre"])


def test_nan_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "coarse_to_fine_loss", lambda output, *a, **k: output.final.sum() * np.nan)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1: lower the learning rate"):
        train(tiny_config(tmp_path))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_mismatched_checkpoint_is_refused_in_one_sentence(tmp_path):
    ceph = TrainConfig.preset("isbi2015", "paper")
    hand = TrainConfig.preset("hand", "paper")
    path = tmp_path / "ceph.pt"
    with pytest.raises(ValueError, match=r"Checkpoint .*ceph.pt was trained with num_landmarks=19 but this run "
                                         r"needs num_landmarks=37"):
        check_compatible(ceph, hand, path)
    with pytest.raises(ValueError, match="backbone='densenet121' but this run needs backbone='vgg16'"):
        check_compatible(ceph, TrainConfig.preset("isbi2015", "paper", backbone="vgg16"), path)
    # through the engine: resuming a 19-landmark checkpoint into a 37-landmark run
    small = torch.nn.Linear(1, 1)
    save_checkpoint(path, model=small, config=ceph, epoch=1)
    assert load_checkpoint(path)["config"] == ceph
    with pytest.raises(ValueError, match="ceph.pt was trained with num_landmarks=19"):
        load_model(path, expect=hand)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt could not be read"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = TrainConfig()
    path = save_checkpoint(tmp_path / "last.pt", model=torch.nn.Linear(1, 1), config=config, epoch=1)

    def broken_save(obj, f, *args, **kwargs):
        open(f, "wb").write(b"half")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, model=torch.nn.Linear(1, 1), config=config, epoch=2)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
