"""The library's entry point for training: `train()`, and the configs of a new or resumed run.

    result = train_from_settings(data_dir, "transformer", run_dir, preset="small", train_settings={...})
    # or, with the configs already built:
    configs = resolve_configs("transformer", "small", model_overrides, train_overrides)
    result = train(data_dir, "transformer", *configs, run_dir)

`train_from_settings` is `nmt train` as a function (the command only turns its options into settings) and
`nmt.api.train`. `train` checks the data, the configs and the run directory, sets up the device and the
processes of data parallelism, and leaves the run itself to the `Trainer` (nmt/training/trainer.py). A run
that never started leaves no directory behind.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmt.checkpoint import Checkpoint, load_checkpoint
from nmt.config import TrainConfig, from_dict, load_yaml_config, to_dict
from nmt.data.prepared import PreparedData
from nmt.data.tokenizer import TokenizerPair
from nmt.devices import prepare_device, resolve_device
from nmt.errors import UserError
from nmt.files import remove_stale_temporaries
from nmt.models import ModelConfig, architecture, model_config, train_config
from nmt.models.presets import DEFAULT_PRESET
from nmt.training import distributed
from nmt.training.run_files import LAST, check_resumable, prepare_run_dir, vocab_checksum, write_config
from nmt.training.setup import set_up
from nmt.training.trainer import Trainer, TrainResult
from nmt.training.validation import dev_bleu_tokenizer

# Runs saved before dev BLEU followed the target language were all validated with sacreBLEU's default.
EARLIER_BLEU_TOKENIZER = "13a"


@dataclass(frozen=True)
class ResumePoint:
    """A training checkpoint to continue from, read once for both the configs and the run."""

    path: Path
    checkpoint: Checkpoint


def resume_point(path: Path) -> ResumePoint:
    """Read the checkpoint at `path`; one without a training state (averaged, exported) cannot be resumed."""
    checkpoint = load_checkpoint(path)
    if checkpoint.train_state is None:
        raise UserError(f"{path} has no training state (an averaged or exported model); it cannot be resumed")
    return ResumePoint(Path(path), checkpoint)


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


def fix_bleu_tokenizer(
    config: TrainConfig, data: PreparedData, resume: ResumePoint | None = None
) -> TrainConfig:
    """`config` with the dev BLEU tokenizer settled and checked, so that the run records it (config.yaml, the
    checkpoints): the config's, else the target language's. A resumed run keeps the one it was validated
    with, since its best dev BLEU (and best.pt) were measured with it; asking for another is refused."""
    if resume is not None:
        saved = resume.checkpoint.train_state["train_config"].get("bleu_tokenize") or EARLIER_BLEU_TOKENIZER
        if config.bleu_tokenize is not None and config.bleu_tokenize != saved:
            raise UserError(
                f"{resume.path} was validated with the BLEU tokenizer '{saved}'; a resumed run keeps it (got "
                f"--bleu-tokenize {config.bleu_tokenize}; start a new run to change it)"
            )
        config = dataclasses.replace(config, bleu_tokenize=saved)
    return dataclasses.replace(config, bleu_tokenize=dev_bleu_tokenizer(data, config))


def resolve_configs(
    arch: str,
    preset: str,
    model_overrides: dict[str, Any],
    train_overrides: dict[str, Any],
    resume: ResumePoint | None = None,
) -> tuple[ModelConfig, TrainConfig]:
    """A new run's configs: preset < overrides; a resumed run's: the checkpoint's configs < overrides."""
    if resume is None:
        return model_config(arch, preset, model_overrides), train_config(arch, preset, train_overrides)
    checkpoint = resume.checkpoint
    if checkpoint.arch != arch:
        raise UserError(f"{resume.path} is a '{checkpoint.arch}' checkpoint; it cannot resume a '{arch}' run")
    saved = to_dict(checkpoint.model_config)
    model = from_dict(architecture(arch).config, {**saved, **model_overrides})
    # The weights fix the model: a resumed run cannot change what they compute (or how many there are).
    for key, value in to_dict(model).items():
        if key in saved and saved[key] != value:
            raise UserError(
                f"{resume.path} holds a model with {key}={saved[key]}; a resumed run keeps its model "
                f"(got {key}={value}; start a new run to change it)"
            )
    train = from_dict(TrainConfig, {**checkpoint.train_state["train_config"], **train_overrides})
    return model, train


def train_from_settings(
    data_dir: Path | str,
    arch: str,
    run_dir: Path | str,
    *,
    preset: str = DEFAULT_PRESET,
    config_file: Path | str | None = None,
    model_settings: Mapping[str, Any] | None = None,
    train_settings: Mapping[str, Any] | None = None,
    resume: bool = False,
    resume_from: Path | str | None = None,
    force: bool = False,
) -> TrainResult:
    """Train `arch` as `nmt train` does: the configs are the preset's, then a YAML file's `model:` and
    `train:` sections (`config_file`), then the settings given (fields of the architecture's model config and
    of `TrainConfig`, as the command's options name them); a resumed run starts from its checkpoint's configs
    instead of the preset's. `resume` continues from `run_dir`/last.pt, `resume_from` from another
    checkpoint; `force` starts over in a run directory that holds checkpoints."""
    run_dir = Path(run_dir)
    model_type = architecture(arch).config  # an unknown name fails here, before anything is read
    yaml_model, yaml_train = load_yaml_config(Path(config_file), model_type) if config_file else ({}, {})
    checkpoint = Path(resume_from) if resume_from is not None else (run_dir / LAST if resume else None)
    point = resume_point(checkpoint) if checkpoint is not None else None  # read once, for configs and run
    model, training = resolve_configs(
        arch,
        preset,
        {**yaml_model, **(model_settings or {})},
        {**yaml_train, **(train_settings or {})},
        resume=point,
    )
    return train(data_dir, arch, model, training, run_dir, resume=point, force=force)


def train(
    data_dir: Path,
    arch: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: Path,
    resume: ResumePoint | Path | None = None,
    force: bool = False,
) -> TrainResult:
    """Train `arch` on the prepared data in `data_dir`, writing checkpoints and logs to `run_dir`.

    `resume` continues from a checkpoint of this run (a `ResumePoint`, or the path of one); `force` starts
    over in a run directory that already holds checkpoints (which are removed). The vocabulary sizes come from
    the data.
    """
    run_dir = Path(run_dir)
    data = PreparedData.open(data_dir)
    check_train_config(train_config)
    model_config = fit_to_vocabulary(model_config, data.tokenizers)
    if isinstance(resume, (str, Path)):
        resume = resume_point(resume)
    checkpoint = resume.checkpoint if resume is not None else None
    if resume is not None:
        check_resumable(checkpoint, resume.path, arch, model_config, vocab_checksum(data.tokenizers))
    train_config = fix_bleu_tokenizer(train_config, data, resume)

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
                remove_stale_temporaries(run_dir)  # of earlier sessions killed while writing a checkpoint
                write_config(run_dir, arch, Path(data_dir), model_config, train_config)
            setup = set_up(data, arch, model_config, train_config, device, context, checkpoint)
            trainer = Trainer(setup, run_dir)
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
