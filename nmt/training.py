"""The training loop: token-budget batches, AdamW, a learning-rate schedule, validation by dev BLEU, early
stopping, checkpoints that resume exactly, and data-parallel training over several processes.

    result = train(data_dir, "transformer", model_config, train_config, run_dir)

One *update* consumes `world_size * accumulate` consecutive batches of the epoch's batch order (a pure
function of seed and epoch, nmt/batching.py); rank r takes every world_size-th of them. The loss is the sum
of token losses divided by the update's total target tokens, which every rank knows without communication
because the batch order is the same everywhere. So 2 processes x 1 batch, 1 process x 2 accumulated batches
and 1 process x 1 batch of the same sentences all give the same gradient.

A checkpoint saved between updates holds everything the next update depends on (weights, optimizer, schedule,
place in the batch order, random number generators), so an interrupted run resumes to the very same result.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nmt import distributed
from nmt.batching import (
    TokenizedPairs,
    collate,
    filter_lengths,
    padding_stats,
    sorted_batches,
    target_tokens,
    token_batches,
)
from nmt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nmt.config import (
    DecodeConfig,
    ModelConfig,
    TrainConfig,
    from_dict,
    model_config,
    model_config_class,
    to_dict,
    train_config,
)
from nmt.devices import prepare_device, resolve_device
from nmt.errors import UserError
from nmt.memory import is_out_of_memory, release_cached_memory, run_in_pieces
from nmt.prepared import PreparedData
from nmt.run_files import (
    BEST,
    LAST,
    RunLog,
    check_resumable,
    copy_atomically,
    data_fingerprint,
    prepare_run_dir,
    prune_step_checkpoints,
    rng_state,
    set_rng_state,
    step_checkpoint,
    vocab_checksum,
    write_config,
)
from nmt.schedules import LRState, Plateau, after_validation, learning_rate, observe, should_stop_early
from nmt.tokenizer import PAD_ID, TokenizerPair

logger = logging.getLogger(__name__)

LOG_EVERY = 50  # updates between progress reports (each costs one device sync)
MAX_BAD_UPDATES = 5  # updates in a row with a non-finite gradient before training stops


class StopReason(str, enum.Enum):
    max_steps = "max-steps"
    max_epochs = "max-epochs"
    max_minutes = "max-minutes"
    early_stopping = "early-stopping"
    interrupted = "interrupted"


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epoch: int
    best_bleu: float | None  # None when no validation happened
    stop_reason: StopReason
    minutes: float  # training time over all sessions of this run

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / BEST

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / LAST


@dataclass
class Validation:
    dev_loss: float  # cross-entropy per target token, without label smoothing
    perplexity: float
    bleu: float  # sacreBLEU corpus BLEU of greedy translations of the fixed dev prefix


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # updates done (skipped non-finite ones included)
    epoch: int = 1
    position: int = 0  # index of the next batch in this epoch's batch order
    best_bleu: float = -math.inf
    early: Plateau = field(default_factory=Plateau)  # dev BLEU for early stopping
    lr: LRState = field(default_factory=lambda: LRState(plateau_lr=0.0))
    seconds: float = 0.0  # training time of earlier sessions
    tokens: int = 0  # target tokens trained on
    last_validated: int = -1

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "best_bleu": self.best_bleu,
            "early": self.early.to_dict(),
            "lr_state": self.lr.to_dict(),
            "seconds": self.seconds,
            "tokens": self.tokens,
            "last_validated": self.last_validated,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Progress:
        return cls(
            step=int(values["step"]),
            epoch=int(values["epoch"]),
            position=int(values["position"]),
            best_bleu=float(values["best_bleu"]),
            early=Plateau.from_dict(values["early"]),
            lr=LRState.from_dict(values["lr_state"]),
            seconds=float(values["seconds"]),
            tokens=int(values["tokens"]),
            last_validated=int(values["last_validated"]),
        )


class _PieceOutOfMemory(Exception):
    """Batch number `index` of an update ran out of accelerator memory."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


class Diverged(UserError):
    """Too many updates in a row had a non-finite gradient."""


# ----------------------------------------------------------------------------------------------------------
# Pure pieces


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


def adamw(model: torch.nn.Module, config: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """The optimizer of every run (fused on CUDA: one kernel for all parameters)."""
    return torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=config.betas,
        weight_decay=config.weight_decay,
        fused=fused or None,
    )


def clip_gradients(model: torch.nn.Module, clip_norm: float) -> Tensor:
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


def fit_to_vocabulary(config: ModelConfig, tokenizers: TokenizerPair) -> ModelConfig:
    """The config with the data's vocabulary sizes, and one shared embedding table for a joint vocabulary."""
    values: dict[str, Any] = {
        "src_vocab_size": tokenizers.source.vocab_size,
        "tgt_vocab_size": tokenizers.target.vocab_size,
    }
    if tokenizers.joint:
        values["share_embeddings"] = True
    elif config.share_embeddings:
        raise UserError("share_embeddings needs a joint vocabulary, but this data has separate ones")
    return dataclasses.replace(config, **values)


def check_train_config(config: TrainConfig) -> None:
    if config.max_steps is None and config.max_epochs is None and config.max_minutes is None:
        raise UserError("no stopping limit: give --max-steps, --max-epochs or --max-minutes")
    for name in ("batch_tokens", "accumulate", "validate_every", "save_every"):
        if getattr(config, name) < 1:
            raise UserError(f"{name.replace('_', '-')} must be at least 1 (got {getattr(config, name)})")
    for name in ("max_steps", "max_epochs", "max_minutes"):
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive (got {value})")


def resolve_configs(
    arch: str,
    preset: str,
    model_overrides: dict[str, Any],
    train_overrides: dict[str, Any],
    resume: Path | None = None,
) -> tuple[ModelConfig, TrainConfig]:
    """A new run's configs: preset < overrides; a resumed run's: the checkpoint's configs < overrides."""
    if resume is None:
        return model_config(arch, preset, model_overrides), train_config(arch, preset, train_overrides)
    checkpoint = load_checkpoint(resume)
    if checkpoint.train_state is None:
        raise UserError(
            f"{resume} has no training state (an averaged or exported model); it cannot be resumed"
        )
    if checkpoint.arch != arch:
        raise UserError(f"{resume} is a '{checkpoint.arch}' checkpoint; it cannot resume a '{arch}' run")
    model = from_dict(model_config_class(arch), {**to_dict(checkpoint.model_config), **model_overrides})
    train = from_dict(TrainConfig, {**checkpoint.train_state["train_config"], **train_overrides})
    return model, train


# ----------------------------------------------------------------------------------------------------------
# The library entry point


def train(
    data_dir: Path,
    arch: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: Path,
    resume: Path | None = None,
    force: bool = False,
) -> TrainResult:
    """Train `arch` on the prepared data in `data_dir`, writing checkpoints and logs to `run_dir`.

    `resume` continues from a checkpoint of this run; `force` starts over in a run directory that already
    holds checkpoints (which are removed). The vocabulary sizes come from the data.
    """
    run_dir = Path(run_dir)
    data = PreparedData.open(data_dir)
    check_train_config(train_config)
    model_config = fit_to_vocabulary(model_config, data.tokenizers)
    checkpoint = load_checkpoint(resume) if resume is not None else None
    if checkpoint is not None:
        check_resumable(checkpoint, Path(resume), arch, model_config, vocab_checksum(data.tokenizers))

    context = distributed.from_environment()
    device = resolve_device(train_config.device)
    if device.type == "cuda" and context.enabled:
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    prepare_device(device)
    created_group = distributed.init_process_group(context, device)
    fresh = context.is_main and not run_dir.exists()
    try:
        try:
            # Every rank checks (so that all of them stop on a bad run directory); rank 0 writes.
            prepare_run_dir(run_dir, resuming=checkpoint is not None, force=force, main=context.is_main)
            if context.is_main:
                write_config(run_dir, arch, Path(data_dir), model_config, train_config)
            trainer = Trainer(data, arch, model_config, train_config, run_dir, device, context, checkpoint)
        except UserError:
            if fresh:  # a run that never started leaves no directory behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        try:
            return trainer.fit()
        except KeyboardInterrupt:
            raise UserError(
                f"interrupted twice: stopped without saving; {run_dir / LAST} is as it was"
            ) from None
        finally:
            trainer.close()
    finally:
        if created_group:
            torch.distributed.destroy_process_group()


# ----------------------------------------------------------------------------------------------------------
# The trainer


@dataclass
class _Meter:
    """Training loss and throughput since the last report; the loss stays on the device until read."""

    loss: Tensor
    tokens: int = 0  # this rank's target tokens
    global_tokens: int = 0  # all ranks' target tokens
    start: float = field(default_factory=time.perf_counter)

    def read(self) -> tuple[float, float]:
        """(loss per token, global tokens per second); one device sync."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        return float(self.loss) / max(1, self.tokens), self.global_tokens / seconds


class Trainer:
    """One training run: the data, the model and optimizer, the loop and its bookkeeping."""

    def __init__(
        self,
        data: PreparedData,
        arch: str,
        model_config: ModelConfig,
        config: TrainConfig,
        run_dir: Path,
        device: torch.device,
        context: distributed.Distributed = distributed.Distributed(),
        checkpoint: Checkpoint | None = None,
    ):
        self.data, self.arch, self.model_config, self.config = data, arch, model_config, config
        self.run_dir, self.device, self.context = run_dir, device, context
        self.autocast = device.type == "cuda" and config.bf16  # bf16 autocast, fp32 master weights
        self.vocab = vocab_checksum(data.tokenizers)
        self._load_training_data()
        self._load_dev_data()
        self._build(checkpoint)
        self.log = RunLog(run_dir) if context.is_main else None
        self._stop_signal: str | None = None
        self._session_start = time.perf_counter()
        self._saved_step = -1
        self._epoch_batches: tuple[int, list[np.ndarray]] | None = None

    # ---- setup

    def _load_training_data(self) -> None:
        config = self.config
        start = time.perf_counter()
        self.pairs = TokenizedPairs.from_dataset(self.data.split("train"))
        kept = filter_lengths(self.pairs, config.max_source_len, config.max_target_len, config.batch_tokens)
        self.train_indices = kept.kept
        logger.info(
            "training pairs: %d of %d (read in %.1fs); dropped %d over the word limits, %d longer than "
            "--batch-tokens %d",
            len(kept.kept),
            len(self.pairs),
            time.perf_counter() - start,
            kept.too_many_words,
            kept.over_budget,
            config.batch_tokens,
        )
        if len(kept.kept) == 0:
            raise UserError(
                "no training pairs left after the length filters (raise --batch-tokens or the limits)"
            )
        self.fingerprint = data_fingerprint(self.data, len(self.pairs))

    def _load_dev_data(self) -> None:
        dev = TokenizedPairs.from_dataset(self.data.split("dev"))
        references = self.data.text("dev", "target")
        if len(references) != len(dev):
            raise UserError(
                f"{self.data.path}: the dev split has {len(dev)} pairs but {len(references)} reference lines"
            )
        count = len(dev) if self.config.dev_sentences == 0 else min(len(dev), self.config.dev_sentences)
        if count == 0:
            raise UserError(f"{self.data.path} has an empty dev split; validation needs dev sentences")
        # Always the same prefix, so that dev scores are comparable over the whole run.
        self.dev_pairs, self.dev_references = dev, references[:count]
        # Without gradients a batch needs far less memory than in training: batch as for decoding.
        budget = max(self.config.batch_tokens, DecodeConfig().batch_tokens)
        self.dev_batches = sorted_batches(dev, np.arange(count), budget)

    def _build(self, checkpoint: Checkpoint | None) -> None:
        from nmt.models import build_model

        config, rank = self.config, self.context.rank
        torch.manual_seed(config.seed)
        self.model = build_model(self.arch, self.model_config).to(self.device)
        self.fused = self.device.type == "cuda"
        self.optimizer = adamw(self.model, config, self.fused)
        self.progress = Progress(lr=LRState(plateau_lr=config.lr))
        if checkpoint is not None:
            self._restore(checkpoint)
        elif rank > 0:
            torch.manual_seed(config.seed + rank)  # other dropout masks on every rank
        self.model.train()
        self.train_model: torch.nn.Module = self.model
        if self.context.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        if config.compile:
            if self.arch == "transformer":
                self.train_model = torch.compile(self.train_model, dynamic=True)
            else:
                logger.warning(
                    "--compile helps the transformer only (the RNNs loop in Python); not compiling"
                )
        self._bad_run = torch.zeros((), dtype=torch.long, device=self.device)  # non-finite updates in a row
        self._skipped = torch.zeros((), dtype=torch.long, device=self.device)
        self._skipped_reported = 0
        logger.info(
            "%s: %.2fM parameters on %s%s",
            self.arch,
            self.model.num_parameters() / 1e6,
            self.device,
            " (bf16 autocast)" if self.autocast else "",
        )

    def _restore(self, checkpoint: Checkpoint) -> None:
        state = checkpoint.train_state
        self.model.load_state_dict(checkpoint.model_state)
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # the machine may differ from the one that saved
            group["fused"] = self.fused or None
            group["foreach"] = None
        self.progress = Progress.from_dict(state["progress"])
        saved, current = state["train_config"], to_dict(self.config)
        changed = [
            f"{key}: {saved.get(key)} -> {current[key]}" for key in current if saved.get(key) != current[key]
        ]
        if changed:
            logger.info("training settings changed on resuming: %s", "; ".join(changed))
        if state.get("data_fingerprint") != self.fingerprint:
            logger.warning("the training data differ from those this checkpoint was trained on")
        states = state["rng"]
        if len(states) != self.context.world_size:
            logger.warning(
                "resuming with %d processes, saved with %d: the run will differ from an uninterrupted one",
                self.context.world_size,
                len(states),
            )
        set_rng_state(states[self.context.rank % len(states)], self.device)
        logger.info(
            "resuming at step %d (epoch %d, batch %d)",
            self.progress.step,
            self.progress.epoch,
            self.progress.position,
        )

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    # ---- the loop

    def fit(self) -> TrainResult:
        from tqdm.auto import tqdm

        config, progress = self.config, self.progress
        per_update = self.context.world_size * config.accumulate
        reason: StopReason | None = self._limit_reached()
        bar = tqdm(
            total=config.max_steps,
            initial=progress.step,
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
            disable=not self.context.is_main,
            mininterval=1.0,
        )
        self._meter, self._bar_meter = self._new_meter(), self._new_meter()
        with bar, self._signals_set_a_flag():
            while reason is None:
                batches = self._batches(progress.epoch)
                for start in range(progress.position, len(batches), per_update):
                    window = batches[start : start + per_update]
                    self._update(window)
                    progress.step += 1
                    progress.position = start + len(window)
                    bar.update(1)
                    reason = self._after_update(bar)
                    if reason is not None:
                        break
                else:
                    progress.epoch += 1
                    progress.position = 0
                    if config.max_epochs is not None and progress.epoch > config.max_epochs:
                        reason = StopReason.max_epochs
        self._finish(reason)
        return TrainResult(
            run_dir=self.run_dir,
            steps=progress.step,
            epoch=progress.epoch,
            best_bleu=None if progress.best_bleu == -math.inf else progress.best_bleu,
            stop_reason=reason,
            minutes=self._seconds() / 60,
        )

    def _batches(self, epoch: int) -> list[np.ndarray]:
        """This epoch's batch order (the same on every rank), cut to a multiple of the number of ranks."""
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            config = self.config
            batches = token_batches(self.pairs, self.train_indices, config.batch_tokens, config.seed, epoch)
            usable = len(batches) // self.context.world_size * self.context.world_size
            if usable == 0:
                raise UserError(f"{len(batches)} batches cannot feed {self.context.world_size} processes")
            batches = batches[:usable]
            stats = padding_stats(self.pairs, batches)
            self.padding = stats.fraction
            logger.info("epoch %d: %d batches, %.1f%% padding", epoch, len(batches), 100 * stats.fraction)
            self._epoch_batches = (epoch, batches)
        return self._epoch_batches[1]

    def _update(self, window: list[np.ndarray]) -> None:
        """One optimizer update on this rank's share of `window` (world_size * accumulate batches)."""
        total = sum(target_tokens(self.pairs, batch) for batch in window)
        mine = window[self.context.rank :: self.context.world_size]
        loss = self._accumulate_within_memory(mine, total)
        if loss is None:  # not one sentence of this update fit in memory
            return
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.progress.step + 1, self.progress.lr)
        norm = self.clip_gradients()
        self._step_unless_nonfinite(norm)
        tokens = sum(target_tokens(self.pairs, batch) for batch in mine)
        for meter in (self._meter, self._bar_meter):
            meter.loss += loss
            meter.tokens += tokens
            meter.global_tokens += total
        self.progress.tokens += total

    def _accumulate_within_memory(self, batches: list[np.ndarray], total_tokens: int) -> Tensor | None:
        """`accumulate_gradients`, redone with a batch cut in two whenever one runs out of device memory.

        The gradient is the same however the sentences are grouped (the loss is a sum over tokens), so
        splitting changes nothing but speed. A sentence that does not fit even alone is left out of the
        update, with a warning; None when nothing was left. Under data parallelism the ranks would fall out
        of step, so there an out-of-memory error still ends the run.
        """
        pieces = list(batches)
        while True:
            try:
                return self.accumulate_gradients(pieces, total_tokens)
            except _PieceOutOfMemory as failure:
                where = failure.index
            piece = pieces[where]
            release_cached_memory(self.device)
            step = self.progress.step + 1
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
                target_tokens(self.pairs, piece),
            )
            total_tokens -= target_tokens(self.pairs, piece)
            del pieces[where]
            if not pieces:
                self.optimizer.zero_grad(set_to_none=True)
                return None

    def accumulate_gradients(self, batches: list[np.ndarray], total_tokens: int) -> Tensor:
        """Backpropagate sum(token losses) / total_tokens over `batches`; return the summed loss (detached).

        DDP averages gradients over ranks, hence the factor world_size: the result is the gradient of the
        update's summed loss over its global token count.
        """
        self.optimizer.zero_grad(set_to_none=True)
        scale = self.context.world_size / total_tokens
        loss_sum = torch.zeros((), device=self.device)
        failed = None
        for i, indices in enumerate(batches):
            try:
                loss_sum += self._forward_backward(indices, scale, last=i == len(batches) - 1)
            except Exception as error:  # noqa: BLE001 - anything but running out of memory is re-raised
                if self.context.enabled or not is_out_of_memory(error):
                    raise
                failed = i
                break
        if failed is not None:  # raised outside the handler, so that the failed batch's tensors are freed
            raise _PieceOutOfMemory(failed)
        return loss_sum

    def _forward_backward(self, indices: np.ndarray, scale: float, last: bool) -> Tensor:
        """Backpropagate one batch's summed token loss times `scale`; return the loss (detached)."""
        batch = collate(self.pairs, indices)
        batch = (batch.pin_memory() if self.device.type == "cuda" else batch).to(self.device)
        sync = nullcontext() if last or not self.context.enabled else self.train_model.no_sync()
        with sync:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.train_model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
            loss = token_loss(logits, batch.tgt_out, self.config.label_smoothing)
            (loss * scale).backward()
        return loss.detach()

    def clip_gradients(self) -> Tensor:
        """Clip the accumulated gradient to `clip_norm`; return its norm before clipping."""
        return clip_gradients(self.model, self.config.clip_norm)

    def _step_unless_nonfinite(self, norm: Tensor) -> None:
        bad = step_unless_nonfinite(self.optimizer, norm, self.fused)
        self._bad_run = (self._bad_run + 1) * bad
        self._skipped += bad

    def _check_divergence(self) -> None:
        skipped = int(self._skipped)
        if skipped > self._skipped_reported:
            logger.warning(
                "step %d: skipped %d update(s) with a non-finite loss",
                self.progress.step,
                skipped - self._skipped_reported,
            )
            self._skipped_reported = skipped
        if int(self._bad_run) >= MAX_BAD_UPDATES:
            kept = self.run_dir / LAST
            raise Diverged(
                f"training diverged: {MAX_BAD_UPDATES} updates in a row had a non-finite loss at step "
                f"{self.progress.step}; {kept if kept.exists() else 'no checkpoint'} is left as it was "
                "(try a lower --lr, more warmup or --clip-norm)"
            )

    def _after_update(self, bar) -> StopReason | None:
        config, step = self.config, self.progress.step
        report = step % LOG_EVERY == 0
        if report or self.device.type != "cuda":
            self._check_divergence()
        if report:
            self._report(bar)
        reason = self._limit_reached()
        if step % config.validate_every == 0 and self._validate(scheduled=True):
            reason = StopReason.early_stopping
        # While updates are being skipped as non-finite, keep the last good checkpoint rather than a new one.
        if step % config.save_every == 0 and int(self._bad_run) == 0:
            self._save(step_checkpoint(self.run_dir, step).name, LAST)
            if self.context.is_main:
                prune_step_checkpoints(self.run_dir, config.keep_checkpoints)
        if self._stop_requested(report):
            logger.warning("%s received: saving %s and stopping", self._stop_signal or "a signal", LAST)
            reason = StopReason.interrupted
        return reason

    def _limit_reached(self) -> StopReason | None:
        config = self.config
        if config.max_steps is not None and self.progress.step >= config.max_steps:
            return StopReason.max_steps
        if config.max_minutes is not None:
            # Ranks must agree; their clocks are compared at report steps only (one collective).
            if self.context.enabled and self.progress.step % LOG_EVERY:
                return None
            if distributed.any_rank(self._seconds() >= 60 * config.max_minutes, self.context, self.device):
                return StopReason.max_minutes
        return None

    def _stop_requested(self, report: bool) -> bool:
        if not self.context.enabled:
            return self._stop_signal is not None
        return report and distributed.any_rank(self._stop_signal is not None, self.context, self.device)

    def _finish(self, reason: StopReason) -> None:
        """Validate at the end of training (unless interrupted or just done), and save last.pt."""
        if reason != StopReason.interrupted and self.progress.last_validated != self.progress.step:
            self._validate(scheduled=False)
        if self._saved_step != self.progress.step:
            self._save(LAST)
        logger.info("stopped at step %d (%s)", self.progress.step, reason.value)

    def _seconds(self) -> float:
        return self.progress.seconds + time.perf_counter() - self._session_start

    # ---- reporting

    def _new_meter(self) -> _Meter:
        return _Meter(loss=torch.zeros((), device=self.device))

    def _report(self, bar) -> None:
        loss, speed = self._bar_meter.read()
        lr = self.optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{speed:,.0f}", refresh=False)
        self._bar_meter = self._new_meter()

    # ---- validation

    @torch.no_grad()
    def validate(self) -> Validation:
        """Dev loss, perplexity and BLEU of greedy translations, on the fixed dev prefix."""
        import sacrebleu

        from nmt.decoding import greedy_search
        from nmt.translation import source_limits

        decode = DecodeConfig()
        _, max_output_len = source_limits(self.model_config)
        model, tokenizer = self.model, self.data.tokenizers.target
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        hypotheses = [""] * len(self.dev_references)

        def score(indices: list[int]) -> list[str]:
            """Greedy translations of dev pairs `indices`; their loss is added only if the batch fits."""
            nonlocal loss_sum, tokens
            batch = collate(self.dev_pairs, np.asarray(indices)).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
                found = greedy_search(
                    model,
                    batch.src,
                    batch.src_lengths,
                    max_len_a=decode.max_len_a,
                    max_len_b=decode.max_len_b,
                    max_output_len=max_output_len,
                )
            loss_sum += token_loss(logits, batch.tgt_out, label_smoothing=0.0)
            tokens += batch.num_tokens
            return [tokenizer.decode(hypothesis.tokens) for hypothesis in found]

        def does_not_fit(index: int) -> str:
            logger.warning("dev sentence %d does not fit in memory even alone: scored as empty", index + 1)
            return ""

        model.eval()
        try:
            for indices in self.dev_batches:
                indices = indices.tolist()
                texts = run_in_pieces(score, indices, self.device, does_not_fit, what="dev batch")
                for index, text in zip(indices, texts, strict=True):
                    hypotheses[index] = text
        finally:
            model.train()
        dev_loss = float(loss_sum) / max(1, tokens)
        bleu = sacrebleu.corpus_bleu(hypotheses, [self.dev_references]).score
        return Validation(dev_loss=dev_loss, perplexity=math.exp(min(dev_loss, 100.0)), bleu=bleu)

    def _validate(self, scheduled: bool) -> bool:
        """Validate on rank 0, keep best.pt, log; scheduled validations also drive the plateau schedule and
        early stopping (the extra one at the end of training does not, so that stopping and resuming changes
        nothing). Returns True when training should stop early."""
        progress, config = self.progress, self.config
        decision = None
        if self.context.is_main:
            training = self._meter.read() if self._meter.tokens else (None, None)  # before validation time
            result = self.validate()
            improved = result.bleu > progress.best_bleu
            if improved:
                progress.best_bleu = result.bleu
            if scheduled:
                progress.lr = after_validation(config, progress.lr, result.bleu)
                progress.early = observe(progress.early, result.bleu)
            self._log_validation(result, *training)
            decision = (improved, progress.best_bleu, progress.lr.to_dict(), progress.early.to_dict())
        improved, best, lr_state, early = distributed.broadcast_object(decision, self.context)
        progress.best_bleu, progress.lr = best, LRState.from_dict(lr_state)
        progress.early, progress.last_validated = Plateau.from_dict(early), progress.step
        if improved:
            self._save(BEST)
        self._meter = self._new_meter()  # validation time is not training throughput
        self._bar_meter = self._new_meter()
        return scheduled and should_stop_early(progress.early, config.patience)

    def _log_validation(self, result: Validation, train_loss: float | None, speed: float | None) -> None:
        progress = self.progress
        entry = {
            "step": progress.step,
            "epoch": progress.epoch,
            "minutes": round(self._seconds() / 60, 3),
            "train_loss": train_loss,
            "dev_loss": result.dev_loss,
            "dev_ppl": result.perplexity,
            "dev_bleu": result.bleu,
            "best_bleu": progress.best_bleu,
            "lr": self.optimizer.param_groups[0]["lr"],
            "tokens_per_s": speed,
            "padding": getattr(self, "padding", None),
        }
        logger.info(
            "step %d: dev loss %.3f, ppl %.2f, BLEU %.2f (best %.2f), lr %.2e",
            progress.step,
            result.dev_loss,
            result.perplexity,
            result.bleu,
            progress.best_bleu,
            entry["lr"],
        )
        self.log.write(entry)

    # ---- checkpoints

    def _save(self, *names: str) -> None:
        """Write the checkpoint to run_dir/names[0] (atomically) and copy it to the other names.

        A collective: every rank contributes its random number generator state.
        """
        states = distributed.gather_objects(rng_state(self.device), self.context)
        if LAST in names:
            self._saved_step = self.progress.step
        if not self.context.is_main:
            return
        progress = dataclasses.replace(self.progress, seconds=self._seconds())
        checkpoint = Checkpoint(
            arch=self.arch,
            model_config=self.model_config,
            model_state=self.model.state_dict(),
            tokenizers=self.data.tokenizers,
            languages={"source": self.data.source_lang, "target": self.data.target_lang},
            train_state={
                "optimizer": self.optimizer.state_dict(),
                "progress": progress.to_dict(),
                "rng": states,
                "train_config": to_dict(self.config),
                "vocab_checksum": self.vocab,
                "data_fingerprint": self.fingerprint,
                "world_size": self.context.world_size,
            },
            meta={"step": progress.step, "best_bleu": progress.best_bleu, "data_dir": str(self.data.path)},
        )
        first = self.run_dir / names[0]
        save_checkpoint(first, checkpoint)
        for name in names[1:]:
            copy_atomically(first, self.run_dir / name)

    # ---- signals

    @contextmanager
    def _signals_set_a_flag(self):
        """Ctrl-C or SIGTERM asks the loop to stop after the current update and save; a second one aborts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
