"""The training loop: it runs updates over the epoch's batch order and, between them, reports, validates,
saves checkpoints and checks the limits. What an update computes is nmt/training/update.py, what validation
computes is nmt/training/validation.py, and what a checkpoint holds is nmt/training/state.py.

One update consumes `world_size * accumulate` consecutive batches of the epoch's batch order (a pure function
of seed and epoch, nmt/data/batching.py); rank r takes every world_size-th of them. Every rank knows the
update's total target tokens without communication, because the batch order is the same everywhere, so
2 processes x 1 batch, 1 process x 2 accumulated batches and 1 process x 1 batch of the same sentences all
give the same gradient.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from nmt.checkpoint import Checkpoint, save_checkpoint
from nmt.data.batching import (
    Batch,
    collate,
    padding_stats,
    target_tokens,
    token_batches,
)
from nmt.errors import UserError
from nmt.training import distributed
from nmt.training.limits import StopReason, StopSignal, epochs_done, minutes_reached, steps_reached
from nmt.training.run_files import (
    BEST,
    LAST,
    RunLog,
    copy_atomically,
    prune_step_checkpoints,
    rng_state,
    step_checkpoint,
)
from nmt.training.schedules import (
    LRState,
    Plateau,
    after_validation,
    learning_rate,
    observe,
    should_stop_early,
)
from nmt.training.setup import Setup
from nmt.training.state import train_state
from nmt.training.update import accumulate_within_memory
from nmt.training.validation import Validation, validate

logger = logging.getLogger(__name__)

LOG_EVERY = 50  # updates between progress reports (each costs one device sync)
MAX_BAD_UPDATES = 5  # updates in a row with a non-finite gradient before training stops


class Diverged(UserError):
    """Too many updates in a row had a non-finite gradient."""


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
    """One training run's loop: updates, and between them reports, validation, checkpoints and limits."""

    def __init__(self, setup: Setup, run_dir: Path):
        self.setup, self.run_dir = setup, run_dir
        # What the loop reads at every step, by name.
        self.data, self.arch, self.config = setup.data, setup.arch, setup.config
        self.device, self.context, self.autocast = setup.device, setup.context, setup.autocast
        self.training, self.dev, self.progress = setup.training, setup.dev, setup.progress
        self.model, self.updater = setup.model, setup.updater

        self.log = RunLog(run_dir) if self.context.is_main else None
        self.stop_signal = StopSignal()
        self.padding: float | None = None  # the share of padding in this epoch's batches
        self._session_start = time.perf_counter()
        self._saved_step = -1  # the step of the newest last.pt
        self._epoch_batches: tuple[int, list[np.ndarray]] | None = None
        self._bad_run = torch.zeros((), dtype=torch.long, device=self.device)  # non-finite updates in a row
        self._skipped = torch.zeros((), dtype=torch.long, device=self.device)
        self._skipped_reported = 0
        self._meter = self._new_meter()  # since the last validation: the training loss and speed it logs
        self._bar_meter = self._new_meter()  # since the last progress report

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def seconds(self) -> float:
        """Training time over all sessions of this run."""
        return self.progress.seconds + time.perf_counter() - self._session_start

    # ---- the loop

    def fit(self) -> TrainResult:
        """Train until a limit is reached."""
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
        with bar, self.stop_signal.catching():
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
                    if epochs_done(config, progress.epoch):
                        reason = StopReason.max_epochs
        self._finish(reason)
        return TrainResult(
            run_dir=self.run_dir,
            steps=progress.step,
            epoch=progress.epoch,
            best_bleu=None if progress.best_bleu == -math.inf else progress.best_bleu,
            stop_reason=reason,
            minutes=self.seconds() / 60,
        )

    def _batches(self, epoch: int) -> list[np.ndarray]:
        """This epoch's batch order (the same on every rank), cut to a multiple of the number of ranks."""
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            config, pairs = self.config, self.training.pairs
            batches = token_batches(pairs, self.training.kept, config.batch_tokens, config.seed, epoch)
            usable = len(batches) // self.context.world_size * self.context.world_size
            if usable == 0:
                raise UserError(f"{len(batches)} batches cannot feed {self.context.world_size} processes")
            batches = batches[:usable]
            self.padding = padding_stats(pairs, batches).fraction
            logger.info("epoch %d: %d batches, %.1f%% padding", epoch, len(batches), 100 * self.padding)
            self._epoch_batches = (epoch, batches)
        return self._epoch_batches[1]

    def _update(self, window: list[np.ndarray]) -> None:
        """One optimizer update on this rank's share of `window` (world_size * accumulate batches)."""
        pairs = self.training.pairs
        total = sum(target_tokens(pairs, batch) for batch in window)
        mine = window[self.context.rank :: self.context.world_size]
        loss = accumulate_within_memory(
            self.updater,
            mine,
            total,
            load=self.load_batch,
            tokens_of=lambda piece: target_tokens(pairs, piece),
            step=self.progress.step + 1,
        )
        if loss is None:  # not one sentence of this update fit in memory
            return
        bad = self.updater.apply(learning_rate(self.config, self.progress.step + 1, self.progress.lr))
        self._bad_run = (self._bad_run + 1) * bad
        self._skipped += bad
        tokens = sum(target_tokens(pairs, batch) for batch in mine)
        for meter in (self._meter, self._bar_meter):
            meter.loss += loss
            meter.tokens += tokens
            meter.global_tokens += total
        self.progress.tokens += total

    def load_batch(self, indices: np.ndarray) -> Batch:
        """The padded batch of training pairs `indices`, on the training device."""
        batch = collate(self.training.pairs, indices)
        return (batch.pin_memory() if self.device.type == "cuda" else batch).to(self.device)

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
            logger.warning(
                "%s received: saving %s and stopping", self.stop_signal.received or "a signal", LAST
            )
            reason = StopReason.interrupted
        return reason

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

    def _limit_reached(self) -> StopReason | None:
        if steps_reached(self.config, self.progress.step):
            return StopReason.max_steps
        if self.config.max_minutes is not None:
            # Ranks must agree; their clocks are compared at report steps only (one collective).
            if self.context.enabled and self.progress.step % LOG_EVERY:
                return None
            if distributed.any_rank(minutes_reached(self.config, self.seconds()), self.context, self.device):
                return StopReason.max_minutes
        return None

    def _stop_requested(self, report: bool) -> bool:
        received = self.stop_signal.received is not None
        if not self.context.enabled:
            return received
        return report and distributed.any_rank(received, self.context, self.device)

    def _finish(self, reason: StopReason) -> None:
        """Validate at the end of training (unless interrupted or just done), and save last.pt."""
        if reason != StopReason.interrupted and self.progress.last_validated != self.progress.step:
            self._validate(scheduled=False)
        if self._saved_step != self.progress.step:
            self._save(LAST)
        logger.info("stopped at step %d (%s)", self.progress.step, reason.value)

    # ---- reporting

    def _new_meter(self) -> _Meter:
        return _Meter(loss=torch.zeros((), device=self.device))

    def _report(self, bar) -> None:
        loss, speed = self._bar_meter.read()
        lr = self.updater.optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{speed:,.0f}", refresh=False)
        self._bar_meter = self._new_meter()

    # ---- validation

    def _validate(self, scheduled: bool) -> bool:
        """Validate on rank 0, keep best.pt, log; scheduled validations also drive the plateau schedule and
        early stopping (the extra one at the end of training does not, so that stopping and resuming changes
        nothing). Returns True when training should stop early."""
        progress, config = self.progress, self.config
        decision = None
        if self.context.is_main:
            training = self._meter.read() if self._meter.tokens else (None, None)  # before validation time
            result = validate(self.model, self.dev, self.data.tokenizers.target, self.device, self.autocast)
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
            "minutes": round(self.seconds() / 60, 3),
            "train_loss": train_loss,
            "dev_loss": result.dev_loss,
            "dev_ppl": result.perplexity,
            "dev_bleu": result.bleu,
            "best_bleu": progress.best_bleu,
            "lr": self.updater.optimizer.param_groups[0]["lr"],
            "tokens_per_s": speed,
            "padding": self.padding,
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
        progress = dataclasses.replace(self.progress, seconds=self.seconds())
        checkpoint = Checkpoint(
            arch=self.arch,
            model_config=self.setup.model_config,
            model_state=self.model.state_dict(),
            tokenizers=self.data.tokenizers,
            languages={"source": self.data.source_lang, "target": self.data.target_lang},
            train_state=train_state(
                self.updater.optimizer, progress, states, self.config, self.setup.fingerprint
            ),
            meta={"step": progress.step, "best_bleu": progress.best_bleu, "data_dir": str(self.data.path)},
        )
        first = self.run_dir / names[0]
        save_checkpoint(first, checkpoint)
        for name in names[1:]:
            copy_atomically(first, self.run_dir / name)
