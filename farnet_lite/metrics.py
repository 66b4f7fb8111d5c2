"""Landmark metrics of the paper's §4.1, one function per definition, each with its source.

All functions take numpy arrays of points ``(N, K, 2)`` as ``(x, y)`` in *original-image pixels* (prediction and
ground truth in the same grid), so the grid convention of :mod:`farnet_lite.heatmaps` never enters here.

Definitions
-----------
* Cephalometric (ISBI 2015; Wang et al., Med. Image Anal. 2016, §2.4): radial error
  ``R = ||p - g|| * spacing`` in mm (spacing 0.1 mm/px); MRE = mean of R over all images and landmarks, SD its
  standard deviation; SDR at radius r = percentage of (image, landmark) pairs with ``R <= r``, r in
  {2, 2.5, 3, 4} mm.
* Hand (Digital Hand Atlas; Payer et al., Med. Image Anal. 2019, §4.2, after Lindner et al. 2016): images have no
  physical spacing, so each image is scaled such that the distance between the two wrist landmarks (0-based 1 and
  5) is 50 mm: ``R = 50 * ||p - g|| / ||g[1] - g[5]||``. SDR radii {2, 4, 10} mm.
* Spine (AASCE 2019 / BoostNet, Wu et al., MICCAI 2017): coordinates normalised by the image size,
  ``x / W`` and ``y / H``; MSE = mean over landmarks and both axes of ``(dx / W)^2`` and ``(dy / H)^2``
  (averaged over images), reported as a fraction of the image; Pearson rho between the flattened normalised
  predicted and true coordinates of all images.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from farnet_lite.data.hand import HAND_WRIST_LANDMARKS, HAND_WRIST_WIDTH_MM


def _points(array) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[-1] != 2:
        raise ValueError(f"points must have shape (N, K, 2), got {array.shape}")
    return array


def radial_errors(pred, gt, spacing=1.0) -> np.ndarray:
    """Radial (Euclidean) errors ``||p - g|| * spacing``, shape ``(N, K)``.

    ``spacing`` is mm per pixel: a number, or one value per image ``(N,)``.
    """
    pred, gt = _points(pred), _points(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    spacing = np.asarray(spacing, dtype=np.float64)
    if spacing.ndim == 1:
        spacing = spacing[:, None]
    return np.linalg.norm(pred - gt, axis=-1) * spacing


def hand_errors_mm(pred, gt) -> np.ndarray:
    """Hand radial errors in mm, wrist width normalised to 50 mm (Payer et al. 2019): ``(N, K)``.

    ``R = 50 * ||p - g|| / ||g[1] - g[5]||`` with 0-based landmark indices 1 and 5 of the ground truth.
    """
    pred, gt = _points(pred), _points(gt)
    a, b = HAND_WRIST_LANDMARKS
    wrist_px = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)  # (N,)
    if np.any(wrist_px <= 0):
        raise ValueError("ground-truth wrist landmarks 1 and 5 coincide in some image; cannot normalise to 50 mm")
    return radial_errors(pred, gt, HAND_WRIST_WIDTH_MM / wrist_px)


def mre_sd(errors) -> tuple:
    """Mean radial error and its standard deviation over all entries (population SD, numpy's default).

    NaN entries (unlabelled landmarks) are ignored.
    """
    errors = np.asarray(errors, dtype=np.float64)
    return float(np.nanmean(errors)), float(np.nanstd(errors))


def sdr(errors, radii: Iterable[float]) -> Dict[float, float]:
    """Successful detection rate: percentage of errors ``<= r`` for each radius r (NaN entries ignored).
    """
    errors = np.asarray(errors, dtype=np.float64)
    valid = errors[np.isfinite(errors)]
    if valid.size == 0:
        return {float(r): float("nan") for r in radii}
    return {float(r): float(100.0 * np.mean(valid <= r)) for r in radii}


def summarize(errors, radii: Iterable[float]) -> Dict[str, float]:
    """``{"mre": .., "sd": .., "sdr_2.0": .., ...}`` for a ``(N, K)`` error array.
    """
    mre, sd = mre_sd(errors)
    out = {"mre": mre, "sd": sd, "n_images": int(np.asarray(errors).shape[0])}
    out.update({f"sdr_{r:g}": v for r, v in sdr(errors, radii).items()})
    return out


def per_landmark_table(errors, radii: Iterable[float], names: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """One row per landmark (1-based index, as in the datasets): MRE, SD and SDR at each radius."""
    errors = np.asarray(errors, dtype=np.float64)
    radii = list(radii)
    rows = []
    for k in range(errors.shape[1]):
        mre, sd = mre_sd(errors[:, k])
        row = {"landmark": k + 1, "mre": mre, "sd": sd}
        row.update({f"sdr_{r:g}": v for r, v in sdr(errors[:, k], radii).items()})
        if names is not None:
            row["name"] = names[k]
        rows.append(row)
    return pd.DataFrame(rows).set_index("landmark")


def _normalised(points, sizes) -> np.ndarray:
    """Divide x by W and y by H; ``sizes`` is ``(H, W)`` or ``(N, 2)`` per image."""
    points = _points(points)
    sizes = np.asarray(sizes, dtype=np.float64)
    wh = sizes[..., ::-1]
    if wh.ndim == 2:
        wh = wh[:, None, :]
    return points / wh


def spine_mse_fraction(pred, gt, sizes) -> float:
    """AASCE/BoostNet MSE as a fraction of the image: mean of ``(dx/W)^2`` and ``(dy/H)^2`` over landmarks,
    both axes and images. ``sizes`` is ``(H, W)`` or one ``(H, W)`` per image ``(N, 2)``.
    """
    diff = _normalised(pred, sizes) - _normalised(gt, sizes)
    return float(np.mean(diff ** 2))


def spine_pearson(pred, gt, sizes) -> float:
    """Pearson correlation between flattened normalised predicted and true coordinates (BoostNet's rho).
    """
    p = _normalised(pred, sizes).ravel()
    g = _normalised(gt, sizes).ravel()
    return float(np.corrcoef(p, g)[0, 1])
