"""When training stops: the configured limits, early stopping, and Ctrl-C or SIGTERM."""

from __future__ import annotations

import enum
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from nmt.config import TrainConfig


class StopReason(str, enum.Enum):
    max_steps = "max-steps"
    max_epochs = "max-epochs"
    max_minutes = "max-minutes"
    early_stopping = "early-stopping"
    interrupted = "interrupted"


def steps_reached(config: TrainConfig, step: int) -> bool:
    return config.max_steps is not None and step >= config.max_steps


def minutes_reached(config: TrainConfig, seconds: float) -> bool:
    return config.max_minutes is not None and seconds >= 60 * config.max_minutes


def epochs_done(config: TrainConfig, epoch: int) -> bool:
    """Whether epoch `epoch` is past the last one to train."""
    return config.max_epochs is not None and epoch > config.max_epochs


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
