"""The files a run leaves behind: predictions CSV, metrics JSON, per-landmark table, training log, overlays.

Introduced in notebook 06_training_on_gpu.

Every file is written to a temporary name in its folder and renamed (``os.replace``), so a reader never sees a
half-written CSV and an interrupted run leaves the previous version intact.

Predictions CSV columns: ``image_id,landmark,x,y,score`` -- ``landmark`` is 1-based as in the datasets' own
files; ``x, y`` are in original-image pixels, 0-based, pixel centres at integers; ``score`` is the peak value
of the decoded heatmap (about 1 for a confident, Gaussian-shaped peak).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import pandas as pd

from farnet_lite.atomic import atomic_path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def predictions_frame(ids: Sequence[str], points: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """Long table of predictions: one row per (image, landmark). ``points`` ``(N, K, 2)``, ``scores`` ``(N, K)``.

    Introduced in notebook 06_training_on_gpu.
    """
    points = np.asarray(points, dtype=np.float64)
    num_images, num_landmarks = points.shape[:2]
    return pd.DataFrame({
        "image_id": np.repeat(np.asarray(ids, dtype=object), num_landmarks),
        "landmark": np.tile(np.arange(1, num_landmarks + 1), num_images),
        "x": points[..., 0].ravel(),
        "y": points[..., 1].ravel(),
        "score": np.asarray(scores, dtype=np.float64).ravel(),
    })


def read_predictions(path) -> Dict[str, np.ndarray]:
    """Inverse of :func:`write_predictions`: ``{image_id: (K, 2) points}`` in file order."""
    frame = pd.read_csv(path, dtype={"image_id": str})
    out: Dict[str, np.ndarray] = {}
    for image_id, rows in frame.groupby("image_id", sort=False):
        rows = rows.sort_values("landmark")
        out[image_id] = rows[["x", "y"]].to_numpy(dtype=np.float64)
    return out


def write_predictions(path, ids: Sequence[str], points: np.ndarray, scores: np.ndarray) -> Path:
    return atomic_write_text(path, predictions_frame(ids, points, scores).to_csv(index=False, float_format="%.4f"))


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
    return atomic_write_text(path, frame.to_csv(index=index, float_format="%.6g"))


def write_log(path, history: List[dict]) -> Path:
    """The per-epoch training log (epoch, train_loss, lr, val_mre, ..., seconds), rewritten whole each epoch."""
    columns: List[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    if "seconds" in columns:  # keep the time last, as in the docs
        columns.remove("seconds")
        columns.append("seconds")
    return atomic_write_text(path, pd.DataFrame(history, columns=columns).to_csv(index=False, float_format="%.6g"))


def save_overlay(path, image: np.ndarray, pred: np.ndarray, truth: Optional[np.ndarray] = None,
                 title: Optional[str] = None, numbers: bool = True) -> Path:
    """A PNG of the radiograph with predicted (red +) and, if given, true (green o) landmarks, numbered 1..K.

    ``image`` ``(H, W)`` uint8; ``pred`` / ``truth`` ``(K, 2)`` ``(x, y)`` original pixels (pixel centres at
    integers, which is also matplotlib's ``imshow`` convention). Introduced in notebook 06_training_on_gpu.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    height, width = image.shape[:2]
    scale = 6.0 / max(height, width)
    fig = Figure(figsize=(max(width * scale, 2.5), max(height * scale, 2.5) + (0.3 if title else 0)), dpi=120)
    ax = fig.add_axes((0, 0, 1, 0.94 if title else 1))
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if truth is not None:
        ax.scatter(truth[:, 0], truth[:, 1], s=22, facecolors="none", edgecolors="lime", linewidths=1.2,
                   label="truth")
        for p, t in zip(pred, truth):
            if np.all(np.isfinite(t)):
                ax.plot([p[0], t[0]], [p[1], t[1]], color="yellow", linewidth=0.7)
    ax.scatter(pred[:, 0], pred[:, 1], s=26, marker="+", color="red", linewidths=1.2, label="prediction")
    if numbers:
        for k, (x, y) in enumerate(pred, start=1):
            ax.annotate(str(k), (x, y), xytext=(3, 3), textcoords="offset points", color="red", fontsize=6)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.axis("off")
    ax.legend(loc="lower right", fontsize=7, framealpha=0.6)
    if title:
        fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return Path(path)


def list_images(inputs: Iterable) -> List[Path]:
    """Expand files and folders (sorted image files directly inside) into a list of image paths.

    Introduced in notebook 06_training_on_gpu.
    """
    from farnet_lite.data.imageio import IMAGE_SUFFIXES

    paths: List[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"Folder {item} holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                                        f"pass image files or another folder.")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"Image {item} does not exist; check the path.")
    return paths
