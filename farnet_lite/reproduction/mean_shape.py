"""The no-learning floor of Tables 3-5: every landmark at its mean training position, no network.

The mean shape is averaged in normalised image coordinates (each image's points divided by its size), so images of
different sizes are handled alike, and put back on each test image at that image's size. It shows how far each
number of a table is from doing nothing: a model that does not beat it has learnt no landmark.

:func:`write_mean_shape_floor` scores it on the splits of a table -- for every experiment of the table, the mean of
that experiment's training split (its fold) predicted on the experiment's splits; the folds of one split are pooled
-- and writes ``<results>/<dataset>/mean-shape/metrics_<split>.json``, which ``farnet_lite.reproduction.tables`` shows as the
"Mean shape (no learning)" row. Points are ``(x, y)`` original pixels, 0-based, pixel centres at integers; sizes
are ``(H, W)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from farnet_lite.config import TrainConfig
from farnet_lite.engine.outputs import write_json
from farnet_lite.engine.scoring import score_predictions
from farnet_lite.engine.splits import open_split
from farnet_lite.heatmaps import rescale_points
from farnet_lite.reproduction.experiments import experiment_config, table_experiments
from farnet_lite.reproduction.tables import FLOOR_FOLDER, FLOOR_TABLES


def mean_shape_baseline(train_points: np.ndarray, train_sizes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Predict every landmark at its mean training position, in image-relative coordinates.

    ``train_points`` ``(N, K, 2)`` original pixels of images of ``train_sizes`` ``(N, 2)`` (H, W); returns
    ``(M, K, 2)`` for images of ``sizes`` ``(M, 2)``. Positions are averaged in a unit grid (via
    ``rescale_points``), so images of different sizes are handled alike; a landmark missing (NaN) in some training
    images is averaged over the others.
    """
    unit = rescale_points(train_points, train_sizes, np.ones_like(train_sizes, dtype=np.float64))
    mean = np.nanmean(unit, axis=0)                                             # (K, 2) in a 1x1 grid
    return rescale_points(np.broadcast_to(mean, (len(sizes), *mean.shape)), np.ones_like(sizes), sizes)


def split_points(config: TrainConfig, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(points (N, K, 2)`` original pixels, NaN where unlabelled``, sizes (N, 2))`` of one split, from the
    annotation files and the image headers (no image is decoded)."""
    dataset = open_split(config, split)
    num = dataset.num_landmarks
    points = np.stack([np.full((num, 2), np.nan) if dataset.landmarks(i) is None else dataset.landmarks(i)
                       for i in range(len(dataset))])
    sizes = np.array([dataset.image_size(i) for i in range(len(dataset))], dtype=np.float64)
    return points, sizes


def write_mean_shape_floor(table: str, results_dir: Union[str, Path], data_root=None,
                           quick: bool = False, cache_dir=None, provenance: Optional[dict] = None) -> Dict[str, dict]:
    """Score the mean-shape floor on every split of ``table`` (table3, table4 or table5) and write
    ``<results_dir>/<dataset>/mean-shape/metrics_<split>.json``; returns ``{split: summary}``.

    ``data_root``: the folder containing the dataset folders (as ``farnet reproduce``); ``quick``: the synthetic
    stand-in. The folds of a cross-validated split are pooled: their predictions are scored together.
    ``provenance`` (command, commit, ...; ``farnet reproduce`` passes it) is written beside as ``provenance.json``.
    """
    if table not in FLOOR_TABLES:
        raise ValueError(f"The mean-shape floor is a row of {', '.join(FLOOR_TABLES)}, not {table}.")
    experiments = table_experiments(table)
    pooled: Dict[str, list] = {}
    done = set()
    for exp in experiments:
        config = experiment_config(exp, quick=quick, data_root=data_root, cache_dir=cache_dir, device="cpu")
        train = None
        for split in exp.splits:
            if (config.train_split, config.fold, split) in done:
                continue                          # Table 5's rows share their 5 runs: each fold scored once
            done.add((config.train_split, config.fold, split))
            train = train or split_points(config, config.train_split)
            points, sizes = split_points(config, split)
            pooled.setdefault(split, []).append((mean_shape_baseline(*train, sizes), points, sizes))
    folder = Path(results_dir) / experiments[0].dataset / FLOOR_FOLDER
    results = {}
    for split, parts in pooled.items():
        pred, truth, sizes = (np.concatenate([p[i] for p in parts]) for i in range(3))
        summary, _, labelled = score_predictions(pred, truth, sizes, config.spec)
        if summary:
            results[split] = dict(summary, dataset=config.dataset, split=split, labelled_images=int(labelled.sum()),
                                  folds=len(parts), method="mean shape of the training split (no learning)")
            write_json(folder / f"metrics_{split}.json", results[split])
    if results and provenance is not None:
        write_json(folder / "provenance.json", dict(provenance, splits=sorted(results)))
    return results
