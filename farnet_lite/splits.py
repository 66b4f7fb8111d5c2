"""From a config to prepared, in-memory data: which files a split is, synthetic data on demand, the cache.

Introduced in notebook 06_training_on_gpu.

Split names per dataset layout (``TrainConfig.train_split`` / ``val_split`` / ``eval_splits``):

* ``isbi2015``: ``train`` (150), ``test1`` (150, the paper's validation *and* first test set), ``test2`` (100).
* ``hand``: ``train`` / ``test`` / ``all`` of Payer et al.'s cross-validation set ``fold`` (1, 2 or 3).
* ``spine``: ``training`` and ``test`` as published, and ``cv-train`` / ``cv-val``: fold ``fold`` (1..5) of
  a 5-fold split of ``training`` -- the image ids are sorted and the i-th id goes to fold ``i % 5 + 1`` -- so
  that model selection never looks at the test images.

Every split is resized once into a prepared cache (``farnet_lite.data.cache``: uint8 images at the network input
size, landmarks moved to that grid) stored under ``cache_dir/prepared``; its file name carries a hash of the
files it was made from, so a changed dataset makes a new cache instead of silently reusing an old one.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import List, Tuple

from farnet_lite.config import TrainConfig
from farnet_lite.distributed import DistInfo, barrier

SPINE_FOLDS = 5


def default_cache_dir() -> Path:
    """``$FARNET_CACHE`` if set, else ``~/.cache/farnet_lite``."""
    return Path(os.environ.get("FARNET_CACHE", Path.home() / ".cache" / "farnet_lite"))


def cache_dir(config: TrainConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else default_cache_dir()


def ensure_synthetic(layout: str, root) -> Path:
    """Write the synthetic stand-in of ``layout`` (default sizes) under ``root`` unless it is there; return it.

    The writers of ``farnet_lite.data.synthetic`` are idempotent and atomic (temp folder + rename).
    Introduced in notebook 06_training_on_gpu.
    """
    from farnet_lite.data import synthetic

    writers = {"isbi2015": synthetic.write_synthetic_isbi, "hand": synthetic.write_synthetic_hand,
               "spine": synthetic.write_synthetic_spine}
    return Path(writers[layout](Path(root)))


def data_root(config: TrainConfig) -> Path:
    """The dataset folder: ``config.data_root``, or (synthetic datasets only) a folder under the cache dir."""
    if config.data_root:
        root = Path(config.data_root)
        if not root.exists():
            raise FileNotFoundError(f"Data root {root} does not exist; pass the folder of the {config.spec.layout}"
                                    f" dataset with --data-root (see data_download/).")
        return root
    if config.spec.synthetic:
        return ensure_synthetic(config.spec.layout, cache_dir(config) / "synthetic" / config.spec.layout)
    raise ValueError(f"Dataset {config.dataset!r} needs --data-root (the folder of the downloaded dataset); "
                     f"use --dataset synthetic-{config.spec.layout.replace('2015', '')} to try without data.")


def cv_fold_indices(ids, fold: int, num_folds: int = SPINE_FOLDS) -> Tuple[List[int], List[int]]:
    """``(train_indices, val_indices)`` of fold ``fold`` (1-based): sorted ids, i-th sorted id in fold i % n + 1.

    Deterministic and independent of file-system order. Introduced in notebook 06_training_on_gpu.
    """
    if not 1 <= fold <= num_folds:
        raise ValueError(f"fold must be between 1 and {num_folds}, got {fold}.")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    val = sorted(i for rank, i in enumerate(order) if rank % num_folds == fold - 1)
    chosen = set(val)
    return [i for i in range(len(ids)) if i not in chosen], val


def open_split(config: TrainConfig, split: str):
    """The ``LandmarkDataset`` of one split of ``config.dataset`` (see the module docstring for the names).

    Introduced in notebook 06_training_on_gpu.
    """
    root, layout = data_root(config), config.spec.layout
    if layout == "isbi2015":
        from farnet_lite.data.isbi2015 import read_isbi2015
        return read_isbi2015(root, split=split, annotation=config.annotation)
    if layout == "hand":
        from farnet_lite.data.hand import read_hand
        return read_hand(root, fold=config.fold, split=split)
    from farnet_lite.data.spine import read_spine
    if split in ("cv-train", "cv-val"):
        training = read_spine(root, split="training")
        train_idx, val_idx = cv_fold_indices(training.ids, config.fold)
        return training.subset(train_idx if split == "cv-train" else val_idx)
    return read_spine(root, split=split)


def _cache_path(config: TrainConfig, split: str) -> Path:
    """``cache_dir/prepared/<dataset>-<split>-<H>x<W>-<hash>.npz``; the hash tells data roots, ISBI annotation
    and cross-validation folds apart (``prepare_cache`` itself rebuilds a file whose labels or ids changed)."""
    key = repr((str(data_root(config).resolve()), config.annotation, config.fold))
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    height, width = config.input_size
    return cache_dir(config) / "prepared" / f"{config.dataset}-{split}-{height}x{width}-{digest}.npz"


def prepared_split(config: TrainConfig, split: str, dist_info: DistInfo = DistInfo()):
    """The ``PreparedCache`` of a split at ``config.input_size``, preparing it on first use.

    Under torchrun only rank 0 writes the cache; the others wait for it. Introduced in notebook
    06_training_on_gpu.
    """
    from farnet_lite.data.cache import load_cache, prepare_cache

    path = None
    if dist_info.is_main:
        dataset = open_split(config, split)
        if len(dataset) == 0:
            raise ValueError(f"Split {split!r} of {config.dataset} under {data_root(config)} has no images; "
                             f"check --data-root and the split name.")
        workers = 0 if len(dataset) <= 32 else None   # a process pool costs more than it saves on a few images
        path = prepare_cache(dataset, tuple(config.input_size), _cache_path(config, split),
                             num_workers=workers, progress=config.progress)
    if dist_info.enabled:
        from farnet_lite.distributed import broadcast_object
        path = broadcast_object(path, dist_info)
        barrier(dist_info)
    return load_cache(path)
