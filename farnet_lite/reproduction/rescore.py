"""Score a predictions CSV that a run wrote, from the dataset's own annotation files: a run's metrics, recomputed.

A run writes ``predictions_<split>.csv`` and ``metrics_<split>.json`` from the same float64 points, and the CSV
carries every coordinate at full precision (``farnet_lite.engine.outputs.write_frame``), so :func:`rescore_metrics_file`
gives back exactly the numbers of the JSON: anyone can check a committed result against the data without the
checkpoint (``tests/test_results_reproduce.py`` does, for every ``results/*/*/metrics*.json``).

The ground truth comes from the annotation files (``farnet_lite.reproduction.mean_shape.split_points``: original pixels,
0-based, pixel centres at integers; no image is decoded); ``truncate_truth`` runs truncate it as the official
scorer does, exactly as ``farnet_lite.engine.evaluate.evaluate_cache``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from farnet_lite.config import TrainConfig
from farnet_lite.engine.outputs import read_predictions
from farnet_lite.engine.scoring import score_predictions
from farnet_lite.engine.splits import open_split
from farnet_lite.metrics import per_landmark_table
from farnet_lite.reproduction.mean_shape import split_points

# the keys of metrics_<split>.json that describe the split rather than score it
DESCRIPTIVE_KEYS = ("dataset", "split", "labelled_images", "unit")


def run_config_of(metrics_path) -> Tuple[TrainConfig, Path]:
    """The config of the run a metrics file belongs to and that run's folder: the nearest ``config.json`` at or
    above the file's folder (a run's ``last_epoch/`` and ``subpixel/`` evaluations sit inside its folder)."""
    folder = Path(metrics_path).resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / "config.json").is_file():
            return TrainConfig.load(candidate / "config.json"), candidate
    raise FileNotFoundError(f"No config.json at or above {Path(metrics_path).parent}: {metrics_path} is not "
                            f"inside a run folder written by `farnet train`.")


def score_predictions_csv(csv_path, config: TrainConfig, split: str) -> Tuple[dict, np.ndarray]:
    """``(summary, errors (N, K))`` of a predictions CSV against the annotation files of ``split`` of the
    config's dataset (its ``data_root``, fold and annotation). Every image of the split must be in the CSV."""
    predicted = read_predictions(csv_path)                                   # {image_id: (K, 2)}
    truth, sizes = split_points(config, split)                               # (N, K, 2), (N, 2) as (H, W)
    ids = [str(i) for i in open_split(config, split).ids]
    missing = [i for i in ids if i not in predicted]
    if missing:
        raise ValueError(f"{csv_path} has no predictions for {len(missing)} image(s) of {split} (first: "
                         f"{missing[0]}); it was written for another split or dataset.")
    pred = np.stack([predicted[i] for i in ids])                              # (N, K, 2) original pixels
    if config.truncate_truth:
        truth = np.trunc(truth)
    summary, errors, _ = score_predictions(pred, truth, sizes, config.spec)
    return summary, errors


def rescore_metrics_file(metrics_path, data_root=None) -> Tuple[dict, dict, np.ndarray]:
    """``(recorded, recomputed, errors)`` for one ``metrics_<split>.json``: its numbers and those of the
    ``predictions_<split>.csv`` beside it, scored afresh. ``data_root`` overrides the run's (a relative one in
    the run's config is taken from the current folder, as the committed runs record it)."""
    metrics_path = Path(metrics_path)
    recorded = json.loads(metrics_path.read_text())
    config, _ = run_config_of(metrics_path)
    if data_root is not None:
        config = TrainConfig.from_dict(dict(config.to_dict(), data_root=str(data_root)))
    split = recorded["split"]
    summary, errors = score_predictions_csv(metrics_path.parent / f"predictions_{split}.csv", config, split)
    recomputed = dict(summary, dataset=config.dataset, split=split, labelled_images=int(len(errors)))
    return recorded, recomputed, errors


def per_landmark_of(errors: np.ndarray, config: TrainConfig, unit: str):
    """The ``per_landmark_<split>.csv`` table of a split's errors, as ``evaluate_cache`` writes it."""
    return per_landmark_table(errors, config.spec.radii if unit == "mm" else ())
