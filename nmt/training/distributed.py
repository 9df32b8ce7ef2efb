"""Data-parallel training over several processes (GPUs or machines) with torch.distributed.

Launched by `torchrun`, each process finds RANK, WORLD_SIZE and LOCAL_RANK in its environment. Without
them (or with WORLD_SIZE=1) everything here is a no-op, so the training loop reads the same either way.

When one process of the group dies, the others notice at their next collective (its connections close) and
fail with the backend's error, which `lost_process` recognises so that the command can say so in one line.
A process that hangs instead, or a machine that vanishes without closing its connections, is noticed after
the collective timeout: NMT_DISTRIBUTED_TIMEOUT seconds (default 300, rather than torch's 30 minutes). It must
exceed the longest time a process waits for the others in a healthy run: rank 0's validation and checkpoint
writing, during which the other ranks wait.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from nmt.errors import UserError

TIMEOUT_VARIABLE = "NMT_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 300.0


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


def collective_timeout() -> timedelta:
    """How long a collective waits for the others: NMT_DISTRIBUTED_TIMEOUT seconds, else the default."""
    value = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not value:
        return timedelta(seconds=DEFAULT_TIMEOUT_SECONDS)
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise UserError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds (got {value!r})")
    return timedelta(seconds=seconds)


def init_process_group(context: Distributed, device: torch.device) -> bool:
    """Join the process group (NCCL on CUDA, gloo otherwise); True when this call created it."""
    if not context.enabled or dist.is_initialized():
        return False
    timeout = collective_timeout()  # checked before joining, so that every rank refuses a bad value alike
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return True


# The backends' errors start with the source location that raised them and may end with generic advice.
_SOURCE_LOCATION = re.compile(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*")
_GLOO_SOURCE = re.compile(r"\[[^\]]*gloo[^\]]*:\d+\]")
_GENERIC_ADVICE = re.compile(r"\.\s+This is typically caused by.*$", re.DOTALL)


def lost_process(error: BaseException) -> str | None:
    """What went wrong, in a few words, when `error` is a collective that failed because another process of
    the group died, hung past the timeout or became unreachable; None for any other error.

    Gloo raises plain RuntimeErrors that name its sources (".../gloo/transport/tcp/pair.cc:537] Read error
    ...: Connection reset by peer"); NCCL and the c10d store raise `torch.distributed.DistError`.
    """
    if not isinstance(error, RuntimeError):
        return None
    text = str(error).strip()
    if not (isinstance(error, dist.DistError) or _GLOO_SOURCE.match(text)):
        return None
    first_line = text.splitlines()[0] if text else type(error).__name__
    reason = _GENERIC_ADVICE.sub("", _SOURCE_LOCATION.sub("", first_line)).strip().rstrip(".")
    return reason[:200] or type(error).__name__


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
