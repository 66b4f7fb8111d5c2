"""The fast CPU path: the settings that make CPU training and prediction several times faster.

Three process-level things, none of which changes a number the kit computes (bf16, which does, is
``TrainConfig.precision``), and one per-model thing that changes only the rounding:

* **The allocator.** A training step of FARNet frees and re-allocates hundreds of MB of activations. glibc's
  ``malloc`` hands blocks above its mmap threshold straight back to the kernel, so every step maps ~1 GB afresh
  (page faults, system CPU: ~40 % of a 160x128 step on a 2-core machine). Raising ``M_MMAP_THRESHOLD`` and
  ``M_TRIM_THRESHOLD`` with ``mallopt`` keeps that memory in the process. Linux + glibc only; elsewhere a no-op;
  ``FARNET_MALLOPT=0`` switches it off.
* **All cores.** ``torch.set_num_threads(cores)`` unless the user chose a count: ``FARNET_THREADS``,
  ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, or a ``torch.set_num_threads(n)`` call made after this module was
  imported (the count then differs from torch's default, remembered at import). Only ever raises the count, at
  most once per process.
* **Native bf16?** :func:`native_bf16` tells :func:`farnet_lite.engine.runtime.resolve_precision` whether
  ``precision="auto"`` may use bf16 autocast on this CPU (AVX-512 BF16 or AMX on x86, the ``bf16`` feature on
  Arm); without it bf16 is emulated and slower than fp32.
* **Small maps as one matrix product** (``TrainConfig.small_map_gemm``, :func:`use_small_map_gemm`). MSFA's
  deepest convolutions hold most of FARNet's weights (the stride-2 3x3 into L5 and the L5 fusion, 3x3 in the
  official code) and, at a small input, see tiny maps (2x2 at 64x64). oneDNN re-lays those weights out at every call
  of a training step. As ``unfold`` + one matrix product (im2col) the same convolution reads each weight once
  (what it buys per input size: ``benchmarks/small_map_gemm.py``). Used only where the
  layer's output channels are at least :data:`GEMM_RATIO` times its output positions (batch x height x width);
  results differ from oneDNN's by float rounding (~1e-6 relative).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from functools import lru_cache
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# mallopt(3) parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30          # 1 GiB: no activation block is handed back to the kernel between steps
TRIM_THRESHOLD = 4 << 30          # keep up to 4 GiB of freed heap in the process
_APPLIED = {"allocator": None,    # once per process: None = not tried yet, else what happened (a word)
            "threads": False}     # whether use_all_cores() has raised torch's thread count already
TORCH_DEFAULT_THREADS = torch.get_num_threads()
"""torch's thread count when the kit was imported: a different count later is someone's explicit choice."""


def tune_allocator() -> str:
    """Raise glibc's mmap and trim thresholds once per process; returns ``"mallopt"``, ``"off"`` (the user set
    ``FARNET_MALLOPT=0``) or ``"unavailable"`` (not Linux + glibc). Harmless to call again."""
    if _APPLIED["allocator"] is not None:
        return _APPLIED["allocator"]
    if os.environ.get("FARNET_MALLOPT", "1") == "0":
        outcome = "off"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        outcome = "unavailable"
    else:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
            outcome = "mallopt" if ok else "unavailable"
        except (OSError, AttributeError):
            outcome = "unavailable"
    _APPLIED["allocator"] = outcome
    return outcome


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def use_all_cores() -> int:
    """``torch.set_num_threads(cores)`` unless a thread count was chosen; returns the count in use.

    Chosen means: ``FARNET_THREADS`` (applied here), ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, or any count
    other than :data:`TORCH_DEFAULT_THREADS` -- a notebook's ``torch.set_num_threads(1)`` stays. The count is
    raised at most once per process, so lowering it after a first run is respected too. One case cannot be
    told apart: an explicit count equal to torch's default (e.g. ``1`` where torch defaults to one thread on two
    hyperthreads) set before the first run; ``FARNET_THREADS=1`` pins it there.
    """
    chosen = os.environ.get("FARNET_THREADS")
    if chosen:
        torch.set_num_threads(int(chosen))
    elif not (os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS") or _APPLIED["threads"]):
        if torch.get_num_threads() == TORCH_DEFAULT_THREADS < cpu_cores():
            torch.set_num_threads(cpu_cores())
            _APPLIED["threads"] = True
    return torch.get_num_threads()


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86: ``avx512_bf16`` or ``amx_bf16``; Arm: ``bf16``), from the
    kernel's ``/proc/cpuinfo`` flags; False where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return False
    return bool(words & {"avx512_bf16", "amx_bf16", "bf16"})


def prepare_cpu(device: torch.device) -> str:
    """The process-level part of the fast CPU path (allocator, threads) for a run on ``device``; a no-op for a
    GPU. Called by ``train()``, ``evaluate()``, ``predict()`` and ``farnet benchmark``. Returns a one-line
    description for the run log, e.g. ``"CPU: 2 threads, allocator mallopt, native bf16"``."""
    if torch.device(device).type != "cpu":
        return ""
    allocator = tune_allocator()
    threads = use_all_cores()
    return f"CPU: {threads} threads, allocator {allocator}, {'native' if native_bf16() else 'no native'} bf16"


GEMM_RATIO = 8
"""A convolution runs as one matrix product when its output channels are at least this many times its output
positions (B x h x w): from about 8 up, the weights dominate the cost and im2col wins (``benchmarks/small_map_gemm.py``);
below it oneDNN is as fast or faster."""


class SmallMapConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that computes small output maps on the CPU as ``unfold`` + one matrix product.

    The same parameters, ``state_dict`` and result (up to float rounding) as ``nn.Conv2d``; only the arithmetic
    path differs, and only when :meth:`uses_gemm` says so -- else it is ``nn.Conv2d.forward``. Made by
    :func:`use_small_map_gemm`, never built directly.
    """

    def output_size(self, x: torch.Tensor):
        """``(h, w)`` of this convolution's output for input ``x`` ``(B, C, H, W)``."""
        (kh, kw), (ph, pw), (sh, sw), (dh, dw) = self.kernel_size, self.padding, self.stride, self.dilation
        return ((x.shape[-2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
                (x.shape[-1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1)

    def _gemm_output_size(self, x: torch.Tensor) -> Optional[Tuple[int, int]]:
        """``(h, w)`` of the output when ``x`` takes the GEMM path (:meth:`uses_gemm`), else None."""
        if x.device.type != "cpu" or x.dim() != 4 or self.groups != 1 or self.padding_mode != "zeros" \
                or isinstance(self.padding, str):
            return None
        h, w = self.output_size(x)
        return (h, w) if self.out_channels >= GEMM_RATIO * x.shape[0] * h * w else None

    def uses_gemm(self, x: torch.Tensor) -> bool:
        """True when ``x`` is a CPU batch ``(B, C, H, W)`` whose output map is small enough (:data:`GEMM_RATIO`)
        and the layer is a plain one (zero padding given as numbers, no groups)."""
        return self._gemm_output_size(x) is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self._gemm_output_size(x)                   # decided and sized once per call
        if size is None:
            return super().forward(x)
        h, w = size
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (B, C*kh*kw, h*w)
        y = torch.matmul(self.weight.flatten(1), cols)                                  # (B, out, h*w)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)[:, None]                                       # bf16 under autocast
        return y.view(x.shape[0], self.out_channels, h, w)                              # (B, out, h, w)


def use_small_map_gemm(model: nn.Module) -> int:
    """Turn every plain ``nn.Conv2d`` of ``model`` into a :class:`SmallMapConv2d` in place (their parameters and
    ``state_dict`` keys stay as they are; subclasses of ``nn.Conv2d`` are left alone); returns how many.
    Runs call it through :func:`small_map_gemm_for`, which says so in their log."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = SmallMapConv2d
            count += 1
    return count


def small_map_gemm_for(model: nn.Module, enabled: bool, device) -> str:
    """Where a run sets up its model: on the CPU with ``enabled`` (``TrainConfig.small_map_gemm``), turn its small-map
    convolutions into matrix products (:func:`use_small_map_gemm`); returns the line the run logs ("" if not)."""
    if not enabled or torch.device(device).type != "cpu":
        return ""
    count = use_small_map_gemm(model)
    return (f"CPU: {count} convolutions compute as one matrix product wherever their map is much smaller than their "
            f"weights (small_map_gemm; --no-small-map-gemm turns it off).")
