"""The pieces of a training step shared by train, evaluate, predict, benchmark: device, precision, batches.

Introduced in notebook 06_training_on_gpu.

Speed choices, each a config field:

* **Heatmaps on the device.** A batch is uint8 images + landmark coordinates; the Gaussian targets of every
  output are drawn inside the step by :func:`farnet_lite.losses.coarse_to_fine_loss` (the official code built
  19 float64 maps per image in numpy, at two resolutions, and copied them to the GPU every step).
* **Data in (GPU) memory.** The prepared cache holds uint8 images already at the input size (800x640x150 ISBI
  images are 77 MB), so the whole training set is put on the GPU once and a batch is one indexing operation;
  normalisation happens in the step. When it does not fit, DataLoader workers feed pinned batches instead.
* **Mixed precision** (bf16 where supported, else fp16 with a GradScaler; on the CPU bf16 where it is native,
  else fp32), **channels_last** memory format, a fused optimizer step, optional **torch.compile**; the
  process-level CPU settings (allocator, threads) are :mod:`farnet_lite.cpu`.
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
from farnet_lite.cpu import native_bf16, use_small_map_gemm
from farnet_lite.preprocess import normalize_images


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: the GPU if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"Device {name!r} was asked for but no CUDA GPU is available; use --device cpu.")
    return device


def resolve_precision(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device``, or None for fp32.

    ``auto`` is bf16 on GPUs that support it (Ampere and newer), else fp16 (with a GradScaler, see
    :func:`make_scaler`); on the CPU it is bf16 where the CPU computes bf16 natively
    (:func:`farnet_lite.cpu.native_bf16`: 1.5-1.7x faster training, 2.5x faster 800x640 prediction on such a
    chip, issue 16), else fp32. ``bf16`` is honoured on any CPU; ``fp16`` is not used on the CPU (fp32).
    CPU runs stay bit-identical from one run to the next in either precision. Introduced in notebook
    06_training_on_gpu.
    """
    if device.type != "cuda":
        if precision == "fp16":
            warnings.warn("precision='fp16' is ignored on the CPU; training in fp32 (use bf16).", stacklevel=2)
            return None
        if precision == "auto":
            return torch.bfloat16 if native_bf16() else None
        return torch.bfloat16 if precision == "bf16" else None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def precision_name(amp_dtype: Optional[torch.dtype]) -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"``: the precision a run actually used (for logs and benchmarks)."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, "fp32")


def make_scaler(amp_dtype: Optional[torch.dtype], device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 (bf16 has fp32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def network_input(images: torch.Tensor, channels_last: bool = False, official_scaling: bool = False) -> torch.Tensor:
    """Grey images -> the normalised 3-channel network input.

    ``images``: ``(B, H, W)`` uint8 (straight from the cache), or ``(B, 1, H, W)`` float in [0, 1] (after
    augmentation). Returns ``(B, 3, H, W)`` float32, ImageNet mean/std normalised
    (``farnet_lite.preprocess.normalize_images``; ``official_scaling``: on 0-255 values without /255, as the
    official code, ``TrainConfig.official_scaling``), in channels_last memory format if asked.
    Introduced in notebook 06_training_on_gpu.
    """
    if images.ndim == 3:
        images = images.unsqueeze(1)                                      # (B, 1, H, W)
    x = normalize_images(images, official_scaling)                        # (B, 3, H, W)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool,
                  small_map_gemm: bool = False) -> nn.Module:
    """``model`` on ``device``, in channels_last memory format if asked; on the CPU with ``small_map_gemm`` its
    convolutions of small maps become one matrix product each (:func:`farnet_lite.cpu.use_small_map_gemm`)."""
    model = model.to(device)
    if small_map_gemm and torch.device(device).type == "cpu":
        use_small_map_gemm(model)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def build_optimizer(config: TrainConfig, params, fused: bool = True) -> torch.optim.Optimizer:
    """Adam (the official code, and the ``paper`` preset) or Adadelta (the text, §4.2), with ``config.lr`` and
    ``config.weight_decay``. Notebook 06 measures why the preset takes Adam.

    ``fused``: Adam's one-kernel update (``fused=True``; Adadelta has none: its multi-tensor ``foreach``
    update), the same arithmetic as the per-parameter for-loop in a fraction of the time (a DenseNet-121
    FARNet step on the CPU: ~25 ms instead of ~150-200 ms, issue 16). False: torch's default for-loop.
    """
    if config.optimizer == "adam":
        params = list(params)
        try:
            return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay,
                                    **(dict(fused=True) if fused else dict(foreach=False)))
        except (RuntimeError, TypeError):     # an older torch or a device without the fused kernel
            return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adadelta(params, lr=config.lr, weight_decay=config.weight_decay, foreach=fused)


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
