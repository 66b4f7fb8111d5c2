"""Figures of the paper (Figs. 1, 4, 5) and of our runs (training curves, SDR curves, per-landmark errors, tables).

Every function builds a :class:`matplotlib.figure.Figure` with the object API and *returns* it: nothing is shown
and pyplot's global figure list is not touched, so a script or a test can make hundreds of figures without
closing them. In a notebook, leave the figure as the last expression of a cell (or call ``display(fig)``) to see
it, and :func:`save_figure` to write ``figures/<name>.png`` and ``.pdf``.

Points are ``(x, y)`` in the pixels of the image they are drawn on, pixel centres at integers -- which is also
matplotlib's ``imshow`` convention (pixel ``(0, 0)`` covers ``[-0.5, 0.5]^2``), so no shift is ever needed.
Colours follow the paper's Fig. 5: predicted landmarks RED, ground truth BLUE.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from matplotlib import MatplotlibDeprecationWarning
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from farnet_lite.atomic import atomic_path
from farnet_lite.datasets import ISBI2015
from farnet_lite.heatmaps import rescale_points
from farnet_lite.losses import ewc_weight

PRED_COLOR = "red"     # paper Fig. 5
TRUTH_COLOR = "blue"   # paper Fig. 5


def save_figure(fig: Figure, name: str, directory="figures") -> List[Path]:
    """Write ``<directory>/<name>.png`` (150 dpi) and ``<directory>/<name>.pdf``; return both paths.

    Each file goes to a temporary name first and is renamed into place, so an interrupted save never leaves half a
    figure. The PDF carries no creation date, so saving the same figure twice gives identical bytes (figures are
    committed to the repository).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.png", directory / f"{name}.pdf"]
    with atomic_path(paths[0]) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    with atomic_path(paths[1]) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    return paths


# --- image panels (Figs. 1 and 5) -------------------------------------------------------------------------------

def _image_panels(shapes: Sequence[Tuple[int, int]], height: float = 5.0, title: Optional[str] = None):
    """A figure with one axes per image side by side, widths proportional to each image's W / H."""
    ratios = [w / h for h, w in shapes]
    fig = Figure(figsize=(max(height * sum(ratios) + 0.3 * len(ratios), 3.0), height + (0.4 if title else 0.0)))
    axes = fig.subplots(1, len(shapes), gridspec_kw=dict(width_ratios=ratios), squeeze=False)[0]
    if title:
        fig.suptitle(title, fontsize=11)
    return fig, list(axes)


def _empty_figure(message: str) -> Figure:
    fig = Figure(figsize=(5, 2))
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.axis("off")
    return fig


def _show_image(ax, image: np.ndarray) -> None:
    """Grey image with the axes limits on the pixel edges and no ticks."""
    height, width = image.shape[:2]
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.axis("off")


def plot_dataset_examples(examples: Sequence[Tuple[str, np.ndarray, np.ndarray]], *,
                          title: Optional[str] = None) -> Figure:
    """Paper Fig. 1: one radiograph per dataset with its landmarks as red dots numbered 1..K in yellow.

    ``examples``: ``(label, image (H, W) uint8, landmarks (K, 2) float (x, y) original pixels)`` per panel.
    """
    if len(examples) == 0:
        return _empty_figure("no examples")
    fig, axes = _image_panels([np.shape(image)[:2] for _, image, _ in examples], height=5.6, title=title)
    for ax, (label, image, points) in zip(axes, examples):
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)  # (K, 2)
        _show_image(ax, image)
        ax.scatter(points[:, 0], points[:, 1], s=10, c=PRED_COLOR, linewidths=0)
        fontsize = 6.5 if len(points) < 40 else 5.0
        for k, (x, y) in enumerate(points, start=1):
            if np.isfinite(x) and np.isfinite(y):
                ax.annotate(str(k), (x, y), xytext=(2.5, -2.5), textcoords="offset points", color="yellow",
                            fontsize=fontsize)
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    return fig


def plot_predictions(examples: Sequence[Tuple[str, np.ndarray, np.ndarray, Optional[np.ndarray]]], *,
                     title: Optional[str] = None) -> Figure:
    """Paper Fig. 5: predicted landmarks (red) beside the ground truth (blue), a thin line joining each pair.

    ``examples``: ``(label, image (H, W) uint8, pred (K, 2), truth (K, 2) or None)``, points ``(x, y)`` in the
    image's pixels. NaN truth rows are unlabelled landmarks: only the red prediction is drawn for them.
    """
    if len(examples) == 0:
        return _empty_figure("no examples")
    fig, axes = _image_panels([np.shape(ex[1])[:2] for ex in examples], height=5.6, title=title)
    any_truth = False
    for ax, (label, image, pred, truth) in zip(axes, examples):
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)                     # (K, 2)
        _show_image(ax, image)
        if truth is not None:
            truth = np.asarray(truth, dtype=np.float64).reshape(-1, 2)               # (K, 2)
            labelled = np.isfinite(truth).all(axis=1)
            both = labelled & np.isfinite(pred).all(axis=1)
            if both.any():  # one collection of K segments pred -> truth
                ax.add_collection(LineCollection(np.stack([pred[both], truth[both]], axis=1),
                                                 colors="yellow", linewidths=0.6, alpha=0.8))
            if labelled.any():
                any_truth = True
                ax.scatter(truth[labelled, 0], truth[labelled, 1], s=12, c=TRUTH_COLOR, linewidths=0)
        ax.scatter(pred[:, 0], pred[:, 1], s=12, c=PRED_COLOR, linewidths=0)
        ax.set_title(label, fontsize=9)
    handles = [Line2D([], [], ls="", marker="o", color=PRED_COLOR, label="prediction")]
    if any_truth:
        handles.append(Line2D([], [], ls="", marker="o", color=TRUTH_COLOR, label="ground truth"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    top = 1.0 - 0.55 / fig.get_figheight() if title else 1.0    # room for the suptitle above two-line panel titles
    fig.tight_layout(rect=(0, 0.05, 1, top))
    return fig


# --- Fig. 4 -----------------------------------------------------------------------------------------------------

def plot_ewc_weight(alphas: Sequence[float] = (1, 10, 20, 40, 80), highlight: float = 40.0) -> Figure:
    """The EWC weight ``alpha ** y`` (Eq. 3; paper Fig. 4 plots the loss it weights) against ``y`` and the distance.

    Left: weight vs target value ``y`` in [0, 1]. Right: the same weight vs ``d / sigma``, the distance from the
    landmark in units of the Gaussian's sigma, through Eq. 1 ``y = exp(-d^2 / 2 sigma^2)``. ``highlight`` (the
    paper's alpha = 40) is drawn thick and black.
    """
    y = np.linspace(0.0, 1.0, 201)
    d_over_sigma = np.linspace(0.0, 4.0, 201)
    fig = Figure(figsize=(10, 3.8))
    ax_y, ax_d = fig.subplots(1, 2)
    for alpha in alphas:
        paper = float(alpha) == float(highlight)
        style = dict(lw=2.6, color="k") if paper else dict(lw=1.2)
        label = f"α = {alpha:g}" + (" (paper)" if paper else " (L2)" if float(alpha) == 1.0 else "")
        ax_y.plot(y, ewc_weight(y, float(alpha)), label=label, **style)
        ax_d.plot(d_over_sigma, ewc_weight(np.exp(-d_over_sigma ** 2 / 2), float(alpha)), label=label, **style)
    ax_y.set(xlabel="target value $y$", ylabel=r"weight $\alpha^{y}$", title="EWC weight (Fig. 4's loss)")
    ax_d.set(xlabel=r"distance from the landmark $d/\sigma$", ylabel=r"weight $\alpha^{y}$",
             title="the same weight on the image")
    for ax in (ax_y, ax_d):
        ax.grid(alpha=0.3)
        if alphas:
            ax.legend()
    fig.tight_layout()
    return fig


# --- runs and errors --------------------------------------------------------------------------------------------

def plot_training_curves(logs: Mapping[str, pd.DataFrame]) -> Figure:
    """Training loss (left, log scale) and validation MRE (right) per epoch, one line per run.

    ``logs``: ``{run label: the run's log.csv as a DataFrame}`` with columns ``epoch, train_loss, lr, val_mre,
    seconds``; ``val_mre`` may be missing or NaN (runs without validation), such runs get no line on the right.
    """
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_mre = fig.subplots(1, 2)
    for i, (label, log) in enumerate(logs.items()):
        color = f"C{i % 10}"
        epoch = log["epoch"].to_numpy(dtype=np.float64) if "epoch" in log else np.arange(1, len(log) + 1.0)
        if "train_loss" in log:
            loss = log["train_loss"].to_numpy(dtype=np.float64)
            keep = np.isfinite(loss) & (loss > 0)  # a log axis cannot show 0 or NaN
            if keep.any():
                ax_loss.plot(epoch[keep], loss[keep], color=color, marker="o", ms=3, label=label)  # 1 epoch: a dot
        if "val_mre" in log:
            mre = log["val_mre"].to_numpy(dtype=np.float64)
            keep = np.isfinite(mre)
            if keep.any():
                ax_mre.plot(epoch[keep], mre[keep], color=color, marker="o", ms=3, label=label)
    if ax_loss.lines:
        ax_loss.set_yscale("log")
        ax_loss.legend(fontsize=8)
    if ax_mre.lines:
        ax_mre.legend(fontsize=8)
    else:
        ax_mre.text(0.5, 0.5, "no validation MRE logged", ha="center", va="center", transform=ax_mre.transAxes,
                    color="gray")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax_mre.set(xlabel="epoch", ylabel="validation MRE", title="validation MRE")
    for ax in (ax_loss, ax_mre):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def sdr_curve(errors, radii) -> np.ndarray:
    """The SDR curve: for each radius r, the percentage of finite errors ``<= r`` (NaN entries ignored).

    ``errors``: radial errors of any shape; ``radii``: 1-D. Returns ``(len(radii),)`` float64 percentages, all NaN
    when there is no finite error. At a single r this is :func:`farnet_lite.metrics.sdr`.
    """
    errors = np.asarray(errors, dtype=np.float64).ravel()
    valid = np.sort(errors[np.isfinite(errors)])
    radii = np.asarray(radii, dtype=np.float64).ravel()
    if valid.size == 0:
        return np.full(radii.shape, np.nan)
    count = np.searchsorted(valid, radii, side="right")  # number of errors <= r
    return 100.0 * (count / valid.size)


def plot_sdr_curves(errors: Mapping[str, np.ndarray], *, radii=None, marks=ISBI2015.radii,
                    unit: str = "mm") -> Figure:
    """SDR (%) against the detection radius, one curve per label; dotted vertical lines at ``marks``.

    ``errors``: ``{label: radial errors of any shape}`` (e.g. ``(N, K)``; NaN ignored). ``radii`` defaults to
    201 points from 0 to max(10, the 99th percentile of all errors).
    """
    finite = [np.asarray(e, dtype=np.float64).ravel() for e in errors.values()]
    finite = np.concatenate([e[np.isfinite(e)] for e in finite]) if finite else np.empty(0)
    if radii is None:
        top = max(10.0, float(np.percentile(finite, 99))) if finite.size else 10.0
        radii = np.linspace(0.0, top, 201)
    radii = np.asarray(radii, dtype=np.float64).ravel()
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for label, err in errors.items():
        ax.plot(radii, sdr_curve(err, radii), label=label)
    for mark in marks:
        ax.axvline(mark, color="gray", ls=":", lw=1)
    ax.set(xlabel=f"radius ({unit})", ylabel="SDR (%)", title="successful detection rate",
           xlim=(0.0, float(radii.max()) if radii.size else 10.0), ylim=(0, 101))
    ax.grid(alpha=0.3)
    if errors:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_per_landmark_errors(errors: Mapping[str, np.ndarray], names: Optional[Sequence[str]] = None,
                             unit: str = "mm") -> Figure:
    """Box plot of the radial error of each landmark (x, numbered 1..K), one colour per label.

    ``errors``: ``{label: (M, K) radial errors}`` of M images (NaN ignored); ``names`` (K,) landmark names, shown
    in the tick labels when K <= 20 (e.g. ``ISBI_LANDMARK_NAMES``).
    """
    import seaborn as sns  # slow to import; only this plot needs it

    frames = []
    for label, err in errors.items():
        err = np.asarray(err, dtype=np.float64)
        if err.ndim != 2:
            raise ValueError(f"Errors of {label!r} have shape {err.shape}; pass an (M images, K landmarks) array.")
        frames.append(pd.DataFrame({"landmark": np.tile(np.arange(1, err.shape[1] + 1), err.shape[0]),
                                    "error": err.ravel(), "label": label}))
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["landmark", "error", "label"])
    long = long[np.isfinite(long["error"].to_numpy(dtype=np.float64))]
    num_landmarks = max((np.shape(e)[1] for e in errors.values()), default=0)
    fig = Figure(figsize=(max(6.0, 0.45 * num_landmarks * max(len(errors), 1) ** 0.5 + 2), 4.2))
    ax = fig.add_subplot()
    if long.empty:
        ax.text(0.5, 0.5, "no finite errors", ha="center", va="center", transform=ax.transAxes, color="gray")
    else:
        order = list(range(1, num_landmarks + 1))
        with warnings.catch_warnings():  # seaborn 0.13 passes bxp(vert=...), deprecated in matplotlib 3.11
            warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
            sns.boxplot(data=long, x="landmark", y="error", hue="label", order=order, hue_order=list(errors),
                        ax=ax, fliersize=1.5, linewidth=0.8)
        if names is not None and num_landmarks <= 20:
            ax.set_xticks(range(num_landmarks), [f"{k} {names[k - 1]}" for k in order], rotation=60, ha="right",
                          fontsize=8)
        ax.legend(fontsize=8, title=None)
    ax.set(xlabel="landmark", ylabel=f"radial error ({unit})", title="per-landmark radial error")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def plot_metric_bars(frame: pd.DataFrame, metric: str, *, ours: str = "ours", paper: str = "paper",
                     label: str = "row") -> Figure:
    """Grouped bars, ours beside the paper's number, for one ``metric`` of a long results table.

    ``frame`` has columns ``label`` (row name, e.g. the system of Table 2), ``metric``, ``ours``, ``paper``, as
    :func:`farnet_lite.reproduction.tables.gather_table` returns; the rows whose ``metric`` column equals ``metric`` (e.g.
    ``"mre"``) are drawn in table order. With a ``split`` column holding several splits, each bar pair is named
    "row / split"; with a ``title`` column, that title labels the y axis. A NaN value (the paper did not report
    it, or the run is missing) gets no bar but an "n/a" at its place.
    """
    if frame.empty:
        return _empty_figure("no results")
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        raise ValueError(f"Metric {metric!r} is not in the table; pick one of {sorted(frame['metric'].unique())}.")
    x = np.arange(len(rows), dtype=np.float64)
    width = 0.38
    fig = Figure(figsize=(max(5.0, 0.9 * len(rows) + 2), 4))
    ax = fig.add_subplot()
    for offset, column, color in ((-width / 2, ours, "tab:red"), (width / 2, paper, "tab:gray")):
        values = rows[column].to_numpy(dtype=np.float64)
        ok = np.isfinite(values)
        bars = ax.bar(x[ok] + offset, values[ok], width, color=color, label=column)
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=1)
        for xi in x[~ok]:
            ax.text(xi + offset, 0, "n/a", ha="center", va="bottom", fontsize=8, color="gray")
    names = [str(v) for v in rows[label]]
    if "split" in rows and rows["split"].nunique() > 1:
        names = [f"{name} / {split}" for name, split in zip(names, rows["split"])]
    ax.set_xticks(x, names, rotation=30 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center",
                  fontsize=8)
    title = str(rows["title"].iloc[0]) if "title" in rows else metric
    ax.set(ylabel=title, title=title)
    ax.margins(y=0.12)
    ax.grid(alpha=0.3, axis="y")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="tab:red", label=ours), Patch(color="tab:gray", label=paper)], fontsize=8)
    fig.tight_layout()
    return fig


OVERLAY_MAX_SIDE = 2048   # overlays draw a copy of at most this many pixels on its longest side (the PNG is 720)


def overlay_copy(image: np.ndarray, max_side: int = OVERLAY_MAX_SIDE) -> np.ndarray:
    """``image`` ``(H, W)`` uint8 shrunk (antialiased) so that its longest side is at most ``max_side``, else
    itself: what :func:`save_overlay` draws, so a 10000 x 10000 radiograph costs 4 MB there instead of gigabytes."""
    height, width = image.shape[:2]
    factor = max_side / max(height, width)
    if factor >= 1:
        return image
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.BILINEAR), dtype=np.uint8)


def save_overlay(path, image: np.ndarray, pred: np.ndarray, truth: Optional[np.ndarray] = None,
                 title: Optional[str] = None, numbers: bool = True,
                 original_size: Optional[Tuple[int, int]] = None) -> Path:
    """A PNG of the radiograph with predicted (red +) and, if given, true (green o) landmarks, numbered 1..K.

    ``image`` ``(H, W)`` uint8; ``pred`` / ``truth`` ``(K, 2)`` ``(x, y)`` original pixels (pixel centres at
    integers, which is also matplotlib's ``imshow`` convention). ``farnet predict`` writes one per image. A large
    image is drawn from :func:`overlay_copy` (longest side <= ``OVERLAY_MAX_SIDE``), the points moved with it;
    ``image`` may already be such a copy of an image of ``original_size`` ``(H, W)``, the grid of the points.
    """
    original_size = tuple(original_size or image.shape[:2])
    image = overlay_copy(image)
    if tuple(image.shape[:2]) != original_size:
        pred = rescale_points(np.asarray(pred, dtype=np.float64), original_size, image.shape[:2])
        truth = None if truth is None else rescale_points(np.asarray(truth, dtype=np.float64), original_size,
                                                          image.shape[:2])
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
