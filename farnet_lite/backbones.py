"""Backbones: torchvision VGG / ResNet / DenseNet as a pyramid of feature levels L0-L5 (paper §3.1, §4.3).

Every backbone returns six feature maps, one per level, so that the decoder (MSFA, FR, FPN) never needs to
know which network produced them; it only reads :attr:`Backbone.channels`::

    level   stride   VGG-16/19 (§4.3)       ResNet-101/152           DenseNet-121/169
    L0      1        block 1 (64)           C0 stem (32)             C0 stem (32)
    L1      2        block 2 (128)          conv1, pre-BN (64)       conv0, pre-BN (64)
    L2      4        block 3 (256)          layer1 (256)             denseblock1 (256)
    L3      8        block 4 (512)          layer2 (512)             denseblock2 (512)
    L4      16       block 5 (512)          layer3 (1024)            denseblock3 (1024 | 1280)
    L5      32       pool 5 (512)           layer4 (2048)            norm5, no ReLU (1024 | 1664)

* VGG's five convolution blocks map to L0-L4 (paper §4.3); L5 is VGG's last max-pool (no weights).
* ResNet and DenseNet have no stride-1 features, so L0 is the paper's C0: a new 3x3 convolution on the
  input image (§3.1.2; 32 channels, + BN + ReLU, randomly initialised even when ``pretrained`` is set;
  ``c0_kernel=1`` builds the official code's 1x1 instead). Pass
  ``level0=False`` when the consumer ignores L0 (MSFA alone, FPN): the stem is then not built (no unused
  parameters) and L0 is ``None`` with ``channels[0] == 0``.
* L1 of ResNet/DenseNet is the raw output of the stride-2 stem convolution, before its BN/ReLU, and L5 of
  DenseNet is ``norm5`` without the final ReLU: both as in the official FARNet ``model.py``.

``pretrained`` is ``False`` (random init), ``True`` (torchvision's ``IMAGENET1K_V1`` weights, the weights of
the paper's era, downloaded into torch's hub cache) or the path of a state dict of the *torchvision* model,
e.g. ``torch.save(torchvision.models.densenet121(weights="IMAGENET1K_V1").state_dict(), "d121.pth")`` or
the hub cache file itself (``densenet121-a639ec97.pth``; its old-style DenseNet keys such as
``denselayer1.norm.1.weight`` are renamed). Loading is strict: a missing, unexpected or mis-shaped key stops with
one sentence naming the file, so no weight is ever dropped silently. Offline, ``pretrained=True`` stops with one
sentence naming the weights file, torchvision's cache folder (``torch.hub.get_dir()/checkpoints``) and the two
ways on: ``--pretrained PATH`` or ``--pretrained false``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch
import torchvision
from torch import Tensor, nn

from farnet_lite.layers import conv_bn_relu

BACKBONES = ("vgg16", "vgg19", "resnet101", "resnet152", "densenet121", "densenet169")
"""The backbones of the paper's Table 1 (§4.3)."""

STRIDES = (1, 2, 4, 8, 16, 32)
"""Stride of levels L0..L5 with respect to the input image."""

C0_CHANNELS = 32
"""Width of the paper's C0 stem (a 3x3 convolution on the input) for ResNet and DenseNet."""

Pretrained = Union[bool, str, os.PathLike]


def check_input_size(images: Tensor) -> None:
    """Raise a clear ValueError unless ``images`` is ``(B, 3, H, W)`` with H and W multiples of 32.

 Five stride-2 stages halve the image five times, and every decoder
    adds an up-sampled level to the level above it, so both sides must divide by 32 exactly.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}; "
                         "convert grey (B, 1, H, W) images with farnet_lite.preprocess.normalize_images")
    h, w = images.shape[-2:]
    if h % 32 or w % 32:
        fix_h, fix_w = -(-h // 32) * 32, -(-w // 32) * 32
        raise ValueError(f"input size {h}×{w} is not a multiple of 32; resize or pad to {fix_h}×{fix_w}")


class Backbone(nn.Module):
    """A torchvision network cut into levels L0-L5.

    Attributes:
        name: torchvision name, one of :data:`BACKBONES`.
        channels: channel count of L0..L5 (``channels[0] == 0`` when L0 is not built).
        strides: :data:`STRIDES`.

    ``forward(images (B, 3, H, W))`` returns a list ``[L0, ..., L5]`` where ``Ll`` is
    ``(B, channels[l], H / 2**l, W / 2**l)`` (L0 may be ``None``).
    """

    strides = STRIDES

    def __init__(self, name: str, channels: Tuple[int, ...]):
        super().__init__()
        self.name = name
        self.channels = channels


class VGGBackbone(Backbone):
    """VGG-16/19 (no BN): its five conv blocks are L0-L4 and its 5th max-pool is L5 (paper §4.3)."""

    def __init__(self, name: str, net: torchvision.models.VGG):
        layers = list(net.features)
        pools = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]  # 5 pools
        block_convs = [[m for m in layers[a:b] if isinstance(m, nn.Conv2d)] for a, b in zip([0] + pools, pools)]
        channels = tuple(convs[-1].out_channels for convs in block_convs) + (block_convs[-1][-1].out_channels,)
        super().__init__(name, channels)
        self.features = net.features  # same module names as torchvision ("features.0.weight", ...)
        self.block_ends = tuple(pools)  # index of the max-pool that ends each block

    def forward(self, images: Tensor) -> List[Optional[Tensor]]:
        levels, x, start = [], images, 0
        for end in self.block_ends:
            for layer in self.features[start:end]:
                x = layer(x)
            levels.append(x)  # L0..L4: (B, 64..512, H / 2**l, W / 2**l)
            start = end
        levels.append(self.features[self.block_ends[-1]](x))  # L5: pool 5, (B, 512, H/32, W/32)
        return levels


class ResNetBackbone(Backbone):
    """ResNet-101/152: L1 = conv1 (pre-BN), L2-L5 = layer1-layer4; L0 = the C0 stem."""

    def __init__(self, name: str, net: torchvision.models.ResNet, level0: bool = True, c0_kernel: int = 3):
        stages = (net.layer1, net.layer2, net.layer3, net.layer4)
        out = tuple(stage[-1].conv3.out_channels for stage in stages)  # Bottleneck blocks
        super().__init__(name, (C0_CHANNELS if level0 else 0, net.conv1.out_channels) + out)
        self.stem0 = conv_bn_relu(3, C0_CHANNELS, kernel_size=c0_kernel) if level0 else None
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, images: Tensor) -> List[Optional[Tensor]]:
        l0 = self.stem0(images) if self.stem0 is not None else None  # (B, 32, H, W)
        l1 = self.conv1(images)  # (B, 64, H/2, W/2), before BN/ReLU
        x = self.maxpool(self.relu(self.bn1(l1)))  # (B, 64, H/4, W/4)
        l2 = self.layer1(x)  # (B, 256, H/4, W/4)
        l3 = self.layer2(l2)  # (B, 512, H/8, W/8)
        l4 = self.layer3(l3)  # (B, 1024, H/16, W/16)
        l5 = self.layer4(l4)  # (B, 2048, H/32, W/32)
        return [l0, l1, l2, l3, l4, l5]


class DenseNetBackbone(Backbone):
    """DenseNet-121/169: L1 = conv0 (pre-BN), L2-L4 = dense blocks 1-3, L5 = norm5; L0 = the C0 stem."""

    def __init__(self, name: str, net: torchvision.models.DenseNet, level0: bool = True, c0_kernel: int = 3):
        f = net.features
        out = (f.transition1.conv.in_channels, f.transition2.conv.in_channels,
               f.transition3.conv.in_channels, f.norm5.num_features)
        super().__init__(name, (C0_CHANNELS if level0 else 0, f.conv0.out_channels) + out)
        self.stem0 = conv_bn_relu(3, C0_CHANNELS, kernel_size=c0_kernel) if level0 else None
        self.features = f  # same module names as torchvision ("features.conv0.weight", ...)

    def forward(self, images: Tensor) -> List[Optional[Tensor]]:
        f = self.features
        l0 = self.stem0(images) if self.stem0 is not None else None  # (B, 32, H, W)
        l1 = f.conv0(images)  # (B, 64, H/2, W/2), before BN/ReLU (official)
        l2 = f.denseblock1(f.pool0(f.relu0(f.norm0(l1))))  # (B, 256, H/4, W/4)
        l3 = f.denseblock2(f.transition1(l2))  # (B, 512, H/8, W/8)
        l4 = f.denseblock3(f.transition2(l3))  # (B, 1024, H/16, W/16)   (1280 for DenseNet-169)
        l5 = f.norm5(f.denseblock4(f.transition3(l4)))  # (B, 1024, H/32, W/32) (1664), no ReLU
        return [l0, l1, l2, l3, l4, l5]


def build_backbone(name: str, pretrained: Pretrained = False, level0: bool = True, c0_kernel: int = 3) -> Backbone:
    """Build one of :data:`BACKBONES` as a :class:`Backbone` exposing levels L0-L5.

    Args:
        name: "vgg16", "vgg19", "resnet101", "resnet152", "densenet121" or "densenet169".
        pretrained: False (random init), True (torchvision ImageNet weights, ``IMAGENET1K_V1``; needs network
            once) or a path to a state dict of the torchvision model (see the module docstring).
        level0: build the C0 stem of ResNet/DenseNet (VGG always returns its block 1 as L0).
        c0_kernel: kernel size of C0: 3 as §3.1.2 (the default), or 1 as the official ``model.py``.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    net = getattr(torchvision.models, name)(weights=None)
    if pretrained is True:
        path, state = _download_imagenet_weights(name)
        _load_checked(net, name, state, path)
    elif isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained).expanduser()
        _load_checked(net, name, _read_state_dict(path, name), path)
    elif pretrained is not False:
        raise TypeError(f"pretrained must be False, True or a path to a state dict, got {pretrained!r}")
    if name.startswith("vgg"):
        return VGGBackbone(name, net)
    if name.startswith("resnet"):
        return ResNetBackbone(name, net, level0, c0_kernel)
    return DenseNetBackbone(name, net, level0, c0_kernel)


def imagenet_weights_file(name: str) -> Path:
    """Where torchvision keeps the ``IMAGENET1K_V1`` file of ``name``: ``torch.hub.get_dir()/checkpoints/<file>``."""
    url = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"].url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _download_imagenet_weights(name: str) -> Tuple[Path, dict]:
    """``(cache file, state dict)`` of torchvision's IMAGENET1K_V1 weights of ``name`` (downloaded if missing).

    Offline, one sentence names the file, the cache folder and the two ways on (``--pretrained PATH`` /
    ``--pretrained false``).
    """
    url = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"].url
    file = imagenet_weights_file(name)
    try:
        state = torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True, weights_only=True)
    except Exception as err:  # no network, proxy, HTTP error, truncated file, bad hash ...
        raise RuntimeError(
            f"the ImageNet weights {file.name} of {name} are not in torchvision's cache {file.parent} and could "
            f"not be downloaded from {url} ({type(err).__name__}: {err}); copy that file into {file.parent}, "
            f"or pass its path with --pretrained PATH (pretrained='/path/to/{file.name}'), or train from random "
            "initialisation with --pretrained false") from err
    return file, state


def _read_state_dict(path: Path, name: str) -> dict:
    """Read a local state dict file of the torchvision model ``name``, with one-sentence errors."""
    how = _how_to_save(name)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {path} does not exist; {how} or use pretrained=False")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"could not read {path} as a PyTorch state dict ({type(err).__name__}); {how}") from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a dict of tensors); {how}")
    return state


def _load_checked(net: nn.Module, name: str, state: dict, path: Path) -> None:
    """Load ``state`` (old DenseNet key names renamed) into ``net`` strictly: a missing, unexpected or
    mis-shaped key is one-sentence ValueError naming ``path``, never a silently dropped weight."""
    how = _how_to_save(name)
    state = _rename_legacy_densenet_keys(state)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        examples = ", ".join(repr(k) for k in (missing + unexpected + wrong_shape)[:3])
        raise ValueError(
            f"{path} is not a state dict of torchvision's {name}: {len(missing)} missing, {len(unexpected)} "
            f"unexpected and {len(wrong_shape)} mis-shaped keys (e.g. {examples}); {how}")
    net.load_state_dict(state, strict=True)


def _how_to_save(name: str) -> str:
    return f"save one with torch.save(torchvision.models.{name}(weights=...).state_dict(), path)"


_LEGACY_DENSENET_KEY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def _rename_legacy_densenet_keys(state: dict) -> dict:
    """Old torchvision DenseNet files name ``denselayer1.norm.1.weight`` what is now ``denselayer1.norm1.weight``."""
    return {_LEGACY_DENSENET_KEY.sub(r"\1\2.", key): value for key, value in state.items()}
