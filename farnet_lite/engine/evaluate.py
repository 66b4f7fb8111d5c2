"""Evaluation: a checkpoint's predictions on dataset splits, scored (``predict`` on your own images:
``farnet_lite.engine.predict``).

Decoding (§3.2): the ``final`` heatmaps are decoded (argmax, the paper's choice, or sub-pixel) by the
:class:`farnet_lite.heatmaps.HeatmapCodec` of their own grid -- the codec the loss encodes with -- which returns
points in the network-input grid; :func:`farnet_lite.heatmaps.rescale_points`, the one grid-change helper, then
moves them to the original image, so predictions are in original pixels, 0-based, pixel centres at integers, like
the datasets' annotations.

Scoring (per dataset) is ``farnet_lite.engine.scoring``; the files are written by ``farnet_lite.engine.outputs``.

The model is put in ``eval()`` mode before predicting (batch-norm running statistics, no dropout). The official
FARNet ``test.py`` never calls ``model.eval()``, so its reported numbers come from train-mode batch norm
(``TrainConfig.eval_batchnorm=False`` reproduces it; ``farnet_lite.reproduction.audit`` measures what it costs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from farnet_lite.config import TrainConfig
from farnet_lite.engine import distributed
from farnet_lite.engine.checkpoint import load_model
from farnet_lite.engine.cpu import prepare_cpu, small_map_gemm_for
from farnet_lite.engine.outputs import predictions_frame, write_frame, write_json
from farnet_lite.engine.runtime import network_input, resolve_device, resolve_precision, run_codec
from farnet_lite.engine.scoring import score_predictions
from farnet_lite.engine.splits import prepared_split
from farnet_lite.heatmaps import LandmarkCodec, rescale_points
from farnet_lite.metrics import per_landmark_table

EVAL_BATCH = 8   # images per inference batch at least (batched inference is faster on a CPU: results/benchmark)


def check_batch_size(batch_size, name: str = "batch_size") -> None:
    """Refuse (ValueError, one sentence naming ``name``: the argument, or ``--batch-size`` from the CLI) a batch
    size that is not a whole number >= 1; None (the run's own) passes."""
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        example = f"{name} 4" if name.startswith("-") else f"{name}=4"
        raise ValueError(f"{name} is {batch_size!r}; give the number of images per forward pass, a whole number "
                         f"of at least 1 (e.g. {example}).")


@dataclass
class EvalResult:
    """Predictions of one split: ``pred`` ``(N, K, 2)`` original pixels, ``scores`` ``(N, K)``, and for a
    labelled split the ``errors`` ``(N_labelled, K)`` (mm, or px for the spine) and the ``summary`` dict."""

    ids: List[str]
    pred: np.ndarray
    scores: np.ndarray
    summary: dict
    errors: Optional[np.ndarray]


@torch.no_grad()
def predict_batch(model, images: torch.Tensor, codec: LandmarkCodec, config: TrainConfig,
                  amp_dtype=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W)`` uint8 images at ``codec.input_size`` -> ``(coords (B, K, 2)`` in the input grid``,
    scores (B, K))``.

    The ``final`` heatmaps are decoded by the run's codec (:func:`~farnet_lite.engine.runtime.run_codec`, the one
    the loss drew the targets with) on *their own* grid -- the input size, or half of it for MSFA alone -- so the
    coordinates come back in the input grid (x, y), pixel centres at integers. ``config`` says how the images are
    fed (``channels_last``, ``official_scaling``).
    """
    if tuple(images.shape[-2:]) != codec.input_size:
        raise ValueError(f"images of size {tuple(images.shape[-2:])} given to a run whose input is "
                         f"{codec.input_size}; resize them to the run's input_size")
    device = images.device
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        output = model(network_input(images, config.channels_last, config.official_scaling))
    return codec.decode(output.final.float())                              # (B, K, 2) input grid, (B, K)


def predict_cache(model, cache, config: TrainConfig, device, amp_dtype=None, batch_size: Optional[int] = None,
                  info: distributed.DistInfo = distributed.DistInfo()) -> Tuple[np.ndarray, np.ndarray]:
    """Predict every image of a ``PreparedCache``: ``(points (N, K, 2)`` original pixels``, scores (N, K))``.

    Under torchrun each rank predicts every ``world_size``-th image and the results are gathered, so every rank
    returns the complete arrays. ``config.eval_batchnorm=False`` reproduces the official ``test.py``: no
    ``eval()``, so BatchNorm normalises each image (batch size 1) with its own statistics -- and, as there, the
    model's running statistics change.
    """
    check_batch_size(batch_size)
    model.train(not config.eval_batchnorm)
    # batched inference (eval-mode BatchNorm: a batch gives the same predictions as single images, faster)
    batch_size = (batch_size or max(config.batch_size, EVAL_BATCH)) if config.eval_batchnorm else 1
    mine = np.arange(len(cache.images))[info.rank::info.world_size]
    codec = run_codec(config)
    coords, scores = [], []
    for start in range(0, len(mine), batch_size):
        index = mine[start:start + batch_size]
        images = torch.from_numpy(np.ascontiguousarray(cache.images[index])).to(device)
        c, s = predict_batch(model, images, codec, config, amp_dtype)
        coords.append(c.cpu().double().numpy())
        scores.append(s.cpu().double().numpy())
    num = cache.landmarks.shape[1]
    coords = np.concatenate(coords) if coords else np.zeros((0, num, 2))
    scores = np.concatenate(scores) if scores else np.zeros((0, num))
    pred, score = np.zeros((len(cache.images), num, 2)), np.zeros((len(cache.images), num))
    for part_index, part_coords, part_scores in distributed.gather_objects((mine, coords, scores), info):
        pred[part_index], score[part_index] = part_coords, part_scores
    sizes = np.asarray(cache.original_sizes, dtype=np.float64)                 # (N, 2) as (H, W)
    return rescale_points(pred, codec.input_size, sizes), score


def evaluate_cache(model, cache, config: TrainConfig, device, amp_dtype=None,
                   info: distributed.DistInfo = distributed.DistInfo(), output_dir=None,
                   split: Optional[str] = None, batch_size: Optional[int] = None) -> EvalResult:
    """Predict a prepared split, score it if labelled and (with ``output_dir``) write its files:
    ``predictions_<split>.csv`` always; ``metrics_<split>.json`` and ``per_landmark_<split>.csv`` if labelled.
    """
    pred, scores = predict_cache(model, cache, config, device, amp_dtype, batch_size, info)
    sizes = np.asarray(cache.original_sizes, dtype=np.float64)
    truth = rescale_points(np.asarray(cache.landmarks, dtype=np.float64), tuple(cache.size), sizes)
    if config.truncate_truth:  # the official scorer: np.trunc of the ground truth (rounded first: the grid
        truth = np.trunc(np.round(truth, 6))  # round trip leaves 1e-13 px, which must not turn 301 into 300)
    spacings = getattr(cache, "spacings", None)                             # (N,) mm, your own CSV only
    summary, errors, labelled = score_predictions(pred, truth, sizes, config.spec, spacings)
    ids = [str(i) for i in cache.ids]
    if output_dir is not None:
        out = Path(output_dir)
        write_frame(out / f"predictions_{split}.csv", predictions_frame(ids, pred, scores, spacings=spacings),
                    index=False)
        if summary:
            radii = config.spec.radii if summary.get("unit") == "mm" else ()
            write_json(out / f"metrics_{split}.json",
                       dict(summary, dataset=config.dataset, split=split, labelled_images=int(labelled.sum())))
            write_frame(out / f"per_landmark_{split}.csv", per_landmark_table(errors, radii))
        elif info.is_main:  # e.g. ISBI Test2 in ../shared/data: scored wherever a copy has its labels
            print(f"{split}: labels not present in this copy; predictions written to "
                  f"{out / f'predictions_{split}.csv'}, no metrics.")
    return EvalResult(ids=ids, pred=pred, scores=scores, summary=summary, errors=errors)


def load_for_inference(checkpoint, device: str = "auto"):
    """``(model in eval() mode, its config, torch.device)`` of a checkpoint, set up as training ran it: the CPU's
    allocator and cores (:func:`~farnet_lite.engine.cpu.prepare_cpu`) and, where the run used it, the small-map
    matrix product (printed). Shared by :func:`evaluate` and ``farnet_lite.engine.predict.predict``."""
    torch_device = resolve_device(device)
    prepare_cpu(torch_device)            # allocator + all cores (farnet_lite.engine.cpu)
    model, config = load_model(checkpoint, torch_device)
    gemm = small_map_gemm_for(model, config.small_map_gemm, torch_device)   # the arithmetic training used
    if gemm:
        print(gemm)
    return model, config, torch_device


def evaluate(checkpoint, splits: Optional[Sequence[str]] = None, *, data_root=None, output_dir=None,
             device: str = "auto", batch_size: Optional[int] = None, cache_dir=None,
             precision: Optional[str] = None, decode: Optional[str] = None) -> Dict[str, EvalResult]:
    """Evaluate a checkpoint on dataset splits and write predictions / metrics / per-landmark files.

    ``splits`` default to the run's ``eval_splits``; ``data_root`` / ``cache_dir`` / ``precision`` / ``decode``
    (``argmax`` or ``subpixel``, e.g. to report sub-pixel decoding beside the run's argmax) override the run's;
    ``output_dir`` defaults to the checkpoint's folder. Returns ``{split: EvalResult}``.
    """
    check_batch_size(batch_size)
    model, config, torch_device = load_for_inference(checkpoint, device)
    changes = {k: v for k, v in dict(data_root=data_root, cache_dir=cache_dir, precision=precision,
                                      decode=decode).items()
               if v is not None}
    config = TrainConfig.from_dict(dict(config.to_dict(), **changes))
    amp_dtype = resolve_precision(config.precision, torch_device)
    out = Path(output_dir) if output_dir is not None else Path(checkpoint).parent
    results = {}
    for split in (splits or config.eval_splits):
        cache = prepared_split(config, split)
        results[split] = evaluate_cache(model, cache, config, torch_device, amp_dtype, output_dir=out,
                                        split=split, batch_size=batch_size)
    return results
