"""The Python API: what the four commands do, as objects and functions (docs/api.md).

    from nmt import Translator, evaluate, prepare, train

    translator = Translator.load("runs/rnnsearch/best.pt")            # several paths: an ensemble
    translator.translate(["la commissione ha presentato la sua proposta ."], beam=5)   # -> ["..."]
    translator.score(sources, targets)                                # -> [SentenceScore, ...]

`prepare`, `train` and `evaluate` run what `nmt prepare`, `nmt train` and `nmt eval` run (`evaluate` is the
function `nmt eval` calls; `prepare` and `train` wrap the library functions the other two call); the commands
only turn options into their arguments and print what they return. `Translator` wraps the
functions behind `nmt translate` and `nmt score` (nmt/decoding), and checks what it is given as they do, so a
bad value is the same `nmt.errors.UserError`, with the same message, as on the command line.

This module sits at the top of the library: it may import training, decoding and evaluation, and nothing in
the library imports it (the package's `nmt/__init__.py` loads it on first use, so `import nmt` stays quick).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmt.config import BeamStop, DecodeConfig, EvalConfig, LengthNormalization, PrepareConfig, build
from nmt.errors import UserError
from nmt.evaluation import (
    EvalReport,
    check_line_counts,
    compared_pairs,
    evaluate_systems,
    resolve_eval_config,
)
from nmt.evaluation.alignment import GoldAlignment, Link, check_gold_alignments
from nmt.models.presets import DEFAULT_PRESET

# The modules that translate and train load torch, which takes seconds: they are imported where they are
# used, so that `nmt eval` of translation files (which calls `evaluate`) runs without it.
if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from nmt.checkpoint import Checkpoint
    from nmt.data.preparation import PrepareResult
    from nmt.data.tokenizer import TokenizerPair
    from nmt.decoding.scoring import SentenceScore
    from nmt.decoding.translation import Translation
    from nmt.models.base import Seq2Seq
    from nmt.training import TrainResult

logger = logging.getLogger(__name__)

_DEFAULTS = DecodeConfig()
CheckpointPaths = str | Path | Sequence[str | Path]  # one checkpoint, or the members of an ensemble


@dataclass
class Hypothesis:
    """One translation of a sentence, as `Translator.translate(..., return_hypotheses=True)` returns it."""

    text: str  # detokenised
    score: float  # what the search ranks by: the length-normalised log-probability (sampling: log_prob)
    log_prob: float  # the natural-log probability of the subwords and EOS
    tokens: list[str]  # the target subwords, without EOS
    # The best hypothesis's cross-attention when asked (`Translation.attention`: the last decoder layer's,
    # mean over heads, (len(tokens) + 1, source subwords + 1), EOS last on both axes); None otherwise.
    attention: Tensor | None = None


class Translator:
    """A model (one checkpoint's, or an ensemble's) with its SentencePiece models, on a device: raw text in,
    raw text out. `translate` is `nmt translate`, `score` is `nmt score`, `align` reads word alignments from
    the attention (as `nmt eval --alignment` does)."""

    def __init__(self, model: Seq2Seq, checkpoint: Checkpoint, device: torch.device):
        self.model = model  # in eval mode on `device`
        self.tokenizers: TokenizerPair = checkpoint.tokenizers
        self.languages: dict[str, str] = dict(checkpoint.languages)  # {"source": "de", "target": "en"}
        self.device = device

    @classmethod
    def load(cls, checkpoints: CheckpointPaths, device: str = "cpu", int8: bool = False) -> Translator:
        """Load a checkpoint, or the ensemble of several (their next-token probabilities averaged at every
        step; they must share both SentencePiece models). `device`: cpu, cuda, cuda:N, mps or auto. `int8`:
        decode with int8 weights on the CPU (`nmt translate --int8`, nmt/models/quantization.py)."""
        # deferred: torch (see the imports)
        from nmt.decoding.loading import load_translator
        from nmt.devices import resolve_device
        from nmt.models.quantization import int8_device

        paths = checkpoint_paths(checkpoints)
        torch_device = resolve_device(int8_device(device) if int8 else device)
        model, first = load_translator(paths, torch_device, int8=int8)
        return cls(model, first, torch_device)

    def translate(
        self,
        sentences: Sequence[str],
        *,
        beam: int | None = None,
        nbest: int = _DEFAULTS.nbest,
        max_len_a: float = _DEFAULTS.max_len_a,
        max_len_b: int = _DEFAULTS.max_len_b,
        length_penalty: float | None = None,
        normalization: LengthNormalization | None = None,
        beam_stop: BeamStop | None = None,
        batch_tokens: int = _DEFAULTS.batch_tokens,
        sampling: bool = False,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        return_hypotheses: bool = False,
        attention: bool = False,
    ) -> list[str] | list[list[Hypothesis]]:
        """Translate each sentence (raw text): the best translation of each, in order, as `nmt translate`
        writes them; an empty sentence gives "".

        The options are `nmt translate`'s (`DecodeConfig`'s fields; None leaves its default: beam 5, length
        penalty 1.0, ...). `sampling=True` draws `nbest` samples per sentence instead of searching
        (temperature, top_k, top_p, seed); a beam option with it, or a sampling option without it, is an
        error, as on the command line. `return_hypotheses=True` returns each sentence's n-best list (best
        first; samples in the order drawn) of `Hypothesis`; `attention=True` adds the best one's attention.
        """
        config = decode_config(
            sampling=sampling,
            beam_options={
                "beam": ("beam_size", beam),
                "length_penalty": ("length_penalty", length_penalty),
                "normalization": ("normalization", normalization),
                "beam_stop": ("beam_stop", beam_stop),
            },
            sampling_options={
                "temperature": ("temperature", temperature),
                "top_k": ("top_k", top_k),
                "top_p": ("top_p", top_p),
                "seed": ("seed", seed),
            },
            nbest=nbest,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            batch_tokens=batch_tokens,
        )
        if attention and not return_hypotheses:
            raise UserError(
                "attention=True needs return_hypotheses=True: the attention comes with a hypothesis"
            )
        translations = self.translations(sentences, config, attention=attention)
        if not return_hypotheses:
            return [translation.text for translation in translations]
        return [hypotheses_of(translation) for translation in translations]

    def translations(
        self, sentences: Sequence[str], config: DecodeConfig, *, attention: bool = False
    ) -> list[Translation]:
        """Everything `nmt translate` knows of each sentence (`nmt.decoding.translation.Translation`: the
        n-best list, the subwords, whether the source was cut; with `attention`, every attention map of the
        best translation), decoded with a `DecodeConfig` (checked as the command checks it)."""
        from nmt.decoding.translation import translate_lines  # deferred: torch (see the imports)

        lines = sentence_list(sentences, "sentences")
        return list(
            translate_lines(
                self.model,
                self.tokenizers,
                lines,
                config,
                self.device,
                attention_lines=len(lines) if attention else 0,
            )
        )

    def score(
        self, sources: Sequence[str], targets: Sequence[str], *, batch_tokens: int = _DEFAULTS.batch_tokens
    ) -> list[SentenceScore]:
        """The log-probability the model gives each target as the translation of its source (teacher forcing,
        no search), as `nmt score` computes it: per sentence (`.log_prob`, `.normalized`) and per target
        subword and EOS (`.token_log_probs`, beside `.target_pieces`)."""
        from nmt.decoding.scoring import score_pairs  # deferred: torch (see the imports)

        sources, targets = sentence_list(sources, "sources"), sentence_list(targets, "targets")
        if len(sources) != len(targets):
            raise UserError(
                f"{len(sources)} sources but {len(targets)} targets: every source needs one target to score"
            )
        return score_pairs(
            self.model, self.tokenizers, sources, targets, self.device, batch_tokens=batch_tokens
        )

    def align(self, sources: Sequence[str], targets: Sequence[str]) -> list[list[Link]]:
        """The word alignment the attention gives each (source, target) pair: (source word, target word)
        links, from 0, as `nmt eval --alignment` scores them. A model without attention cannot align."""
        from nmt.decoding.alignment import align_words  # deferred: torch (see the imports)

        sources, targets = sentence_list(sources, "sources"), sentence_list(targets, "targets")
        if not self.model.has_attention:
            raise UserError("this model has no attention to align words with")
        if len(sources) != len(targets):
            raise UserError(
                f"{len(sources)} sources but {len(targets)} targets: every source needs one target"
            )
        return align_words(self.model, self.tokenizers, sources, targets, self.device)


def hypotheses_of(translation: Translation) -> list[Hypothesis]:
    """The n-best list of one `Translation`, the best one with its attention when it was computed."""
    return [
        Hypothesis(
            text=entry.text,
            score=entry.score,
            log_prob=entry.log_prob,
            tokens=list(entry.pieces),
            attention=translation.attention if rank == 0 else None,
        )
        for rank, entry in enumerate(translation.hypotheses)
    ]


def decode_config(
    *,
    sampling: bool,
    beam_options: Mapping[str, tuple[str, Any]],
    sampling_options: Mapping[str, tuple[str, Any]],
    nbest: int,
    max_len_a: float,
    max_len_b: int,
    batch_tokens: int,
) -> DecodeConfig:
    """The `DecodeConfig` of `Translator.translate`'s arguments. Each options dict maps an argument's name
    to (its `DecodeConfig` field, the value given or None). An option that would be silently ignored (a beam
    option when sampling, a sampling option when searching) is refused, as `nmt translate` refuses it."""
    unused = sampling_options if not sampling else beam_options
    given = [name for name, (_, value) in unused.items() if value is not None]
    if given and sampling:
        raise UserError(
            f"{given[0]} is a beam search option: sampling=True draws samples instead; leave one out"
        )
    if given:
        raise UserError(f"{given[0]} is a sampling option: give sampling=True too")
    chosen = dict([*beam_options.values(), *sampling_options.values()])  # field -> value or None
    values = {
        **{field: value for field, value in chosen.items() if value is not None},
        "sampling": sampling,
        "nbest": nbest,
        "max_len_a": max_len_a,
        "max_len_b": max_len_b,
        "batch_tokens": batch_tokens,
    }
    # Each value converted to its field's type (a string names an enum member); the values themselves are
    # checked where the config is used (`check_decode_config`), as for the command.
    return build(DecodeConfig, values, "translate option")


def sentence_list(sentences: Sequence[str], name: str) -> list[str]:
    """`sentences` as a list; a lone string is refused (it would be read as one sentence per character)."""
    if isinstance(sentences, str):
        raise UserError(f"{name} must be a list of sentences, not one string: put it in a list ([text])")
    return list(sentences)


def checkpoint_paths(checkpoints: CheckpointPaths) -> list[Path]:
    """One checkpoint's path, or an ensemble's, as a list of paths."""
    paths = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    if not paths:
        raise UserError("no checkpoint given: give a path, or a list of paths for an ensemble")
    return [Path(path) for path in paths]


# ------------------------------------------------------------------------------------------------------------
# Preparing, training and evaluating: the functions the commands call


def prepare(config: PrepareConfig, out: Path | str, force: bool = False) -> PrepareResult:
    """`nmt prepare`: clean a parallel corpus, train SentencePiece, and write the prepared data directory
    `out` (`nmt.data.preparation.prepare_data`); `force` replaces an earlier one. Returns its path and
    manifest."""
    # deferred: the pipeline loads datasets, pyarrow and SentencePiece training; a Translator needs none
    from nmt.data.preparation import prepare_data

    return prepare_data(config, Path(out), force=force)


def train(
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
    """`nmt train` (`nmt.training.train_from_settings`): train `arch` (rnn, rnnsearch or transformer) on the
    prepared data in `data_dir`, writing best.pt, last.pt and the logs to `run_dir`. The configs are the
    preset's, then `config_file`'s `model:` and `train:` sections, then `model_settings` and
    `train_settings` (fields of the model's config and of `TrainConfig`, named as the command's options);
    a resumed run keeps its checkpoint's configs."""
    from nmt.training import train_from_settings  # deferred: torch (see the imports)

    return train_from_settings(
        data_dir,
        arch,
        run_dir,
        preset=preset,
        config_file=config_file,
        model_settings=model_settings,
        train_settings=train_settings,
        resume=resume,
        resume_from=resume_from,
        force=force,
    )


def evaluate(
    sources: Sequence[str],
    references: Sequence[str],
    *,
    systems: Mapping[str, Sequence[str]] | None = None,
    checkpoints: Mapping[str, CheckpointPaths] | None = None,
    config: EvalConfig | None = None,
    decode: DecodeConfig | None = None,
    device: str = "auto",
    gold_alignments: Sequence[GoldAlignment] | None = None,
    int8: bool = False,
) -> EvalReport:
    """`nmt eval`: score systems against the references, overall and by source length, with bootstrap
    intervals and paired tests (`nmt.evaluation.evaluate_systems`).

    `systems` maps a name to its translations (one per source); `checkpoints` maps a name to a checkpoint
    (or a list of them: an ensemble), which translates the sources first (`decode`, default beam 5). What
    `config` leaves None is chosen as the command chooses it: the languages from the checkpoints when they
    agree, then the BLEU tokenizer, the length unit and the buckets. With `gold_alignments` (one per line),
    each checkpoint with attention is also scored by how well it aligns source and reference words. With
    `int8`, every checkpoint decodes with int8 weights on the CPU (`Translator.load`).

    Everything is checked before the first checkpoint is loaded: names, line counts, comparisons, the BLEU
    tokenizer.
    """
    config = config or EvalConfig()
    given = {name: list(lines) for name, lines in (systems or {}).items()}
    to_translate = {name: checkpoint_paths(spec) for name, spec in (checkpoints or {}).items()}
    names = [*given, *to_translate]
    if not names:
        raise UserError("nothing to evaluate: give at least one system's translations or one checkpoint")
    twice = sorted(set(given) & set(to_translate))
    if twice:
        raise UserError(f"system name '{twice[0]}' is given twice; give every system its own name")
    sources, references = sentence_list(sources, "sources"), sentence_list(references, "references")
    check_line_counts(
        {"the source": len(sources), "the reference": len(references)}
        | ({"the gold alignment": len(gold_alignments)} if gold_alignments is not None else {})
        | {f"system '{name}'": len(lines) for name, lines in given.items()}
    )
    if gold_alignments is not None:
        check_gold_alignments(gold_alignments, sources, references, Path("gold_alignments"))
    compared_pairs(config, names)
    for paths in to_translate.values():  # a missing checkpoint found now, not after the others translated
        check_checkpoint_files(paths)
    config = with_checkpoint_languages(config, [path for paths in to_translate.values() for path in paths])
    config = resolve_eval_config(config, sources)  # checks the BLEU tokenizer before translating
    alignments: dict[str, list[list[Link]] | None] = {}
    if gold_alignments is not None:
        alignments = dict.fromkeys(given)  # a file of translations has no attention to align with
    for name, paths in to_translate.items():
        logger.info("system '%s': %s", name, " + ".join(str(path) for path in paths))
        translator = Translator.load(paths, device, int8)  # once, to translate and then to align
        logger.info("translating %d lines on %s", len(sources), translator.device)
        given[name] = [t.text for t in translator.translations(sources, decode or DecodeConfig())]
        if gold_alignments is not None:
            logger.info("aligning %d pairs with the attention of system '%s'", len(sources), name)
            alignments[name] = (
                translator.align(sources, references) if translator.model.has_attention else None
            )
    return evaluate_systems(
        sources,
        references,
        given,
        config,
        list(gold_alignments) if gold_alignments is not None else None,
        alignments,
    )


def check_checkpoint_files(paths: Sequence[Path]) -> None:
    """Refuse a missing checkpoint or one that is not a file, as loading it would, before any is loaded."""
    for path in paths:
        if not path.exists():
            raise UserError(f"checkpoint not found: {path}")
        if not path.is_file():
            raise UserError(f"checkpoint {path} is not a file")


def with_checkpoint_languages(config: EvalConfig, checkpoints: list[Path]) -> EvalConfig:
    """`config` with the source and target languages it lacks taken from the checkpoints, when they all
    agree (a checkpoint records the languages of the data it was trained on); left None when they differ."""
    if not checkpoints or (config.source_lang is not None and config.target_lang is not None):
        return config
    from nmt.checkpoint import load_checkpoint  # deferred: torch (see the imports)

    languages = [load_checkpoint(path).languages for path in checkpoints]
    found = {side: _agreed(side, [lang.get(side) for lang in languages]) for side in ("source", "target")}
    return dataclasses.replace(
        config,
        source_lang=config.source_lang or found["source"],
        target_lang=config.target_lang or found["target"],
    )


def _agreed(side: str, codes: list[str | None]) -> str | None:
    """The one language all the checkpoints name for `side`; None (with a warning) when they differ."""
    distinct = set(codes)
    if len(distinct) == 1:
        return distinct.pop()
    logger.warning(
        "the checkpoints' %s languages differ (%s): none is used; give --%s-lang",
        side,
        ", ".join(sorted(str(code) for code in distinct)),
        side,
    )
    return None


__all__ = [
    "Hypothesis",
    "Translator",
    "evaluate",
    "prepare",
    "train",
]
