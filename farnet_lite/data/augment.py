"""Data augmentation on the GPU: one random affine per image, applied to the image AND its landmarks.

The paper augments the hand dataset "following Payer et al." and the spine dataset "following BoostNet"; the
cephalograms are not augmented (§4.2). Everything here is batched torch, so it runs wherever the batch is
(CPU or GPU), after the prepared cache (`farnet_lite.data.cache`) has delivered images at the input size.

Geometry. For each image we draw ONE forward transform in pixel coordinates,

    q = R(angle) * s * (p - c) + c + d          p, q: (x, y) pixel centres at integers, c = ((W-1)/2, (H-1)/2)

(3x3 matrix M, `affine_matrices`). Landmarks are mapped with M; the image is resampled with the inverse of M
through `F.affine_grid` / `F.grid_sample(align_corners=False)`, whose normalised coordinates are converted
from pixel coordinates by u = (2x + 1) / W - 1 -- the same pixel-centre convention as
`farnet_lite.heatmaps.rescale_points`. Because both use the same matrix they can never disagree.
With y pointing down, a positive angle turns the image clockwise as displayed.

Landmarks that leave the image (outside [-0.5, W - 0.5] x [-0.5, H - 0.5]) become NaN: their heatmap
targets are then all zero (farnet_lite.heatmaps) and they are excluded from the loss's peak.

Intensity (`random_intensity`) works on float images in [0, 1], i.e. BEFORE
`farnet_lite.preprocess.normalize_images`; a training step is: uint8 cache batch -> float / 255 -> `augment`
-> ImageNet normalisation -> model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (all uniform, drawn per image).

    rotation_deg: angle in [-rotation_deg, rotation_deg] degrees.
    scale:        isotropic zoom factor in [scale[0], scale[1]] (> 1 magnifies).
    translation:  shift in [-t, t] * W along x and [-t, t] * H along y (a fraction of the image size).
    gamma:        x -> x ** g, g in [gamma[0], gamma[1]].
    contrast:     x -> (x - mean) * c + mean, c in [contrast[0], contrast[1]] (mean of that image).
    brightness:   x -> x + b, b in [-brightness, brightness] (images in [0, 1]).
    noise_std:    additive Gaussian noise of this standard deviation.
    """
    rotation_deg: float = 0.0
    scale: Tuple[float, float] = (1.0, 1.0)
    translation: float = 0.0
    gamma: Tuple[float, float] = (1.0, 1.0)
    contrast: Tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.0
    noise_std: float = 0.0

    @property
    def geometric(self) -> bool:
        return self.rotation_deg != 0 or tuple(self.scale) != (1.0, 1.0) or self.translation != 0

    @property
    def intensity(self) -> bool:
        return (tuple(self.gamma) != (1.0, 1.0) or tuple(self.contrast) != (1.0, 1.0)
                or self.brightness != 0 or self.noise_std != 0)

    @classmethod
    def none(cls) -> "AugmentConfig":
        """ISBI 2015 cephalograms: the paper trains them without augmentation (§4.2)."""
        return cls()

    @classmethod
    def hand(cls) -> "AugmentConfig":
        """Hand radiographs, "following Payer et al." (MedIA 2019).

        Payer's MedicalDataAugmentationTool hand X-ray dataset draws a translation of +-10 px, a rotation of
        +-0.2 rad, a 5x5-grid elastic deformation and an intensity shift/scale of +-0.15 on images normalised
        to [-1, 1]; his later landmark setups (same tool) use rotation +-0.25 rad (~14.3 deg) and scale
        0.8-1.2. We keep the affine part only (landmarks then map exactly): rotation +-15 deg, scale
        0.85-1.15, translation +-4 % (~ +-20 px at 512x512), and Payer's +-0.15 shift/scale expressed on
        [0, 1] images: brightness +-0.075, contrast 0.85-1.15.
        """
        return cls(rotation_deg=15.0, scale=(0.85, 1.15), translation=0.04, contrast=(0.85, 1.15),
                   brightness=0.075)

    @classmethod
    def spine(cls) -> "AugmentConfig":
        """AASCE spine radiographs, "following BoostNet" (Wu et al., MICCAI 2017).

        BoostNet's paper gives no augmentation ranges we could verify, so this is our documented choice:
        mild, anatomy-preserving ranges (no flips, which would swap the left/right vertebra corners):
        rotation +-10 deg, scale 0.9-1.1, translation +-5 %, gamma 0.8-1.25, contrast 0.8-1.2, brightness
        +-0.1 -- the spine radiographs vary much more in exposure than in pose.
        """
        return cls(rotation_deg=10.0, scale=(0.9, 1.1), translation=0.05, gamma=(0.8, 1.25),
                   contrast=(0.8, 1.2), brightness=0.1)


def _uniform(shape, low, high, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Uniform draws in [low, high), made on the generator's device (CPU by default) so that a seed gives
    the same augmentation on any device, then moved to `device`."""
    source = generator.device if generator is not None else torch.device(device)
    u = torch.rand(shape, generator=generator, device=source, dtype=torch.float64)
    return (low + (high - low) * u).to(device)


def affine_matrices(angle_deg: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                    size: Tuple[int, int]) -> torch.Tensor:
    """Forward pixel-space transforms ``q = R(angle) * scale * (p - c) + c + shift`` -> `(B, 3, 3)` float64.

    Args:
        angle_deg: (B,) degrees (clockwise as displayed, y down); scale: (B,); shift: (B, 2) pixels (dx, dy).
        size: (H, W) of the image; c = ((W - 1) / 2, (H - 1) / 2) is its centre in pixel-centre coordinates.
    """
    angle = torch.as_tensor(angle_deg, dtype=torch.float64) * (math.pi / 180.0)
    scale = torch.as_tensor(scale, dtype=torch.float64, device=angle.device)
    shift = torch.as_tensor(shift, dtype=torch.float64, device=angle.device)
    height, width = size
    centre = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], dtype=torch.float64, device=angle.device)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    linear = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    offset = centre - linear @ centre + shift                                                # (B, 2)
    matrices = torch.zeros(angle.shape[0], 3, 3, dtype=torch.float64, device=angle.device)
    matrices[:, :2, :2] = linear
    matrices[:, :2, 2] = offset
    matrices[:, 2, 2] = 1.0
    return matrices


def _pixel_to_normalised(size: Tuple[int, int], device) -> torch.Tensor:
    """(3, 3) matrix taking pixel (x, y) to grid_sample's u = (2x + 1) / W - 1 (align_corners=False)."""
    height, width = size
    return torch.tensor([[2.0 / width, 0.0, 1.0 / width - 1.0],
                         [0.0, 2.0 / height, 1.0 / height - 1.0],
                         [0.0, 0.0, 1.0]], dtype=torch.float64, device=device)


def warp_affine(images: torch.Tensor, points: Optional[torch.Tensor], matrices: torch.Tensor,
                padding_mode: str = "zeros") -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Apply forward pixel transforms to images and landmarks (deterministic part of `random_affine`).

    Args:
        images: (B, C, H, W) float.
        points: (B, K, 2) (x, y) in the image's pixel grid, or None.
        matrices: (B, 3, 3) forward transforms (from `affine_matrices`), input pixel -> output pixel.
    Returns:
        (B, C, H, W) resampled images (bilinear, zeros outside), (B, K, 2) mapped points with NaN for those
        outside [-0.5, W - 0.5] x [-0.5, H - 0.5].
    """
    size = (images.shape[-2], images.shape[-1])
    matrices = matrices.to(device=images.device, dtype=torch.float64)
    norm = _pixel_to_normalised(size, images.device)
    # affine_grid wants, for every OUTPUT pixel, where to read in the INPUT: N M^-1 N^-1, normalised coords.
    theta = (norm @ torch.linalg.inv(matrices) @ torch.linalg.inv(norm))[:, :2, :]
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    if points is None:
        return warped, None
    p = points.to(device=images.device, dtype=torch.float64)
    q = p @ matrices[:, :2, :2].transpose(1, 2) + matrices[:, None, :2, 2]        # (B, K, 2)
    inside = ((q[..., 0] >= -0.5) & (q[..., 0] <= size[1] - 0.5)
              & (q[..., 1] >= -0.5) & (q[..., 1] <= size[0] - 0.5))
    q = torch.where(inside[..., None], q, torch.full_like(q, float("nan")))
    return warped, q.to(points.dtype if points.is_floating_point() else torch.float32)


def random_affine(images: torch.Tensor, points: Optional[torch.Tensor],
                  generator: Optional[torch.Generator] = None, rotation_deg: float = 15.0,
                  scale: Tuple[float, float] = (0.9, 1.1), translation: float = 0.1,
                  padding_mode: str = "zeros") -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Random rotation, isotropic scale and translation, one per image, applied jointly to images and points.

    Args:
        images: (B, C, H, W) float tensor on any device.
        points: (B, K, 2) (x, y) pixel coordinates in the same grid (NaN = missing), or None.
        generator: torch.Generator for reproducible draws (drawn on its device; default global RNG).
        rotation_deg: angle uniform in [-rotation_deg, rotation_deg].
        scale: zoom factor uniform in [scale[0], scale[1]].
        translation: shift uniform in [-translation, translation] times W (x) and H (y).
    Returns:
        (images, points) transformed; points leaving the image become NaN (module docstring).
    """
    batch, device = images.shape[0], images.device
    height, width = images.shape[-2:]
    angle = _uniform((batch,), -rotation_deg, rotation_deg, generator, device)
    zoom = _uniform((batch,), scale[0], scale[1], generator, device)
    shift = _uniform((batch, 2), -translation, translation, generator, device)
    shift = shift * torch.tensor([width, height], dtype=torch.float64, device=device)
    return warp_affine(images, points, affine_matrices(angle, zoom, shift, (height, width)), padding_mode)


def random_intensity(images: torch.Tensor, generator: Optional[torch.Generator] = None,
                     gamma: Tuple[float, float] = (0.8, 1.25), contrast: Tuple[float, float] = (0.8, 1.2),
                     brightness: float = 0.1, noise_std: float = 0.0) -> torch.Tensor:
    """Random gamma, contrast, brightness and Gaussian noise per image; result clamped to [0, 1].

    Args:
        images: (B, C, H, W) float in [0, 1] (before ImageNet normalisation).
        gamma, contrast, brightness, noise_std: see `AugmentConfig`.
    Returns:
        (B, C, H, W) float in [0, 1]; the same transform for all channels of one image.
    """
    batch, device, dtype = images.shape[0], images.device, images.dtype
    shape = (batch, 1, 1, 1)
    g = _uniform(shape, gamma[0], gamma[1], generator, device).to(dtype)
    c = _uniform(shape, contrast[0], contrast[1], generator, device).to(dtype)
    b = _uniform(shape, -brightness, brightness, generator, device).to(dtype)
    out = images.clamp(0.0, 1.0) ** g
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * c + mean + b
    if noise_std > 0:
        source = generator.device if generator is not None else device
        noise = torch.randn(images.shape, generator=generator, device=source, dtype=dtype).to(device)
        out = out + noise_std * noise
    return out.clamp(0.0, 1.0)


def augment(images: torch.Tensor, points: Optional[torch.Tensor], config: AugmentConfig,
            generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Apply an `AugmentConfig`: `random_affine` then `random_intensity` (each only if enabled).

 images (B, C, H, W) float in [0, 1]; points (B, K, 2) or None.
    """
    if config.geometric:
        images, points = random_affine(images, points, generator, config.rotation_deg, config.scale,
                                       config.translation)
    if config.intensity:
        images = random_intensity(images, generator, config.gamma, config.contrast, config.brightness,
                                  config.noise_std)
    return images, points
