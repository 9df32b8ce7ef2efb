"""Learning-rate schedules and early stopping, as pure functions of plain numbers.

- inverse square root with linear warmup (Vaswani et al. 2017, Section 5.3), the Transformer default;
- constant, decayed by a factor when dev BLEU stops improving ("plateau"), the RNN default;
- constant.

The plateau and early-stopping bookkeeping is a small frozen dataclass updated by pure functions, so it
is trivially saved in a checkpoint and tested without an optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from nmt.config import Schedule, TrainConfig


def inverse_sqrt_lr(step: int, warmup: int, peak: float) -> float:
    """Linear warmup to `peak` over `warmup` updates, then peak * sqrt(warmup / step).

    Vaswani et al. 2017, eq. 3, with the d_model^-0.5 factor folded into `peak`. `step` counts from 1.
    """
    step = max(step, 1)
    if warmup <= 0:
        return peak / math.sqrt(step)
    if step < warmup:
        return peak * step / warmup
    return peak * math.sqrt(warmup / step)


def constant_lr(step: int, peak: float) -> float:
    return peak


@dataclass(frozen=True)
class Plateau:
    """Progress of a score that should rise (dev BLEU): the best so far and how long since it improved."""

    best: float = -math.inf
    bad: int = 0  # validations in a row without improvement

    def to_dict(self) -> dict[str, float]:
        return {"best": self.best, "bad": self.bad}

    @classmethod
    def from_dict(cls, values: dict) -> Plateau:
        return cls(best=float(values["best"]), bad=int(values["bad"]))


def observe(plateau: Plateau, score: float) -> Plateau:
    """The plateau after one more validation with `score`."""
    if score > plateau.best:
        return Plateau(best=score, bad=0)
    return replace(plateau, bad=plateau.bad + 1)


def plateau_decay(
    lr: float, plateau: Plateau, patience: int, factor: float, min_lr: float
) -> tuple[float, Plateau]:
    """Decay `lr` by `factor` once `patience` validations in a row did not improve; then count afresh."""
    if plateau.bad >= max(1, patience):
        return max(min_lr, lr * factor), replace(plateau, bad=0)
    return lr, plateau


def should_stop_early(plateau: Plateau, patience: int) -> bool:
    """Stop after `patience` validations in a row without a better score (0 disables)."""
    return patience > 0 and plateau.bad >= patience


@dataclass(frozen=True)
class LRState:
    """What the learning rate depends on besides the step: the plateau-decayed rate and its counter."""

    plateau_lr: float
    plateau: Plateau = Plateau()

    def to_dict(self) -> dict:
        return {"plateau_lr": self.plateau_lr, "plateau": self.plateau.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> LRState:
        return cls(plateau_lr=float(values["plateau_lr"]), plateau=Plateau.from_dict(values["plateau"]))


def learning_rate(config: TrainConfig, step: int, state: LRState) -> float:
    """The learning rate for update number `step` (from 1)."""
    if config.schedule == Schedule.inverse_sqrt:
        return inverse_sqrt_lr(step, config.warmup_steps, config.lr)
    if config.schedule == Schedule.plateau:
        return state.plateau_lr
    return constant_lr(step, config.lr)


def after_validation(config: TrainConfig, state: LRState, bleu: float) -> LRState:
    """Update the plateau schedule with a new dev BLEU (a no-op for the other schedules' rate)."""
    plateau = observe(state.plateau, bleu)
    if config.schedule != Schedule.plateau:
        return replace(state, plateau=plateau)
    lr, plateau = plateau_decay(
        state.plateau_lr, plateau, config.plateau_patience, config.plateau_factor, config.min_lr
    )
    return LRState(plateau_lr=lr, plateau=plateau)
