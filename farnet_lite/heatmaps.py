"""Heatmap codec: Gaussian ground truth (paper Eq. 1, §3.2), grid changes, argmax / sub-pixel decoding.

Conventions (the same everywhere in farnet-lite)
------------------------------------------------
* A point is ``(x, y)``: x is the column, y the row, both floats.
* **Pixel centres sit at integer coordinates**, 0-based: pixel ``[row i, col j]`` covers
  ``[j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)``, so a W-pixel-wide grid spans ``[-0.5, W - 0.5)``.
* Sizes are ``(H, W)``. Heatmaps are ``(B, K, H, W)``, points ``(B, K, 2)``.
* Changing grids by a factor ``s = W_dst / W_src`` (and likewise for y) maps ``x -> (x + 0.5) * s - 0.5``:
  image *edges* map onto edges. This is the convention of ``F.interpolate(..., align_corners=False)``,
  of PIL's ``resize`` and of OpenCV's ``resize``. :func:`rescale_points` is the one helper that does every
  grid change: original image <-> network input <-> the half-resolution MSFA grid.

Eq. 1 of the paper: the target of landmark k is the *unnormalised* Gaussian
``y_k(p) = exp(-||p - p_k||^2 / (2 sigma^2))`` evaluated at every pixel centre p, with peak 1 at the exact,
non-quantised landmark position ``p_k`` and sigma = 10 in the pixel units of the grid it lives on.

The official code's variant
---------------------------
The official FARNet ``data.py`` evaluates the Gaussian on ``linspace(1, W, W)`` -- a grid whose first pixel
centre has coordinate 1 -- while its decoder reads the argmax index 0-based. Every target therefore lands one
pixel up-left of the landmark, and every prediction inherits that bias (about 1 px per axis in the network grid,
~0.43 mm on ISBI at 800x640). ``origin=OFFICIAL_ORIGIN`` reproduces that grid so notebook 01 can measure it;
the default ``origin=0`` is the correct, unbiased one.

The codec
---------
:class:`HeatmapCodec` is the one place where points and heatmaps meet, used by the loss (``encode``, one codec per
supervised output grid) and by inference (``decode``). It owns the grid change between the network-input grid
and the heatmap grid and applies ``origin`` on both sides, so ``decode(encode(p)) == p`` (exactly with
``"subpixel"`` up to float rounding; within half a heatmap pixel per axis with ``"argmax"``). The official
pipeline -- targets on the 1-based grid, argmax read 0-based -- is the explicit
``HeatmapCodec(..., origin=OFFICIAL_ORIGIN, decode_origin=0.0)``.

A run holds one :class:`LandmarkCodec` (built from its config by ``farnet_lite.engine.runtime.run_codec``): the
input size, sigma, origins and decoding method in one object, handed to the loss and to decoding, which makes the
:class:`HeatmapCodec` of whichever output grid it meets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

OFFICIAL_ORIGIN = 1.0
"""Coordinate of the first pixel centre in the official code's heatmap grid (``np.linspace(1, W, W)``)."""


def rescale_points(points: ArrayLike, src_size: Union[Sequence[float], ArrayLike],
                   dst_size: Union[Sequence[float], ArrayLike]) -> ArrayLike:
    """Map points from one pixel grid to another: ``x -> (x + 0.5) * W_dst / W_src - 0.5`` (same for y with H).

    Args:
        points: ``(..., 2)`` array or tensor of ``(x, y)`` in the source grid (NaN stays NaN).
        src_size, dst_size: ``(H, W)`` of the grids, or arrays of shape ``(N, 2)`` giving one ``(H, W)`` per
            image for points of shape ``(N, K, 2)`` (e.g. the original sizes of a batch of radiographs).

    Returns:
        Points in the destination grid, same type, dtype and shape as ``points``.
    """
    if isinstance(points, torch.Tensor):
        dtype = points.dtype if points.is_floating_point() else torch.float32
        src = torch.as_tensor(src_size, dtype=dtype, device=points.device)
        dst = torch.as_tensor(dst_size, dtype=dtype, device=points.device)
        scale = dst.flip(-1) / src.flip(-1)  # (..., 2) as (sx, sy)
    else:
        points = np.asarray(points, dtype=np.float64)
        scale = np.asarray(dst_size, dtype=np.float64)[..., ::-1] / np.asarray(src_size, dtype=np.float64)[..., ::-1]
    # (N, 2) per-image sizes against (N, K, 2) points: broadcast over K.
    while scale.ndim > 1 and scale.ndim < points.ndim:
        scale = scale[..., None, :]
    return (points + 0.5) * scale - 0.5


def encode_heatmaps(points: ArrayLike, size: Tuple[int, int], sigma: float = 10.0,
                    origin: float = 0.0) -> torch.Tensor:
    """Paper Eq. 1: unnormalised Gaussian targets, peak 1 at the exact (non-quantised) landmark positions.

    Args:
        points: ``(B, K, 2)`` ``(x, y)`` in the target grid (pixel centres at integers). NaN marks a missing
            landmark, whose map is all zeros. A numpy array is accepted and converted.
        size: ``(H, W)`` of the target grid.
        sigma: standard deviation in pixels of this grid (the paper uses 10 on both outputs).
        origin: coordinate of the first pixel centre; 0 (default, correct) or :data:`OFFICIAL_ORIGIN`.

    Returns:
        ``(B, K, H, W)`` float tensor on the points' device (float32 unless points are float64).
        Built separably (a row and a column Gaussian per landmark, one outer product), no Python loop.
    """
    points = torch.as_tensor(points)
    if not points.is_floating_point():
        points = points.float()
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (B, K, 2), got {tuple(points.shape)}")
    height, width = int(size[0]), int(size[1])
    xs = torch.arange(width, device=points.device, dtype=points.dtype) + origin   # (W,)
    ys = torch.arange(height, device=points.device, dtype=points.dtype) + origin  # (H,)
    missing = ~torch.isfinite(points).all(dim=-1)                                  # (B, K)
    pts = torch.where(missing[..., None], torch.zeros_like(points), points)
    inv = -1.0 / (2.0 * sigma * sigma)
    gx = torch.exp((xs - pts[..., 0:1]) ** 2 * inv)  # (B, K, W)
    gy = torch.exp((ys - pts[..., 1:2]) ** 2 * inv)  # (B, K, H)
    heatmaps = gy[..., :, None] * gx[..., None, :]   # (B, K, H, W)
    return heatmaps.masked_fill(missing[..., None, None], 0.0)


def decode_heatmaps(heatmaps: torch.Tensor, method: str = "argmax",
                    origin: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps -> landmark coordinates in the heatmap's own grid, plus peak values.

    Args:
        heatmaps: ``(B, K, H, W)``; H, W >= 3 for ``"subpixel"``.
        method: ``"argmax"`` -- the paper's "NMS" decoding, the centre of the hottest pixel, so the error is at
            most 0.5 px per axis; or ``"subpixel"`` -- refine the argmax by fitting a parabola to the log of the
            three pixels around it along x and along y (a separable Taylor step, as DARK does without its blur).
            For an exact Gaussian the log is exactly quadratic, so the fit recovers the centre to float precision;
            on network outputs the step is limited to +-1 px and falls back to argmax where the log is not concave.
        origin: coordinate of the first pixel centre of the grid the heatmaps were drawn on (see module doc).

    Returns:
        ``coords`` ``(B, K, 2)`` float ``(x, y)`` and ``scores`` ``(B, K)`` (the maximum of each map).
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must have shape (B, K, H, W), got {tuple(heatmaps.shape)}")
    batch, num, height, width = heatmaps.shape
    maps = heatmaps.detach().float().reshape(batch, num, height * width)
    scores, flat = maps.max(dim=-1)                          # (B, K)
    iy = torch.div(flat, width, rounding_mode="floor")
    ix = flat - iy * width
    coords = torch.stack([ix, iy], dim=-1).to(maps.dtype)    # (B, K, 2)
    if method == "argmax":
        return coords + origin, scores
    if method != "subpixel":
        raise ValueError(f"method must be 'argmax' or 'subpixel', got {method!r}")
    if height < 3 or width < 3:
        raise ValueError(f"subpixel decoding needs heatmaps of at least 3x3 pixels, got {height}x{width}")

    def log_parabola_vertex(centre, stride, length, fixed_offset):
        # Three samples at centre-1, centre, centre+1 (window clamped inside the grid) along one axis.
        c = centre.clamp(1, length - 2)
        idx = torch.stack([c - 1, c, c + 1], dim=-1) * stride + fixed_offset[..., None]   # (B, K, 3)
        logs = torch.log(torch.gather(maps, 2, idx.reshape(batch, num, 3)).clamp_min(1e-10))
        left, mid, right = logs.unbind(-1)
        curvature = left - 2 * mid + right                   # < 0 at a maximum
        safe = torch.where(curvature < 0, curvature, torch.full_like(curvature, -1.0))
        vertex = c.to(maps.dtype) + 0.5 * (left - right) / safe
        vertex = torch.minimum(torch.maximum(vertex, centre - 1.0), centre + 1.0)
        return torch.where(curvature < 0, vertex, centre.to(maps.dtype))

    x = log_parabola_vertex(ix, 1, width, iy * width)
    y = log_parabola_vertex(iy, width, height, ix)
    return torch.stack([x, y], dim=-1) + origin, scores


@dataclass(frozen=True)
class HeatmapCodec:
    """Points in the network-input grid <-> Gaussian heatmaps (Eq. 1) on one output's grid.

    Args:
        input_size: ``(H, W)`` of the network input, the grid the points live in.
        heatmap_size: ``(h, w)`` of the heatmaps: the input size for FR / FR* / U-Net / FPN, half of it for the
            MSFA heatmaps (the ``coarse`` output, or ``final`` of MSFA alone).
        sigma: Gaussian standard deviation in pixels of the *heatmap* grid (paper: 10 on both outputs).
        origin: coordinate of the first pixel centre of the heatmap grid; 0 (default) or :data:`OFFICIAL_ORIGIN`.
        decode_origin: origin ``decode`` reads the argmax with; None (default) means ``origin``, so decode inverts
            encode. ``origin=OFFICIAL_ORIGIN, decode_origin=0.0`` reproduces the official code's bias (one heatmap
            pixel up-left per axis).

    ``encode(points (B, K, 2) (x, y) input grid) -> (B, K, h, w)``; ``decode(heatmaps (B, K, h, w), method) ->
    (points (B, K, 2) input grid, scores (B, K))``. Pixel centres at integers, 0-based, in both grids; the grid
    change is :func:`rescale_points` (``x -> (x + 0.5) * w / W - 0.5``).
    """

    input_size: Tuple[int, int]
    heatmap_size: Tuple[int, int]
    sigma: float = 10.0
    origin: float = 0.0
    decode_origin: Optional[float] = None

    def __post_init__(self):
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "heatmap_size", tuple(int(v) for v in self.heatmap_size))
        if len(self.input_size) != 2 or len(self.heatmap_size) != 2:
            raise ValueError(f"input_size and heatmap_size must be (H, W), got {self.input_size}, "
                             f"{self.heatmap_size}")

    def encode(self, points: ArrayLike) -> torch.Tensor:
        """``(B, K, 2)`` ``(x, y)`` in the input grid (NaN: missing) -> ``(B, K, h, w)`` targets on the points' device.

        Float32 unless the points are float64.
        """
        points = torch.as_tensor(points)
        if not points.is_floating_point():
            points = points.float()
        on_grid = rescale_points(points, self.input_size, self.heatmap_size)    # (B, K, 2) heatmap grid
        return encode_heatmaps(on_grid, self.heatmap_size, self.sigma, self.origin)

    def decode(self, heatmaps: torch.Tensor, method: str = "argmax") -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, K, h, w)`` -> ``(points (B, K, 2)`` ``(x, y)`` in the input grid, float32``, scores (B, K))``.

        ``method``: ``"argmax"`` or ``"subpixel"`` (see :func:`decode_heatmaps`).
        """
        if tuple(heatmaps.shape[-2:]) != self.heatmap_size:
            raise ValueError(f"heatmaps of size {tuple(heatmaps.shape[-2:])} given to a codec for "
                             f"{self.heatmap_size}; build the codec with the output's own size")
        read_origin = self.origin if self.decode_origin is None else self.decode_origin
        coords, scores = decode_heatmaps(heatmaps, method, origin=read_origin)    # (B, K, 2) heatmap grid
        return rescale_points(coords, self.heatmap_size, self.input_size), scores


@dataclass(frozen=True)
class LandmarkCodec:
    """A run's codec: points in the network-input grid <-> heatmaps on the grid of any of its outputs.

    Args:
        input_size: ``(H, W)`` of the network input, the grid the points live in.
        sigma: Gaussian standard deviation in pixels of each output's own grid (the same on every output, as the
            paper's sigma = 10 on both).
        origin, decode_origin: as :class:`HeatmapCodec`.
        method: ``"argmax"`` (the paper's NMS) or ``"subpixel"`` (see :func:`decode_heatmaps`).

    ``encode(points (B, K, 2), heatmap_size (h, w)) -> (B, K, h, w)``; ``decode(heatmaps (B, K, h, w)) ->
    (points (B, K, 2) input grid, scores (B, K))``, the grid read from the heatmaps' shape.
    """

    input_size: Tuple[int, int]
    sigma: float = 10.0
    origin: float = 0.0
    decode_origin: Optional[float] = None
    method: str = "argmax"

    def __post_init__(self):
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if self.method not in ("argmax", "subpixel"):
            raise ValueError(f"method must be 'argmax' or 'subpixel', got {self.method!r}")

    def grid(self, heatmap_size: Tuple[int, int]) -> HeatmapCodec:
        """The :class:`HeatmapCodec` of one output grid ``(h, w)``."""
        return HeatmapCodec(self.input_size, tuple(heatmap_size), self.sigma, self.origin, self.decode_origin)

    def encode(self, points: ArrayLike, heatmap_size: Tuple[int, int]) -> torch.Tensor:
        """Targets ``(B, K, h, w)`` of ``points`` ``(B, K, 2)`` (input grid) on the grid ``heatmap_size``."""
        return self.grid(heatmap_size).encode(points)

    def decode(self, heatmaps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, K, h, w)`` heatmaps of any output -> ``(points (B, K, 2)`` input grid``, scores (B, K))``."""
        return self.grid(tuple(heatmaps.shape[-2:])).decode(heatmaps, self.method)
