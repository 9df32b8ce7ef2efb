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
from nmt.training.limits import (
    StopReason,
    StopSignal,
    TimeBudget,
    epochs_done,
    steps_reached,
    work_to_go_on,
)
from nmt.training.run_files import (
    BEST,
    LAST,
    RunLog,
    copy_atomically,
    make_provisional_best,
    prune_step_checkpoints,
    rng_state,
    settle_best,
    step_checkpoint,
    write_scratch_checkpoint,
)
from nmt.training.schedules import (
    after_validation,
    learning_rate,
    observe,
    should_stop_early,
)
from nmt.training.setup import Setup
from nmt.training.state import Progress, train_state
from nmt.training.update import accumulate_within_memory
from nmt.training.validation import Validation, estimate_validation_seconds, validate, validation_entry

logger = logging.getLogger(__name__)

LOG_EVERY = 50  # updates between progress reports (each costs one device sync)
MAX_BAD_UPDATES = 5  # updates in a row with a non-finite gradient before training stops
# A checkpoint holds the weights and AdamW's two moment estimates, each the size of the weights.
CHECKPOINT_COPIES_OF_WEIGHTS = 3


class Diverged(UserError):
    """Too many updates in a row had a non-finite gradient."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epoch: int
    best_bleu: float | None  # dev BLEU of the model in best.pt; None when no validation happened
    stop_reason: StopReason
    minutes: float  # training time over all sessions of this run

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / BEST

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / LAST


@dataclass(frozen=True)
class _Validated:
    improved: bool  # beat the best scheduled validation
    stop_early: bool


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

    clock = staticmethod(time.perf_counter)  # training time and the costs that the time limit is checked with

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
        self._session_start = self.clock()
        minutes = self.config.max_minutes
        self.budget = TimeBudget(60 * minutes) if minutes is not None else None
        self._mark = self._session_start  # the end of the last decision point: updates are timed from it
        self._saved_step = -1  # the step of the newest last.pt
        # best.pt as the previous session left it: provisional (`Progress.provisional_bleu`) until settled
        self._start_step = self.progress.step
        self._inherited_provisional = self.progress.provisional_bleu > -math.inf
        self._settled = False
        self._provisional = False  # this session's end put its model in best.pt
        self._early_end: tuple[int, Validation] | None = None  # (step, result): the end, validated early
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
        return self.progress.seconds + self.clock() - self._session_start

    # ---- the loop

    def fit(self) -> TrainResult:
        """Train until a limit is reached."""
        config, progress = self.config, self.progress
        per_update = self.context.world_size * config.accumulate
        self._estimate_costs()
        reason: StopReason | None = self._limit_reached(start=True)
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
                self._mark = self.clock()  # made once an epoch, the batch order is no update's cost
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
            best_bleu=None if progress.best_pt_bleu == -math.inf else progress.best_pt_bleu,
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
        """Report, validate, save and check the limits after update `progress.step`.

        A scheduled validation runs even when training stops at its step, as it would in a run that went on:
        so the validations that drive best.pt, the plateau schedule and early stopping do not depend on
        where a run was stopped and resumed.
        """
        config, step = self.config, self.progress.step
        report = step % LOG_EVERY == 0
        if report or self.device.type != "cuda":
            self._check_divergence()
        if report:
            self._report(bar)
        if self.budget is not None:
            self.budget.update.add(self.clock() - self._mark)
        reason = StopReason.max_steps if steps_reached(config, step) else None
        if step % config.validate_every == 0 and self._validate(scheduled=True).stop_early:
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
        if reason is None:
            reason = self._limit_reached()
        self._mark = self.clock()
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

    def _limit_reached(self, start: bool = False) -> StopReason | None:
        """Whether to stop before the next update (`start`: before the session's first)."""
        if steps_reached(self.config, self.progress.step):
            return StopReason.max_steps
        if self.budget is None:
            return None
        # Ranks must agree. Rank 0, which alone validates and so has the longest clock, decides, and the
        # decision is shared at report steps only (one collective): so it must look ahead to the next one.
        step = self.progress.step
        if self.context.enabled and step % LOG_EVERY and not start:
            return None
        ahead = LOG_EVERY - step % LOG_EVERY if self.context.enabled else 1
        if self.config.max_steps is not None:
            ahead = min(ahead, self.config.max_steps - step)
        work = work_to_go_on(self.config, step, ahead)
        out_of_time = self.context.is_main and not self.budget.fits(self.seconds(), work)
        if out_of_time and not start and not self.context.enabled and self.budget.validation.guessed():
            out_of_time = not self._validate_the_end_early(step)
        if distributed.any_rank(out_of_time, self.context, self.device):
            return StopReason.max_minutes
        return None

    def _validate_the_end_early(self, step: int) -> bool:
        """The estimate of a validation says that time is up, but no validation has been measured yet: run the
        end's validation now, for real, and go on training if what remains still fits an update and another
        such end. Returns whether training goes on.

        The estimate errs long (before training, the model decodes every sentence to the length limit): on
        the synthetic corpus it said 28.8 s for a validation that took 4.4 s, and trusting it threw away a
        seventh of a 3-minute budget. Measuring costs at most one validation: if nothing more fits, this is
        the end's validation, done early, and `_finish` uses its result (the model has not changed)."""
        start = self.clock()
        result = self._run_validation()
        self.budget.validation.add(self.clock() - start)
        if self.budget.fits(self.seconds(), work_to_go_on(self.config, step, 1)):
            return True
        self._early_end = (step, result)
        return False

    def _estimate_costs(self) -> None:
        """Before the first validation and checkpoint are measured, the time limit needs estimates of what
        they cost: rank 0 times a share of a validation's steps, scaled to all of them
        (`estimate_validation_seconds` says why that is an honest estimate), and a write of the weights to
        the run directory, scaled to a checkpoint's size. Both are measured on this machine under its
        present load rather than guessed; real measurements replace them as soon as there are some."""
        if self.budget is None or not self.context.is_main:
            return
        start = self.clock()
        write_scratch_checkpoint(self.run_dir, self.model.state_dict())
        save = CHECKPOINT_COPIES_OF_WEIGHTS * (self.clock() - start)
        decode = estimate_validation_seconds(self.model, self.dev, self.device, self.autocast, self.clock)
        self.budget.save.guess = save
        self.budget.validation.guess = decode + save  # the first validation is likely to write best.pt
        logger.info("time limit %.1f s: until measured, %s", self.budget.seconds, self.budget.describe())

    def _stop_requested(self, report: bool) -> bool:
        received = self.stop_signal.received is not None
        if not self.context.enabled:
            return received
        return report and distributed.any_rank(received, self.context, self.device)

    def _finish(self, reason: StopReason) -> None:
        """Validate at the end of training (unless interrupted or just done), and save last.pt; a model that
        beats every scheduled validation also goes to best.pt, provisionally (`Progress.provisional_bleu`)."""
        progress, start = self.progress, self.clock()
        if reason != StopReason.interrupted and progress.last_validated != progress.step:
            early = self._early_end[1] if self._early_end and self._early_end[0] == progress.step else None
            self._provisional = self._validate(scheduled=False, result=early).improved
        validated = self.clock()
        if self._provisional or self._saved_step != progress.step:
            self._save(LAST)
        if self._provisional and self.context.is_main:
            make_provisional_best(self.run_dir)
        self._log_end(reason, validation=validated - start, save=self.clock() - validated)

    def _log_end(self, reason: StopReason, validation: float, save: float) -> None:
        budget = "" if self.budget is None else f" of a {self.budget.seconds:.1f} s budget"
        logger.info(
            "stopped at step %d (%s) after %.1f s of training%s; the end took %.1f s (validation %.1f s, "
            "checkpoint %.1f s)",
            self.progress.step,
            reason.value,
            self.seconds(),
            budget,
            validation + save,
            validation,
            save,
        )

    # ---- reporting

    def _new_meter(self) -> _Meter:
        return _Meter(loss=torch.zeros((), device=self.device))

    def _report(self, bar) -> None:
        loss, speed = self._bar_meter.read()
        lr = self.updater.optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{speed:,.0f}", refresh=False)
        self._bar_meter = self._new_meter()

    # ---- validation

    def _validate(self, scheduled: bool, result: Validation | None = None) -> _Validated:
        """Validate on rank 0 and log. A scheduled validation drives best.pt (written here), the plateau
        schedule and early stopping; the one at the end of a session only records a better model in
        `progress.provisional_bleu` (the caller saves it), so that stopping and resuming changes nothing.
        `result`: the validation of the present model, when it was already run."""
        progress, config = self.progress, self.config
        start = self.clock()
        decision = None
        if self.context.is_main:
            training = self._meter.read() if self._meter.tokens else (None, None)  # before validation time
            result = result if result is not None else self._run_validation()
            improved = result.bleu > progress.best_bleu
            if scheduled:
                progress.best_bleu = max(progress.best_bleu, result.bleu)
                progress.lr = after_validation(config, progress.lr, result.bleu)
                progress.early = observe(progress.early, result.bleu)
            elif improved:
                progress.provisional_bleu = result.bleu
            self._log_validation(result, *training, scheduled=scheduled, improved=improved)
            decision = (improved, progress.to_dict())
        improved, values = distributed.broadcast_object(decision, self.context)
        decided = Progress.from_dict(values)
        progress.best_bleu, progress.provisional_bleu = decided.best_bleu, decided.provisional_bleu
        progress.lr, progress.early, progress.last_validated = decided.lr, decided.early, progress.step
        if improved and scheduled:
            self._save(BEST)
        if scheduled and self.budget is not None:
            self.budget.validation.add(self.clock() - start)
        self._meter = self._new_meter()  # validation time is not training throughput
        self._bar_meter = self._new_meter()
        return _Validated(improved, scheduled and should_stop_early(progress.early, config.patience))

    def _run_validation(self) -> Validation:
        return validate(self.model, self.dev, self.data.tokenizers.target, self.device, self.autocast)

    def _log_validation(
        self,
        result: Validation,
        train_loss: float | None,
        speed: float | None,
        scheduled: bool,
        improved: bool,
    ) -> None:
        progress = self.progress
        entry = validation_entry(
            result,
            progress=progress,
            minutes=self.seconds() / 60,
            lr=self.updater.optimizer.param_groups[0]["lr"],
            train_loss=train_loss,
            speed=speed,
            padding=self.padding,
            scheduled=scheduled,
            improved=improved,
        )
        self.log.write(entry)

    # ---- checkpoints

    def _save(self, *names: str) -> None:
        """Write the checkpoint to run_dir/names[0] (atomically) and copy it to the other names.

        A collective: every rank contributes its random number generator state.
        """
        start = self.clock()
        # The first checkpoint that a resumed run writes after training settles the best.pt that the previous
        # session's end may have left provisionally (after the write, so that a run that fails before it
        # leaves the run directory as it was).
        settling = not self._settled and self.progress.step > self._start_step
        if settling and not self._provisional:
            self.progress.provisional_bleu = -math.inf
        states = distributed.gather_objects(rng_state(self.device), self.context)
        if LAST in names:
            self._saved_step = self.progress.step
        self._settled = self._settled or settling
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
            meta={"step": progress.step, "best_bleu": progress.best_pt_bleu, "data_dir": str(self.data.path)},
        )
        first = self.run_dir / names[0]
        save_checkpoint(first, checkpoint)
        for name in names[1:]:
            copy_atomically(first, self.run_dir / name)
        if settling:
            settle_best(self.run_dir, provisional=self._inherited_provisional, replaced=BEST in names)
        if self.budget is not None:
            self.budget.save.add(self.clock() - start)
