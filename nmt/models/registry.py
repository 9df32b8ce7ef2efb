"""The registry: the one list of architectures. The CLI's choices, the config classes and the presets all come
from here, and everything outside nmt/models builds a model through `build_model`.

This module and the configs and presets it reads do not import torch: `nmt prepare` and `nmt --help` list the
architectures without loading it. A model's module is imported when the model is first asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nmt.config import TrainConfig, build
from nmt.errors import UserError, closest
from nmt.models.configs import ModelConfig, RNNConfig, RNNSearchConfig, TransformerConfig
from nmt.models.presets import PRESETS

if TYPE_CHECKING:
    from nmt.models.base import Seq2Seq


@dataclass(frozen=True)
class Architecture:
    name: str  # what --model and checkpoints call it
    summary: str  # one line for --help
    config: type[ModelConfig]  # the model's config dataclass
    module: str  # the module that defines the model class
    class_name: str
    presets: Mapping[str, tuple[dict[str, Any], dict[str, Any]]]  # name -> (model values, training values)
    paper_preset: str  # the preset of the size its paper published
    # Values that checkpoints written before a config key existed were trained with, where they differ from
    # today's default: such a checkpoint must load as the model it was, not as today's default.
    earlier_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def model(self) -> type[Seq2Seq]:
        return getattr(importlib.import_module(self.module), self.class_name)


ARCHITECTURES: dict[str, Architecture] = {
    architecture.name: architecture
    for architecture in (
        Architecture(
            "rnn",
            "the RNN encoder-decoder of Cho et al. 2014: the source as one fixed vector, no attention",
            RNNConfig,
            "nmt.models.rnn",
            "RNNEncoderDecoder",
            PRESETS["rnn"],
            "rnnencdec-paper",  # Bahdanau et al. 2014, App. A.2 (RNNencdec)
        ),
        Architecture(
            "rnnsearch",
            "RNNsearch (Bahdanau et al. 2014): a bidirectional GRU encoder and additive attention",
            RNNSearchConfig,
            "nmt.models.rnnsearch",
            "RNNSearch",
            PRESETS["rnnsearch"],
            "rnnsearch-paper",  # Bahdanau et al. 2014, App. A.2
            {"output_state": "new"},
        ),
        Architecture(
            "transformer",
            "the Transformer (Vaswani et al. 2017): multi-head attention only",
            TransformerConfig,
            "nmt.models.transformer",
            "Transformer",
            PRESETS["transformer"],
            "transformer-base",  # Vaswani et al. 2017, Table 3
        ),
    )
}


def architecture(name: str) -> Architecture:
    """The architecture called `name`; an unknown name is a `UserError` that suggests the closest."""
    if name not in ARCHITECTURES:
        hint = closest(name, ARCHITECTURES)
        raise UserError(
            f"unknown model '{name}' (choose one of {', '.join(ARCHITECTURES)}"
            + (f"; did you mean '{hint}'?)" if hint else ")")
        )
    return ARCHITECTURES[name]


def build_model(arch: str, config: ModelConfig) -> Seq2Seq:
    """A freshly initialised model of architecture `arch`."""
    expected = architecture(arch).config
    if not isinstance(config, expected):
        raise TypeError(f"model '{arch}' needs a {expected.__name__}, got {type(config).__name__}")
    return architecture(arch).model(config)


def preset_values(arch: str, preset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model values, training values) of preset `preset` of `arch`."""
    presets = architecture(arch).presets
    if preset not in presets:
        raise UserError(f"unknown preset '{preset}' for model '{arch}' (choose one of {', '.join(presets)})")
    return presets[preset]


def model_config(arch: str, preset: str, overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """The model config of `arch` from a preset, with `overrides` applied (each checked against its type)."""
    model_values, _ = preset_values(arch, preset)
    return build(architecture(arch).config, {**model_values, **(overrides or {})}, "model config")


def train_config(arch: str, preset: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The training config that preset `preset` of `arch` suggests, with `overrides` applied."""
    _, train_values = preset_values(arch, preset)
    return build(TrainConfig, {**train_values, **(overrides or {})}, "training config")
