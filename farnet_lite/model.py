"""FARNet (paper §3, Fig. 2): backbone -> MSFA (§3.1, Fig. 3) -> FR (§3.1); the architecture only.

Data flow for the default DenseNet-121 and K landmarks (H, W multiples of 32)::

    images (B, 3, H, W) -> backbone levels L0..L5 (farnet_lite.backbones)
    MSFA  up path 1    L5 -> L2   every level fused to 256 channels
          down path    L2 -> L5   3x3 stride-2 conv doubles the width, fused back to the backbone's width
          up path 2    L5 -> L1   256, 256, 256, then 128 at L2 and 64 at L1    -> (B, 64, H/2, W/2)
          head         3x3 + 1x1                                                 -> coarse (B, K, H/2, W/2)
    FR    concat(up(64-ch features), C0 (32 ch), up(coarse heatmaps)) = 64 + 32 + K channels
          head         3x3 + 1x1                                                 -> final  (B, K, H, W)

Decisions. The paper fixes the topology and the widths 256 / 128 / 64; where it leaves a choice we follow the official
``model.py`` (github JuvenileInWind/FARNet) and say so, or mark the choice "ours". The official code hard-codes
DenseNet-121 widths; ours derive them from ``Backbone.channels`` (C_l below) and equal the official ones for
DenseNet-121 (tests/test_model.py::test_densenet121_conv_widths_match_official).

    ==  =========================================================================  ========================
    #   decision                                                                   source
    ==  =========================================================================  ========================
    1   C0 = 3x3 conv 3->32 + BN + ReLU on the input image (``c0_kernel=1``:       paper §3.1.2
        the official 1x1)                                                          (official: 1x1)
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
        fused back to D_l = C_l (DenseNet-121: 512, 1024, 1024); D_2 = 256.        DenseNet-121 widths
        The paper fuses back to the doubled width (512, 1024, 2048); the official  official; D_l = C_l
        code uses 1024 at L5. D_l = C_l is a kit rule for the other backbones:     for the others: ours
        it equals the paper's rule for ResNet, not for VGG (512, 512, 512) or
        DenseNet-169 (512, 1280, 1664)
    10  the L5 fusion of the down path is a 1x1 conv (2304 -> 1024), as at L3 and  paper §3.1 ("compressed
        L4 (``l5_kernel=3``: the official 3x3, 21.2 M of its parameters)          back ... by a 1x1");
                                                                                   official: 3x3
    11  up path 2 starts with a 1x1 conv D_5 -> 256                                official
    12  heads (MSFA and FR): 3x3 conv -> 1x1 conv, no BN and no ReLU (a linear      official
        pair, kept for parity); the FR 3x3 keeps its width (115 -> 115 for K=19)
    13  what the official file builds but never calls is not built: two convs      official
        (conv_33_refine2, conv_33_last2) and the unused 1x1 / 3x3 branch of
        each of its three fusion blocks (17.9 M parameters in all)
    14  FR* (refine="fr_naive"): FR without the MSFA heatmaps and without the      paper (Table 2)
        MSFA head; refine=None: MSFA alone, final = its half-resolution heatmaps
    15  MSFA(+) (fusion="add"): the skip is projected by a 1x1 Conv-BN-ReLU to     paper §3.1.1 (add,
        the running width, summed, then a 3x3 Conv-BN-ReLU to the MSFA width       then 3x3; same widths);
        (Table 2's MSFA(+) follows FPN / PAN with the same channel sizes)          projection side ours
    16  inputs normalised with ImageNet mean/std **after** /255                   ours (official omits
        (``farnet_lite.preprocess.normalize_images``)                              /255; see there)
    17  pretrained=True loads torchvision's IMAGENET1K_V1 weights                  official
        (``pretrained=True`` in its torchvision)
    18  new layers use PyTorch's default initialisation                            official
    ==  =========================================================================  ========================

The shared pieces (Conv-BN-ReLU, the Fig. 3 blocks :class:`~farnet_lite.layers.UpBlock` /
:class:`~farnet_lite.layers.DownBlock`, the heads, :class:`~farnet_lite.layers.HeatmapOutput`) live in
``farnet_lite.layers``; the Table 2 factory ``build_model`` in ``farnet_lite.systems``.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from farnet_lite.backbones import Backbone, Pretrained, build_backbone, check_input_size
from farnet_lite.layers import DownBlock, HeatmapOutput, UpBlock, conv_bn_relu, heatmap_head, upsample_like


class MSFA(nn.Module):
    """Multi-scale feature aggregation (§3.1, Fig. 2): up path, down path, second up path.

    Args:
        channels: ``Backbone.channels`` (L0..L5); L1..L5 are used.
        fusion: "concat" (MSFA) or "add" (MSFA(+)).
        l5_kernel: kernel of the down path's L5 fusion: 1 (paper, decision 10) or 3 (official code).
        width, l2_width, l1_width: the paper's 256 / 128 / 64.

    ``forward(levels)`` takes the backbone's ``[L0, ..., L5]`` and returns ``(B, l1_width, H/2, W/2)``.
    """

    def __init__(self, channels: Sequence[int], fusion: str = "concat", l5_kernel: int = 1, width: int = 256,
                 l2_width: int = 128, l1_width: int = 64):
        super().__init__()
        c1, c2, c3, c4, c5 = channels[1:]
        d = (width, c3, c4, c5)  # widths of the down-path features D2..D5 (decision 9)
        # up path 1 (top-down), L5 -> L2, every level 256 wide (Fig. 3(a) blocks)
        self.top = nn.Sequential(conv_bn_relu(c5, c5 // 2, 3), conv_bn_relu(c5 // 2, width, 1))
        self.up1 = nn.ModuleList([UpBlock(width, c, width, fusion) for c in (c4, c3, c2)])  # -> L4, L3, L2
        # down path (bottom-up), L2 -> L5 (Fig. 3(b) blocks; the L5 fusion's kernel: decision 10)
        self.down = nn.ModuleList([DownBlock(d[i], width, d[i + 1], fusion, kernel_size=l5_kernel if i == 2 else 1)
                                   for i in range(3)])  # -> L3, L4, L5
        # up path 2 (top-down), L5 -> L1
        self.top2 = conv_bn_relu(d[3], width, 1)
        self.up2 = nn.ModuleList([UpBlock(width, d[2], width, fusion), UpBlock(width, d[1], width, fusion),
                                  UpBlock(width, d[0], l2_width, fusion), UpBlock(l2_width, c1, l1_width, fusion)])
        self.out_channels = l1_width

    def forward(self, levels: List[Optional[Tensor]]) -> Tensor:
        _, l1, l2, l3, l4, l5 = levels
        # up path 1: u[l] is (B, 256, H / 2**l, W / 2**l)
        u5 = self.top(l5)  # (B, 256, H/32, W/32)
        u4 = self.up1[0](u5, l4)  # (B, 256, H/16, W/16)
        u3 = self.up1[1](u4, l3)  # (B, 256, H/8, W/8)
        u2 = self.up1[2](u3, l2)  # (B, 256, H/4, W/4) = D2
        # down path: D_l = fuse(strided conv of D_{l-1}, u_l)
        d3 = self.down[0](u2, u3)  # (B, C3, H/8, W/8)     512 for DenseNet-121
        d4 = self.down[1](d3, u4)  # (B, C4, H/16, W/16)   1024
        d5 = self.down[2](d4, u5)  # (B, C5, H/32, W/32)   1024 (fusion of 2304: 1x1, official 3x3)
        # up path 2, down to L1
        x = self.top2(d5)  # (B, 256, H/32, W/32)
        x = self.up2[0](x, d4)  # (B, 256, H/16, W/16)
        x = self.up2[1](x, d3)  # (B, 256, H/8, W/8)
        x = self.up2[2](x, u2)  # (B, 128, H/4, W/4)
        return self.up2[3](x, l1)  # (B, 64, H/2, W/2)


class FR(nn.Module):
    """FR (§3.1): full-resolution heatmaps from up-sampled MSFA features, C0 and (FR only) MSFA heatmaps.

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
    """The structural choices of a FARNet; ``FARNet(config)`` builds it (nanoGPT style).

    Checkpoints store the run's ``TrainConfig`` (system, backbone, landmark count), from which
    ``farnet_lite.systems.build_model`` derives this config again; it is not saved on its own.
    """
    num_landmarks: int
    backbone: str = "densenet121"
    fusion: str = "concat"  # "concat" (MSFA) | "add" (MSFA(+))
    refine: Optional[str] = "fr"  # "fr" (MSFA+FR) | "fr_naive" (MSFA+FR*) | None (MSFA alone)
    c0_kernel: int = 3  # C0 on the input image: 3x3 (§3.1.2) | 1 (official model.py)
    l5_kernel: int = 1  # MSFA down path's L5 fusion: 1x1 (§3.1) | 3 (official model.py)

    def __post_init__(self):
        if self.fusion not in ("concat", "add"):
            raise ValueError(f"fusion must be 'concat' or 'add', got {self.fusion!r}")
        if self.refine not in ("fr", "fr_naive", None):
            raise ValueError(f"refine must be 'fr', 'fr_naive' or None, got {self.refine!r}")
        for name in ("c0_kernel", "l5_kernel"):
            if getattr(self, name) not in (1, 3):
                raise ValueError(f"{name} must be 1 or 3, got {getattr(self, name)!r}")
        k = self.num_landmarks
        if isinstance(k, bool) or not isinstance(k, numbers.Real) or int(k) != k or k < 1:
            raise ValueError(f"num_landmarks must be a positive integer, got {self.num_landmarks!r}")
        object.__setattr__(self, "num_landmarks", int(self.num_landmarks))


class FARNet(nn.Module):
    """FARNet (Fig. 2): backbone -> MSFA -> FR, and its Table 2 variants.

    Args:
        config: a :class:`FARNetConfig` -- K, backbone name, fusion ("concat": MSFA, "add": MSFA(+)) and refine
            ("fr": FR, coarse-to-fine; "fr_naive": FR*; None: MSFA alone).
        backbone: optionally a built ``Backbone`` named ``config.backbone`` (e.g. one shared by several notebook
            models); its L0 is needed by FR and FR*. Default: built from ``config.backbone``.
        pretrained: False, True or a path (see ``farnet_lite.backbones.build_backbone``); only without ``backbone``.

    ``forward(images (B, 3, H, W))`` -> :class:`~farnet_lite.layers.HeatmapOutput`; images normalised by
    ``farnet_lite.preprocess.normalize_images``. ``farnet_lite.systems.build_model`` builds it by Table 2 name.
    """

    def __init__(self, config: FARNetConfig, backbone: Optional[Backbone] = None, pretrained: Pretrained = False):
        super().__init__()
        if not isinstance(config, FARNetConfig):
            raise TypeError(f"FARNet takes a FARNetConfig, got {type(config).__name__}; e.g. "
                            f"FARNet(FARNetConfig(num_landmarks=19)) or farnet_lite.systems.build_model")
        if backbone is not None:  # a ready-made backbone
            if pretrained is not False:
                raise ValueError("pretrained applies to a backbone given by name; load weights into yours first")
            if backbone.name != config.backbone:
                raise ValueError(f"the backbone given is {backbone.name!r} but config.backbone is "
                                 f"{config.backbone!r}; make them agree")
            self.backbone = backbone
        else:
            self.backbone = build_backbone(config.backbone, pretrained, level0=config.refine is not None,
                                           c0_kernel=config.c0_kernel)
        if config.refine is not None and self.backbone.channels[0] == 0:
            raise ValueError(f"refine={config.refine!r} needs the backbone's L0; build it with level0=True")
        self.config = config
        self.msfa = MSFA(self.backbone.channels, config.fusion, config.l5_kernel)
        k, f = config.num_landmarks, self.msfa.out_channels
        self.msfa_head = heatmap_head(f, k) if config.refine != "fr_naive" else None
        self.fr = (FR(f, self.backbone.channels[0], k, use_heatmaps=config.refine == "fr")
                   if config.refine is not None else None)

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
