"""The files a run leaves behind: predictions CSV, metrics JSON, per-landmark table, training log.

Every file is written to a temporary name in its folder and renamed (``os.replace``, ``farnet_lite.atomic``), so a
reader never sees a half-written CSV and an interrupted run leaves the previous version intact. The overlay PNGs of
``farnet predict`` are drawn by ``farnet_lite.pictures.plots.save_overlay``.

Floats are written at full precision (a predictions CSV reproduces its run's metrics exactly); the training log
keeps 6 significant digits.

Predictions CSV columns: ``image_id,landmark,x,y,score`` -- ``landmark`` is 1-based as in the datasets' own
files; ``x, y`` are in original-image pixels, 0-based, pixel centres at integers; ``score`` is the peak value
of the decoded heatmap (about 1 for a confident, Gaussian-shaped peak). ``farnet predict`` adds ``source`` (the
image file) and, when some image states its pixel spacing (DICOM, or a custom CSV's ``spacing_mm``), ``x_mm, y_mm``
(empty for the images without one).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from farnet_lite.atomic import atomic_path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def predictions_frame(ids: Sequence[str], points: np.ndarray, scores: np.ndarray,
                      sources: Optional[Sequence[str]] = None, spacings=None) -> pd.DataFrame:
    """Long table of predictions: one row per (image, landmark). ``points`` ``(N, K, 2)``, ``scores`` ``(N, K)``.

    ``sources``: the file of each image (a ``source`` column). ``spacings``: mm per pixel of each image, ``(N,)``
    (square pixels) or ``(N, 2)`` as (row, column) = (y, x), NaN where unknown; adds ``x_mm, y_mm`` when at least
    one is known (``x_mm = x * column spacing``: mm from the centre of the first pixel).
    """
    points = np.asarray(points, dtype=np.float64)
    num_images, num_landmarks = points.shape[:2]
    frame = pd.DataFrame({
        "image_id": np.repeat(np.asarray(ids, dtype=object), num_landmarks),
        "landmark": np.tile(np.arange(1, num_landmarks + 1), num_images),
        "x": points[..., 0].ravel(),
        "y": points[..., 1].ravel(),
        "score": np.asarray(scores, dtype=np.float64).ravel(),
    })
    if sources is not None:
        frame["source"] = np.repeat(np.asarray([str(s) for s in sources], dtype=object), num_landmarks)
    if spacings is not None:
        spacing = np.asarray(spacings, dtype=np.float64).reshape(num_images, -1)      # (N, 1) or (N, 2)
        row_mm, col_mm = spacing[:, 0], spacing[:, -1]
        if np.isfinite(spacing).any():
            frame["x_mm"] = (points[..., 0] * col_mm[:, None]).ravel()
            frame["y_mm"] = (points[..., 1] * row_mm[:, None]).ravel()
    return frame


def read_predictions(path) -> Dict[str, np.ndarray]:
    """Read a predictions CSV (:func:`predictions_frame` written by :func:`write_frame`): ``{image_id: (K, 2)
    points}`` in file order."""
    frame = pd.read_csv(path, dtype={"image_id": str})
    out: Dict[str, np.ndarray] = {}
    for image_id, rows in frame.groupby("image_id", sort=False):
        rows = rows.sort_values("landmark")
        out[image_id] = rows[["x", "y"]].to_numpy(dtype=np.float64)
    return out


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path, values: dict) -> Path:
    return atomic_write_text(path, json.dumps(_json_safe(values), indent=2, sort_keys=True) + "\n")


def write_frame(path, frame: pd.DataFrame, index: bool = True) -> Path:
    """A table as CSV, every float at full precision (the shortest text that reads back as the same float64), so
    the metrics a run computed are recomputed exactly from its CSVs (``farnet_lite.reproduction.rescore``); ``%.6g`` kept
    0.01 px at ISBI size and flipped an SDR at a radius."""
    return atomic_write_text(path, frame.to_csv(index=index))


def write_log(path, history: List[dict]) -> Path:
    """The per-epoch training log (epoch, train_loss, lr, val_mre, ..., seconds), rewritten whole each epoch."""
    columns: List[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    if "seconds" in columns:  # keep the time last, as in the docs
        columns.remove("seconds")
        columns.append("seconds")
    return atomic_write_text(path, pd.DataFrame(history, columns=columns).to_csv(index=False, float_format="%.6g"))
