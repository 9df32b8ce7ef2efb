"""Running out of accelerator memory without ending the run.

One unusually long sentence can make a batch too big for the GPU even when the token budget was chosen well.
Instead of dying with a traceback hours into a run, the callers here cut such a batch in halves and try again;
only a single sentence that does not fit on its own is left out, with a warning that names it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA's out-of-memory error (and MPS's, which is a plain RuntimeError)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "MPS backend out of memory" in str(error)


def release_cached_memory(device: torch.device) -> None:
    """Hand the allocator's cached blocks back, so that the retry starts from a clean slate."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_in_pieces(
    run: Callable[[list[Item]], list[Result]],
    items: Sequence[Item],
    device: torch.device,
    does_not_fit: Callable[[Item], Result],
    what: str = "batch",
) -> list[Result]:
    """`run(items)` (one result per item), or, if it runs out of memory, `run` on each half, recursively.

    An item that does not fit even alone gets `does_not_fit(item)` instead. `run` must have no side effects
    that a failed call leaves behind (inference only: training redoes whole updates instead).
    """
    items = list(items)
    try:
        return run(items)
    except Exception as error:  # noqa: BLE001 - anything but running out of memory is re-raised
        if not is_out_of_memory(error):
            raise
    # Outside the except block the traceback, and the tensors its frames hold, are gone.
    release_cached_memory(device)
    if len(items) == 1:
        return [does_not_fit(items[0])]
    middle = len(items) // 2
    logger.warning("out of memory on a %s of %d sentences: running it in two halves", what, len(items))
    return run_in_pieces(run, items[:middle], device, does_not_fit, what) + run_in_pieces(
        run, items[middle:], device, does_not_fit, what
    )
