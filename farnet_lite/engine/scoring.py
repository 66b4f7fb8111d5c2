"""Scoring predictions the way each dataset reports them (paper §4.1): from points to the summary of a table cell.

The metric definitions are in ``farnet_lite.metrics``; this module
picks the ones a dataset's :class:`~farnet_lite.datasets.DatasetSpec` names (``metric``, ``spacing_mm``,
``radii``) and says which validation number selects ``best.pt``. Inference (``farnet_lite.engine.evaluate``), the tables
(``farnet_lite.reproduction.tables``) and the demo all score through it.

Points are ``(N, K, 2)`` ``(x, y)`` in original-image pixels, 0-based, pixel centres at integers; sizes ``(N, 2)``
are ``(H, W)``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from farnet_lite.datasets import DatasetSpec
from farnet_lite.metrics import hand_errors_mm, radial_errors, spine_mse_fraction, spine_pearson, summarize


def selection_key(spec: DatasetSpec) -> str:
    """The validation number that selects ``best.pt`` (lower is better): MRE, or the spine's MSE fraction."""
    return "mse_fraction" if spec.metric.kind == "fraction" else "mre"


def score_predictions(pred: np.ndarray, truth: np.ndarray, sizes: np.ndarray, spec: DatasetSpec,
                      spacings: Optional[np.ndarray] = None) -> Tuple[dict, Optional[np.ndarray], np.ndarray]:
    """Score the images with at least one known landmark: ``(summary, errors (M, K), labelled mask (N,))``.

    A missing landmark (NaN in ``truth``) has a NaN error and is left out of every number (MRE, SD, SDR).

    ``spacing``: radial errors in mm (ISBI: 0.1 mm/px) and SDR at the dataset radii; ``wrist``: mm by the 50 mm
    wrist width (hand); ``fraction`` (spine): MSE as a fraction of the image size and Pearson rho, with pixel
    MRE for reference; ``image`` (your own CSV): mm by each image's ``spacings`` ``(N,)``, or everything in
    pixels (no SDR) when one of them is unknown. Empty summary for an unlabelled split.
    """
    labelled = np.isfinite(truth).all(axis=2).any(axis=1)                      # (N,) some landmark known
    if not labelled.any():
        return {}, None, labelled
    p, t = pred[labelled], truth[labelled]
    if spec.metric.kind == "spacing":
        errors = radial_errors(p, t, spec.metric.spacing_mm)
        summary = dict(summarize(errors, spec.radii), unit="mm")
    elif spec.metric.kind == "image":
        own = np.full(len(truth), np.nan) if spacings is None else np.asarray(spacings, dtype=np.float64)
        known = bool(np.isfinite(own[labelled]).all())
        errors = radial_errors(p, t, own[labelled] if known else 1.0)
        summary = dict(summarize(errors, spec.radii if known else ()), unit="mm" if known else "px")
    elif spec.metric.kind == "wrist":
        errors = hand_errors_mm(p, t)
        summary = dict(summarize(errors, spec.radii), unit="mm")
    else:
        errors = radial_errors(p, t)
        summary = dict(summarize(errors, ()), unit="px",
                       mse_fraction=spine_mse_fraction(p, t, sizes[labelled]),
                       pearson=spine_pearson(p, t, sizes[labelled]))
    return summary, errors, labelled
