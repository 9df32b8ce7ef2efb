"""What a training run keeps on disk, and the checks that keep it consistent.

RUN_DIR/last.pt          the latest state (resume from here)
RUN_DIR/best.pt          the best dev BLEU so far (possibly the final model, provisionally: see
                         `make_provisional_best`)
RUN_DIR/best-scheduled.pt  the scheduled validations' pick, while best.pt holds the final model
RUN_DIR/ckpt-STEP.pt     the `keep_checkpoints` most recent periodic checkpoints
RUN_DIR/log.jsonl        one line per validation
RUN_DIR/config.yaml      the resolved model and training configs (usable again as --config)
RUN_DIR/tensorboard/     event files, when tensorboard is installed
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from nmt.checkpoint import Checkpoint
from nmt.config import TrainConfig, to_dict
from nmt.data.prepared import MANIFEST_FILE, PreparedData
from nmt.data.tokenizer import TokenizerPair
from nmt.errors import UserError
from nmt.files import atomic_write, check_writable, replacing
from nmt.models import ModelConfig

logger = logging.getLogger(__name__)

BEST = "best.pt"
SCHEDULED_BEST = "best-scheduled.pt"
LAST = "last.pt"
LOG = "log.jsonl"
CONFIG = "config.yaml"
TENSORBOARD = "tensorboard"
_STEP_CHECKPOINT = re.compile(r"ckpt-(\d+)\.pt")


def step_checkpoint(run_dir: Path, step: int) -> Path:
    return run_dir / f"ckpt-{step}.pt"


def step_checkpoints(run_dir: Path) -> list[Path]:
    """The periodic checkpoints in `run_dir`, oldest first."""
    found = [
        (int(m.group(1)), p) for p in run_dir.glob("ckpt-*.pt") if (m := _STEP_CHECKPOINT.fullmatch(p.name))
    ]
    return [path for _, path in sorted(found)]


def prune_step_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the `keep` newest periodic checkpoints."""
    paths = step_checkpoints(run_dir)
    for path in paths[: max(0, len(paths) - keep)]:
        path.unlink(missing_ok=True)


def copy_atomically(source: Path, target: Path) -> None:
    """`target` becomes a copy of `source`: a hard link where possible (free), a copy otherwise."""
    with replacing(target) as tmp:
        tmp.unlink(missing_ok=True)  # left by a process of the same id that was killed
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def make_provisional_best(run_dir: Path) -> None:
    """best.pt becomes last.pt, the model of a session's end that beat every scheduled validation; the
    scheduled validations' pick is kept as best-scheduled.pt (hard links: free) for `settle_best`. When
    best-scheduled.pt exists already, best.pt is a provisional one and the pick is safe there."""
    best, kept = run_dir / BEST, run_dir / SCHEDULED_BEST
    if best.exists() and not kept.exists():
        copy_atomically(best, kept)
    copy_atomically(run_dir / LAST, best)


def settle_best(run_dir: Path, provisional: bool, replaced: bool) -> None:
    """Once a resumed run has written a checkpoint, best.pt goes back to what the scheduled validations chose:
    unless a scheduled validation has just `replaced` it, the pick that `make_provisional_best` kept is put
    back in one rename, or, when there is none and best.pt was `provisional`, best.pt is removed."""
    best, kept = run_dir / BEST, run_dir / SCHEDULED_BEST
    if replaced:
        kept.unlink(missing_ok=True)
    elif kept.exists():
        os.replace(kept, best)
        logger.info("%s: back to the best scheduled validation's model as the run went on", BEST)
    elif provisional and best.exists():
        best.unlink()
        logger.info("%s removed as the run went on: no scheduled validation has chosen one yet", BEST)


def write_scratch_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write `state` into `run_dir` as checkpoints are written (atomically, flushed to disk), and remove it:
    to time a checkpoint write on this disk under its present load."""
    scratch = run_dir / f".write-probe-{os.getpid()}.pt"
    try:
        atomic_write(scratch, lambda handle: torch.save(state, handle))
    finally:
        scratch.unlink(missing_ok=True)


def prepare_run_dir(run_dir: Path, resuming: bool, force: bool, main: bool = True) -> None:
    """Refuse to start a fresh run over existing checkpoints, unless `force`: then the main process removes
    the old run's files."""
    if main:  # before anything is removed, and before any training time is spent
        check_writable(run_dir / LAST)
    named = (run_dir / BEST, run_dir / LAST, run_dir / SCHEDULED_BEST)
    existing = [p for p in named if p.exists()] + step_checkpoints(run_dir)
    if existing and not resuming:
        if not force:
            raise UserError(
                f"{run_dir} already holds checkpoints ({existing[0].name}); "
                "continue it with --resume, or start over with --force"
            )
        if not main:
            return
        logger.warning("--force: removing the previous run's checkpoints and logs in %s", run_dir)
        for path in existing:
            path.unlink()
        (run_dir / LOG).unlink(missing_ok=True)
        shutil.rmtree(run_dir / TENSORBOARD, ignore_errors=True)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)


def write_config(run_dir: Path, arch: str, data_dir: Path, model: ModelConfig, train: TrainConfig) -> None:
    header = f"# nmt train --model {arch} --data {data_dir}\n"
    body = yaml.safe_dump({"model": to_dict(model), "train": to_dict(train)}, sort_keys=False)
    atomic_write(run_dir / CONFIG, lambda handle: handle.write((header + body).encode("utf-8")))


# ----------------------------------------------------------------------------------------------------------
# Fingerprints: which data and vocabulary a checkpoint was trained on


def vocab_checksum(tokenizers: TokenizerPair) -> str:
    digest = hashlib.sha256(tokenizers.source.model_proto)
    digest.update(tokenizers.target.model_proto)
    return digest.hexdigest()


def data_fingerprint(data: PreparedData, train_size: int) -> str:
    digest = hashlib.sha256((data.path / MANIFEST_FILE).read_bytes())
    digest.update(str(train_size).encode())
    return digest.hexdigest()


def check_resumable(checkpoint: Checkpoint, path: Path, arch: str, model: ModelConfig, vocab: str) -> None:
    """Refuse a training checkpoint of another architecture, model config or vocabulary."""
    if checkpoint.arch != arch:
        raise UserError(f"{path} is a '{checkpoint.arch}' checkpoint; it cannot resume a '{arch}' run")
    if checkpoint.train_state.get("vocab_checksum") != vocab:
        raise UserError(f"{path} was trained with another vocabulary than this data directory's")
    saved, wanted = to_dict(checkpoint.model_config), to_dict(model)
    for key in wanted:
        if saved.get(key) != wanted[key]:
            raise UserError(
                f"{path} has model {key}={saved.get(key)}, this run {key}={wanted[key]}; "
                "resume with the same model settings (or start a new run directory)"
            )


# ----------------------------------------------------------------------------------------------------------
# Random number generators (dropout), so that a resumed run draws what the uninterrupted one would have


def rng_state(device: torch.device) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------------------------------------
# The validation log


class RunLog:
    """Appends one JSON line per validation to log.jsonl, and mirrors it to TensorBoard when installed."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOG
        self.writer = None
        try:  # an optional extra: imported only where it is installed
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            logger.debug("tensorboard is not installed; writing log.jsonl only")
        else:
            self.writer = SummaryWriter(str(run_dir / TENSORBOARD))

    def write(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        if self.writer is not None:
            for key, value in entry.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, entry["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
