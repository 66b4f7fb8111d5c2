"""The architectures of the paper's Table 2 by name: ``build_model``, :data:`SYSTEMS`, parameter counts.

 ``python -m farnet_lite.systems`` prints the parameter
count of every system (on DenseNet-121) and of FARNet on every backbone of Table 1.

This module sits above ``farnet_lite.model`` (FARNet and its variants) and ``farnet_lite.baselines`` (U-Net, FPN);
a run's ``TrainConfig`` (system, backbone, landmark count, kernels) is turned into its model here
(:func:`build_model_from_config`), for training and when a checkpoint is loaded. The names of the systems and
backbones are checked here, where the model is built (the config does not import the model).
"""
from __future__ import annotations

from typing import List, Tuple

from torch import nn

from farnet_lite.backbones import BACKBONES, Pretrained
from farnet_lite.baselines import FPN, UNet
from farnet_lite.config import TrainConfig
from farnet_lite.layers import count_parameters
from farnet_lite.model import FARNet, FARNetConfig

SYSTEMS = ("unet", "fpn", "msfa_add", "msfa", "msfa_fr_naive", "msfa_fr")
"""The architectures of the paper's Table 2, in its row order (the AW / EWC rows only change the loss)."""


def build_model(system: str, num_landmarks: int, backbone: str = "densenet121",
                pretrained: Pretrained = False, c0_kernel: int = 3, l5_kernel: int = 1) -> nn.Module:
    """One architecture of the paper's Table 2 by name (see :data:`SYSTEMS`).

    "unet" (from scratch: ``backbone`` and ``pretrained`` are ignored), "fpn" (on ``backbone``), "msfa_add"
    (MSFA(+)), "msfa", "msfa_fr_naive" (MSFA+FR*), "msfa_fr" (MSFA+FR, i.e. FARNet). ``c0_kernel``: the C0
    convolution of FR / FR* (3 as §3.1.2, 1 as the official code); ``l5_kernel``: MSFA's L5 fusion in the down
    path (1 as §3.1, 3 as the official code). An unknown system or backbone is refused with the choices.
    """
    check_names(system, backbone)
    msfa = dict(c0_kernel=c0_kernel, l5_kernel=l5_kernel)
    if system == "unet":
        return UNet(num_landmarks)
    if system == "fpn":
        return FPN(num_landmarks, pretrained=pretrained, backbone=backbone)
    if system == "msfa_add":
        return FARNet(FARNetConfig(num_landmarks, backbone, fusion="add", refine=None, l5_kernel=l5_kernel),
                      pretrained=pretrained)
    if system == "msfa":
        return FARNet(FARNetConfig(num_landmarks, backbone, fusion="concat", refine=None, l5_kernel=l5_kernel),
                      pretrained=pretrained)
    if system == "msfa_fr_naive":
        return FARNet(FARNetConfig(num_landmarks, backbone, fusion="concat", refine="fr_naive", **msfa),
                      pretrained=pretrained)
    if system == "msfa_fr":
        return FARNet(FARNetConfig(num_landmarks, backbone, fusion="concat", refine="fr", **msfa),
                      pretrained=pretrained)
    raise AssertionError(system)   # check_names refused it


def check_names(system: str, backbone: str) -> None:
    """Refuse an unknown system (:data:`SYSTEMS`) or backbone (:data:`~farnet_lite.backbones.BACKBONES`), with the
    choices (``TrainConfig.system`` / ``backbone``, ``--system`` / ``--backbone``)."""
    for name, value, choices in (("system", system, SYSTEMS), ("backbone", backbone, BACKBONES)):
        if value not in choices:
            raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(choices)}.")


def build_model_from_config(config: TrainConfig, pretrained=None, num_landmarks=None) -> nn.Module:
    """The model of a run: :func:`build_model` with the config's system, landmark count (or ``num_landmarks``,
    e.g. the one a checkpoint stores), backbone, weights (or ``pretrained``) and kernels."""
    return build_model(config.system, num_landmarks or config.num_landmarks, backbone=config.backbone,
                       pretrained=config.pretrained if pretrained is None else pretrained,
                       c0_kernel=config.c0_kernel, l5_kernel=config.msfa_l5_kernel)


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
