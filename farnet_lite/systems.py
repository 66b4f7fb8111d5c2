"""The architectures of the paper's Table 2 by name: ``build_model``, :data:`SYSTEMS`, parameter counts.

Introduced in notebook 05_fr_module_and_coarse_to_fine. ``python -m farnet_lite.systems`` prints the parameter
count of every system (on DenseNet-121) and of FARNet on every backbone of Table 1.

This module sits above ``farnet_lite.model`` (FARNet and its variants) and ``farnet_lite.baselines`` (U-Net, FPN);
a checkpoint's ``TrainConfig`` (system, backbone, landmark count) is turned back into a model through it
(``farnet_lite.checkpoint.build_model_from_config``).
"""
from __future__ import annotations

from typing import List, Tuple

from torch import nn

from farnet_lite.backbones import BACKBONES, Pretrained
from farnet_lite.baselines import FPN, UNet
from farnet_lite.layers import count_parameters
from farnet_lite.model import FARNet, FARNetConfig

SYSTEMS = ("unet", "fpn", "msfa_add", "msfa", "msfa_fr_naive", "msfa_fr")
"""The architectures of the paper's Table 2, in its row order (the AW / EWC rows only change the loss)."""


def build_model(system: str, num_landmarks: int, backbone: str = "densenet121",
                pretrained: Pretrained = False, c0_kernel: int = 3) -> nn.Module:
    """One architecture of the paper's Table 2 by name (see :data:`SYSTEMS`).

    Introduced in notebook 05_fr_module_and_coarse_to_fine.

    "unet" (from scratch: ``backbone`` and ``pretrained`` are ignored), "fpn" (on ``backbone``), "msfa_add"
    (MSFA(+)), "msfa", "msfa_fr_naive" (MSFA+FR*), "msfa_fr" (MSFA+FR, i.e. FARNet). ``c0_kernel``: the C0
    convolution of FR / FR* (3 as §3.1.2, 1 as the official code).
    """
    if system == "unet":
        return UNet(num_landmarks)
    if system == "fpn":
        return FPN(num_landmarks, pretrained=pretrained, backbone=backbone)
    if system == "msfa_add":
        return FARNet(FARNetConfig(num_landmarks, backbone, fusion="add", refine=None), pretrained=pretrained)
    if system == "msfa":
        return FARNet(FARNetConfig(num_landmarks, backbone, fusion="concat", refine=None), pretrained=pretrained)
    if system == "msfa_fr_naive":
        return FARNet(FARNetConfig(num_landmarks, backbone, fusion="concat", refine="fr_naive",
                                   c0_kernel=c0_kernel), pretrained=pretrained)
    if system == "msfa_fr":
        return FARNet(FARNetConfig(num_landmarks, backbone, fusion="concat", refine="fr", c0_kernel=c0_kernel),
                      pretrained=pretrained)
    raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")


def parameter_table(num_landmarks: int = 19) -> List[Tuple[str, str, int]]:
    """``(system, backbone, parameters)`` for every Table 2 system on DenseNet-121 and FARNet on every backbone.

    ``python -m farnet_lite.systems`` prints it.
    """
    rows = [(s, "-" if s == "unet" else "densenet121", count_parameters(build_model(s, num_landmarks)))
            for s in SYSTEMS]
    rows += [("msfa_fr", b, count_parameters(build_model("msfa_fr", num_landmarks, b)))
             for b in BACKBONES if b != "densenet121"]
    return rows


if __name__ == "__main__":
    for system, net, n in parameter_table():
        print(f"{system:<14} {net:<12} {n:>12,d}")
