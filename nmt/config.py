"""Configuration dataclasses. Every default lives here and nowhere else.

A run is described by one model config (which architecture and its sizes) and one `TrainConfig`.
Presets fill them, a YAML file can override them, and CLI options override only what was given.
Unknown keys are an error that names the key and the closest valid one.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nmt.errors import UserError, closest

# ------------------------------------------------------------------------------------------------------------
# Models


@dataclass
class RNNConfig:
    """RNN Encoder-Decoder (Cho et al. 2014; "RNNencdec" in Bahdanau et al. 2014): no attention."""

    src_vocab_size: int = 0  # filled from the prepared data
    tgt_vocab_size: int = 0
    embed_dim: int = 256
    hidden_dim: int = 512
    maxout_dim: int = 0  # 0: a tanh deep-output layer; > 0: maxout with this many units (App. A.2)
    dropout: float = 0.2
    share_embeddings: bool = False  # one embedding table for source and target (joint vocabularies only)


@dataclass
class RNNSearchConfig:
    """RNNsearch (Bahdanau et al. 2014): bidirectional GRU encoder, additive attention, deep output."""

    src_vocab_size: int = 0
    tgt_vocab_size: int = 0
    embed_dim: int = 256
    hidden_dim: int = 512  # per direction in the encoder, and the decoder's state size
    attention_dim: int = 512  # the alignment model's hidden size (n' in App. A.1.2)
    maxout_dim: int = 0
    dropout: float = 0.2
    share_embeddings: bool = False


@dataclass
class TransformerConfig:
    """Transformer (Vaswani et al. 2017)."""

    src_vocab_size: int = 0
    tgt_vocab_size: int = 0
    d_model: int = 512
    num_heads: int = 8
    ffn_dim: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    norm_first: bool = True  # pre-norm (stable without long warmup); False gives the paper's post-norm
    tie_output: bool = True  # target embedding tied to the output projection (Section 3.4)
    share_embeddings: bool = False  # source and target share one table (joint vocabularies only)
    max_positions: int = 1024
    alignment_layer: int = -1  # the decoder layer whose cross-attention (mean over heads) decoding exposes


ModelConfig = RNNConfig | RNNSearchConfig | TransformerConfig

MODEL_CONFIGS: dict[str, type] = {
    "rnn": RNNConfig,
    "rnnsearch": RNNSearchConfig,
    "transformer": TransformerConfig,
}


# ------------------------------------------------------------------------------------------------------------
# Training


class Schedule(str, enum.Enum):
    inverse_sqrt = "inverse-sqrt"  # linear warmup, then lr * sqrt(warmup / step) (Vaswani et al. 2017, 5.3)
    plateau = "plateau"  # constant, multiplied by `plateau_factor` when dev BLEU stops improving
    constant = "constant"


@dataclass
class TrainConfig:
    # When to stop: whichever limit comes first (at least one must be set).
    max_steps: int | None = None
    max_epochs: int | None = None
    max_minutes: float | None = None
    # Batches
    batch_tokens: int = 4096  # target tokens per batch (before accumulation)
    accumulate: int = 1  # gradient accumulation: batches per update
    max_source_len: int | None = None  # training pairs whose source has more words are dropped
    max_target_len: int | None = None
    # Optimiser and schedule
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.inverse_sqrt
    warmup_steps: int = 4000
    plateau_factor: float = 0.5
    plateau_patience: int = 2  # validations without improvement before the lr is decayed
    min_lr: float = 1e-6
    clip_norm: float = 1.0  # 0 disables clipping
    label_smoothing: float = 0.1
    # Validation and checkpoints
    validate_every: int = 1000
    save_every: int = 1000
    keep_checkpoints: int = 3  # step checkpoints kept besides best.pt and last.pt
    patience: int = 10  # validations without a better dev BLEU before stopping early; 0 disables
    dev_sentences: int = 500  # a fixed prefix of the dev set used for BLEU during training; 0 = all
    # Machine
    seed: int = 1
    device: str = "auto"
    bf16: bool = True  # bf16 autocast on CUDA; always off on CPU
    compile: bool = False


class LengthNormalization(str, enum.Enum):
    """How beam search compares hypotheses of different lengths (|y| counts the tokens including EOS)."""

    gnmt = "gnmt"  # log P / ((5 + |y|) / 6) ** alpha (Wu et al. 2016, eq. 14); alpha = 0 is no normalisation
    average = "average"  # log P / |y|, the per-token average
    none = "none"  # the plain sum log P, which favours short outputs


@dataclass
class DecodeConfig:
    beam_size: int = 5
    nbest: int = 1
    length_penalty: float = 1.0  # GNMT alpha: score / ((5 + |y|) / 6) ** alpha; 0 disables
    normalization: LengthNormalization = LengthNormalization.gnmt
    max_len_a: float = 1.5  # the output may have at most a * source_length + b tokens
    max_len_b: int = 10
    batch_tokens: int = 8000  # padded source tokens x beam size per decoding batch


# ------------------------------------------------------------------------------------------------------------
# Data preparation


class SubwordModel(str, enum.Enum):
    unigram = "unigram"  # Kudo 2018, subword regularization's unigram language model
    bpe = "bpe"  # Sennrich et al. 2016, byte-pair encoding


SYNTHETIC_DATASET = "synthetic"  # the --dataset name of the embedded synthetic corpus


@dataclass
class PrepareConfig:
    """What `nmt prepare` reads, how it cleans and splits it, and how it trains the subword vocabulary."""

    # Inputs: line-aligned files `<prefix>.<lang>[.gz]`, or a dataset (hub id, local directory or data file,
    # or SYNTHETIC_DATASET). Dev/test prefixes may accompany either; missing dev/test splits are carved from
    # the training data.
    source_lang: str | None = None  # None with the synthetic corpus: its own language codes
    target_lang: str | None = None
    train_prefix: Path | None = None
    dev_prefix: Path | None = None
    test_prefix: Path | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_revision: str | None = None
    synthetic_size: int = 20_000  # pairs generated for the synthetic corpus (dev/test are carved from them)
    dev_size: int = 1000  # pairs carved from train when there is no dev split
    test_size: int = 1000
    # Cleaning (training pairs only; dev and test are kept whole)
    max_tokens: int = 250  # subword tokens per side
    max_length_ratio: float = 3.0  # longer side / shorter side, in subword tokens
    # SentencePiece
    vocab_size: int = 8000
    joint_vocabulary: bool = True
    model_type: SubwordModel = SubwordModel.unigram
    character_coverage: float = 1.0
    spm_sample: int = 1_000_000  # sentences sampled (per model) to train SentencePiece; 0 = all
    # Machine
    num_workers: int = 1  # threads for SentencePiece training and encoding
    seed: int = 1


@dataclass
class EvalConfig:
    # Source-length buckets in whitespace words: [e0, e1), [e1, e2), ..., [e_last, inf); e0 must be 0.
    # The default follows the x axis of Bahdanau et al. 2014, Fig. 2.
    bucket_edges: tuple[int, ...] = (0, 10, 20, 30, 40, 50, 60)
    bootstrap_samples: int = 1000  # resamples for confidence intervals and paired tests (Koehn 2004)
    confidence: float = 0.95
    seed: int = 1
    tokenize: str = "13a"  # sacreBLEU's BLEU tokenizer
    ter: bool = False  # also compute TER (slower: an edit distance per sentence)
    baseline: str | None = None  # compare every system with this one; None compares every pair


# ------------------------------------------------------------------------------------------------------------
# Presets: name -> (model overrides, training overrides) for each architecture.

_RNN_TRAIN = {"lr": 1e-3, "schedule": Schedule.plateau, "label_smoothing": 0.0, "betas": (0.9, 0.999)}
_TRANSFORMER_TRAIN = {"lr": 7e-4, "schedule": Schedule.inverse_sqrt, "label_smoothing": 0.1}

PRESETS: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "rnn": {
        "tiny": (
            {"embed_dim": 32, "hidden_dim": 64, "dropout": 0.0},
            {**_RNN_TRAIN, "batch_tokens": 512, "lr": 5e-3},
        ),
        "small": (
            {"embed_dim": 128, "hidden_dim": 256, "dropout": 0.1},
            {**_RNN_TRAIN, "batch_tokens": 2048, "lr": 5e-3},
        ),
        "base": ({"embed_dim": 256, "hidden_dim": 512, "dropout": 0.2}, {**_RNN_TRAIN, "batch_tokens": 4096}),
        # Bahdanau et al. 2014, App. A.2: embeddings 620, hidden 1000, maxout 500.
        "rnnencdec-paper": (
            {"embed_dim": 620, "hidden_dim": 1000, "maxout_dim": 500, "dropout": 0.0},
            {**_RNN_TRAIN, "batch_tokens": 8192},
        ),
    },
    "rnnsearch": {
        "tiny": (
            {"embed_dim": 32, "hidden_dim": 64, "attention_dim": 64, "dropout": 0.0},
            {**_RNN_TRAIN, "batch_tokens": 512, "lr": 5e-3},
        ),
        "small": (
            {"embed_dim": 128, "hidden_dim": 256, "attention_dim": 256, "dropout": 0.1},
            {**_RNN_TRAIN, "batch_tokens": 2048, "lr": 5e-3},
        ),
        "base": (
            {"embed_dim": 256, "hidden_dim": 512, "attention_dim": 512, "dropout": 0.2},
            {**_RNN_TRAIN, "batch_tokens": 4096},
        ),
        "rnnsearch-paper": (
            {"embed_dim": 620, "hidden_dim": 1000, "attention_dim": 1000, "maxout_dim": 500, "dropout": 0.0},
            {**_RNN_TRAIN, "batch_tokens": 8192},
        ),
    },
    "transformer": {
        "tiny": (
            {
                "d_model": 64,
                "num_heads": 4,
                "ffn_dim": 128,
                "encoder_layers": 2,
                "decoder_layers": 2,
                "dropout": 0.0,
            },
            {**_TRANSFORMER_TRAIN, "warmup_steps": 100, "batch_tokens": 512, "lr": 2e-3},
        ),
        "small": (
            {
                "d_model": 128,
                "num_heads": 4,
                "ffn_dim": 512,
                "encoder_layers": 3,
                "decoder_layers": 3,
                "dropout": 0.1,
            },
            {**_TRANSFORMER_TRAIN, "warmup_steps": 200, "batch_tokens": 2048, "lr": 2e-3},
        ),
        "base": (
            {"d_model": 512, "num_heads": 8, "ffn_dim": 2048, "encoder_layers": 6, "decoder_layers": 6},
            {**_TRANSFORMER_TRAIN, "warmup_steps": 4000, "batch_tokens": 8192},
        ),
        # Vaswani et al. 2017, Table 3, "base".
        "transformer-base": (
            {"d_model": 512, "num_heads": 8, "ffn_dim": 2048, "encoder_layers": 6, "decoder_layers": 6},
            {**_TRANSFORMER_TRAIN, "warmup_steps": 4000, "batch_tokens": 8192},
        ),
    },
}

DEFAULT_PRESET = "small"


# ------------------------------------------------------------------------------------------------------------
# Building configs from presets, YAML files and overrides


def check_keys(cls: type, values: dict[str, Any], where: str) -> None:
    """Refuse keys that `cls` does not have, naming the closest valid one."""
    valid = [f.name for f in fields(cls)]
    for key in values:
        if key not in valid:
            hint = closest(key, valid)
            raise UserError(f"unknown {where} key '{key}'" + (f" (did you mean '{hint}'?)" if hint else ""))


def _coerce(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Turn YAML scalars into the field types that need it (enums, tuples)."""
    out = dict(values)
    for f in fields(cls):
        if f.name not in out:
            continue
        if f.name == "schedule" and not isinstance(out[f.name], Schedule):
            try:
                out[f.name] = Schedule(out[f.name])
            except ValueError:
                choices = ", ".join(s.value for s in Schedule)
                raise UserError(f"unknown schedule '{out[f.name]}' (choose one of {choices})") from None
        if f.name == "betas":
            out[f.name] = tuple(out[f.name])
    return out


def model_config(arch: str, preset: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The model config for `arch` from a preset, with overrides applied."""
    cls = model_config_class(arch)
    model_values, _ = preset_values(arch, preset)
    overrides = overrides or {}
    check_keys(cls, overrides, "model config")
    return cls(**{**model_values, **overrides})


def train_config(arch: str, preset: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The training config for `arch` from a preset, with overrides applied."""
    _, train_values = preset_values(arch, preset)
    overrides = overrides or {}
    check_keys(TrainConfig, overrides, "training config")
    return TrainConfig(**_coerce(TrainConfig, {**train_values, **overrides}))


def model_config_class(arch: str) -> type:
    if arch not in MODEL_CONFIGS:
        hint = closest(arch, MODEL_CONFIGS)
        raise UserError(
            f"unknown model '{arch}' (choose one of {', '.join(MODEL_CONFIGS)}; did you mean '{hint}'?)"
        )
    return MODEL_CONFIGS[arch]


def preset_values(arch: str, preset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    model_config_class(arch)
    presets = PRESETS[arch]
    if preset not in presets:
        raise UserError(f"unknown preset '{preset}' for model '{arch}' (choose one of {', '.join(presets)})")
    return presets[preset]


def load_yaml_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a YAML run config with optional top-level sections `model:` and `train:`."""
    import yaml

    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UserError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must be a mapping with 'model:' and/or 'train:' sections")
    for key in data:
        if key not in ("model", "train"):
            hint = closest(key, ["model", "train"])
            raise UserError(f"unknown config section '{key}' in {path} (did you mean '{hint}'?)")
    return dict(data.get("model") or {}), dict(data.get("train") or {})


def to_dict(config) -> dict[str, Any]:
    """A plain, JSON- and checkpoint-friendly dict (enums as their values, tuples as lists)."""
    out = {}
    for key, value in dataclasses.asdict(config).items():
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def from_dict(cls: type, values: dict[str, Any]):
    """Rebuild a config saved with `to_dict`."""
    check_keys(cls, values, cls.__name__)
    return cls(**_coerce(cls, values))


__all__ = [
    "DecodeConfig",
    "EvalConfig",
    "LengthNormalization",
    "MODEL_CONFIGS",
    "ModelConfig",
    "PRESETS",
    "PrepareConfig",
    "RNNConfig",
    "RNNSearchConfig",
    "SYNTHETIC_DATASET",
    "Schedule",
    "SubwordModel",
    "TrainConfig",
    "TransformerConfig",
]
