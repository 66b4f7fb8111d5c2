"""The pieces of a training step shared by train, evaluate, predict, benchmark: device, precision, batches.

Introduced in notebook 06_training_on_gpu.

Speed choices, each a config field:

* **Heatmaps on the device.** A batch is uint8 images + landmark coordinates; the Gaussian targets of every
  output are drawn inside the step by :func:`farnet_lite.losses.coarse_to_fine_loss` (the official code built
  19 float64 maps per image in numpy, at two resolutions, and copied them to the GPU every step).
* **Data in (GPU) memory.** The prepared cache holds uint8 images already at the input size (800x640x150 ISBI
  images are 77 MB), so the whole training set is put on the GPU once and a batch is one indexing operation;
  normalisation happens in the step. When it does not fit, DataLoader workers feed pinned batches instead.
* **Mixed precision** (bf16 where supported, else fp16 with a GradScaler; always fp32 on CPU),
  **channels_last** memory format, optional **torch.compile**.
"""
from __future__ import annotations

import math
import random
import warnings
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch import nn

from farnet_lite.config import TrainConfig


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: the GPU if there is one, else the CPU. Introduced in notebook 06_training_on_gpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"Device {name!r} was asked for but no CUDA GPU is available; use --device cpu.")
    return device


def resolve_precision(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device``, or None for fp32.

    ``auto`` is bf16 on GPUs that support it (Ampere and newer), else fp16 (with a GradScaler, see
    :func:`make_scaler`). Mixed precision is off on the CPU (slow there, and it would break the exact
    reproducibility that CPU runs promise). Introduced in notebook 06_training_on_gpu.
    """
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            warnings.warn(f"precision={precision!r} is ignored on the CPU; training in fp32.", stacklevel=2)
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def make_scaler(amp_dtype: Optional[torch.dtype], device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def network_input(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Grey images -> the normalised 3-channel network input.

    ``images``: ``(B, H, W)`` uint8 (straight from the cache), or ``(B, 1, H, W)`` float in [0, 1] (after
    augmentation). Returns ``(B, 3, H, W)`` float32, ImageNet mean/std normalised
    (``farnet_lite.model.normalize_images``), in channels_last memory format if asked.
    Introduced in notebook 06_training_on_gpu.
    """
    from farnet_lite.model import normalize_images

    if images.ndim == 3:
        images = images.unsqueeze(1)                                      # (B, 1, H, W)
    x = normalize_images(images)                                          # (B, 3, H, W)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def build_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    """Adam (paper) or Adadelta, with ``config.lr`` and ``config.weight_decay``."""
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adadelta(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_epochs``, then ``constant``; ``step`` (x0.1 from 2/3 of the epochs on, as
    the official code's ``MultiStepLR([200], 0.1)`` over 300 epochs); or ``cosine`` (half a cosine to 0).
    Introduced in notebook 06_training_on_gpu.
    """
    warm = config.warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if config.lr_schedule == "constant":
        return 1.0
    if config.lr_schedule == "step":
        return 0.1 if step >= round(config.epochs * 2 / 3) * steps_per_epoch else 1.0
    total = config.epochs * steps_per_epoch
    progress = min(1.0, (step - warm) / max(1.0, total - warm))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR over :func:`lr_factor` (its state dict is just counters: checkpoint friendly)."""
    def factor(step: int) -> float:
        return lr_factor(config, step, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _IndexedBatches(torch.utils.data.Dataset):
    """DataLoader helper: ``dataset[list_of_indices]`` is one whole batch (used with a batch sampler)."""

    def __init__(self, images: torch.Tensor, points: torch.Tensor):
        self.images, self.points = images, points

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices):
        index = torch.as_tensor(indices)
        return self.images[index], self.points[index]


class BatchSource:
    """Batches of ``(uint8 images (B, H, W), points (B, K, 2))`` on the device from a ``PreparedCache``.

    With ``on_device`` the cache lives in device memory and a batch is one index operation; otherwise a
    DataLoader with ``num_workers`` workers gathers pinned batches on the CPU. Introduced in notebook
    06_training_on_gpu.
    """

    def __init__(self, cache, device: torch.device, data_on_device: str = "auto", num_workers: int = 0):
        images = torch.from_numpy(np.ascontiguousarray(cache.images))                  # (N, H, W) uint8
        points = torch.from_numpy(np.asarray(cache.landmarks, dtype=np.float32))      # (N, K, 2)
        self.device, self.num_workers = device, num_workers
        self.on_device = data_on_device == "yes" or (data_on_device == "auto" and fits_on(images, device))
        if self.on_device:
            self.images, self.points = images.to(device), points.to(device)
        else:
            self.images, self.points = images, points
        self.size = len(images)

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of ``order`` (1-D index tensor) in turn; the last one may be smaller."""
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if self.on_device:
            for chunk in chunks:
                index = chunk.to(self.device)
                yield self.images[index], self.points[index]
            return
        loader = torch.utils.data.DataLoader(
            _IndexedBatches(self.images, self.points), batch_size=None, sampler=[c.tolist() for c in chunks],
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        for images, points in loader:
            yield (images.to(self.device, non_blocking=True), points.to(self.device, non_blocking=True))


def fits_on(images: torch.Tensor, device: torch.device, fraction: float = 0.25) -> bool:
    """Whether ``images`` take less than ``fraction`` of the device's free memory (always True on the CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return images.numel() * images.element_size() < fraction * free
