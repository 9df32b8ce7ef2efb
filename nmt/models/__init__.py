"""nmt.models: the contract every architecture implements (base.py), the three architectures, their configs
and presets, and the registry that lists them.

Imports: nmt.config, nmt.errors and nmt.data.special only; never training, decoding, evaluation or the CLI.
Nothing outside this package asks which architecture it holds: it asks the model (`has_attention`,
`max_positions()`, `compiles_well`) or the registry. Importing this package does not import torch (the
registry loads a model's module when it is first built); the contract is in nmt.models.base.
"""

from __future__ import annotations

from nmt.models.configs import ModelConfig
from nmt.models.registry import (
    ARCHITECTURES,
    Architecture,
    architecture,
    build_model,
    model_config,
    preset_values,
    train_config,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ModelConfig",
    "architecture",
    "build_model",
    "model_config",
    "preset_values",
    "train_config",
]
