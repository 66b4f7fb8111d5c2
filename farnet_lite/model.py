"""FARNet (paper §3, Fig. 2): backbone -> MSFA (§3.1, Fig. 3) -> FR (§3.1), plus input normalisation.

Introduced in notebooks 04_msfa_module (MSFA, MSFA(+)) and 05_fr_module_and_coarse_to_fine (FR, FR*, FARNet).

Data flow for the default DenseNet-121 and K landmarks (H, W multiples of 32)::

    images (B, 3, H, W) -> backbone levels L0..L5 (farnet_lite.backbones)
    MSFA  up path 1    L5 -> L2   every level fused to 256 channels
          down path    L2 -> L5   3x3 stride-2 conv doubles the width, fused back to the backbone's width
          up path 2    L5 -> L1   256, 256, 256, then 128 at L2 and 64 at L1    -> (B, 64, H/2, W/2)
          head         3x3 + 1x1                                                 -> coarse (B, K, H/2, W/2)
    FR    concat(up(64-ch features), C0 (32 ch), up(coarse heatmaps)) = 64 + 32 + K channels
          head         3x3 + 1x1                                                 -> final  (B, K, H, W)

Decisions. The paper fixes the topology and the widths 256 / 128 / 64; where it is silent we follow the official
``model.py`` (github JuvenileInWind/FARNet) and say so, or mark the choice "ours". The official code hard-codes
DenseNet-121 widths; ours derive them from ``Backbone.channels`` (C_l below) and equal the official ones for
DenseNet-121 (tests/test_model.py::test_densenet121_conv_widths_match_official).

    ==  =========================================================================  ========================
    #   decision                                                                   source
    ==  =========================================================================  ========================
    1   C0 = 3x3 conv 3->32 + BN + ReLU on the input image                         paper (official: 1x1)
    2   L1 skip = stride-2 stem conv output, taken before its BN/ReLU              official (DenseNet);
                                                                                   ours for ResNet
    3   DenseNet L5 = norm5 output, without the ReLU torchvision applies before    official
        its classifier
    4   VGG: its 5 conv blocks are L0-L4, L5 is its 5th max-pool; VGG's block 1    paper §4.3; L5 ours
        replaces C0
    5   every MSFA conv (and C0) is Conv -> BN -> ReLU, the conv keeping its bias  official
        (redundant before BN, kept so parameter counts match)
    6   L5 start of up path 1: 3x3 C5 -> C5/2, then 1x1 -> 256 (1024->512->256)    paper 3x3+1x1; widths
                                                                                   official, C5/2 ours
    7   up-sampling: bilinear x2, align_corners=False (nn.Upsample's default)      official
    8   concat order: [running feature, skip feature]                              official
    9   down path: 3x3 stride-2 conv D_{l-1} -> 2*D_{l-1}, concat with up path 1,  paper "doubling";
        fused back to D_l = C_l (DenseNet-121: 512, 1024, 1024); D_2 = 256         official widths
    10  the L5 fusion of the down path is a 3x3 conv (2304 -> 1024), others 1x1    official
    11  up path 2 starts with a 1x1 conv D_5 -> 256                                official
    12  heads (MSFA and FR): 3x3 conv -> 1x1 conv, no BN and no ReLU (a linear      official
        pair, kept for parity); the FR 3x3 keeps its width (115 -> 115 for K=19)
    13  the official file's two never-called convs (conv_33_refine2,               official
        conv_33_last2) are not built
    14  FR* (refine="fr_naive"): FR without the MSFA heatmaps and without the      paper (Table 2)
        MSFA head; refine=None: MSFA alone, final = its half-resolution heatmaps
    15  MSFA(+) (fusion="add"): the skip is projected by a 1x1 Conv-BN-ReLU to     ours (paper silent,
        the running width, summed, then the same conv as in MSFA                   no official code)
    16  inputs normalised with ImageNet mean/std **after** /255                   ours (official omits
                                                                                   /255; see below)
    17  pretrained=True loads torchvision's IMAGENET1K_V1 weights                  official
        (``pretrained=True`` in its torchvision)
    18  new layers use PyTorch's default initialisation                            official
    ==  =========================================================================  ========================

Known divergence in the input scaling: the official ``data.py`` subtracts the ImageNet mean (0.485, ...) from
0-255 pixel values and divides by the std (0.229, ...) without dividing by 255 first, so its inputs span about
[-2.1, 1130] instead of [-2.1, 2.6]. :func:`normalize_images` does it right; ``official_scaling=True`` reproduces
the official values for notebook experiments. (The official code also feeds OpenCV's BGR order with RGB
statistics; for grey radiographs, whose three channels are equal, that changes nothing.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from farnet_lite.backbones import BACKBONES, Backbone, Pretrained, build_backbone, check_input_size, conv_bn_relu

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel (R, G, B) mean of ImageNet in [0, 1] units, the statistics of torchvision's pretrained weights."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel (R, G, B) standard deviation of ImageNet in [0, 1] units."""

SYSTEMS = ("unet", "fpn", "msfa_add", "msfa", "msfa_fr_naive", "msfa_fr")
"""The architectures of the paper's Table 2, in its row order (the AW / EWC rows only change the loss)."""


class HeatmapOutput(NamedTuple):
    """What every model returns (see docs/CONTRACTS.md).

    Introduced in notebook 05_fr_module_and_coarse_to_fine.

    final: ``(B, K, h, w)`` the heatmaps to decode; full input resolution for FR / FR* / U-Net / FPN, half
        resolution for MSFA alone.
    coarse: ``(B, K, H/2, W/2)`` the separately supervised MSFA heatmaps of the FR variant, else ``None``.
    """
    final: Tensor
    coarse: Optional[Tensor] = None


def normalize_images(images: Tensor, official_scaling: bool = False) -> Tensor:
    """uint8 (0-255) or float ([0, 1]) images, grey or RGB, -> ``(B, 3, H, W)`` float, ImageNet-normalised.

    Introduced in notebook 03_backbones_feature_pyramid.

    Args:
        images: ``(B, 1, H, W)`` or ``(B, 3, H, W)``; uint8 in 0..255 or floating point in [0, 1].
        official_scaling: reproduce the official code, which normalises 0-255 values with the [0, 1]
            statistics (no /255): ``(255 * x - mean) / std``. Only for notebook comparisons.

    Returns:
        ``(B, 3, H, W)``: ``(x - IMAGENET_MEAN) / IMAGENET_STD`` with ``x`` in [0, 1]; grey is repeated to RGB.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (B, 1, H, W) or (B, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.float() / 255.0
    elif images.is_floating_point():
        # The range check reads a value back from the device, so it is made on the CPU only (no GPU sync per step).
        if images.device.type == "cpu" and images.numel() and images.max() > 1.5:
            raise ValueError(f"float images must be in [0, 1] but reach {images.max().item():.1f}; "
                             "divide them by 255 or pass uint8 images")
        x = images
    else:
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    if official_scaling:
        x = x * 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


def upsample_like(x: Tensor, ref: Tensor) -> Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref`` (align_corners=False: pixel edges stay aligned)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def heatmap_head(in_channels: int, num_landmarks: int) -> nn.Sequential:
    """3x3 conv (same width) -> 1x1 conv to K heatmaps; no BN, no ReLU (decision 12).

    Introduced in notebook 04_msfa_module.
    """
    return nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.Conv2d(in_channels, num_landmarks, 1))


class Fuse(nn.Module):
    """Merge a running feature map with a skip connection of the same size (Fig. 3).

    Introduced in notebook 04_msfa_module.

    ``concat`` (MSFA):  ``conv(cat([x, skip]))``            with ``x_ch + skip_ch -> out_ch`` channels.
    ``add`` (MSFA(+)):  ``conv(x + lateral(skip))``         lateral: 1x1 ``skip_ch -> x_ch``; conv ``x_ch -> out_ch``.
    """

    def __init__(self, x_ch: int, skip_ch: int, out_ch: int, fusion: str = "concat", kernel_size: int = 1):
        super().__init__()
        self.lateral = conv_bn_relu(skip_ch, x_ch, 1) if fusion == "add" else None
        self.conv = conv_bn_relu(x_ch if fusion == "add" else x_ch + skip_ch, out_ch, kernel_size)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        if self.lateral is None:
            return self.conv(torch.cat([x, skip], dim=1))
        return self.conv(x + self.lateral(skip))


class MSFA(nn.Module):
    """Multi-scale feature aggregation (§3.1, Fig. 2): up path, down path, second up path.

    Introduced in notebook 04_msfa_module.

    Args:
        channels: ``Backbone.channels`` (L0..L5); L1..L5 are used.
        fusion: "concat" (MSFA) or "add" (MSFA(+)).
        width, l2_width, l1_width: the paper's 256 / 128 / 64.

    ``forward(levels)`` takes the backbone's ``[L0, ..., L5]`` and returns ``(B, l1_width, H/2, W/2)``.
    """

    def __init__(self, channels: Sequence[int], fusion: str = "concat", width: int = 256,
                 l2_width: int = 128, l1_width: int = 64):
        super().__init__()
        c1, c2, c3, c4, c5 = channels[1:]
        d = (width, c3, c4, c5)  # widths of the down-path features D2..D5 (decision 9)
        # up path 1 (top-down), L5 -> L2, every level 256 wide
        self.top = nn.Sequential(conv_bn_relu(c5, c5 // 2, 3), conv_bn_relu(c5 // 2, width, 1))
        self.up1 = nn.ModuleList([Fuse(width, c, width, fusion) for c in (c4, c3, c2)])  # -> L4, L3, L2
        # down path (bottom-up), L2 -> L5
        self.down = nn.ModuleList([conv_bn_relu(d[i], 2 * d[i], 3, stride=2) for i in range(3)])
        self.down_fuse = nn.ModuleList([Fuse(2 * d[i], width, d[i + 1], fusion, kernel_size=3 if i == 2 else 1)
                                        for i in range(3)])  # -> L3, L4, L5
        # up path 2 (top-down), L5 -> L1
        self.top2 = conv_bn_relu(d[3], width, 1)
        self.up2 = nn.ModuleList([Fuse(width, d[2], width, fusion), Fuse(width, d[1], width, fusion),
                                  Fuse(width, d[0], l2_width, fusion), Fuse(l2_width, c1, l1_width, fusion)])
        self.out_channels = l1_width

    def forward(self, levels: List[Optional[Tensor]]) -> Tensor:
        _, l1, l2, l3, l4, l5 = levels
        # up path 1: u[l] is (B, 256, H / 2**l, W / 2**l)
        u5 = self.top(l5)  # (B, 256, H/32, W/32)
        u4 = self.up1[0](upsample_like(u5, l4), l4)  # (B, 256, H/16, W/16)
        u3 = self.up1[1](upsample_like(u4, l3), l3)  # (B, 256, H/8, W/8)
        u2 = self.up1[2](upsample_like(u3, l2), l2)  # (B, 256, H/4, W/4) = D2
        # down path: D_l = fuse(strided conv of D_{l-1}, u_l)
        d3 = self.down_fuse[0](self.down[0](u2), u3)  # (B, C3, H/8, W/8)     512 for DenseNet-121
        d4 = self.down_fuse[1](self.down[1](d3), u4)  # (B, C4, H/16, W/16)   1024
        d5 = self.down_fuse[2](self.down[2](d4), u5)  # (B, C5, H/32, W/32)   1024 (3x3 fusion of 2304)
        # up path 2, down to L1
        x = self.top2(d5)  # (B, 256, H/32, W/32)
        x = self.up2[0](upsample_like(x, d4), d4)  # (B, 256, H/16, W/16)
        x = self.up2[1](upsample_like(x, d3), d3)  # (B, 256, H/8, W/8)
        x = self.up2[2](upsample_like(x, u2), u2)  # (B, 128, H/4, W/4)
        return self.up2[3](upsample_like(x, l1), l1)  # (B, 64, H/2, W/2)


class FeatureRefinement(nn.Module):
    """FR (§3.1): full-resolution heatmaps from up-sampled MSFA features, C0 and (FR only) MSFA heatmaps.

    Introduced in notebook 05_fr_module_and_coarse_to_fine.

    ``forward(features (B, F, H/2, W/2), c0 (B, C0, H, W), heatmaps (B, K, H/2, W/2) | None) -> (B, K, H, W)``;
    ``heatmaps`` is None for FR* (``use_heatmaps=False``).
    """

    def __init__(self, feature_ch: int, c0_ch: int, num_landmarks: int, use_heatmaps: bool = True):
        super().__init__()
        self.use_heatmaps = use_heatmaps
        self.head = heatmap_head(feature_ch + c0_ch + (num_landmarks if use_heatmaps else 0), num_landmarks)

    def forward(self, features: Tensor, c0: Tensor, heatmaps: Optional[Tensor] = None) -> Tensor:
        parts = [upsample_like(features, c0), c0]  # (B, 64, H, W), (B, 32, H, W)
        if self.use_heatmaps:
            parts.append(upsample_like(heatmaps, c0))  # (B, K, H, W)
        return self.head(torch.cat(parts, dim=1))  # (B, 64 + 32 [+ K], H, W) -> (B, K, H, W)


@dataclass(frozen=True)
class FARNetConfig:
    """The structural choices of a FARNet (saved with checkpoints; ``FARNet(**asdict(config))`` rebuilds it).

    Introduced in notebook 05_fr_module_and_coarse_to_fine.
    """
    num_landmarks: int
    backbone: str = "densenet121"
    fusion: str = "concat"  # "concat" (MSFA) | "add" (MSFA(+))
    refine: Optional[str] = "fr"  # "fr" (MSFA+FR) | "fr_naive" (MSFA+FR*) | None (MSFA alone)


class FARNet(nn.Module):
    """FARNet (Fig. 2): backbone -> MSFA -> FR, and its Table 2 variants.

    Introduced in notebook 05_fr_module_and_coarse_to_fine.

    Args:
        num_landmarks: K.
        backbone: one of ``farnet_lite.backbones.BACKBONES``, or a built ``Backbone`` (its L0 is needed by FR
            and FR*; with refine=None a C0 stem in it would stay unused).
        fusion: "concat" (MSFA) or "add" (MSFA(+)).
        refine: "fr" (FR, coarse-to-fine), "fr_naive" (FR*), or None (MSFA alone).
        pretrained: False, True or a path (see ``farnet_lite.backbones.build_backbone``).

    ``forward(images (B, 3, H, W))`` -> :class:`HeatmapOutput`; images normalised by :func:`normalize_images`.
    """

    def __init__(self, num_landmarks: int, backbone: Union[str, Backbone] = "densenet121", fusion: str = "concat",
                 refine: Optional[str] = "fr", pretrained: Pretrained = False):
        super().__init__()
        if fusion not in ("concat", "add"):
            raise ValueError(f"fusion must be 'concat' or 'add', got {fusion!r}")
        if refine not in ("fr", "fr_naive", None):
            raise ValueError(f"refine must be 'fr', 'fr_naive' or None, got {refine!r}")
        if int(num_landmarks) != num_landmarks or num_landmarks < 1:
            raise ValueError(f"num_landmarks must be a positive integer, got {num_landmarks!r}")
        if isinstance(backbone, Backbone):  # a ready-made backbone (e.g. one shared by several notebook models)
            if pretrained is not False:
                raise ValueError("pretrained applies to a backbone given by name; load weights into yours first")
            self.backbone = backbone
        else:
            self.backbone = build_backbone(backbone, pretrained, level0=refine is not None)
        if refine is not None and self.backbone.channels[0] == 0:
            raise ValueError(f"refine={refine!r} needs the backbone's L0; build it with level0=True")
        self.config = FARNetConfig(int(num_landmarks), self.backbone.name, fusion, refine)
        self.msfa = MSFA(self.backbone.channels, fusion)
        k, f = self.config.num_landmarks, self.msfa.out_channels
        self.msfa_head = heatmap_head(f, k) if refine != "fr_naive" else None
        self.fr = (FeatureRefinement(f, self.backbone.channels[0], k, use_heatmaps=refine == "fr")
                   if refine is not None else None)

    def forward(self, images: Tensor) -> HeatmapOutput:
        check_input_size(images)
        levels = self.backbone(images)  # [L0 (B, 32, H, W) | None, L1 (B, 64, H/2, W/2), ..., L5]
        features = self.msfa(levels)  # (B, 64, H/2, W/2)
        if self.fr is None:  # MSFA alone
            return HeatmapOutput(self.msfa_head(features), None)  # (B, K, H/2, W/2)
        if self.msfa_head is None:  # FR*
            return HeatmapOutput(self.fr(features, levels[0]), None)  # (B, K, H, W)
        coarse = self.msfa_head(features)  # (B, K, H/2, W/2)
        return HeatmapOutput(self.fr(features, levels[0], coarse), coarse)  # (B, K, H, W), coarse


def build_model(system: str, num_landmarks: int, backbone: str = "densenet121",
                pretrained: Pretrained = False) -> nn.Module:
    """One architecture of the paper's Table 2 by name (see :data:`SYSTEMS`).

    Introduced in notebook 05_fr_module_and_coarse_to_fine.

    "unet" (from scratch: ``backbone`` and ``pretrained`` are ignored), "fpn" (on ``backbone``), "msfa_add"
    (MSFA(+)), "msfa", "msfa_fr_naive" (MSFA+FR*), "msfa_fr" (MSFA+FR, i.e. FARNet).
    """
    from farnet_lite.baselines import FPN, UNet  # baselines import this module; imported here to avoid a cycle

    if system == "unet":
        return UNet(num_landmarks)
    if system == "fpn":
        return FPN(num_landmarks, pretrained=pretrained, backbone=backbone)
    if system == "msfa_add":
        return FARNet(num_landmarks, backbone, fusion="add", refine=None, pretrained=pretrained)
    if system == "msfa":
        return FARNet(num_landmarks, backbone, fusion="concat", refine=None, pretrained=pretrained)
    if system == "msfa_fr_naive":
        return FARNet(num_landmarks, backbone, fusion="concat", refine="fr_naive", pretrained=pretrained)
    if system == "msfa_fr":
        return FARNet(num_landmarks, backbone, fusion="concat", refine="fr", pretrained=pretrained)
    raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``).

    Introduced in notebook 05_fr_module_and_coarse_to_fine.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_table(num_landmarks: int = 19) -> List[Tuple[str, str, int]]:
    """``(system, backbone, parameters)`` for every Table 2 system on DenseNet-121 and FARNet on every backbone.

    Introduced in notebook 05_fr_module_and_coarse_to_fine; ``python -m farnet_lite.model`` prints it.
    """
    rows = [(s, "-" if s == "unet" else "densenet121", count_parameters(build_model(s, num_landmarks)))
            for s in SYSTEMS]
    rows += [("msfa_fr", b, count_parameters(FARNet(num_landmarks, b))) for b in BACKBONES if b != "densenet121"]
    return rows


if __name__ == "__main__":
    for system, net, n in parameter_table():
        print(f"{system:<14} {net:<12} {n:>12,d}")
