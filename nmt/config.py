"""The configuration dataclasses of training, decoding, preparation and evaluation, and how any config is
built from plain values.

A run is described by one model config (its architecture's dataclass, beside the model in nmt/models) and one
`TrainConfig`. Presets fill them, a YAML file can override them, and CLI options override only what was given.
Every value is checked and converted to its field's declared type (`build`); unknown keys are an error that
names the key and the closest valid one. Each default lives in its dataclass and nowhere else.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from nmt.errors import UserError, closest

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
    # sacreBLEU's tokenizer for dev BLEU; None: the prepared data's target language's (nmt/languages.py).
    # A run records the tokenizer it chose and keeps it when resumed.
    bleu_tokenize: str | None = None
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


class BeamStop(str, enum.Enum):
    """When beam search stops working on a sentence (both stop one that no live beam can still improve).

    first-k may miss a better hypothesis: when the K-th finished one appears, a live beam ranked above it can
    still end better, whatever the normalisation, and more often when length is rewarded (GNMT alpha > 0).
    """

    first_k = "first-k"  # once it has K finished hypotheses (K = the beam size): the usual rule, sooner
    exact = "exact"  # only when no live beam can still beat its n-th best finished one, to the length limit


@dataclass
class DecodeConfig:
    beam_size: int = 5
    nbest: int = 1
    length_penalty: float = 1.0  # GNMT alpha: score / ((5 + |y|) / 6) ** alpha; 0 disables
    normalization: LengthNormalization = LengthNormalization.gnmt
    beam_stop: BeamStop = BeamStop.first_k  # exact costs 13-14% more time for no BLEU (docs/results.md, 6)
    max_len_a: float = 1.5  # the output may have at most a * source_length + b tokens
    max_len_b: int = 10
    batch_tokens: int = 8000  # padded source tokens x beam size (or samples) per decoding batch
    # Ancestral sampling instead of beam search (nmt/decoding/sampling.py): `nbest` samples per sentence,
    # the beam options unused. Temperature divides the log-probs first; then top-k keeps the k likeliest
    # tokens (0: all) and top-p the smallest set whose probability reaches p (1: all). Each sample of each
    # sentence has its own random stream, seeded from `seed` and the sentence's line number.
    sampling: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 1


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
    num_workers: int = 1  # processes that clean and encode (and SentencePiece's training threads)
    # Pairs read, cleaned and encoded at a time. Memory grows with it (two chunks in flight per worker), never
    # with the corpus: see nmt/data/preparation.py.
    chunk_size: int = 20_000
    # What the run aims to stay within: SentencePiece's training, the largest part, samples fewer than
    # spm_sample sentences when that many would not fit (nmt/data/tokenizer.py, `sample_within`).
    memory_budget_mb: int = 1800
    seed: int = 1


class Correction(str, enum.Enum):
    """How `nmt eval` corrects its p-values for making many paired tests at once."""

    none = "none"  # each test at alpha on its own
    holm = "holm"  # Holm 1979's step-down adjustment over each metric's tests (pairs x slices)


class LengthUnit(str, enum.Enum):
    """What `nmt eval`'s source-length buckets count."""

    words = "words"  # whitespace-separated words
    characters = "characters"  # characters other than spaces, for sources written without spaces (zh, ja, th)


# The default bucket edges follow the x axis of Bahdanau et al. 2014, Fig. 2 (source words). In characters
# they are 1.5 times as wide: a Chinese word is roughly one and a half characters long, so a character bucket
# holds sentences of about as many words as the word bucket of the same rank. (Japanese and Thai words are
# longer in characters; give --buckets for them.)
WORD_BUCKET_EDGES = (0, 10, 20, 30, 40, 50, 60)
CHARACTER_BUCKET_EDGES = (0, 15, 30, 45, 60, 75, 90)


@dataclass
class EvalConfig:
    """What `nmt eval` computes. The fields left None are chosen from the languages and the source text when
    the evaluation starts (`nmt.evaluation.resolve_eval_config`); the report holds the values chosen."""

    # Source-length buckets: [e0, e1), [e1, e2), ..., [e_last, inf) in `length_unit`; e0 must be 0.
    # None: WORD_BUCKET_EDGES or CHARACTER_BUCKET_EDGES, by the unit.
    bucket_edges: tuple[int, ...] | None = None
    bootstrap_samples: int = 1000  # resamples for confidence intervals and paired tests (Koehn 2004)
    confidence: float = 0.95
    seed: int = 1
    tokenize: str | None = None  # sacreBLEU's BLEU tokenizer; None: the target language's (13a if unknown)
    ter: bool = False  # also compute TER (slower: an edit distance per sentence)
    baseline: str | None = None  # compare every system with this one; None compares every pair
    compare: tuple[str, ...] = ()  # "SYSTEM=BASELINE" pairs to test, instead of baseline or every pair
    alpha: float = 0.05  # significance level of the paired tests (after the correction, when there is one)
    correction: Correction = Correction.none  # for multiple comparisons
    source_lang: str | None = None  # language codes of the test set, when known (e.g. from the checkpoints)
    target_lang: str | None = None
    # None: characters when the source language is written without spaces or, with no source language, when
    # most of the source's letters are in such a script (nmt/evaluation/buckets.py); else words.
    length_unit: LengthUnit | None = None


# ------------------------------------------------------------------------------------------------------------
# Building configs from presets, YAML files, recipes and overrides


def check_keys(cls: type, values: Mapping[str, Any], where: str) -> None:
    """Refuse keys that `cls` does not have, naming the closest valid one."""
    valid = [f.name for f in fields(cls)]
    for key in values:
        if key not in valid:
            hint = closest(str(key), valid)
            raise UserError(f"unknown {where} key '{key}'" + (f" (did you mean '{hint}'?)" if hint else ""))


def convert_values(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`values` checked against the fields of the config dataclass `cls` and converted to their declared
    types, without building the config (so that partial values, such as overrides, can be checked early)."""
    check_keys(cls, values, where)
    hints = typing.get_type_hints(cls)
    return {key: convert(value, hints[key], f"{where} key '{key}'") for key, value in values.items()}


def build(cls: type, values: Mapping[str, Any], where: str):
    """An instance of the config dataclass `cls` from `values`, each checked and converted to its field's
    declared type: a YAML file's `lr: 1e-3` is a string to YAML, and `batch_tokens: "4096"` is one anywhere.

    `where` names the config in messages ("training config"). Unknown keys and values that do not fit are one
    `UserError` naming the key, the value and the expected type; defaults come from `cls` alone.
    """
    return cls(**convert_values(cls, values, where))


def convert(value: Any, hint: Any, what: str) -> Any:
    """`value` as the type `hint`: int, float, bool, str, Path, an Enum, a tuple of these, or an optional of
    one. Text is parsed ('4096', '1e-3', 'true'); nothing is truncated or guessed: 2.5 is not an integer,
    1 is not a boolean, True is not a number, and a number is not a string.

    A value that does not fit is a `UserError` that says `what` must be, and what it got.
    """
    hint, optional = _unwrap_optional(hint)
    if value is None and optional:
        return None
    try:
        return _convert(value, hint)
    except (TypeError, ValueError, OverflowError):
        expected = _type_name(hint) + (" or null" if optional else "")
        advice = "; quote it in YAML" if hint is str and isinstance(value, (bool, int, float)) else ""
        raise UserError(f"{what} must be {expected} (got {value!r}{advice})") from None


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """(T, True) for `T | None`, (hint, False) for anything that is not a union."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return hint, False
    options = [option for option in typing.get_args(hint) if option is not type(None)]
    if len(options) != 1:  # a union of two real types would need a rule for which one wins
        raise NotImplementedError(f"config fields of type {hint} are not supported")
    return options[0], len(options) < len(typing.get_args(hint))


def _convert(value: Any, hint: Any) -> Any:
    """`value` as `hint`, or TypeError/ValueError/OverflowError when it does not fit."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value.value if isinstance(value, enum.Enum) else value)
    if typing.get_origin(hint) is tuple:
        items = _tuple_items(value)
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0]) for item in items)
        if len(items) != len(args):
            raise ValueError(value)
        return tuple(_convert(item, item_hint) for item, item_hint in zip(items, args, strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
        raise TypeError(value)
    if hint is int:
        number = _number(value)
        if isinstance(number, float) and not number.is_integer():  # 2.5, inf and nan are not integers
            raise ValueError(value)
        return int(number)
    if hint is float:
        number = float(_number(value))
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    if hint is str:
        if not isinstance(value, str):  # YAML turns `no` into False and `1.10` into 1.1: refuse, not guess
            raise TypeError(value)
        return value
    if hint is Path:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value.strip():
            raise TypeError(value)
        return Path(value)
    # A programming error, not a user's: a config field of a type this module does not convert yet.
    raise NotImplementedError(f"config fields of type {hint} are not supported")


_BOOLEANS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _number(value: Any) -> int | float:
    """An int or float from a number or its text ('4096', '1e-3'); never from a bool."""
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            return float(text)
    raise TypeError(value)


def _tuple_items(value: Any) -> list[Any]:
    """The items of a list or tuple, or of comma-separated text ('0.9, 0.98')."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [item.strip() for item in value.split(",")]
    raise TypeError(value)


_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", Path: "a path"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings", Path: "paths"}


def _type_name(hint: Any) -> str:
    """How a message names the type `hint`: 'an integer', 'one of gnmt, average, none', ..."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(str(member.value) for member in hint)
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_PLURALS.get(args[0], str(args[0]))}"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_PLURALS.get(args[0], str(args[0]))}"
        return f"a list of {len(args)} items ({', '.join(_type_name(arg) for arg in args)})"
    return _NAMES.get(hint, str(hint))


def load_yaml_config(path: Path, model_config: type | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `model:` and `train:` sections of a YAML run config (either may be missing).

    The `train:` values are checked and converted against `TrainConfig`, and the `model:` values against
    `model_config` when it is given, so that a bad value is reported with the file's name before anything
    else happens.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UserError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not valid UTF-8 (byte {error.start})") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must be a mapping with 'model:' and/or 'train:' sections")
    for key in data:
        if key not in ("model", "train"):
            hint = closest(str(key), ["model", "train"])
            raise UserError(f"unknown config section '{key}' in {path} (did you mean '{hint}'?)")
    sections = {}
    for name in ("model", "train"):
        section = data.get(name)
        if section is not None and not isinstance(section, dict):
            raise UserError(
                f"config file {path}: '{name}:' must be a mapping of keys to values (got {section!r})"
            )
        sections[name] = dict(section or {})
    try:
        train = convert_values(TrainConfig, sections["train"], "training config")
        model = sections["model"]
        if model_config is not None:
            model = convert_values(model_config, model, "model config")
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
    return model, train


def to_dict(config) -> dict[str, Any]:
    """A plain dict of built-in types, for JSON, YAML and checkpoints (enums as their values, tuples as lists,
    paths as strings); `from_dict` turns it back into an equal config."""
    out = {}
    for key, value in dataclasses.asdict(config).items():
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Path):
            value = str(value)
        out[key] = value
    return out


def from_dict(cls: type, values: Mapping[str, Any]):
    """Rebuild a config saved with `to_dict` (each value checked and converted as in `build`).

    Configs were saved unchecked before values were converted by type, so a YAML `bf16: 1` may sit in an
    older checkpoint: a saved 0 or 1 is read as a boolean where the field is one, so that it still loads.
    """
    hints = typing.get_type_hints(cls)
    saved = {
        key: bool(value) if hints.get(key) is bool and type(value) is int and value in (0, 1) else value
        for key, value in values.items()
    }
    return build(cls, saved, cls.__name__)


__all__ = [
    "BeamStop",
    "CHARACTER_BUCKET_EDGES",
    "Correction",
    "DecodeConfig",
    "EvalConfig",
    "LengthNormalization",
    "LengthUnit",
    "PrepareConfig",
    "SYNTHETIC_DATASET",
    "Schedule",
    "SubwordModel",
    "TrainConfig",
    "WORD_BUCKET_EDGES",
    "build",
    "check_keys",
    "convert",
    "convert_values",
    "from_dict",
    "load_yaml_config",
    "to_dict",
]
