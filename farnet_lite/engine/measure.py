"""Measuring a device: wait for its queued work, and its peak memory (``farnet benchmark``, the GPU session)."""
from __future__ import annotations

import resource
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Restart the peak-memory count: CUDA's allocator stats, or on Linux the process's RSS high-water mark."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")   # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass


def peak_mb(device: torch.device) -> float:
    """Peak GPU memory allocated since the reset, or the main process's peak RSS on the CPU (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # lifetime peak: an upper bound
