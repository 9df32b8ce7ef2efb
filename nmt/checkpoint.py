"""Self-describing, atomic checkpoints that load with `torch.load(..., weights_only=True)`.

A checkpoint is a plain dict of tensors, numbers, strings and bytes:

    format, version        "nmt-checkpoint", 1
    arch, model_config     the architecture name and its config (a dict), enough to rebuild the model
    model                  the model's state_dict
    tokenizers             {"source": bytes, "target": bytes}: the SentencePiece models
    languages              {"source": "it", "target": "en"}
    train_state            optimizer, schedule, step, data position and RNG states (absent in averaged models)
    meta                   anything informative: package version, data directory, dev BLEU, ...

So `nmt translate --checkpoint run/best.pt` needs nothing else, and loading never runs pickled code.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nmt.config import from_dict, to_dict
from nmt.data.tokenizer import Tokenizer, TokenizerPair
from nmt.errors import UserError
from nmt.files import atomic_write
from nmt.models import ModelConfig, architecture, build_model
from nmt.models.base import Seq2Seq
from nmt.version import __version__

FORMAT = "nmt-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    arch: str
    model_config: ModelConfig
    model_state: dict[str, torch.Tensor]
    tokenizers: TokenizerPair
    languages: dict[str, str]
    train_state: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def build_model(self, device: torch.device | str = "cpu") -> Seq2Seq:
        """The model with these weights, in eval mode, on `device`."""
        model = build_model(self.arch, self.model_config)
        model.load_state_dict(self.model_state)
        return model.to(device).eval()


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": checkpoint.arch,
        "model_config": to_dict(checkpoint.model_config),
        "model": checkpoint.model_state,
        "tokenizers": {
            "source": checkpoint.tokenizers.source.model_proto,
            "target": checkpoint.tokenizers.target.model_proto,
        },
        "languages": dict(checkpoint.languages),
        "meta": {"package_version": __version__, **checkpoint.meta},
    }
    if checkpoint.train_state is not None:
        payload["train_state"] = checkpoint.train_state
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint; every way it can be wrong ends in a `UserError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} is not a file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive, with its directory at the end
        raise UserError(
            f"cannot read checkpoint {path}: it is truncated or not a checkpoint file; "
            "use another copy or an earlier checkpoint"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # Loading only tensors and plain containers is what keeps a crafted file from running code.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = f"it refers to {found.group(1)}" if found else "it holds objects other than weights"
        raise UserError(
            f"refusing to load {path}: {what}, which could run code when loaded; use only checkpoints "
            "written by nmt"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        reason = (
            str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        )
        raise UserError(
            f"cannot read checkpoint {path}: it is truncated or damaged ({reason[:160]}); "
            "use another copy or an earlier checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not an nmt checkpoint")
    if payload.get("version") != VERSION:
        raise UserError(
            f"{path} has checkpoint version {payload.get('version')}; this nmt reads version {VERSION}"
        )
    try:
        arch = payload["arch"]
        saved = {**architecture(arch).earlier_values, **payload["model_config"]}  # keys it predates
        config = from_dict(architecture(arch).config, saved)
        source = Tokenizer(payload["tokenizers"]["source"])
        target_proto = payload["tokenizers"]["target"]
        target = source if target_proto == source.model_proto else Tokenizer(target_proto)
        return Checkpoint(
            arch=arch,
            model_config=config,
            model_state=payload["model"],
            tokenizers=TokenizerPair(source, target),
            languages=payload.get("languages", {}),
            train_state=payload.get("train_state"),
            meta=payload.get("meta", {}),
        )
    except (KeyError, TypeError) as error:
        raise UserError(f"{path} is an incomplete nmt checkpoint (missing {error})") from None
