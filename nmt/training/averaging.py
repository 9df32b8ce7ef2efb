"""Checkpoint averaging: the element-wise mean of the weights of several checkpoints of one run.

Averaging the last few checkpoints of a run smooths out the noise of the last updates and usually gains a
little BLEU for free (Vaswani et al. 2017, Section 6.1, average the last 5 or 20 checkpoints). The
checkpoints must share the architecture, the model config and the tokenizers. The result is a normal
checkpoint without training state: it can be translated with and evaluated, not resumed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from nmt.checkpoint import Checkpoint, load_checkpoint
from nmt.config import to_dict
from nmt.errors import UserError
from nmt.training.run_files import step_checkpoints

logger = logging.getLogger(__name__)


def last_checkpoints(run_dir: Path, count: int) -> list[Path]:
    """The `count` most recent periodic checkpoints of a training run directory, oldest first."""
    if count < 1:
        raise UserError(f"--last must be at least 1 (got {count})")
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    paths = step_checkpoints(Path(run_dir))
    if len(paths) < count:
        raise UserError(
            f"{run_dir} has {len(paths)} periodic checkpoint(s), fewer than the {count} asked for "
            "(use a smaller --last, or list the checkpoints with --inputs)"
        )
    return paths[-count:]


def average_checkpoints(paths: Sequence[Path]) -> Checkpoint:
    """A checkpoint whose floating-point weights are the mean of those in `paths` (one loaded at a time).

    Integer buffers (if a model has any) must be equal in all checkpoints and are copied. The metadata of the
    result names the inputs.
    """
    if not paths:
        raise UserError("no checkpoints to average")
    first = load_checkpoint(paths[0])
    sums = {
        name: tensor.to(torch.float64) if tensor.is_floating_point() else tensor.clone()
        for name, tensor in first.model_state.items()
    }
    for path in paths[1:]:
        other = load_checkpoint(path)
        _check_compatible(first, paths[0], other, path)
        for name, tensor in other.model_state.items():
            if tensor.is_floating_point():
                sums[name] += tensor.to(torch.float64)
            elif not torch.equal(tensor, sums[name]):
                raise UserError(f"{path} and {paths[0]} differ in the non-float buffer '{name}'")
    state = {
        name: (total / len(paths)).to(first.model_state[name].dtype) if total.is_floating_point() else total
        for name, total in sums.items()
    }
    logger.info("averaged %d checkpoints: %s", len(paths), ", ".join(str(p) for p in paths))
    return Checkpoint(
        arch=first.arch,
        model_config=first.model_config,
        model_state=state,
        tokenizers=first.tokenizers,
        languages=first.languages,
        train_state=None,
        meta={"averaged_from": [str(p) for p in paths]},
    )


def _check_compatible(reference: Checkpoint, reference_path: Path, other: Checkpoint, path: Path) -> None:
    def refuse(what: str):
        raise UserError(
            f"cannot average {path} with {reference_path}: {what} (average checkpoints of one run)"
        )

    if other.arch != reference.arch:
        refuse(f"the architectures differ ({other.arch} vs {reference.arch})")
    if to_dict(other.model_config) != to_dict(reference.model_config):
        changed = sorted(
            key
            for key, value in to_dict(other.model_config).items()
            if to_dict(reference.model_config).get(key) != value
        )
        refuse(f"the model configs differ in {', '.join(changed)}")
    if (
        other.tokenizers.source.model_proto != reference.tokenizers.source.model_proto
        or other.tokenizers.target.model_proto != reference.tokenizers.target.model_proto
    ):
        refuse("the tokenizers differ")
    if other.model_state.keys() != reference.model_state.keys():
        refuse("the weights have different names")
    for name, tensor in other.model_state.items():
        if tensor.shape != reference.model_state[name].shape:
            refuse(f"'{name}' has shape {tuple(tensor.shape)} vs {tuple(reference.model_state[name].shape)}")


__all__ = ["average_checkpoints", "last_checkpoints"]
