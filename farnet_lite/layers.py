"""The pieces every model of the kit shares: the output type, the Conv-BN-ReLU brick, resizing, heads, Fig. 3 blocks.

 FARNet (``farnet_lite.model``), the baselines (``farnet_lite.baselines``) and the backbones'
C0 stem build on this module; it imports nothing from the package, so every model module can import it.

Shapes are ``(B, C, H, W)``; spatial sizes are ``(H, W)``. Resizing is bilinear with ``align_corners=False``:
the edges of the pixel grids stay aligned (pixel centres at integers, 0-based), the convention of
``farnet_lite.heatmaps.rescale_points``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class HeatmapOutput(NamedTuple):
    """What every model returns.

    final: ``(B, K, h, w)`` the heatmaps to decode; full input resolution for FR / FR* / U-Net / FPN, half
        resolution for MSFA alone.
    coarse: ``(B, K, H/2, W/2)`` the separately supervised MSFA heatmaps of the FR variant, else ``None``.
    """
    final: Tensor
    coarse: Optional[Tensor] = None


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> nn.Sequential:
    """Conv2d (same padding, with bias as in the official code) -> BatchNorm2d -> ReLU.

    The building brick of C0, MSFA (notebook 04_msfa_module) and U-Net.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def upsample_like(x: Tensor, ref: Tensor) -> Tensor:
    """Bilinear resize of ``x`` ``(B, C, h, w)`` to the spatial size of ``ref`` (align_corners=False)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def heatmap_head(in_channels: int, num_landmarks: int) -> nn.Sequential:
    """3x3 conv (same width) -> 1x1 conv to K heatmaps; no BN, no ReLU (``farnet_lite.model``, decision 12)."""
    return nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.Conv2d(in_channels, num_landmarks, 1))


def fuse(x: Tensor, skip: Tensor, conv: nn.Module, lateral: Optional[nn.Module]) -> Tensor:
    """The fusion of Fig. 3: ``conv(cat([x, skip]))`` (MSFA, concat order [running, skip]: ``model.py`` decision 8)
    or, with a ``lateral`` 1x1 projection of the skip to x's width, ``conv(x + lateral(skip))`` (MSFA(+)).

    ``x`` and ``skip`` have the same spatial size; the result has ``conv``'s output width.
    """
    if lateral is None:
        return conv(torch.cat([x, skip], dim=1))  # (B, x_ch + skip_ch, h, w) -> (B, out_ch, h, w)
    return conv(x + lateral(skip))  # (B, x_ch, h, w) -> (B, out_ch, h, w)


class UpBlock(nn.Module):
    """Fig. 3(a): up-sample the running map ``x`` to the skip's size and fuse the two (§3.1).

    ``forward(x (B, x_ch, h', w'), skip (B, skip_ch, h, w)) -> (B, out_ch, h, w)``. ``fusion="concat"`` (MSFA):
    ``conv(cat([up(x), skip]))`` with ``x_ch + skip_ch -> out_ch`` channels; ``fusion="add"`` (MSFA(+)):
    ``conv(up(x) + lateral(skip))``, lateral a 1x1 Conv-BN-ReLU ``skip_ch -> x_ch``, conv a 3x3 ``x_ch -> out_ch``
    (§3.1.1: the additive baselines match resolution and width, add, then process the sum with a 3x3 convolution).
    """

    def __init__(self, x_ch: int, skip_ch: int, out_ch: int, fusion: str = "concat"):
        super().__init__()
        self.lateral = conv_bn_relu(skip_ch, x_ch, 1) if fusion == "add" else None
        self.conv = conv_bn_relu(x_ch if fusion == "add" else x_ch + skip_ch, out_ch, 3 if fusion == "add" else 1)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return fuse(upsample_like(x, skip), skip, self.conv, self.lateral)  # (B, out_ch, h, w)


class DownBlock(nn.Module):
    """Fig. 3(b): a 3x3 stride-2 Conv-BN-ReLU halves ``x``'s size and doubles its width, then fuse with the skip.

    ``forward(x (B, x_ch, 2h, 2w), skip (B, skip_ch, h, w)) -> (B, out_ch, h, w)``; the fusion is that of
    :class:`UpBlock` on ``(down(x), skip)`` with a ``kernel_size`` x ``kernel_size`` conv (3 for MSFA's L5); with
    ``fusion="add"`` the conv after the sum is always 3x3 (§3.1.1).
    """

    def __init__(self, x_ch: int, skip_ch: int, out_ch: int, fusion: str = "concat", kernel_size: int = 1):
        super().__init__()
        self.down = conv_bn_relu(x_ch, 2 * x_ch, 3, stride=2)
        self.lateral = conv_bn_relu(skip_ch, 2 * x_ch, 1) if fusion == "add" else None
        self.conv = conv_bn_relu(2 * x_ch if fusion == "add" else 2 * x_ch + skip_ch, out_ch,
                                 3 if fusion == "add" else kernel_size)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return fuse(self.down(x), skip, self.conv, self.lateral)  # (B, 2 x_ch, h, w) fused -> (B, out_ch, h, w)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
