"""An interactive landmark viewer for a split: image slider, ground truth / prediction / heatmap toggles.

In a Jupyter kernel with ipywidgets, :func:`show_landmark_viewer` returns a widget box; each change of a control
redraws one matplotlib figure (:func:`render_view`) into an ``Output`` as a PNG. Anywhere else (a script, pytest,
``static=True``, ipywidgets missing) it returns a plain figure of the first three images with everything shown,
so the same notebook cell also runs headless. Points are ``(x, y)`` in the image's pixels, pixel centres at
integers; predictions RED, ground truth BLUE as in the paper's Fig. 5.
"""
from __future__ import annotations

import base64
import io
from typing import Callable, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from farnet_lite.pictures.plots import PRED_COLOR, TRUTH_COLOR

HeatmapFn = Callable[[int], np.ndarray]  # index -> (K, h, w) float heatmaps of that image


def render_view(image: np.ndarray, truth: Optional[np.ndarray] = None, pred: Optional[np.ndarray] = None,
                heatmap: Optional[np.ndarray] = None, title: Optional[str] = None, ax=None):
    """Draw one view: the image ``(H, W)`` uint8, optionally one heatmap ``(h, w)`` and landmarks ``(K, 2)``.

    The heatmap may have any resolution (e.g. the network's half-resolution grid): it is stretched over the image
    with ``extent=(-0.5, W - 0.5, H - 0.5, -0.5)``, i.e. its pixel edges onto the image's pixel edges, the same
    grid change as :func:`farnet_lite.heatmaps.rescale_points`. NaN landmarks are not drawn. Returns the axes
    (a new figure's when ``ax`` is None).
    """
    height, width = np.shape(image)[:2]
    if ax is None:
        scale = 6.0 / max(height, width)
        ax = Figure(figsize=(max(width * scale, 3.0), max(height * scale, 3.0))).add_subplot()
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if heatmap is not None:
        heatmap = np.asarray(heatmap, dtype=np.float32)                              # (h, w)
        peak = max(float(np.nanmax(heatmap)), 1e-6) if np.isfinite(heatmap).any() else 1.0
        ax.imshow(np.ma.masked_less(heatmap, 0.02 * peak), cmap="jet", alpha=0.5, vmin=0.0, vmax=peak,
                  extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="nearest")  # ~0 stays see-through
    for points, color, label in ((truth, TRUTH_COLOR, "ground truth"), (pred, PRED_COLOR, "prediction")):
        if points is not None:
            points = np.asarray(points, dtype=np.float64).reshape(-1, 2)           # (K, 2)
            shown = np.isfinite(points).all(axis=1)
            ax.scatter(points[shown, 0], points[shown, 1], s=14, c=color, linewidths=0, label=label)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.axis("off")
    if truth is not None or pred is not None:
        ax.legend(loc="lower right", fontsize=7, framealpha=0.6)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _check(name: str, points, num_images: int) -> Optional[np.ndarray]:
    if points is None:
        return None
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[0] != num_images or points.shape[2] != 2:
        raise ValueError(f"{name} has shape {points.shape}; pass an (N={num_images}, K, 2) array of (x, y) points, "
                         f"one row per image.")
    return points


def _in_kernel() -> bool:
    """True inside a running IPython kernel (Jupyter, Colab), False in a script, a terminal IPython or pytest."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _static_figure(images, truth, pred, heatmaps, ids) -> Figure:
    """The first <= 3 images side by side, with ground truth, prediction and the heatmap of landmark 1."""
    count = min(3, len(images))
    shapes = [np.shape(images[i])[:2] for i in range(count)]
    fig = Figure(figsize=(max(5.0 * sum(w / h for h, w in shapes), 3.0), 5.4))
    axes = fig.subplots(1, max(count, 1), squeeze=False,
                        gridspec_kw=dict(width_ratios=[w / h for h, w in shapes] or None))[0]
    for i, ax in enumerate(axes[:count]):
        render_view(images[i], None if truth is None else truth[i], None if pred is None else pred[i],
                    None if heatmaps is None else heatmaps(i)[0], title=str(ids[i]), ax=ax)
    if count == 0:
        axes[0].axis("off")
    fig.tight_layout()
    return fig


class _Viewer:
    """The widget state: controls, the Output, and a draw counter (tests read it)."""

    def __init__(self, images, truth, pred, heatmaps, ids, names):
        import ipywidgets as widgets

        self.images, self.truth, self.pred, self.heatmaps, self.ids = images, truth, pred, heatmaps, ids
        num_landmarks = next((p.shape[1] for p in (truth, pred) if p is not None), None)
        if num_landmarks is None and heatmaps is not None:
            num_landmarks = int(np.shape(heatmaps(0))[0])
        num_landmarks = num_landmarks or 1
        labels = [f"{k}" + (f" {names[k - 1]}" if names is not None and k <= len(names) else "")
                  for k in range(1, num_landmarks + 1)]
        self.draws = 0
        self.slider = widgets.IntSlider(value=0, min=0, max=max(len(images) - 1, 0), description="image",
                                        continuous_update=False)
        self.show_truth = widgets.Checkbox(value=truth is not None, description="ground truth",
                                           disabled=truth is None)
        self.show_pred = widgets.Checkbox(value=pred is not None, description="prediction", disabled=pred is None)
        self.show_heatmap = widgets.Checkbox(value=False, description="heatmap", disabled=heatmaps is None)
        self.landmark = widgets.Dropdown(options=[(text, k) for k, text in enumerate(labels)], value=0,
                                         description="landmark", disabled=heatmaps is None)
        self.output = widgets.Output()
        for control in (self.slider, self.show_truth, self.show_pred, self.show_heatmap, self.landmark):
            control.observe(self.redraw, names="value")
        self.box = widgets.VBox([widgets.HBox([self.slider, self.landmark]),
                                 widgets.HBox([self.show_truth, self.show_pred, self.show_heatmap]), self.output])
        self.redraw()

    def figure(self) -> Figure:
        """The figure of the current control values."""
        i = self.slider.value
        heatmap = None
        if self.heatmaps is not None and self.show_heatmap.value:
            heatmap = np.asarray(self.heatmaps(i))[self.landmark.value]            # (h, w)
        ax = render_view(self.images[i],
                         self.truth[i] if self.truth is not None and self.show_truth.value else None,
                         self.pred[i] if self.pred is not None and self.show_pred.value else None,
                         heatmap, title=f"{self.ids[i]} ({i + 1}/{len(self.images)})")
        ax.figure.tight_layout()
        return ax.figure

    def redraw(self, change=None) -> None:
        """Replace the Output's content by a PNG of :meth:`figure` in one assignment (no flicker, no kernel needed)."""
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=100)
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                                         "text/plain": f"<landmark view {self.slider.value}>"}},)
        self.draws += 1


def _build_widgets(images, truth=None, pred=None, heatmaps=None, ids=None, names=None) -> _Viewer:
    """The widget path of :func:`show_landmark_viewer` without the kernel check (inputs already validated)."""
    return _Viewer(images, truth, pred, heatmaps, ids if ids is not None else list(range(len(images))), names)


def show_landmark_viewer(images: Sequence[np.ndarray], *, truth=None, pred=None, heatmaps: Optional[HeatmapFn] = None,
                         ids: Optional[Sequence[str]] = None, names: Optional[Sequence[str]] = None,
                         static: Optional[bool] = None):
    """Browse the images of a split with their ground truth (blue), predictions (red) and heatmaps.

    ``images``: N ``(H, W)`` uint8 images (e.g. ``load_cache(path).images``); ``truth``, ``pred``: ``(N, K, 2)``
    ``(x, y)`` points in the images' pixels or None; ``heatmaps``: None or ``index -> (K, h, w)`` float heatmaps
    at any resolution (computed on demand, e.g. a model forward pass); ``ids``: N names for the titles; ``names``:
    K landmark names for the dropdown. Returns an ``ipywidgets.VBox`` (image slider, "ground truth" /
    "prediction" / "heatmap" checkboxes, landmark dropdown, the figure) in a Jupyter kernel; otherwise -- or with
    ``static=True`` -- a matplotlib Figure of the first <= 3 images with everything and the heatmap of landmark 1.
    """
    num_images = len(images)
    truth, pred = _check("truth", truth, num_images), _check("pred", pred, num_images)
    ids = list(ids) if ids is not None else [str(i) for i in range(num_images)]
    if len(ids) != num_images:
        raise ValueError(f"ids has {len(ids)} entries for {num_images} images; pass one id per image.")
    if not static:
        try:
            import ipywidgets  # noqa: F401  (the dev extra installs it)
        except ImportError:
            static = True
    if static or not _in_kernel() or num_images == 0:
        return _static_figure(images, truth, pred, heatmaps, ids)
    return _build_widgets(images, truth, pred, heatmaps, ids, names).box
