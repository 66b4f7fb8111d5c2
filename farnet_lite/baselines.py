"""The baselines of the paper's Table 2: a U-Net trained from scratch and an FPN on DenseNet-121.

 Both return a :class:`farnet_lite.layers.HeatmapOutput` whose
``final`` is ``(B, K, H, W)`` at the input resolution and whose ``coarse`` is None, so they train, decode and
evaluate exactly like FARNet.

U-Net (Ronneberger et al., 2015), widths 64, 128, 256, 512, 1024 (four 2x2 max-pools; 31.0 M parameters for
K = 19). Two changes from the 2015 paper, both now standard: 3x3 convolutions are padded ("same") so the output
has the input's size, and each is followed by BatchNorm. Up-sampling is the paper's 2x2 transposed convolution
that halves the width; the head is a 1x1 convolution to K heatmaps.

FPN (Lin et al., 2017) on the backbone's levels L2-L5 (strides 4-32): 1x1 lateral convolutions to 256 channels,
a top-down path with nearest-neighbour x2 up-sampling and element-wise sums, then a 3x3 smoothing convolution on
the finest map P2, which is the only one used (smoothing P3-P5 too would add weights that get no gradient).
P2 is up-sampled bilinearly (x4, align_corners=False) to the input resolution and a head of 3x3 conv
(256 -> 64) + ReLU + 1x1 conv (64 -> K) gives the heatmaps. As in the FPN paper there is no BN or ReLU in the
pyramid itself.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from farnet_lite.backbones import Pretrained, build_backbone, check_input_size
from farnet_lite.layers import HeatmapOutput, conv_bn_relu, upsample_like

UNET_WIDTHS = (64, 128, 256, 512, 1024)
"""Channel widths of the U-Net's five resolutions (stride 1 to 16), as in Ronneberger et al."""


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two (3x3 conv -> BN -> ReLU): one U-Net stage."""
    return nn.Sequential(conv_bn_relu(in_channels, out_channels, 3), conv_bn_relu(out_channels, out_channels, 3))


class UNet(nn.Module):
    """U-Net from scratch (Table 2 baseline): ``(B, 3, H, W)`` -> ``HeatmapOutput((B, K, H, W), None)``."""

    def __init__(self, num_landmarks: int, widths: Sequence[int] = UNET_WIDTHS):
        super().__init__()
        w = tuple(widths)
        self.encoder = nn.ModuleList([double_conv(c_in, c_out) for c_in, c_out in zip((3,) + w[:-1], w)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(len(w) - 1)])
        self.decoder = nn.ModuleList([double_conv(2 * w[i], w[i]) for i in range(len(w) - 1)])
        self.head = nn.Conv2d(w[0], num_landmarks, 1)

    def forward(self, images: Tensor) -> HeatmapOutput:
        check_input_size(images)
        skips, x = [], images
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))  # (B, w[i], H / 2**i, W / 2**i)
            skips.append(x)
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](torch.cat([skips[i], self.up[i](x)], dim=1))  # (B, w[i], H / 2**i, W / 2**i)
        return HeatmapOutput(self.head(x), None)  # (B, K, H, W)


class FPN(nn.Module):
    """Feature pyramid network on a backbone's L2-L5 (Table 2 baseline, DenseNet-121 in the paper).

    ``(B, 3, H, W)`` -> ``HeatmapOutput((B, K, H, W), None)``.
    """

    def __init__(self, num_landmarks: int, pretrained: Pretrained = False, backbone: str = "densenet121",
                 width: int = 256, head_width: int = 64):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained, level0=False)
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in self.backbone.channels[2:]])  # L2..L5
        self.smooth = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Sequential(nn.Conv2d(width, head_width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(head_width, num_landmarks, 1))

    def forward(self, images: Tensor) -> HeatmapOutput:
        check_input_size(images)
        levels = self.backbone(images)[2:]  # L2 (B, 256, H/4, W/4) ... L5 (B, 1024, H/32, W/32)
        p = self.lateral[-1](levels[-1])  # P5: (B, 256, H/32, W/32)
        for lateral, level in zip(reversed(self.lateral[:-1]), reversed(levels[:-1])):
            p = lateral(level) + F.interpolate(p, size=level.shape[-2:], mode="nearest")  # P4, P3, P2
        p2 = self.smooth(p)  # (B, 256, H/4, W/4)
        return HeatmapOutput(self.head(upsample_like(p2, images)), None)  # (B, K, H, W)
