"""Prediction: landmarks of your own radiographs from a trained checkpoint (``farnet predict``).

Each image is read (PNG, JPEG, BMP, TIFF, DICOM, ...), resized to the run's input size as the training cache was,
predicted in batches, and its points moved back to the original pixels (0-based, pixel centres at integers);
optionally an overlay per image. Nothing half-written is left: the outputs are staged and replaced whole.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from farnet_lite.atomic import staged_outputs
from farnet_lite.config import TrainConfig
from farnet_lite.data.cache import resize_image
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.imageio import find_images, read_image
from farnet_lite.engine.evaluate import check_batch_size, load_for_inference, predict_batch
from farnet_lite.engine.outputs import predictions_frame, write_frame
from farnet_lite.engine.runtime import resolve_precision, run_codec
from farnet_lite.heatmaps import rescale_points
from farnet_lite.pictures.plots import overlay_copy, save_overlay

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
    codec = run_codec(config)
    coords, score = predict_batch(model, batch.to(device), codec, config, amp_dtype)
    coords = rescale_points(coords.cpu().double().numpy(), codec.input_size, sizes)
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
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}.")
    check_batch_size(batch_size)
    model, config, torch_device = load_for_inference(checkpoint, device)
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
