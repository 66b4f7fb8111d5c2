"""Heatmap losses: L2 (Eq. 2), the exponential weighted center loss EWC (Eq. 3), Adaptive Wing, coarse-to-fine.

All three per-pixel losses take ``pred`` and ``target`` of shape ``(B, K, H, W)`` and return the mean over every
element (batch, landmarks and pixels) as a scalar tensor. They are computed in float32 even when ``pred`` comes
out of a bf16/fp16 autocast region, because ``alpha ** y`` and the squared error lose too much in half precision.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch

from farnet_lite.heatmaps import LandmarkCodec


def l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 2: mean squared error over all pixels, ``mean((y - y_hat)^2)``.
    """
    return torch.mean((pred.float() - target.float()) ** 2)


def ewc_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 40.0) -> torch.Tensor:
    """Paper Eq. 3, exponential weighted center loss: ``mean((y - y_hat)^2 * alpha^y)``, alpha = 40.

    The weight ``alpha^y`` is 1 far from a landmark (y = 0) and alpha at its centre (y = 1), so the few pixels
    near the landmark are no longer drowned by the many background pixels (paper Fig. 4 plots this loss).
    """
    target = target.float()
    return torch.mean((pred.float() - target) ** 2 * torch.pow(alpha, target))


def adaptive_wing_loss(pred: torch.Tensor, target: torch.Tensor, omega: float = 14.0, theta: float = 0.5,
                       epsilon: float = 1.0, alpha: float = 2.1) -> torch.Tensor:
    """Adaptive Wing loss (Wang, Bo & Fuxin, ICCV 2019, Eq. 6) with the paper's defaults.

    ``AW(y, y_hat) = omega * ln(1 + (|y - y_hat| / epsilon)^(alpha - y))``  if ``|y - y_hat| < theta``,
    ``A * |y - y_hat| - C`` otherwise, with A and C chosen so both pieces meet smoothly at theta:
    ``A = omega / (1 + (theta/epsilon)^(alpha - y)) * (alpha - y) * (theta/epsilon)^(alpha - y - 1) / epsilon`` and
    ``C = theta * A - omega * ln(1 + (theta/epsilon)^(alpha - y))``. The weighted loss map of that paper (a x10
    weight on dilated foreground) is not part of the loss itself and is not applied here.
    """
    target = target.float()
    delta = (pred.float() - target).abs()
    power = alpha - target
    ratio = theta / epsilon
    a = omega / (1.0 + ratio ** power) * power * ratio ** (power - 1.0) / epsilon
    c = theta * a - omega * torch.log1p(ratio ** power)
    small = omega * torch.log1p((delta / epsilon) ** power)
    large = a * delta - c
    return torch.mean(torch.where(delta < theta, small, large))


def heatmap_loss_fn(name: str, alpha: float = 40.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-output loss called by name: ``"ewc"`` (paper default, with ``alpha``), ``"l2"`` or ``"aw"``.
    """
    if name == "ewc":
        return lambda pred, target: ewc_loss(pred, target, alpha=alpha)
    if name == "l2":
        return l2_loss
    if name == "aw":
        return adaptive_wing_loss
    raise ValueError(f"loss must be 'ewc', 'l2' or 'aw', got {name!r}")


def coarse_to_fine_loss(output, points: torch.Tensor, input_size: Optional[Tuple[int, int]] = None,
                        sigma: float = 10.0, loss: str = "ewc", alpha: float = 40.0, origin: float = 0.0,
                        return_parts: bool = False, mask: Optional[torch.Tensor] = None,
                        codec: Optional[LandmarkCodec] = None):
    """Coarse-to-fine supervision (§3.4): the loss of every supervised output, each against its own targets.

    Each output (``output.final`` and, for MSFA+FR, ``output.coarse`` at half resolution) gets Gaussian targets
    drawn on *its own* pixel grid, with the same sigma in that grid's pixels, by the
    :class:`~farnet_lite.heatmaps.HeatmapCodec` of that grid -- the codec inference decodes with. The targets are
    built on the outputs' device inside the step, from coordinates -- no per-sample numpy maps.

    Args:
        output: a ``HeatmapOutput(final, coarse)`` (``coarse`` may be None), or a tuple of tensors.
        points: ``(B, K, 2)`` landmark ``(x, y)`` in the network-input grid; NaN for a landmark outside the
            image (its target is all zero: "no peak here" is what the network should learn).
        input_size: ``(H, W)`` of the network input.
        sigma: Gaussian standard deviation in pixels of each output's own grid (Eq. 1).
        origin: first pixel-centre coordinate of the target grids (``OFFICIAL_ORIGIN`` for the official targets).
        loss: ``"ewc"`` (Eq. 3, default), ``"l2"`` (Eq. 2) or ``"aw"`` (Adaptive Wing).
        codec: a run's :class:`~farnet_lite.heatmaps.LandmarkCodec`, in place of ``input_size``, ``sigma`` and
            ``origin`` (training passes the one it decodes with).
        return_parts: also return a dict of the per-output losses (as floats) for logging.
        mask: ``(B, K)`` bool, False for a landmark that is not annotated (missing in the dataset): its heatmap
            is left out of the loss (the mean runs over the kept heatmaps' pixels) instead of being pulled
            towards an all-zero target. None: every heatmap counts.

    Returns:
        The summed scalar loss, or ``(loss, parts)`` with ``return_parts=True``.
    """
    if codec is None:
        if input_size is None:
            raise ValueError("coarse_to_fine_loss needs the input size (H, W) the points live in, or a codec")
        codec = LandmarkCodec(input_size, sigma, origin)
    elif input_size is not None:
        raise ValueError("give coarse_to_fine_loss either input_size (with sigma, origin) or a codec, not both")
    loss_fn = heatmap_loss_fn(loss, alpha)
    names = getattr(output, "_fields", None) or [f"output{i}" for i in range(len(output))]
    total = None
    parts: Dict[str, float] = {}
    for name, heatmaps in zip(names, output):
        if heatmaps is None:
            continue
        targets = codec.encode(points.float(), tuple(heatmaps.shape[-2:]))   # (B, K, h, w) on this output's grid
        if mask is None:
            value = loss_fn(heatmaps, targets)
        elif bool(mask.any()):
            value = loss_fn(heatmaps[mask], targets[mask])                   # (M, h, w): kept heatmaps only
        else:
            value = heatmaps.float().sum() * 0.0                             # nothing annotated in the batch
        if return_parts:  # float() waits for the device: only when asked for
            parts[name] = float(value.detach())
        total = value if total is None else total + value
    if total is None:
        raise ValueError("output holds no heatmaps to supervise")
    return (total, parts) if return_parts else total


def ewc_weight(y, alpha: float = 40.0):
    """The EWC per-pixel weight ``alpha ** y`` of Eq. 3 (the factor of the loss in paper Fig. 4); numbers or tensors.
    """
    if isinstance(y, torch.Tensor):
        return torch.pow(alpha, y)
    return math.pow(alpha, y) if isinstance(y, (int, float)) else alpha ** y
