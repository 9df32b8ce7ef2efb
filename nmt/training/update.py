"""One optimizer update, as the trainer makes it and the benchmark times it.

    updater = Updater(model, adamw(model, config, fused), config.label_smoothing, config.clip_norm)
    loss = updater.accumulate(batches, total_tokens, load)   # backward over the update's batches
    skipped = updater.apply(lr)                               # lr, clipping, AdamW unless non-finite

The loss of an update is the sum of its token losses divided by the update's total target tokens, so the
gradient is the same however the sentences are grouped into batches, accumulated or spread over processes.
That is what lets `accumulate_within_memory` redo an update with a batch cut in halves when it runs out of
accelerator memory, without changing the result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.config import TrainConfig
from nmt.data.batching import Batch
from nmt.data.special import PAD_ID
from nmt.memory import is_out_of_memory, release_cached_memory

logger = logging.getLogger(__name__)

Piece = TypeVar("Piece")  # what a batch is made from: the trainer's index arrays, the benchmark's Batch


def token_loss(logits: Tensor, tgt_out: Tensor, label_smoothing: float) -> Tensor:
    """Summed cross-entropy over the real target tokens, in float32 whatever the autocast dtype.

    logits (B, T, V), tgt_out (B, T) with PAD where there is no token.
    """
    return F.cross_entropy(
        logits.flatten(0, 1).float(),  # (B*T, V)
        tgt_out.flatten(),
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


def adamw(model: nn.Module, config: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """The optimizer of every run (fused on CUDA: one kernel for all parameters)."""
    return torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=config.betas,
        weight_decay=config.weight_decay,
        fused=fused or None,
    )


def clip_gradients(model: nn.Module, clip_norm: float) -> Tensor:
    """Clip the (true, unscaled) gradient to `clip_norm` (0: no clipping); return its norm before clipping."""
    return torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm if clip_norm > 0 else math.inf)


def step_unless_nonfinite(optimizer: torch.optim.Optimizer, norm: Tensor, fused: bool) -> Tensor:
    """Apply the update, or skip it when the gradient holds NaN/inf (the weights stay as they were).

    Fused AdamW skips on the device (its `found_inf` input, the one mixed precision's grad scaler uses), so
    there is no host sync; elsewhere the check is a cheap CPU read. Returns whether the update was skipped.
    """
    bad = ~torch.isfinite(norm)
    if fused:
        optimizer.found_inf = bad.float()
        optimizer.step()
    elif not bool(bad):
        optimizer.step()
    return bad


def teacher_forced_logits(model: nn.Module, batch: Batch) -> Tensor:
    """(B, T, V) logits of a model of the contract (nmt/models/base.py) on `batch`."""
    return model(batch.src, batch.src_lengths, batch.tgt_in)


class PieceOutOfMemory(Exception):
    """Piece number `index` of an update ran out of accelerator memory."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


@dataclass
class Updater(Generic[Piece]):
    """Makes optimizer updates of `model`: the one place where the loss is backpropagated and applied."""

    model: nn.Module  # the weights: what is clipped and counted
    optimizer: torch.optim.Optimizer
    label_smoothing: float
    clip_norm: float  # 0: no clipping
    autocast: bool = False  # bf16 autocast for the forward pass (CUDA); the weights stay float32
    fused: bool = False  # fused AdamW: skip non-finite updates on the device
    forward_model: nn.Module | None = None  # what runs forward (a DDP or compiled wrapper); None: `model`
    world_size: int = 1  # data-parallel processes, whose gradients DDP averages (forward_model is the DDP)
    catch_out_of_memory: bool = True  # False under data parallelism, where ranks would fall out of step
    logits_of: Callable[[nn.Module, Batch], Tensor] = teacher_forced_logits

    def accumulate(
        self,
        pieces: Sequence[Piece],
        total_tokens: int,
        load: Callable[[Piece], Batch],
    ) -> Tensor:
        """Backpropagate sum(token losses) / total_tokens over the batches `load(piece)`; return the summed
        loss (detached).

        DDP averages gradients over ranks, hence the factor world_size: the result is the gradient of the
        update's summed loss over its global token count. Raises `PieceOutOfMemory` (outside the handler, so
        that the failed batch's tensors are freed) when a piece runs out of accelerator memory.
        """
        self.optimizer.zero_grad(set_to_none=True)
        scale = self.world_size / total_tokens
        device = next(self.model.parameters()).device
        loss_sum = torch.zeros((), device=device)
        failed = None
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            try:
                with self._gradient_sync(last):
                    loss_sum += self.backward(load(piece), scale)
            except Exception as error:  # noqa: BLE001 - anything but running out of memory is re-raised
                if not self.catch_out_of_memory or not is_out_of_memory(error):
                    raise
                failed = i
                break
        if failed is not None:
            raise PieceOutOfMemory(failed)
        return loss_sum

    def _gradient_sync(self, last: bool) -> AbstractContextManager:
        """Under data parallelism, DDP all-reduces the gradients at every backward pass; within an update only
        the last piece needs to (`no_sync` for the others)."""
        if last or self.world_size == 1:
            return nullcontext()
        return self.forward_model.no_sync()

    def backward(self, batch: Batch, scale: float) -> Tensor:
        """Backpropagate `batch`'s summed token loss times `scale`; return the loss (detached)."""
        model = self.forward_model if self.forward_model is not None else self.model
        with torch.autocast(batch.src.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.logits_of(model, batch)  # (B, T, V)
        loss = token_loss(logits, batch.tgt_out, self.label_smoothing)
        (loss * scale).backward()
        return loss.detach()

    def apply(self, lr: float) -> Tensor:
        """Set the learning rate, clip the accumulated gradient and step, unless it is not finite; return
        whether the update was skipped (a bool tensor, left on the device)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return step_unless_nonfinite(self.optimizer, clip_gradients(self.model, self.clip_norm), self.fused)


def accumulate_within_memory(
    updater: Updater[np.ndarray],
    pieces: list[np.ndarray],
    total_tokens: int,
    load: Callable[[np.ndarray], Batch],
    tokens_of: Callable[[np.ndarray], int],
    step: int,
) -> Tensor | None:
    """`updater.accumulate` over batches of example indices, redone with a batch cut in two whenever one runs
    out of device memory.

    The gradient is the same however the sentences are grouped (the loss is a sum over tokens), so splitting
    changes nothing but speed. A sentence that does not fit even alone is left out of the update, with a
    warning; None when nothing was left. `step` (the update's number) is only for the warnings.
    """
    pieces = list(pieces)
    while True:
        try:
            return updater.accumulate(pieces, total_tokens, load)
        except PieceOutOfMemory as failure:
            where = failure.index
        piece = pieces[where]
        release_cached_memory(next(updater.model.parameters()).device)
        if len(piece) > 1:
            logger.warning(
                "step %d: out of memory on a batch of %d sentences; redoing the update with it in halves",
                step,
                len(piece),
            )
            pieces[where : where + 1] = np.array_split(piece, 2)
            continue
        logger.warning(
            "step %d: training pair %d (%d target tokens) does not fit in memory even alone; left out "
            "(a lower --max-target-len avoids such pairs)",
            step,
            int(piece[0]) + 1,
            tokens_of(piece),
        )
        total_tokens -= tokens_of(piece)
        del pieces[where]
        if not pieces:
            updater.optimizer.zero_grad(set_to_none=True)
            return None
