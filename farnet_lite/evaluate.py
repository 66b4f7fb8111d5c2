"""Prediction and scoring: ``evaluate`` a checkpoint on dataset splits, ``predict`` on your own images.

Introduced in notebook 06_training_on_gpu.

Decoding (§3.2): the ``final`` heatmaps are decoded in their own grid (argmax, the paper's choice, or
sub-pixel), moved to the network-input grid and then to the original image with
:func:`farnet_lite.heatmaps.rescale_points` -- the one grid-change helper -- so predictions are in original
pixels, 0-based, pixel centres at integers, like the datasets' annotations.

The model is put in ``eval()`` mode before predicting (batch-norm running statistics, no dropout). The official
FARNet ``test.py`` never calls ``model.eval()``, so its reported numbers come from train-mode batch norm.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from farnet_lite import distributed, metrics
from farnet_lite.config import DatasetSpec, TrainConfig
from farnet_lite.engine import network_input, resolve_device, resolve_precision
from farnet_lite.heatmaps import decode_heatmaps, rescale_points
from farnet_lite.outputs import list_images, predictions_frame, save_overlay, write_frame, write_json


@dataclass
class EvalResult:
    """Predictions of one split: ``pred`` ``(N, K, 2)`` original pixels, ``scores`` ``(N, K)``, and for a
    labelled split the ``errors`` ``(N_labelled, K)`` (mm, or px for the spine) and the ``summary`` dict."""

    ids: List[str]
    pred: np.ndarray
    scores: np.ndarray
    summary: dict
    errors: Optional[np.ndarray]


def selection_key(spec: DatasetSpec) -> str:
    """The validation number that selects ``best.pt`` (lower is better): MRE, or the spine's MSE fraction."""
    return "mse_fraction" if spec.metric == "fraction" else "mre"


@torch.no_grad()
def predict_batch(model, images: torch.Tensor, input_size, config: TrainConfig,
                  amp_dtype=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W)`` uint8 images at ``input_size`` -> ``(coords (B, K, 2)`` in the input grid``, scores (B, K))``.

    Introduced in notebook 06_training_on_gpu.
    """
    device = images.device
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        output = model(network_input(images, config.channels_last))
    final = output.final.float()                                           # (B, K, h, w)
    coords, scores = decode_heatmaps(final, method=config.decode)          # in the (h, w) grid
    return rescale_points(coords, tuple(final.shape[-2:]), tuple(input_size)), scores


def predict_cache(model, cache, config: TrainConfig, device, amp_dtype=None, batch_size: Optional[int] = None,
                  info: distributed.DistInfo = distributed.DistInfo()) -> Tuple[np.ndarray, np.ndarray]:
    """Predict every image of a ``PreparedCache``: ``(points (N, K, 2)`` original pixels``, scores (N, K))``.

    Under torchrun each rank predicts every ``world_size``-th image and the results are gathered, so every rank
    returns the complete arrays. Introduced in notebook 06_training_on_gpu.
    """
    model.eval()
    batch_size = batch_size or max(config.batch_size, 1)
    mine = np.arange(len(cache.images))[info.rank::info.world_size]
    coords, scores = [], []
    for start in range(0, len(mine), batch_size):
        index = mine[start:start + batch_size]
        images = torch.from_numpy(np.ascontiguousarray(cache.images[index])).to(device)
        c, s = predict_batch(model, images, cache.size, config, amp_dtype)
        coords.append(c.cpu().double().numpy())
        scores.append(s.cpu().double().numpy())
    num = cache.landmarks.shape[1]
    coords = np.concatenate(coords) if coords else np.zeros((0, num, 2))
    scores = np.concatenate(scores) if scores else np.zeros((0, num))
    pred, score = np.zeros((len(cache.images), num, 2)), np.zeros((len(cache.images), num))
    for part_index, part_coords, part_scores in distributed.gather_objects((mine, coords, scores), info):
        pred[part_index], score[part_index] = part_coords, part_scores
    sizes = np.asarray(cache.original_sizes, dtype=np.float64)                 # (N, 2) as (H, W)
    return rescale_points(pred, tuple(cache.size), sizes), score


def score_predictions(pred: np.ndarray, truth: np.ndarray, sizes: np.ndarray,
                      spec: DatasetSpec) -> Tuple[dict, Optional[np.ndarray], np.ndarray]:
    """Score the images whose landmarks are all known: ``(summary, errors (M, K), labelled mask (N,))``.

    ``spacing``: radial errors in mm (ISBI: 0.1 mm/px) and SDR at the dataset radii; ``wrist``: mm by the 50 mm
    wrist width (hand); ``fraction`` (spine): MSE as a fraction of the image size and Pearson rho, with pixel
    MRE for reference. Empty summary for an unlabelled split. Introduced in notebook 06_training_on_gpu.
    """
    labelled = np.isfinite(truth).all(axis=(1, 2))
    if not labelled.any():
        return {}, None, labelled
    p, t = pred[labelled], truth[labelled]
    if spec.metric == "spacing":
        errors = metrics.radial_errors(p, t, spec.spacing_mm)
        summary = dict(metrics.summarize(errors, spec.radii), unit="mm")
    elif spec.metric == "wrist":
        errors = metrics.hand_errors_mm(p, t)
        summary = dict(metrics.summarize(errors, spec.radii), unit="mm")
    else:
        errors = metrics.radial_errors(p, t)
        summary = dict(metrics.summarize(errors, ()), unit="px",
                       mse_fraction=metrics.spine_mse_fraction(p, t, sizes[labelled]),
                       pearson=metrics.spine_pearson(p, t, sizes[labelled]))
    return summary, errors, labelled


def evaluate_cache(model, cache, config: TrainConfig, device, amp_dtype=None,
                   info: distributed.DistInfo = distributed.DistInfo(), output_dir=None,
                   split: Optional[str] = None, batch_size: Optional[int] = None) -> EvalResult:
    """Predict a prepared split, score it if labelled and (with ``output_dir``) write its files:
    ``predictions_<split>.csv`` always; ``metrics_<split>.json`` and ``per_landmark_<split>.csv`` if labelled.

    Introduced in notebook 06_training_on_gpu.
    """
    pred, scores = predict_cache(model, cache, config, device, amp_dtype, batch_size, info)
    sizes = np.asarray(cache.original_sizes, dtype=np.float64)
    truth = rescale_points(np.asarray(cache.landmarks, dtype=np.float64), tuple(cache.size), sizes)
    summary, errors, labelled = score_predictions(pred, truth, sizes, config.spec)
    ids = [str(i) for i in cache.ids]
    if output_dir is not None:
        out = Path(output_dir)
        write_frame(out / f"predictions_{split}.csv", predictions_frame(ids, pred, scores), index=False)
        if summary:
            write_json(out / f"metrics_{split}.json",
                       dict(summary, dataset=config.dataset, split=split, labelled_images=int(labelled.sum())))
            write_frame(out / f"per_landmark_{split}.csv", metrics.per_landmark_table(errors, config.spec.radii))
    return EvalResult(ids=ids, pred=pred, scores=scores, summary=summary, errors=errors)


def evaluate(checkpoint, splits: Optional[Sequence[str]] = None, *, data_root=None, output_dir=None,
             device: str = "auto", batch_size: Optional[int] = None, cache_dir=None,
             precision: Optional[str] = None) -> Dict[str, EvalResult]:
    """Evaluate a checkpoint on dataset splits and write predictions / metrics / per-landmark files.

    ``splits`` default to the run's ``eval_splits``; ``data_root`` / ``cache_dir`` override the run's;
    ``output_dir`` defaults to the checkpoint's folder. Returns ``{split: EvalResult}``.
    Introduced in notebook 06_training_on_gpu.
    """
    from farnet_lite.checkpoint import load_model
    from farnet_lite.splits import prepared_split

    torch_device = resolve_device(device)
    model, config = load_model(checkpoint, torch_device)
    changes = {k: v for k, v in dict(data_root=data_root, cache_dir=cache_dir, precision=precision).items()
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


def predict(checkpoint, inputs: Union[str, Path, np.ndarray, Iterable], *, output_dir=None, overlay: bool = True,
            device: str = "auto", batch_size: int = 4):
    """Landmarks on your own radiographs with a trained checkpoint.

    ``inputs``: an image file, a folder of images, a list of files, or (H, W) uint8 arrays. With
    ``output_dir``, writes ``predictions.csv`` (``image_id,landmark,x,y,score``, original pixels) and, with
    ``overlay``, ``overlays/<image_id>.png``. Returns the predictions as a pandas DataFrame.
    Introduced in notebook 06_training_on_gpu.
    """
    from farnet_lite.checkpoint import load_model
    from farnet_lite.data.cache import resize_image
    from farnet_lite.data.imageio import load_grey

    torch_device = resolve_device(device)
    model, config = load_model(checkpoint, torch_device)
    amp_dtype = resolve_precision(config.precision, torch_device)
    if isinstance(inputs, (str, Path, np.ndarray)):
        inputs = [inputs]
    items = list(inputs)
    if items and all(isinstance(i, np.ndarray) for i in items):
        ids, loaders = [f"image{i}" for i in range(len(items))], [lambda a=a: a for a in items]
    else:
        paths = list_images(items)
        ids, loaders = [p.stem for p in paths], [lambda p=p: load_grey(p) for p in paths]
    out = Path(output_dir) if output_dir is not None else None
    points, scores = [], []
    for start in range(0, len(ids), batch_size):
        originals = [load() for load in loaders[start:start + batch_size]]
        batch = torch.from_numpy(np.stack([resize_image(im, config.input_size) for im in originals]))
        coords, score = predict_batch(model, batch.to(torch_device), config.input_size, config, amp_dtype)
        sizes = np.array([im.shape[:2] for im in originals], dtype=np.float64)
        coords = rescale_points(coords.cpu().double().numpy(), tuple(config.input_size), sizes)
        points.append(coords)
        scores.append(score.cpu().double().numpy())
        if out is not None and overlay:
            for image_id, image, p in zip(ids[start:], originals, coords):
                save_overlay(out / "overlays" / f"{image_id}.png", image, p, title=image_id)
    frame = predictions_frame(ids, np.concatenate(points), np.concatenate(scores))
    if out is not None:
        write_frame(out / "predictions.csv", frame, index=False)
    return frame
