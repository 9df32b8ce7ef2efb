"""Loading what translates: one checkpoint's model, or an ensemble of several (`nmt.models.ensemble`), in
float32 or converted for int8 decoding on the CPU (`nmt.models.quantization`).

An ensemble's members read one source tensor and are averaged over one target vocabulary, so they must share
both SentencePiece models (compared byte for byte). Their architectures may differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from nmt.checkpoint import Checkpoint, load_checkpoint
from nmt.errors import UserError
from nmt.models.base import Seq2Seq
from nmt.models.ensemble import Ensemble
from nmt.models.quantization import CPU_ONLY, quantize_int8


def load_translator(
    paths: Path | Sequence[Path], device: torch.device, int8: bool = False
) -> tuple[Seq2Seq, Checkpoint]:
    """The model of a checkpoint, in eval mode on `device`, and the checkpoint (for its tokenizers).

    Several paths give an `Ensemble` of their models and the first checkpoint; every checkpoint is read and
    their vocabularies compared before any model is built. One path gives the plain model. With `int8`, each
    model is converted for int8 decoding (`quantize_int8`) as soon as it is built, so that an ensemble never
    holds all its members in float32 at once; that needs the CPU (`UserError` otherwise).
    """
    if int8 and torch.device(device).type != "cpu":
        raise UserError(f"int8 decoding cannot run on {device}: {CPU_ONLY}; load on the CPU")
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(path) for path in paths]
    if not paths:
        raise ValueError("load_translator needs at least one checkpoint")
    checkpoints = [load_checkpoint(path) for path in paths]
    for path, checkpoint in zip(paths[1:], checkpoints[1:], strict=True):
        check_same_vocabularies(paths[0], checkpoints[0], path, checkpoint)
    models = [
        _build(path, checkpoint, device, int8) for path, checkpoint in zip(paths, checkpoints, strict=True)
    ]
    model = models[0] if len(models) == 1 else Ensemble(models).eval()
    return model, checkpoints[0]


def check_same_vocabularies(first_path: Path, first: Checkpoint, path: Path, checkpoint: Checkpoint) -> None:
    """Refuse to ensemble two checkpoints whose source or target SentencePiece models differ."""
    for side in ("source", "target"):
        ours = getattr(first.tokenizers, side).model_proto
        theirs = getattr(checkpoint.tokenizers, side).model_proto
        if ours != theirs:
            raise UserError(
                f"{first_path} and {path} have different {side} vocabularies: the models of an ensemble must "
                "share both SentencePiece models (train them on the same prepared data)"
            )


def _build(path: Path, checkpoint: Checkpoint, device: torch.device, int8: bool) -> Seq2Seq:
    try:
        model = checkpoint.build_model(device)
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{path}: the weights do not fit the model config they came with ({first[:200]})"
        ) from None
    return quantize_int8(model) if int8 else model


__all__ = ["check_same_vocabularies", "load_translator"]
