"""Training throughput: one optimizer update, made by the trainer's own `Updater`, timed; and the model FLOPs
that the throughput is compared against.

An update is exactly what `nmt.training` makes: the forward pass (under bf16 autocast on CUDA), the summed
label-smoothed token loss over the update's target tokens, backward, gradient clipping, the schedule's
learning rate and AdamW (fused on CUDA, skipping non-finite updates on the device).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from nmt.benchmark.report import TrainingResult
from nmt.benchmark.timing import peak_memory_mb, reset_peak_memory, time_runs
from nmt.config import TrainConfig
from nmt.data.batching import Batch
from nmt.training.schedules import LRState, learning_rate
from nmt.training.update import Updater, adamw, token_loss

LogitsOf = Callable[[nn.Module, Batch], Tensor]  # (model, batch) -> (B, T, V) teacher-forced logits


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of torch's CPU flash attention, counted as for any SDPA (its inputs are the same)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(
    grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kw
) -> int:
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


def count_training_flops(model: nn.Module, logits_of: LogitsOf, batch: Batch, label_smoothing: float) -> int:
    """FLOPs of one forward and backward pass of `model` (on the CPU, float32) over `batch`.

    torch.utils.flop_counter counts matrix products and attention (SDPA, causal masks counted in full);
    element-wise work is left out, as is usual for model FLOP utilisation.
    """
    aten = torch.ops.aten
    custom = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):  # not in torch's own table
        custom[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
        custom[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flops
    model.train()
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        loss = token_loss(logits_of(model, batch), batch.tgt_out, label_smoothing)
        loss.backward()
    return counter.get_total_flops()


def _as_is(batch: Batch) -> Batch:
    """The `load` of an update whose one piece is already a batch on the device."""
    return batch


@dataclass
class TrainingSetup:
    """One model, the trainer's `Updater` of it and the batch it trains on, set up as the trainer would."""

    name: str  # what the training table calls the model: its architecture
    label: str  # what a comparison calls this side
    preset: str
    updater: Updater[Batch]
    config: TrainConfig
    batch: Batch
    compiled: bool
    updates: int = 0

    @property
    def model(self) -> nn.Module:
        return self.updater.model

    @property
    def device(self) -> torch.device:
        return self.batch.src.device

    def update(self) -> None:
        """One update, as the trainer makes it: its `Updater` over one batch, at the schedule's rate."""
        self.updater.accumulate([self.batch], self.batch.num_tokens, load=_as_is)
        self.updates += 1
        self.updater.apply(learning_rate(self.config, self.updates, LRState(plateau_lr=self.config.lr)))


def training_setup(
    name: str,
    label: str,
    preset: str,
    model: nn.Module,
    logits_of: LogitsOf,
    config: TrainConfig,
    batch: Batch,
    device: torch.device,
    bf16: bool,
    fused: bool,
    compiled: bool,
) -> TrainingSetup:
    """`model` on `device` in training mode, with the optimizer and update of a run of `config`."""
    model = model.to(device).train()
    updater = Updater(
        model,
        adamw(model, config, fused),
        config.label_smoothing,
        config.clip_norm,
        autocast=bf16,
        fused=fused,
        forward_model=torch.compile(model, dynamic=True) if compiled else None,  # as the trainer compiles
        # No halving to fall back on: running out of memory is an error of the benchmark's sizes.
        catch_out_of_memory=False,
        logits_of=logits_of,
    )
    return TrainingSetup(name, label, preset, updater, config, batch.to(device), compiled)


def measure_training(
    setup: TrainingSetup, warmup: int, repeats: int, model_flops: int, peak_flops: float | None
) -> TrainingResult:
    """Time `repeats` updates of `setup` after `warmup` ones; the peak memory covers them all."""
    reset_peak_memory(setup.device)
    seconds = time_runs(setup.update, setup.device, warmup, repeats)
    tokens = setup.batch.num_tokens
    achieved = model_flops / seconds.median_s
    return TrainingResult(
        model=setup.name,
        preset=setup.preset,
        parameters=sum(p.numel() for p in setup.model.parameters()),
        sentences=setup.batch.src.size(0),
        source_len=setup.batch.src.size(1),
        target_len=setup.batch.tgt_in.size(1),
        target_tokens=tokens,
        bf16_autocast=setup.updater.autocast,
        fused_adamw=setup.updater.fused,
        compiled=setup.compiled,
        seconds=seconds,
        tokens_per_s=tokens / seconds.median_s,
        tokens_per_s_min=tokens / seconds.max_s,
        tokens_per_s_max=tokens / seconds.min_s,
        model_flops=model_flops,
        achieved_tflops=achieved / 1e12,
        mfu=None if peak_flops is None or setup.device.type != "cuda" else achieved / peak_flops,
        peak_memory_mb=peak_memory_mb(setup.device),
    )
