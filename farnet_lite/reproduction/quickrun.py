"""The course's quick-mode run: one small FARNet trained once on the CPU and reused by notebooks 06-12.

Quick mode (``FARNET_QUICK=1``) must show FARNet *learning* within a CPU minute or two: :func:`quick_run` trains
``TrainConfig.preset(dataset, "quick")`` -- FARNet (DenseNet-121 backbone from random initialisation, MSFA + FR,
EWC loss, coarse-to-fine supervision) at a small input for a few epochs, with no checkpoint selection (the last
epoch is scored on Test1, which therefore stays a held-out set; the settings are the preset's) -- on the real ISBI
2015 radiographs when a copy is found (:func:`farnet_lite.datasets.real_data_root`), else on a synthetic copy with
as many training images, written once under ``data_root/synthetic/isbi2015-quick``.

The run lives in ``runs_root/quick-<dataset>``. A finished run with the same config is reused, not retrained, so
notebook 06 trains it and notebooks 07-12 read it; an unfinished one (a killed kernel) is resumed from its
``last.pt``; a run of another config in that folder is replaced. Each notebook therefore also runs alone.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Iterable, Optional, Union

import pandas as pd

from farnet_lite.config import TrainConfig
from farnet_lite.data.synthetic import write_synthetic_isbi
from farnet_lite.datasets import real_data_root
from farnet_lite.engine.train import TrainResult, train
from farnet_lite.reproduction.experiments import run_finished

PathLike = Union[str, Path]
QUICK_SYNTHETIC = dict(n_train=150, n_test1=50, n_test2=4)
"""Image counts of the synthetic fallback: as many training images as the real ISBI 2015 (150), so that the same
preset takes the same number of steps; 50 Test1 images keep its evaluation short."""
BOOKKEEPING = ("progress", "cache_dir", "num_workers", "data_on_device", "device")
"""Config fields that do not change what a run learns: a finished run is reused whatever their values."""


def quick_config(data_root: PathLike = "data", runs_root: PathLike = "runs", cache_dir: Optional[PathLike] = None,
                 search_from: Optional[Iterable[PathLike]] = None, **overrides) -> TrainConfig:
    """The config of the quick run: real ISBI 2015 when a copy is found, else the synthetic fallback.

    ``data_root``: where notebook 00 puts the datasets (``DATA_ROOT``); the real copy is looked for as
    :func:`~farnet_lite.datasets.real_data_root` does (``search_from`` as there). ``cache_dir``: prepared caches
    (default ``data_root/cache``, shared with the other notebooks). ``overrides``: any ``TrainConfig`` field.
    """
    real = real_data_root("isbi2015", data_root, search_from)
    if real is not None:
        dataset, root = "isbi2015", real
    else:
        dataset = "synthetic-isbi"
        root = write_synthetic_isbi(Path(data_root) / "synthetic" / "isbi2015-quick", **QUICK_SYNTHETIC)
    values = dict(data_root=str(Path(root).resolve()), output_dir=str(Path(runs_root) / f"quick-{dataset}"),
                  cache_dir=str(cache_dir if cache_dir is not None else Path(data_root) / "cache"), progress=False)
    values.update(overrides)
    return TrainConfig.preset(dataset, "quick", **values)


def _learning_fields(config: TrainConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in BOOKKEEPING}


def finished_run(config: TrainConfig) -> Optional[TrainResult]:
    """The result of a finished run of ``config`` in ``config.output_dir`` (read from its files), else None.

    Finished = :func:`~farnet_lite.reproduction.experiments.run_finished` (every epoch logged, every eval split predicted),
    ``selection.json`` (written last by :func:`~farnet_lite.engine.train.train`) and ``last.pt`` exist, and the saved
    ``config.json`` equals ``config`` up to :data:`BOOKKEEPING`.
    """
    run = Path(config.output_dir)
    if not (run_finished(run, config) and (run / "selection.json").is_file() and (run / "last.pt").is_file()):
        return None
    if _learning_fields(TrainConfig.load(run / "config.json")) != _learning_fields(config):
        return None
    selection = json.loads((run / "selection.json").read_text())
    history = pd.read_csv(run / "log.csv").to_dict("records")
    best_epoch = selection.get("best_epoch") or -1
    best = [row.get("val_mre", math.nan) for row in history if int(row["epoch"]) == best_epoch]
    return TrainResult(run_dir=run, best_epoch=best_epoch, best_metric=best[0] if best else math.inf,
                       history=history, metrics=selection.get("metrics", {}),
                       last_metrics=selection.get("last_epoch_metrics", {}))


def quick_run(data_root: PathLike = "data", runs_root: PathLike = "runs", cache_dir: Optional[PathLike] = None,
              retrain: bool = False, search_from: Optional[Iterable[PathLike]] = None, **overrides) -> TrainResult:
    """Train the quick run once (:func:`quick_config`'s arguments) and return its :class:`TrainResult`.

    A finished run of the same config is returned without training (unless ``retrain``); an unfinished one of the
    same config resumes from its ``last.pt``; anything else in its folder is removed first.
    """
    config = quick_config(data_root, runs_root, cache_dir, search_from, **overrides)
    run = Path(config.output_dir)
    done = None if retrain else finished_run(config)
    if done is not None:
        print(f"Reusing the finished quick run in {run} (trained once, e.g. by notebook 06).")
        return done
    saved = run / "config.json"
    same = saved.is_file() and _learning_fields(TrainConfig.load(saved)) == _learning_fields(config)
    resume = same and not retrain and (run / "last.pt").is_file()
    if run.exists() and not resume:
        shutil.rmtree(run)             # another config (or retrain=True): start afresh in an empty folder
    print(f"Training the quick run: {config.system} ({config.backbone}, random init) on {config.dataset} at "
          f"{config.input_size[0]}x{config.input_size[1]}, {config.epochs} epochs, batch {config.batch_size}"
          f"{' (resuming)' if resume else ''} -> {run}")
    return train(config, resume=resume)
