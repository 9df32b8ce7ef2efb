"""Data-parallel training over several processes (GPUs or machines) with torch.distributed.

Launched by `torchrun`, each process finds RANK, WORLD_SIZE and LOCAL_RANK in its environment. Without
them (or with WORLD_SIZE=1) everything here is a no-op, so the training loop reads the same either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> Distributed:
    """The process's place in the group, from torchrun's environment variables (or a group already set up)."""
    if dist.is_available() and dist.is_initialized():
        return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or "RANK" not in os.environ:
        return Distributed()
    return Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(context: Distributed, device: torch.device) -> bool:
    """Join the process group (NCCL on CUDA, gloo otherwise); True when this call created it."""
    if not context.enabled or dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def broadcast_object(value: Any, context: Distributed) -> Any:
    """Rank 0's `value` on every rank."""
    if not context.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any, context: Distributed) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not context.enabled:
        return [value]
    out: list[Any] = [None] * context.world_size
    dist.all_gather_object(out, value)
    return out


def any_rank(flag: bool, context: Distributed, device: torch.device) -> bool:
    """True on every rank when `flag` is True on at least one."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
