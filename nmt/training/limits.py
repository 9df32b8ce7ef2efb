"""When training stops: the configured limits, early stopping, and Ctrl-C or SIGTERM; and what the time limit
needs to hold, validation and the final checkpoint included: measured costs of the work still to come."""

from __future__ import annotations

import enum
import signal
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from nmt.config import TrainConfig


class StopReason(str, enum.Enum):
    max_steps = "max-steps"
    max_epochs = "max-epochs"
    max_minutes = "max-minutes"
    early_stopping = "early-stopping"
    interrupted = "interrupted"


def steps_reached(config: TrainConfig, step: int) -> bool:
    return config.max_steps is not None and step >= config.max_steps


def epochs_done(config: TrainConfig, epoch: int) -> bool:
    """Whether epoch `epoch` is past the last one to train."""
    return config.max_epochs is not None and epoch > config.max_epochs


def multiples_between(after: int, upto: int, every: int) -> int:
    """How many multiples of `every` lie in (after, upto]."""
    return max(0, upto // every - after // every)


class RecentCosts:
    """Seconds that one kind of work (an update, a validation, a checkpoint) took lately, and what the next
    one is expected to take: the 90th percentile of the `keep` most recent measurements. Load changes, so
    older measurements are forgotten; among many, one outlier moves the estimate little; among few (keep=3),
    the estimate is simply their maximum. Until the first measurement it is `guess`."""

    def __init__(self, keep: int, guess: float = 0.0):
        self._recent: deque[float] = deque(maxlen=keep)
        self.guess = guess

    def add(self, seconds: float) -> None:
        self._recent.append(seconds)

    def guessed(self) -> bool:
        """Whether nothing has been measured yet, so that `expected` is the guess."""
        return not self._recent

    def expected(self) -> float:
        if not self._recent:
            return self.guess
        ordered = sorted(self._recent)
        return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


@dataclass
class Work:
    """Work still to do before training can stop."""

    updates: int = 0
    validations: int = 0
    saves: int = 0


@dataclass
class TimeBudget:
    """--max-minutes in seconds, and the measured costs that decide whether more work fits in it."""

    seconds: float
    update: RecentCosts = field(default_factory=lambda: RecentCosts(keep=50))
    # A validation's measurement includes the best.pt it may write.
    validation: RecentCosts = field(default_factory=lambda: RecentCosts(keep=3))
    save: RecentCosts = field(default_factory=lambda: RecentCosts(keep=3))

    def needs(self, work: Work) -> float:
        """Expected seconds of `work`."""
        return (
            work.updates * self.update.expected()
            + work.validations * self.validation.expected()
            + work.saves * self.save.expected()
        )

    def fits(self, elapsed: float, work: Work) -> bool:
        """Whether `work`, started after `elapsed` seconds of training, should end within the budget."""
        return elapsed + self.needs(work) <= self.seconds

    def describe(self) -> str:
        return (
            f"a validation is expected to take {self.validation.expected():.1f} s, a checkpoint "
            f"{self.save.expected():.1f} s"
        )


def work_to_go_on(config: TrainConfig, step: int, updates: int) -> Work:
    """The work of going on from `step` for `updates` more updates and then stopping: the updates, the
    scheduled validations and checkpoints on the way, and the end's validation and last.pt (done by the
    scheduled ones when the stopping step has them)."""
    before_end = step + updates - 1
    return Work(
        updates=updates,
        validations=multiples_between(step, before_end, config.validate_every) + 1,
        saves=multiples_between(step, before_end, config.save_every) + 1,
    )


class StopSignal:
    """Ctrl-C or SIGTERM asks training to stop after the current update and save; a second one aborts
    (raises KeyboardInterrupt). Handlers are installed only while `catching()` is active, in the main
    thread."""

    def __init__(self) -> None:
        self.received: str | None = None  # the signal's name, once one arrived

    @contextmanager
    def catching(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return

        def handler(signum, frame):
            if self.received is not None:
                raise KeyboardInterrupt
            self.received = signal.Signals(signum).name

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
