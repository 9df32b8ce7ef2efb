"""The checkpointed training state: where training stands (`Progress`), and how a training checkpoint is
made from a run and put back into one.

A checkpoint saved between updates holds everything the next update depends on (weights, optimizer, schedule,
place in the batch order, random number generators), so an interrupted run resumes to the very same result.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from nmt.checkpoint import Checkpoint
from nmt.config import TrainConfig, to_dict
from nmt.training.run_files import set_rng_state
from nmt.training.schedules import LRState, Plateau

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # updates done (skipped non-finite ones included)
    epoch: int = 1
    position: int = 0  # index of the next batch in this epoch's batch order
    best_bleu: float = -math.inf  # of scheduled validations only, as for the plateau and early stopping
    early: Plateau = field(default_factory=Plateau)  # dev BLEU for early stopping
    lr: LRState = field(default_factory=lambda: LRState(plateau_lr=0.0))
    seconds: float = 0.0  # training time of earlier sessions
    tokens: int = 0  # target tokens trained on
    last_validated: int = -1  # the step of the last validation, scheduled or at the end of a session
    # Dev BLEU of the model that the validation at the end of a session put in best.pt, having beaten every
    # scheduled validation; -inf when best.pt holds the scheduled validations' pick. That model stays in
    # best.pt only until the run is resumed and writes a checkpoint (run_files.settle_best), so that a
    # resumed run picks the same best.pt as one that never stopped.
    provisional_bleu: float = -math.inf

    @property
    def best_pt_bleu(self) -> float:
        """Dev BLEU of the model in best.pt (-inf when there is none)."""
        return max(self.best_bleu, self.provisional_bleu)

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
            "provisional_bleu": self.provisional_bleu,
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
            # Checkpoints written before this field existed knew no provisional best.pt.
            provisional_bleu=float(values.get("provisional_bleu", -math.inf)),
        )


@dataclass
class RunFingerprint:
    """What a resumed run is compared with: the vocabulary, the training data and the number of processes."""

    vocab_checksum: str
    data_fingerprint: str
    world_size: int


def train_state(
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    rng_states: list[dict[str, Any]],
    config: TrainConfig,
    fingerprint: RunFingerprint,
) -> dict[str, Any]:
    """The `train_state` of a checkpoint: everything but the model that the next update depends on."""
    return {
        "optimizer": optimizer.state_dict(),
        "progress": progress.to_dict(),
        "rng": rng_states,
        "train_config": to_dict(config),
        "vocab_checksum": fingerprint.vocab_checksum,
        "data_fingerprint": fingerprint.data_fingerprint,
        "world_size": fingerprint.world_size,
    }


def restore(
    checkpoint: Checkpoint,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    fingerprint: RunFingerprint,
    rank: int,
    device: torch.device,
    fused: bool,
) -> Progress:
    """Put a training checkpoint's weights, optimizer and random generators back; return its progress."""
    state = checkpoint.train_state
    model.load_state_dict(checkpoint.model_state)
    optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:  # the machine may differ from the one that saved
        group["fused"] = fused or None
        group["foreach"] = None
    progress = Progress.from_dict(state["progress"])
    saved, current = state["train_config"], to_dict(config)
    changed = [
        f"{key}: {saved.get(key)} -> {current[key]}" for key in current if saved.get(key) != current[key]
    ]
    if changed:
        logger.info("training settings changed on resuming: %s", "; ".join(changed))
    if state.get("data_fingerprint") != fingerprint.data_fingerprint:
        logger.warning("the training data differ from those this checkpoint was trained on")
    states = state["rng"]
    if len(states) != fingerprint.world_size:
        logger.warning(
            "resuming with %d processes, saved with %d: the run will differ from an uninterrupted one",
            fingerprint.world_size,
            len(states),
        )
    set_rng_state(states[rank % len(states)], device)
    logger.info("resuming at step %d (epoch %d, batch %d)", progress.step, progress.epoch, progress.position)
    return progress
