"""Input normalisation: grey or RGB radiographs -> the ImageNet-normalised ``(B, 3, H, W)`` network input.

 ``farnet_lite.engine.runtime.network_input`` applies it to every batch.

The inputs are normalised with ImageNet mean/std **after** /255 (``farnet_lite.model``, decision 16, ours).
Known divergence in the input scaling: the official ``data.py`` (github JuvenileInWind/FARNet) subtracts the
ImageNet mean (0.485, ...) from 0-255 pixel values and divides by the std (0.229, ...) without dividing by 255
first, so its inputs span about [-2.1, 1130] instead of [-2.1, 2.6]. :func:`normalize_images` does it right;
``official_scaling=True`` reproduces the official values for notebook experiments. (The official code also feeds
OpenCV's BGR order with RGB statistics; for grey radiographs, whose three channels are equal, that changes
nothing.)
"""
from __future__ import annotations

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel (R, G, B) mean of ImageNet in [0, 1] units, the statistics of torchvision's pretrained weights."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel (R, G, B) standard deviation of ImageNet in [0, 1] units."""


def normalize_images(images: Tensor, official_scaling: bool = False) -> Tensor:
    """uint8 (0-255) or float ([0, 1]) images, grey or RGB, -> ``(B, 3, H, W)`` float, ImageNet-normalised.

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
