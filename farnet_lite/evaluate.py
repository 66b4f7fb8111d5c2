"""Inference: ``evaluate`` a checkpoint on dataset splits, ``predict`` on your own images.

Introduced in notebook 06_training_on_gpu.

Decoding (§3.2): the ``final`` heatmaps are decoded (argmax, the paper's choice, or sub-pixel) by the
:class:`farnet_lite.heatmaps.HeatmapCodec` of their own grid -- the codec the loss encodes with -- which returns
points in the network-input grid; :func:`farnet_lite.heatmaps.rescale_points`, the one grid-change helper, then
moves them to the original image, so predictions are in original pixels, 0-based, pixel centres at integers, like
the datasets' annotations.

Scoring (per dataset) is ``farnet_lite.scoring``; the files are written by ``farnet_lite.outputs``.

The model is put in ``eval()`` mode before predicting (batch-norm running statistics, no dropout). The official
FARNet ``test.py`` never calls ``model.eval()``, so its reported numbers come from train-mode batch norm
(``TrainConfig.eval_batchnorm=False`` reproduces it; ``farnet_lite.audit`` measures what it costs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from farnet_lite import distributed
from farnet_lite.atomic import staged_outputs
from farnet_lite.checkpoint import load_model
from farnet_lite.config import TrainConfig
from farnet_lite.data.cache import resize_image
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.imageio import find_images, read_image
from farnet_lite.cpu import prepare_cpu
from farnet_lite.engine import network_input, resolve_device, resolve_precision
from farnet_lite.heatmaps import HeatmapCodec, rescale_points
from farnet_lite.metrics import per_landmark_table
from farnet_lite.outputs import predictions_frame, write_frame, write_json
from farnet_lite.plots import overlay_copy, save_overlay
from farnet_lite.scoring import score_predictions
from farnet_lite.splits import prepared_split


EVAL_BATCH = 8   # images per inference batch at least (4x faster than batch 1 on a CPU, issue 16)


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
def predict_batch(model, images: torch.Tensor, input_size, config: TrainConfig,
                  amp_dtype=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W)`` uint8 images at ``input_size`` -> ``(coords (B, K, 2)`` in the input grid``, scores (B, K))``.

    The ``final`` heatmaps are decoded by the :class:`~farnet_lite.heatmaps.HeatmapCodec` of *their own* grid --
    the input size, or half of it for MSFA alone -- with the config's sigma, ``origin`` and ``decode_origin``
    (the codec the loss drew the targets with), so the coordinates come back in the input grid (x, y), pixel
    centres at integers.
    """
    device = images.device
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        output = model(network_input(images, config.channels_last, config.official_scaling))
    final = output.final.float()                                           # (B, K, h, w): h = H or H/2
    codec = HeatmapCodec(tuple(input_size), tuple(final.shape[-2:]), config.target_sigma, config.origin,
                         config.decode_origin)
    return codec.decode(final, config.decode)                              # (B, K, 2) input grid, (B, K)


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


def evaluate(checkpoint, splits: Optional[Sequence[str]] = None, *, data_root=None, output_dir=None,
             device: str = "auto", batch_size: Optional[int] = None, cache_dir=None,
             precision: Optional[str] = None, decode: Optional[str] = None) -> Dict[str, EvalResult]:
    """Evaluate a checkpoint on dataset splits and write predictions / metrics / per-landmark files.

    ``splits`` default to the run's ``eval_splits``; ``data_root`` / ``cache_dir`` / ``precision`` / ``decode``
    (``argmax`` or ``subpixel``, e.g. to report sub-pixel decoding beside the run's argmax) override the run's;
    ``output_dir`` defaults to the checkpoint's folder. Returns ``{split: EvalResult}``.
    Introduced in notebook 06_training_on_gpu.
    """
    check_batch_size(batch_size)
    torch_device = resolve_device(device)
    prepare_cpu(torch_device)            # allocator + all cores (farnet_lite.cpu)
    model, config = load_model(checkpoint, torch_device)
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


ON_ERROR = ("stop", "skip")


PREDICTION_OUTPUTS = ("overlays", "predictions.csv")   # what predict writes into its folder (replaced whole)


def _prediction_inputs(inputs, exclude: Sequence = ()) -> Tuple[List[tuple], Dict[str, str]]:
    """``[(image_id, source or None, read)]`` per image, ``read()`` -> ``(image (H, W) uint8, spacing or None)``;
    and ``{path: why}`` for the files found in folders that are not images (`find_images`)."""
    if isinstance(inputs, (str, Path, np.ndarray)):
        inputs = [inputs]
    items = list(inputs)
    if items and all(isinstance(i, np.ndarray) for i in items):
        return [(f"image{i}", None, lambda a=a: (a, None)) for i, a in enumerate(items)], {}
    found = find_images(items, exclude)
    return [(image_id, str(path), lambda p=path: read_image(p))
            for image_id, path in zip(found.ids, found.paths)], found.skipped


def _predict_images(model, inputs: List[np.ndarray], sizes: np.ndarray, config: TrainConfig, device,
                    amp_dtype) -> Tuple[np.ndarray, np.ndarray]:
    """``(points (B, K, 2)`` original pixels``, scores (B, K))`` of images already resized to the input size,
    whose original ``(H, W)`` are ``sizes`` ``(B, 2)``."""
    batch = torch.from_numpy(np.stack(inputs))
    coords, score = predict_batch(model, batch.to(device), config.input_size, config, amp_dtype)
    coords = rescale_points(coords.cpu().double().numpy(), tuple(config.input_size), sizes)
    return coords, score.cpu().double().numpy()


def _predict_items(model, config: TrainConfig, device, amp_dtype, items, batch_size: int, on_error: str,
                   overlays: Optional[Path]):
    """Predict ``items`` batch by batch, each image decoded once; with ``overlays``, write its overlay there
    from a reduced copy (`overlay_copy`). Returns the frame (``attrs["failed"]``: unreadable images)."""
    done, points, scores, spacings, failed = [], [], [], [], {}
    for start in range(0, len(items), batch_size):
        inputs, sizes, views, ids = [], [], [], []
        for image_id, source, read in items[start:start + batch_size]:
            try:
                image, spacing = read()
            except DatasetError as err:
                if on_error == "stop":
                    raise DatasetError(f"{str(err).rstrip('.')}; nothing was written: fix or remove that file, "
                                       f"or pass --on-error skip to predict the other images.") from err
                failed[image_id] = str(err)
                continue
            inputs.append(resize_image(image, config.input_size))
            sizes.append(image.shape[:2])
            views.append(overlay_copy(image) if overlays is not None else None)
            ids.append(image_id)
            done.append((image_id, source))
            spacings.append((np.nan, np.nan) if spacing is None else spacing)
            del image                        # only the resized input and the overlay copy stay in memory
        if inputs:
            sizes = np.array(sizes, dtype=np.float64)                               # (B, 2) as (H, W)
            coords, score = _predict_images(model, inputs, sizes, config, device, amp_dtype)
            points.append(coords)
            scores.append(score)
            for image_id, view, size, p in zip(ids, views, sizes, coords):
                if view is not None:
                    save_overlay(overlays / f"{image_id}.png", view, p, title=image_id,
                                 original_size=(int(size[0]), int(size[1])))
    frame = predictions_frame([d[0] for d in done], np.concatenate(points) if points else np.zeros((0, 0, 2)),
                              np.concatenate(scores) if scores else np.zeros((0, 0)),
                              sources=[d[1] or "" for d in done], spacings=np.array(spacings).reshape(-1, 2))
    frame.attrs["failed"] = failed
    return frame


def predict(checkpoint, inputs: Union[str, Path, np.ndarray, Iterable], *, output_dir=None, overlay: bool = True,
            device: str = "auto", batch_size: int = 4, on_error: str = "stop"):
    """Landmarks on your own radiographs with a trained checkpoint.

    ``inputs``: an image file, a folder of images (PNG, JPEG, BMP, TIFF, DICOM, or any file Pillow reads; its
    subfolders included), a list of them, or (H, W) uint8 arrays. Each image's id is its path relative to the
    folder holding all inputs (``a/image.png`` and ``b/image.png`` stay apart). Files in the folders that are not
    images are left out and listed in ``frame.attrs["skipped"]`` (``{path: reason}``). With ``output_dir``,
    writes ``predictions.csv`` (``image_id,landmark,x,y,score,source``, original pixels, plus ``x_mm, y_mm``
    where the file states its spacing) and, with ``overlay``, ``overlays/<image_id>.png`` (drawn on a copy of at
    most ``OVERLAY_MAX_SIDE`` pixels a side); the folder is locked meanwhile (a second predict into it stops with
    RunFolderLocked) and a previous prediction there is replaced whole (its CSV and ``overlays/``; other files
    stay). ``on_error``: ``"stop"`` (default) raises DatasetError at the first unreadable image before anything is
    written; ``"skip"`` predicts the others and lists the failures in ``frame.attrs["failed"]``
    (``{image_id: reason}``). Returns the predictions as a pandas DataFrame.
    Introduced in notebook 06_training_on_gpu.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}.")
    check_batch_size(batch_size)
    torch_device = resolve_device(device)
    prepare_cpu(torch_device)            # allocator + all cores (farnet_lite.cpu)
    model, config = load_model(checkpoint, torch_device)
    amp_dtype = resolve_precision(config.precision, torch_device)
    out = None if output_dir is None else Path(output_dir)
    items, skipped = _prediction_inputs(inputs, () if out is None else (out, out / PREDICTION_OUTPUTS[0]))
    if out is None:
        frame = _predict_items(model, config, torch_device, amp_dtype, items, batch_size, on_error, None)
    else:
        with staged_outputs(out, PREDICTION_OUTPUTS) as stage:
            frame = _predict_items(model, config, torch_device, amp_dtype, items, batch_size, on_error,
                                   stage / PREDICTION_OUTPUTS[0] if overlay else None)
            write_frame(stage / PREDICTION_OUTPUTS[1], frame, index=False)
    frame.attrs["skipped"] = skipped
    return frame
