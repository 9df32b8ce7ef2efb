"""nmt.models: the contract every architecture implements (base.py), the three architectures, their configs
and presets, and the registry that lists them.

Imports: nmt.config, nmt.errors and nmt.data.special only; never training, decoding, evaluation or the CLI.
Nothing outside this package asks which architecture it holds: it asks the model (`has_attention`,
`max_positions()`, `compiles_well`) or the registry. Importing this package does not import torch (the
registry loads a model's module when it is first built); the contract is in nmt.models.base. `Ensemble`
(ensemble.py: several models answering as one `Seq2Seq`) is loaded when first asked for, for the same reason.
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


def __getattr__(name: str):
    if name == "Ensemble":
        # deferred: ensemble.py imports torch, which `import nmt.models` must not
        from nmt.models.ensemble import Ensemble

        return Ensemble
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Ensemble",
    "ModelConfig",
    "architecture",
    "build_model",
    "model_config",
    "preset_values",
    "train_config",
]
