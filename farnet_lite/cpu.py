"""The fast CPU path: the process-level settings that make CPU training and prediction several times faster.

Three things, none of which changes a number the kit computes (bf16, which does, is ``TrainConfig.precision``):

* **The allocator.** A training step of FARNet frees and re-allocates hundreds of MB of activations. glibc's
  ``malloc`` hands blocks above its mmap threshold straight back to the kernel, so every step maps ~1 GB afresh
  (page faults, system CPU: ~40 % of a 160x128 step on a 2-core machine). Raising ``M_MMAP_THRESHOLD`` and
  ``M_TRIM_THRESHOLD`` with ``mallopt`` keeps that memory in the process. Linux + glibc only; elsewhere a no-op;
  ``FARNET_MALLOPT=0`` switches it off.
* **All cores.** ``torch.set_num_threads(cores)`` unless the user chose a count: ``FARNET_THREADS``,
  ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, or a ``torch.set_num_threads(n)`` call made after this module was
  imported (the count then differs from torch's default, remembered at import). Only ever raises the count, at
  most once per process.
* **Native bf16?** :func:`native_bf16` tells :func:`farnet_lite.engine.resolve_precision` whether
  ``precision="auto"`` may use bf16 autocast on this CPU (AVX-512 BF16 or AMX on x86, the ``bf16`` feature on
  Arm); without it bf16 is emulated and slower than fp32.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from functools import lru_cache

import torch

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
