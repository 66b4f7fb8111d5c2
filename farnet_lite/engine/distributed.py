"""Multi-process training through ``torchrun`` (DistributedDataParallel), and the single-process fallback.

``torchrun --nproc_per_node=N -m farnet_lite.cli train ...`` starts N copies of the CLI with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. :func:`setup` joins them into one process group
(NCCL on GPUs, gloo on CPU). Every rank trains on its own shard of each epoch's sample order, gradients are
averaged by DDP, predictions are gathered so that rank 0 writes complete CSVs, and only rank 0 writes
checkpoints and logs. Without those variables everything here is a no-op on a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files (rank 0)."""
        return self.rank == 0


def setup(device_type: str) -> DistInfo:
    """Join the process group that torchrun set up in the environment; ``DistInfo()`` when there is none.

    ``device_type`` is ``"cuda"`` (NCCL backend, one GPU per local rank) or ``"cpu"`` (gloo backend).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def cleanup(info: DistInfo) -> None:
    """Leave the process group (at the end of a run)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The average of a scalar tensor over all ranks (the same value comes back on every rank)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def gather_objects(obj: Any, info: DistInfo) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` on a single process)."""
    if not info.enabled:
        return [obj]
    out: List[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(indices: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's share of a 1-D index tensor: every ``world_size``-th entry from ``rank``.

    The tensor is first padded by repeating its head so that every rank gets the same number of entries
    (as ``DistributedSampler`` does); DDP needs the same number of steps on every rank.
    """
    if not info.enabled:
        return indices
    total = -(-len(indices) // info.world_size) * info.world_size
    if total > len(indices):
        repeats = -(-total // len(indices))
        indices = indices.repeat(repeats)[:total]
    return indices[info.rank::info.world_size]
