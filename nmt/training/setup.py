"""What a training run is set up with before its loop starts: the training pairs, the dev set, the model, the
optimizer in its `Updater` and where training stands (fresh, or restored from a checkpoint).

    setup = set_up(data, "transformer", model_config, train_config, torch.device("cpu"))
    Trainer(setup, run_dir).fit()

The order of the steps is part of the result: the model is initialised right after seeding, so that the same
seed gives the same weights, and a restored checkpoint puts its random generators back last.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from nmt.checkpoint import Checkpoint
from nmt.config import TrainConfig
from nmt.data.batching import TokenizedPairs, filter_lengths
from nmt.data.prepared import PreparedData
from nmt.errors import UserError
from nmt.models import ModelConfig, build_model
from nmt.models.base import Seq2Seq
from nmt.training import distributed
from nmt.training.run_files import data_fingerprint, vocab_checksum
from nmt.training.schedules import LRState
from nmt.training.state import Progress, RunFingerprint, restore
from nmt.training.update import Updater, adamw
from nmt.training.validation import DevSet, load_dev_set

logger = logging.getLogger(__name__)


@dataclass
class TrainingPairs:
    pairs: TokenizedPairs  # the whole training split, encoded
    kept: np.ndarray  # the indices of the pairs that pass the length filters


@dataclass
class Setup:
    """Everything a run trains with."""

    data: PreparedData
    arch: str
    model_config: ModelConfig
    config: TrainConfig
    device: torch.device
    context: distributed.Distributed
    training: TrainingPairs
    dev: DevSet
    fingerprint: RunFingerprint
    model: Seq2Seq
    updater: Updater
    progress: Progress
    autocast: bool  # bf16 autocast on CUDA; the weights stay float32


def load_training_pairs(data: PreparedData, config: TrainConfig) -> TrainingPairs:
    """The training split, and which of its pairs the length limits keep."""
    start = time.perf_counter()
    pairs = TokenizedPairs.from_dataset(data.split("train"))
    kept = filter_lengths(pairs, config.max_source_len, config.max_target_len, config.batch_tokens)
    logger.info(
        "training pairs: %d of %d (read in %.1fs); dropped %d over the word limits, %d longer than "
        "--batch-tokens %d",
        len(kept.kept),
        len(pairs),
        time.perf_counter() - start,
        kept.too_many_words,
        kept.over_budget,
        config.batch_tokens,
    )
    if len(kept.kept) == 0:
        raise UserError(
            "no training pairs left after the length filters (raise --batch-tokens or the limits)"
        )
    return TrainingPairs(pairs, kept.kept)


def set_up(
    data: PreparedData,
    arch: str,
    model_config: ModelConfig,
    config: TrainConfig,
    device: torch.device,
    context: distributed.Distributed = distributed.Distributed(),
    checkpoint: Checkpoint | None = None,
) -> Setup:
    """Load the data, build the model and its optimizer, and restore `checkpoint` when resuming."""
    autocast = device.type == "cuda" and config.bf16
    fused = device.type == "cuda"  # fused AdamW: one kernel for all parameters
    training = load_training_pairs(data, config)
    dev = load_dev_set(data, config)
    fingerprint = RunFingerprint(
        vocab_checksum=vocab_checksum(data.tokenizers),
        data_fingerprint=data_fingerprint(data, len(training.pairs)),
        world_size=context.world_size,
    )

    torch.manual_seed(config.seed)
    model = build_model(arch, model_config).to(device)
    optimizer = adamw(model, config, fused)
    progress = Progress(lr=LRState(plateau_lr=config.lr))
    if checkpoint is not None:
        progress = restore(checkpoint, model, optimizer, config, fingerprint, context.rank, device, fused)
    elif context.rank > 0:
        torch.manual_seed(config.seed + context.rank)  # other dropout masks on every rank
    model.train()
    updater = Updater(
        model=model,
        optimizer=optimizer,
        label_smoothing=config.label_smoothing,
        clip_norm=config.clip_norm,
        autocast=autocast,
        fused=fused,
        forward_model=_forward_model(model, arch, config, device, context),
        world_size=context.world_size,
        catch_out_of_memory=not context.enabled,  # ranks that split batches would fall out of step
    )
    logger.info(
        "%s: %.2fM parameters on %s%s",
        arch,
        model.num_parameters() / 1e6,
        device,
        " (bf16 autocast)" if autocast else "",
    )
    return Setup(
        data=data,
        arch=arch,
        model_config=model_config,
        config=config,
        device=device,
        context=context,
        training=training,
        dev=dev,
        fingerprint=fingerprint,
        model=model,
        updater=updater,
        progress=progress,
        autocast=autocast,
    )


def _forward_model(
    model: Seq2Seq, arch: str, config: TrainConfig, device: torch.device, context: distributed.Distributed
) -> torch.nn.Module:
    """What runs the forward pass: the model, wrapped for data parallelism and compiled as asked."""
    forward_model: torch.nn.Module = model
    if context.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        forward_model = DistributedDataParallel(model, device_ids=device_ids)
    if config.compile:
        if model.compiles_well:
            forward_model = torch.compile(forward_model, dynamic=True)
        else:
            logger.warning("--compile does not help the %s model (it loops in Python); not compiling", arch)
    return forward_model
