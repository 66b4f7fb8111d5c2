"""The official code's divergences from the paper, measured in mm on ISBI 2015.

The official FARNet code (github JuvenileInWind/FARNet) differs from the paper's text in several places; the
README's table "Where the official code diverges" lists all of them. This module measures what the ones that act
when a trained model is scored cost, one function per divergence, each applied to the *kit's* predictions so
that everything else stays equal:

* **1-based target grid** (:func:`official_grid_shift`): the official targets put the Gaussian of a landmark at
  ``c`` on a grid whose first pixel is 1 (``np.linspace(1, W, W)``), while its decoder reads the argmax index
  0-based. A network that fits those targets puts each peak one output pixel up and to the left of where the kit's
  network puts it: ``(x, y) -> (x - W0 / W, y - H0 / H)`` in original pixels (``H0 x W0`` original, ``H x W``
  network input, the size of the final heatmaps).
* **ground truth truncated by the scorer** (:func:`truncated_truth`): ``test.py`` applies ``np.trunc`` to the
  ground truth before measuring. The paper's ground truth is the mean of two doctors, so half-pixel values lose
  0.5 px.
* **no ``model.eval()`` at test time** (:func:`predictions_bn_train_mode`): the official test loop runs the
  network in training mode, batch 1, so every BatchNorm normalises with the statistics of the one test image
  instead of its running averages (and updates those averages as a side effect).
* **last epoch kept** (:func:`selection_gap`): the official ``main.py`` saves the model after the last epoch; the
  paper validates on Test1, i.e. keeps the Test1-best epoch.
* **scale factors for 1935 x 2400** (:func:`official_scale_error`): ``config.py`` fixes ``2400 / 800`` and
  ``1935 / 640`` for every image; exact for ISBI (every image is 1935 x 2400), wrong for any other size.

:func:`oracle_predictions` gives the predictions of a perfect argmax network at a given input size (the ground
truth moved to the network grid and rounded to the nearest pixel): the cost of a decode-side divergence at the
paper's 800 x 640, independent of how well a short CPU run has trained.

Points are ``(x, y)`` in original-image pixels, pixel centres at integers, 0-based; sizes are ``(H, W)``.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from torch import nn

from farnet_lite import metrics
from farnet_lite.data.isbi2015 import read_isbi2015
from farnet_lite.engine.evaluate import predict_cache
from farnet_lite.engine.outputs import read_predictions
from farnet_lite.heatmaps import rescale_points


def official_grid_shift(pred: np.ndarray, original_sizes: np.ndarray, input_size: Tuple[int, int]) -> np.ndarray:
    """Predictions ``(N, K, 2)`` moved as a network trained on the official 1-based grid would put them.

    ``original_sizes``: ``(N, 2)`` as ``(H0, W0)``; ``input_size``: ``(H, W)`` of the final heatmaps. One heatmap
    pixel up and left is ``(W0 / W, H0 / H)`` original pixels.
    """
    sizes = np.asarray(original_sizes, dtype=np.float64)                  # (N, 2) as (H0, W0)
    step = sizes[:, ::-1] / np.asarray(input_size, dtype=np.float64)[::-1]  # (N, 2) as (sx, sy)
    return np.asarray(pred, dtype=np.float64) - step[:, None, :]


def truncated_truth(truth: np.ndarray) -> np.ndarray:
    """The ground truth as the official scorer uses it: ``np.trunc`` of every coordinate."""
    return np.trunc(np.asarray(truth, dtype=np.float64))


def official_scale_error(original_sizes: np.ndarray, input_size: Tuple[int, int] = (800, 640),
                         official_size: Tuple[int, int] = (2400, 1935)) -> np.ndarray:
    """Per image ``(N, 2)``: how far (px, as ``(x, y)``) the official fixed scale factors put the far corner.

    The official code maps heatmap pixel ``j`` to ``j * s`` with ``s`` fixed for a 1935 x 2400 image; for an image
    of another size the right factor is ``W0 / W``; the error at the last pixel is ``(s_fixed - s_true) * W``.
    Zero for every ISBI image.
    """
    sizes = np.asarray(original_sizes, dtype=np.float64)[:, ::-1]          # (N, 2) as (W0, H0)
    grid = np.asarray(input_size, dtype=np.float64)[::-1]                 # (W, H)
    fixed = np.asarray(official_size, dtype=np.float64)[::-1] / grid
    return np.abs(fixed - sizes / grid) * grid


def oracle_predictions(truth: np.ndarray, original_sizes: np.ndarray, input_size: Tuple[int, int]) -> np.ndarray:
    """What a perfect argmax network at ``input_size`` predicts: the truth moved to the network grid, rounded to
    the nearest pixel centre, moved back (the kit's grid convention).
    """
    sizes = np.asarray(original_sizes, dtype=np.float64)
    grid = np.broadcast_to(np.asarray(input_size, dtype=np.float64), sizes.shape)
    on_grid = np.rint(rescale_points(np.asarray(truth, dtype=np.float64), sizes, grid))
    return rescale_points(on_grid, grid, sizes)


def predictions_bn_train_mode(model: nn.Module, cache, config, device) -> np.ndarray:
    """Predict a ``PreparedCache`` as the official ``test.py`` does: training mode, one image per batch
    (``TrainConfig.eval_batchnorm=False``).

    Each BatchNorm then uses the batch statistics of the single test image. Runs on a copy, so ``model`` and its
    running statistics are left as they were. Returns ``(N, K, 2)`` original pixels.
    """
    official = dataclasses.replace(config, eval_batchnorm=False)
    pred, _ = predict_cache(copy.deepcopy(model), cache, official, device)
    return pred


def selection_gap(history: Sequence[dict], key: str = "val_mre") -> Dict[str, float]:
    """Test1-selected epoch (the paper, §4.1.1) against the last epoch (the official ``main.py``) in a run log.

    ``history``: the rows of ``log.csv``. Returns ``{"best_epoch", "best", "last_epoch", "last", "delta"}``
    (``delta = last - best``, >= 0).
    """
    rows = [row for row in history if np.isfinite(float(row.get(key, np.nan)))]
    if not rows:
        raise ValueError(f"the run log has no {key!r} values; the run was not validated.")
    best = min(rows, key=lambda row: float(row[key]))
    last = rows[-1]
    return {"best_epoch": int(best["epoch"]), "best": float(best[key]), "last_epoch": int(last["epoch"]),
            "last": float(last[key]), "delta": float(last[key]) - float(best[key])}


def score_mm(pred: np.ndarray, truth: np.ndarray, spacing_mm: float = 0.1,
             radii: Sequence[float] = (2.0, 2.5, 3.0, 4.0)) -> Dict[str, float]:
    """MRE / SD / SDR of ``pred`` against ``truth`` (both ``(N, K, 2)`` original pixels) in mm."""
    return metrics.summarize(metrics.radial_errors(pred, truth, spacing_mm), radii)


def decode_audit(pred: np.ndarray, truth: np.ndarray, original_sizes: np.ndarray, input_size: Tuple[int, int],
                 spacing_mm: float = 0.1) -> List[dict]:
    """One row per decode-side divergence, applied to ``pred`` one at a time and then together.

    Each row: ``divergence``, ``mre`` and ``sdr_2`` (mm, %) and ``delta_mre`` / ``delta_sdr_2`` against the kit's
    scoring of the same predictions.
    """
    shifted = official_grid_shift(pred, original_sizes, input_size)
    cut = truncated_truth(truth)
    cases = [("kit (0-based grid, exact ground truth)", pred, truth),
             ("1-based target grid", shifted, truth),
             ("ground truth truncated by the scorer", pred, cut),
             ("both", shifted, cut)]
    base = score_mm(pred, truth, spacing_mm)
    rows = []
    for name, p, t in cases:
        s = score_mm(p, t, spacing_mm)
        rows.append({"divergence": name, "mre": s["mre"], "sdr_2": s["sdr_2"],
                     "delta_mre": s["mre"] - base["mre"], "delta_sdr_2": s["sdr_2"] - base["sdr_2"]})
    return rows


def run_predictions(run_dir, split: str, data_root, annotation: str = "mean"
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pred, truth, original sizes)`` of a run folder's ``predictions_<split>.csv`` and the ISBI labels.

    ``pred`` and ``truth`` are ``(N, K, 2)`` original pixels for the N labelled images of the split, sizes
    ``(N, 2)`` as ``(H0, W0)`` read from the image headers.
    """
    dataset = read_isbi2015(data_root, split=split, annotation=annotation)
    found = read_predictions(Path(run_dir) / f"predictions_{split}.csv")
    rows = [i for i in range(len(dataset)) if dataset.landmarks(i) is not None]
    missing = [dataset.ids[i] for i in rows if dataset.ids[i] not in found]
    if missing or not rows:
        raise ValueError(f"{Path(run_dir) / f'predictions_{split}.csv'} lacks {len(missing)} of the {len(rows)} "
                         f"labelled images of {split} (e.g. {missing[:1]}); evaluate the run on that split first.")
    pred = np.stack([found[dataset.ids[i]] for i in rows])
    truth = np.stack([dataset.landmarks(i) for i in rows])
    sizes = np.array([dataset.image_size(i) for i in rows], dtype=np.float64)
    return pred, truth, sizes


def simulated_predictions(truth: np.ndarray, mre_mm: float, spacing_mm: float = 0.1, seed: int = 0) -> np.ndarray:
    """The truth plus isotropic Gaussian errors whose mean radial error is ``mre_mm`` (a Rayleigh mean): a stand-in
    for a network as accurate as the paper's, to see what a fixed offset costs at that accuracy (a model, not a
    measurement)."""
    sigma_px = mre_mm / spacing_mm / np.sqrt(np.pi / 2)
    return np.asarray(truth, dtype=np.float64) + np.random.default_rng(seed).normal(0.0, sigma_px, np.shape(truth))


def decode_audit_table(data_root, runs: Dict[str, Tuple[str, Tuple[int, int]]], split: str = "test1",
                       paper_size: Tuple[int, int] = (800, 640), paper_mre_mm: float = 1.12) -> List[dict]:
    """Every decode-side row of the README's audit: for each committed run (``{label: (run_dir, input_size)}``) on
    its own grid, for a perfect argmax network at ``paper_size`` and for a simulated network with the paper's MRE.
    """
    rows = []
    dataset = read_isbi2015(data_root, split=split)
    labelled = [i for i in range(len(dataset)) if dataset.landmarks(i) is not None]
    truth = np.stack([dataset.landmarks(i) for i in labelled])
    sizes = np.array([dataset.image_size(i) for i in labelled], dtype=np.float64)
    cases = [(label, *run_predictions(run_dir, split, data_root), size) for label, (run_dir, size) in runs.items()]
    cases.append((f"perfect argmax network at {paper_size[0]}x{paper_size[1]}",
                  oracle_predictions(truth, sizes, paper_size), truth, sizes, paper_size))
    cases.append((f"simulated network with the paper's MRE {paper_mre_mm} mm at {paper_size[0]}x{paper_size[1]}",
                  simulated_predictions(truth, paper_mre_mm), truth, sizes, paper_size))
    for label, pred, t, s, size in cases:
        for row in decode_audit(pred, t, s, size):
            rows.append(dict(predictor=label, grid=f"{size[0]}x{size[1]}", **row))
    return rows
