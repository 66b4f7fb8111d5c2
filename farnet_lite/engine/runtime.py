"""The pieces of a training step shared by train, evaluate, predict, benchmark: device, precision, batches.

Speed choices, each a config field:

* **Heatmaps on the device.** A batch is uint8 images + landmark coordinates; the Gaussian targets of every
  output are drawn inside the step by :func:`farnet_lite.losses.coarse_to_fine_loss` (the official code built
  19 float64 maps per image in numpy, at two resolutions, and copied them to the GPU every step).
* **Data in (GPU) memory.** The prepared cache holds uint8 images already at the input size (800x640x150 ISBI
  images are 77 MB), so the whole training set is put on the GPU once and a batch is one indexing operation;
  normalisation happens in the step. When it does not fit, DataLoader workers feed pinned batches instead.
* **Mixed precision** (bf16 on GPUs of compute capability 8.0 or newer, else fp16 with a GradScaler; on the
  CPU bf16 where it is native, else fp32), **channels_last** memory format, a fused optimizer step, optional
  **torch.compile**; the process-level CPU settings (allocator, threads) are :mod:`farnet_lite.engine.cpu`.
* **A batch the GPU holds.** :func:`fit_batch_size` lowers the batch to what the GPU's free memory holds, from
  the activation size per image measured once (:data:`ACTIVATION_BYTES_PER_PIXEL`), so that the ``fast``
  preset's batch 8 at 800x640 also runs on a 15 GiB T4.
"""
from __future__ import annotations

import dataclasses
import math
import random
import warnings
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch import nn

from farnet_lite.config import TrainConfig
from farnet_lite.engine.cpu import native_bf16
from farnet_lite.heatmaps import LandmarkCodec
from farnet_lite.preprocess import normalize_images


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: the GPU if there is one, else the CPU. A device this machine lacks (``cuda`` without a GPU,
    ``cuda:7`` with one) or a misspelt name is a ValueError in one sentence naming ``--device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"Unknown device {name!r} (--device); choose auto, cpu, cuda or cuda:N.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but this machine has no CUDA GPU (or no driver for it); "
                         f"use --device cpu or --device auto.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"--device {name} was asked for but this machine has {count} CUDA GPU"
                         f"{'s' if count > 1 else ''} (cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}); "
                         f"use --device cuda:0 or --device auto.")
    return device


def resolve_precision(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device``, or None for fp32.

    ``auto`` is bf16 on GPUs of compute capability 8.0 or newer (Ampere: A100, L4, H100...), else fp16 (with a
    GradScaler, see :func:`make_scaler`; a T4 is 7.5). ``bf16`` asked for on an older GPU warns and trains in
    fp16 instead, as ``fp16`` on the CPU warns and trains in fp32 (:func:`cuda_native_bf16`). On the CPU ``auto``
    is bf16 where the CPU computes bf16 natively (:func:`farnet_lite.engine.cpu.native_bf16`; its speed-up:
    results/benchmark), else fp32. ``bf16`` is honoured on any
    CPU; ``fp16`` is not used on the CPU (fp32). CPU runs stay bit-identical from one run to the next in either
    precision.
    """
    if device.type != "cuda":
        if precision == "fp16":
            warnings.warn("precision='fp16' is ignored on the CPU; training in fp32 (use bf16).", stacklevel=2)
            return None
        if precision == "auto":
            return torch.bfloat16 if native_bf16() else None
        return torch.bfloat16 if precision == "bf16" else None
    native = cuda_native_bf16(device)
    if precision == "auto":
        return torch.bfloat16 if native else torch.float16
    if precision == "bf16" and not native:
        major, minor = torch.cuda.get_device_capability(device)
        warnings.warn(f"precision='bf16' is only emulated on this GPU (compute capability {major}.{minor}, below "
                      f"8.0: cuDNN has no bf16 convolutions); training in fp16 with a GradScaler instead.",
                      stacklevel=2)
        return torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether the GPU ``device`` computes bf16 natively: compute capability 8.0 (Ampere) or newer.

    Not ``torch.cuda.is_bf16_supported()``: by default it counts emulation and answers True on a T4 (7.5), where
    bf16 convolutions have no cuDNN kernels and run far slower than fp16, if at all.
    """
    return tuple(torch.cuda.get_device_capability(device)) >= (8, 0)


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
    """
    if images.ndim == 3:
        images = images.unsqueeze(1)                                      # (B, 1, H, W)
    x = normalize_images(images, official_scaling)                        # (B, 3, H, W)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def run_codec(config: TrainConfig) -> LandmarkCodec:
    """The run's one codec, built from its config: input size, the targets' sigma (``config.target_sigma``), grid
    origins and decoding method. The loss encodes with it, evaluation and prediction decode with it."""
    return LandmarkCodec(config.input_size, config.target_sigma, config.origin, config.decode_origin,
                         config.decode)


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``model`` on ``device``, in channels_last memory format if asked."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def build_optimizer(config: TrainConfig, params, fused: bool = True) -> torch.optim.Optimizer:
    """Adam (the official code, and the ``paper`` preset) or Adadelta (the text, §4.2), with ``config.lr`` and
    ``config.weight_decay``. Notebook 06 measures why the preset takes Adam.

    ``fused``: Adam's one-kernel update (``fused=True``; Adadelta has none: its multi-tensor ``foreach``
    update), the same arithmetic as the per-parameter for-loop in a fraction of the time. False: torch's default for-loop.
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
    DataLoader with ``num_workers`` workers gathers batches on the CPU, in pinned memory (``pin_memory``; None:
    on a CUDA device), and copies them with ``non_blocking=True``. ``data_on_device="no"`` forces that path
    (tests/test_colab_dry_run.py runs it on the CPU); ``"auto"`` takes it when :func:`fits_on` says no.
    """

    def __init__(self, cache, device: torch.device, data_on_device: str = "auto", num_workers: int = 0,
                 pin_memory: Optional[bool] = None):
        images = torch.from_numpy(np.ascontiguousarray(cache.images))                  # (N, H, W) uint8
        points = torch.from_numpy(np.asarray(cache.landmarks, dtype=np.float32))      # (N, K, 2)
        self.device, self.num_workers = device, num_workers
        self.pin_memory = device.type == "cuda" if pin_memory is None else bool(pin_memory)
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
            num_workers=self.num_workers, pin_memory=self.pin_memory)
        for images, points in loader:
            yield (images.to(self.device, non_blocking=True), points.to(self.device, non_blocking=True))


def fits_on(images: torch.Tensor, device: torch.device, fraction: float = 0.25) -> bool:
    """Whether ``images`` take less than ``fraction`` of the device's free memory (always True on the CPU)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return images.numel() * images.element_size() < fraction * free


# --- the batch a GPU holds

ACTIVATION_BYTES_PER_PIXEL = {"fp32": 5313.0, "half": 2773.5}
"""Bytes of activations one training image keeps for the backward pass, per input pixel, in fp32 and in half
precision (fp16 / bf16 autocast): FARNet (``msfa_fr``) on DenseNet-121 with 19 landmarks, the forward, the
coarse-to-fine EWC loss and everything autograd saves for the backward pass. Measured on the CPU (2026-12-07,
torch 2.14.1) with ``torch.autograd.graph.saved_tensors_hooks``, each storage counted once, batch 2 minus batch 1,
at 160x128 and 320x256 (the same figure at both: it scales with the pixel count); at 800x640 that is 2.53 GiB per
image in fp32 and 1.32 GiB in half precision. Re-measure (about 1.5 min on 2 cores) with
``python benchmarks/activation_memory.py --peak``; its output is in ``results/benchmark/activation-memory-*.json``.
The batch choice uses this figure for every model; the other Table 1 backbones differ (measured with
``--backbones``: VGG-16 a fifth less, ResNet-152 a fifth more)."""
STEP_PEAK_FACTOR = {"fp32": 1.24, "half": 1.40}
"""A training step's peak memory per image over its saved activations (:data:`ACTIVATION_BYTES_PER_PIXEL`): the
activations' gradients during the backward pass and the kernels' scratch buffers come on top. Measured by the same
script (``--peak``) on the CPU: the peak resident memory of a step at batch 2 minus batch 1, at 320x256 (1.39 for
half in an earlier run; 1.25 and 1.39 at 480x384), a CPU figure used on the GPU as an estimate."""
BYTES_PER_PARAMETER = 18
"""GPU memory per model parameter besides the activations: the fp32 weight, its gradient and Adam's two running
averages (16 bytes), plus the half-precision copy autocast keeps during a step (2)."""
MEMORY_SHARE = 0.9
"""The share of a GPU's free memory a batch is planned in; the rest is left to cuDNN's workspaces
(``cudnn.benchmark`` tries several algorithms) and the caching allocator's rounding."""


def step_bytes_per_image(input_size, amp_dtype: Optional[torch.dtype]) -> float:
    """Estimated peak memory of one training image at ``input_size`` (H, W) in this precision (None: fp32)."""
    key = "fp32" if amp_dtype is None else "half"
    return ACTIVATION_BYTES_PER_PIXEL[key] * STEP_PEAK_FACTOR[key] * input_size[0] * input_size[1]


def step_memory_bytes(batch_size: int, input_size, amp_dtype: Optional[torch.dtype], parameters: int,
                      data_bytes: int = 0) -> float:
    """Estimated GPU memory a training step needs: model and Adam (:data:`BYTES_PER_PARAMETER`), the training
    images if they are kept on the GPU (``data_bytes``) and ``batch_size`` images' activations at the peak."""
    return BYTES_PER_PARAMETER * parameters + data_bytes + batch_size * step_bytes_per_image(input_size, amp_dtype)


def fit_batch_size(batch_size: int, input_size, amp_dtype: Optional[torch.dtype], free_bytes: float,
                   parameters: int, data_bytes: int = 0) -> int:
    """The largest batch, at most ``batch_size`` and at least 1, whose step fits :data:`MEMORY_SHARE` of
    ``free_bytes`` (:func:`step_memory_bytes`)."""
    room = MEMORY_SHARE * free_bytes - step_memory_bytes(0, input_size, amp_dtype, parameters, data_bytes)
    return max(1, min(int(batch_size), int(room // step_bytes_per_image(input_size, amp_dtype))))


def batch_for_gpu(config: TrainConfig, device: torch.device, amp_dtype: Optional[torch.dtype], parameters: int,
                  data_bytes: int = 0) -> Tuple[int, str]:
    """``(batch, why)``: on a CUDA device, ``config.batch_size`` lowered to what its free memory
    (``torch.cuda.mem_get_info``) holds (:func:`fit_batch_size`), and a clause for the run log saying why, or
    ``""`` when the batch fits; elsewhere ``(config.batch_size, "")``. Call it once the model is on the device."""
    if device.type != "cuda":
        return config.batch_size, ""
    free, total = torch.cuda.mem_get_info(device)
    batch = fit_batch_size(config.batch_size, config.input_size, amp_dtype, free, parameters, data_bytes)
    per_image = step_bytes_per_image(config.input_size, amp_dtype)
    need = step_memory_bytes(batch, config.input_size, amp_dtype, parameters, data_bytes)
    if need <= MEMORY_SHARE * free and batch == config.batch_size:
        return batch, ""
    h, w = config.input_size
    gpu = f"a {total / 2**30:.0f} GiB GPU ({free / 2**30:.1f} GiB free)"
    if need > MEMORY_SHARE * free:
        return batch, (f"even batch 1 at {h}x{w} in {precision_name(amp_dtype)} needs about {need / 2**30:.1f} GiB "
                       f"of {gpu}: expect an out-of-memory error; use a smaller --input-size or half precision")
    return batch, (f"{gpu} holds about {batch} images of {h}x{w} in {precision_name(amp_dtype)} "
                   f"({per_image / 2**30:.2f} GiB each at a step's peak, estimated) beside the model and Adam "
                   f"({BYTES_PER_PARAMETER * parameters / 2**30:.1f} GiB)")


def with_batch(config: TrainConfig, batch_size: int) -> Tuple[TrainConfig, str]:
    """``config`` at ``batch_size`` with its learning rate scaled by sqrt(new / old batch) -- the square-root
    rule the ``fast`` preset used to scale 1e-4 to batch 8 -- and a clause for the run log saying so."""
    if batch_size == config.batch_size:
        return config, ""
    lr = config.lr * math.sqrt(batch_size / config.batch_size)
    note = f"lr {config.lr:.3g} → {lr:.3g} (× √({batch_size}/{config.batch_size}), the fast preset's rule)"
    return dataclasses.replace(config, batch_size=int(batch_size), lr=lr), note
