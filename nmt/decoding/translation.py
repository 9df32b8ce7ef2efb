"""Translating raw text with a checkpoint: normalise, encode, batch by length, beam search, detokenise.

The model may be one checkpoint's or an ensemble of several (`load_translator`, nmt/decoding/loading.py), and
`DecodeConfig.sampling` draws samples (nmt/decoding/sampling.py) instead of searching: everything below holds
for both.

`translate_lines` is the one entry point that everything else uses (`translate_stream` for the
`nmt translate` command, `translate_texts` for `nmt eval`): it streams any number of lines with
bounded memory, in chunks of `chunk_size` lines, and yields exactly one `Translation` per input line, in input
order. Reading the input (nmt.files) and drawing attention (nmt.plots) are the caller's job: a caller asks for
the attention maps of the first lines and receives each `Translation`.

- Lines are normalised as `nmt prepare` normalises corpora (`nmt.data.corpus.normalize`: NFC, one space for
  any run of whitespace), then encoded with the checkpoint's source SentencePiece model.
- An empty line (or one that encodes to nothing) gives an empty translation and never reaches the model.
- A line longer than the model can take is cut to `source_limits(...)` subwords, with a logged warning.
- Within a chunk, sentences are sorted by length and grouped (`nmt.data.batching.length_batches`) so that
  each batch holds at most `DecodeConfig.batch_tokens` padded source tokens times the beam size (the rows
  that beam search runs).
- A batch that runs out of GPU memory anyway is translated in halves (nmt/memory.py); a line that does not
  fit even alone is left empty, with a warning that names it, and the rest of the input is still translated.
- Attention is never computed by the search: for the lines that ask for it, the best hypothesis is read back
  through the model once (`Seq2Seq.attention_maps`, teacher forcing), so translating without plots costs
  nothing extra and a plot gets every map the model has (`sentence_attention`).
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

import torch
from torch import Tensor

from nmt.config import DecodeConfig
from nmt.data.batching import length_batches, pad_sources, pad_targets
from nmt.data.corpus import normalize, one_line
from nmt.data.special import UNK_ID
from nmt.data.tokenizer import TokenizerPair
from nmt.decoding.loading import load_translator
from nmt.decoding.sampling import sample_search
from nmt.decoding.search import Hypothesis, beam_search, source_limits
from nmt.errors import UserError
from nmt.files import atomic_write
from nmt.memory import run_in_pieces
from nmt.models.base import AttentionMaps, Seq2Seq

logger = logging.getLogger(__name__)

CHUNK_LINES = 10_000  # lines read, sorted and translated together; bounds the memory of a long input


@dataclass
class ScoredText:
    """One entry of an n-best list."""

    text: str
    score: float  # the search's ranking score (length-normalised log-probability)
    log_prob: float
    pieces: list[str]  # its target subwords, without EOS


@dataclass
class Translation:
    """The translation of one input line."""

    index: int  # 0-based position of the line in the input
    source: str  # the line as read
    text: str  # the best translation, detokenised ("" for an empty line)
    hypotheses: list[ScoredText]  # the n-best list, best first (empty for an empty line)
    source_pieces: list[str]  # the subwords the model saw (after truncation), without EOS
    target_pieces: list[str]  # the subwords of the best translation, without EOS
    # Every attention map of the best translation (`sentence_attention`), None unless asked. With S =
    # len(source_pieces) + 1 and T = len(target_pieces) + 1 (the EOS, or the BOS, counted): cross (1, heads,
    # T, S) rows = target pieces + EOS; encoder (1, heads, S, S); decoder (1, heads, T, T) over BOS + pieces.
    attention_maps: AttentionMaps | None = None
    truncated: bool = False  # the source was longer than the model can take and was cut

    @property
    def attention(self) -> Tensor | None:
        """The cross-attention of the last decoder layer, mean over heads: (len(target_pieces) + 1,
        len(source_pieces) + 1), EOS last on both sides (with the default `alignment_layer`, what decoding
        exposes as `state.attention`); None without maps."""
        if self.attention_maps is None or not self.attention_maps.cross:
            return None
        return self.attention_maps.cross[-1][0].mean(dim=0)


@dataclass
class TranslationReport:
    """What `translate_stream` did, for the command's summary line."""

    sentences: int
    source_tokens: int
    target_tokens: int
    seconds: float

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else math.inf

    @property
    def tokens_per_second(self) -> float:
        return self.target_tokens / self.seconds if self.seconds > 0 else math.inf


# ------------------------------------------------------------------------------------------------------------
# Checks and limits


def check_decode_config(config: DecodeConfig) -> None:
    """Refuse decoding options that make no sense, with the option's name."""
    if config.sampling:
        check_sampling_config(config)
    elif config.beam_size < 1:
        raise UserError(f"--beam must be at least 1 (got {config.beam_size})")
    elif not 1 <= config.nbest <= config.beam_size:
        raise UserError(
            f"--nbest must be between 1 and the beam size {config.beam_size} (got {config.nbest})"
        )
    if config.batch_tokens < 1:
        raise UserError(f"--batch-tokens must be at least 1 (got {config.batch_tokens})")
    if config.max_len_a < 0 or config.max_len_b < 0 or config.max_len_a == config.max_len_b == 0:
        raise UserError(
            "--max-len-a and --max-len-b must be >= 0 and not both 0 "
            f"(got {config.max_len_a} and {config.max_len_b})"
        )
    if config.length_penalty < 0:
        raise UserError(f"--length-penalty must be >= 0 (got {config.length_penalty})")


def check_sampling_config(config: DecodeConfig) -> None:
    """The sampling options' own checks (the beam options are not used when sampling)."""
    if config.nbest < 1:
        raise UserError(f"--nbest must be at least 1 (got {config.nbest})")
    if not (config.temperature > 0 and math.isfinite(config.temperature)):
        raise UserError(f"--temperature must be a positive number (got {config.temperature})")
    if config.top_k < 0:
        raise UserError(f"--top-k must be >= 0 (0 keeps every token; got {config.top_k})")
    if not 0 < config.top_p <= 1:
        raise UserError(f"--top-p must be above 0 and at most 1 (got {config.top_p})")


def rows_per_sentence(config: DecodeConfig) -> int:
    """How many rows of a decoding batch one sentence takes: its samples, or its beams."""
    return config.nbest if config.sampling else config.beam_size


# ------------------------------------------------------------------------------------------------------------
# Attention maps

ATTENTION_KINDS = tuple(field.name for field in fields(AttentionMaps))  # cross, encoder, decoder


@torch.no_grad()
def sentence_attention(
    model: Seq2Seq, source_ids: list[int], target_ids: list[int], device: torch.device | str
) -> AttentionMaps:
    """Every attention map of one translation: `target_ids` (without BOS/EOS) read back through the model as
    the translation of `source_ids` (without EOS), by teacher forcing (`Seq2Seq.attention_maps`).

    The model reads tgt_in = BOS + target_ids, so the len(target_ids) + 1 query rows of a cross map are the
    queries that produced each target piece and then the EOS: the layout of the search's `state.attention`.
    A batch of one sentence: nothing is padded, so nothing needs cutting. Float32, on the CPU.
    """
    src, src_lengths = pad_sources([source_ids])
    tgt_in, _ = pad_targets([target_ids])
    maps = model.attention_maps(src.to(device), src_lengths.to(device), tgt_in.to(device))
    return AttentionMaps(
        **{kind: [layer.float().cpu() for layer in getattr(maps, kind)] for kind in ATTENTION_KINDS}
    )


def attention_inventory(model: Seq2Seq, device: torch.device | str) -> dict[str, tuple[int, int]]:
    """The attention maps `model` has: kind -> (layers, heads), only for the kinds it has at all.

    Read from the maps of a dummy sentence (one unknown word, an empty translation), so that options asking
    for a kind, layer or head the model lacks are refused before anything is translated, without asking
    which architecture the model is. A kind's head count is the smallest of its layers'.
    """
    maps = sentence_attention(model, [UNK_ID], [], device)
    return {
        kind: (len(layers), min(layer.size(1) for layer in layers))
        for kind in ATTENTION_KINDS
        if (layers := getattr(maps, kind))
    }


# ------------------------------------------------------------------------------------------------------------
# Translating


def translate_lines(
    model: Seq2Seq,
    tokenizers: TokenizerPair,
    lines: Iterable[str],
    config: DecodeConfig,
    device: torch.device | str,
    *,
    attention_lines: int = 0,
    check_attention: Callable[[Translation], None] | None = None,
    chunk_size: int = CHUNK_LINES,
) -> Iterator[Translation]:
    """Translate `lines` (raw text), yielding one `Translation` per line in input order.

    Reads `chunk_size` lines at a time, so memory stays bounded however long the input is; `chunk_size=1`
    answers each line as soon as it is read (interactive use). Of the first `attention_lines` lines, those
    with a translation keep every attention map of it (`sentence_attention`, computed after the search, for
    those lines only, each just before it is yielded so that one sentence's maps are alive at a time); the
    others have `attention_maps=None`. `check_attention` sees each translation that gets maps (its text and
    pieces, not yet the maps) before any line of its chunk is yielded, so that it can refuse one (raise)
    before anything is written.
    """
    check_decode_config(config)
    if attention_lines > 0 and not attention_inventory(model, device):
        raise UserError("this model has no attention maps to return (Seq2Seq.attention_maps is empty)")
    max_source, max_output = source_limits(model)
    iterator = iter(lines)
    offset = 0
    while chunk := list(itertools.islice(iterator, chunk_size)):
        keep = max(0, min(len(chunk), attention_lines - offset))  # lines of this chunk that keep attention
        translations, plotted = _translate_chunk(
            model, tokenizers, chunk, offset, config, torch.device(device), keep, max_source, max_output
        )
        for i in plotted if check_attention is not None else ():
            check_attention(translations[i])
        for i, translation in enumerate(translations):
            if i in plotted:
                translation.attention_maps = sentence_attention(model, *plotted[i], device)
            yield translation
        offset += len(chunk)


def _encode_sources(tokenizers: TokenizerPair, lines: list[str]) -> list[list[int]]:
    """Source ids of `lines`, normalised as `nmt prepare` normalises corpora (not yet cut to the model)."""
    return tokenizers.source.encode_batch([normalize(line) for line in lines])


def source_pieces(model: Seq2Seq, tokenizers: TokenizerPair, lines: list[str]) -> list[list[str]]:
    """The source subwords `model` will read for each line, without EOS, cut as a long line is cut: each
    translation's `source_pieces`, known before translating (to check options that name a source word)."""
    max_source, _ = source_limits(model)
    return [tokenizers.source.id_to_piece(ids[:max_source]) for ids in _encode_sources(tokenizers, lines)]


def _translate_chunk(
    model: Seq2Seq,
    tokenizers: TokenizerPair,
    chunk: list[str],
    offset: int,
    config: DecodeConfig,
    device: torch.device,
    attention_lines: int,
    max_source: int,
    max_output: int | None,
) -> tuple[list[Translation], dict[int, tuple[list[int], list[int]]]]:
    """Translate the lines of one chunk (`offset` is the index of its first line in the whole input).

    Returns the translations (without attention maps) and, for those of the first `attention_lines` lines
    that have a translation, {index in the chunk: (source ids, best hypothesis ids)} to compute maps from."""
    source_ids = _encode_sources(tokenizers, chunk)
    truncated = [False] * len(chunk)
    for i, ids in enumerate(source_ids):
        if len(ids) > max_source:
            logger.warning(
                "line %d has %d subwords, more than this model takes: only the first %d are translated",
                offset + i + 1,
                len(ids),
                max_source,
            )
            source_ids[i], truncated[i] = ids[:max_source], True

    hypotheses: list[list[Hypothesis]] = [[] for _ in chunk]
    nonempty = [i for i, ids in enumerate(source_ids) if ids]
    width = rows_per_sentence(config)
    budget = max(1, config.batch_tokens // width)  # the beams (or samples) multiply the rows of a batch

    def search(rows: list[int]) -> list[list[Hypothesis]]:
        src, src_lengths = pad_sources([source_ids[i] for i in rows])
        if config.sampling:
            return sample_search(
                model,
                src.to(device),
                src_lengths.to(device),
                sentence_ids=[offset + i for i in rows],
                seed=config.seed,
                num_samples=config.nbest,
                temperature=config.temperature,
                top_k=config.top_k,
                top_p=config.top_p,
                max_len_a=config.max_len_a,
                max_len_b=config.max_len_b,
                max_output_len=max_output,
            )
        return beam_search(
            model,
            src.to(device),
            src_lengths.to(device),
            beam_size=config.beam_size,
            nbest=config.nbest,
            length_penalty=config.length_penalty,
            normalization=config.normalization,
            max_len_a=config.max_len_a,
            max_len_b=config.max_len_b,
            max_output_len=max_output,
            stop=config.beam_stop,
        )

    def does_not_fit(row: int) -> list[Hypothesis]:
        logger.warning(
            "line %d (%d subwords) does not fit in %s memory even alone at %s %d: left untranslated%s",
            offset + row + 1,
            len(source_ids[row]),
            device.type.upper(),
            "--nbest" if config.sampling else "beam",
            width,
            f" (a smaller {'--nbest' if config.sampling else '--beam'} or --device cpu would translate it)"
            if device.type != "cpu"
            else "",
        )
        return []

    for batch in length_batches([len(source_ids[i]) + 1 for i in nonempty], budget):  # longest first
        rows = [nonempty[j] for j in batch.tolist()]
        for i, result in zip(rows, run_in_pieces(search, rows, device, does_not_fit), strict=True):
            hypotheses[i] = result

    translations = []
    for i, line in enumerate(chunk):
        nbest = hypotheses[i]
        texts = [
            ScoredText(
                one_line(tokenizers.target.decode(h.tokens)),
                h.score,
                h.log_prob,
                tokenizers.target.id_to_piece(h.tokens),
            )
            for h in nbest
        ]
        best = nbest[0] if nbest else None
        translations.append(
            Translation(
                index=offset + i,
                source=line,
                text=texts[0].text if texts else "",
                hypotheses=texts,
                source_pieces=tokenizers.source.id_to_piece(source_ids[i]),
                target_pieces=tokenizers.target.id_to_piece(best.tokens) if best else [],
                truncated=truncated[i],
            )
        )
    plotted = {i: (source_ids[i], hypotheses[i][0].tokens) for i in range(attention_lines) if hypotheses[i]}
    return translations, plotted


# ------------------------------------------------------------------------------------------------------------
# Output


def format_nbest(translation: Translation, nbest: int) -> str:
    """`nbest` lines "LINE<TAB>RANK<TAB>SCORE<TAB>TEXT" (LINE and RANK from 1), each ending in a newline.

    An empty input line gets `nbest` lines with empty text and score 0; a missing hypothesis (possible only
    with a tiny vocabulary) gets empty text and score -inf, so the count is always `nbest` per input line.
    """
    rows = []
    for rank in range(nbest):
        if rank < len(translation.hypotheses):
            hyp = translation.hypotheses[rank]
            text, score = hyp.text, hyp.score
        else:
            text, score = "", (0.0 if not translation.source_pieces else -math.inf)
        rows.append(f"{translation.index + 1}\t{rank + 1}\t{score:.4f}\t{text}\n")
    return "".join(rows)


def translate_stream(
    model: Seq2Seq,
    tokenizers: TokenizerPair,
    lines: Iterable[str],
    out: IO[str],
    config: DecodeConfig,
    device: torch.device | str,
    *,
    attention_lines: int = 0,
    check_attention: Callable[[Translation], None] | None = None,
    on_translation: Callable[[Translation], None] | None = None,
    chunk_size: int = CHUNK_LINES,
) -> TranslationReport:
    """Translate `lines` into `out`: one line per input line, or `nbest` lines in the `format_nbest` format
    when `config.nbest > 1`.

    `on_translation` receives each `Translation` once its text is written (the first `attention_lines`
    lines with their attention maps, e.g. for `nmt.plots.plot_translation_attention`); `check_attention`
    is `translate_lines`'s, to refuse a line's maps before anything of its chunk is written.
    """
    started = time.perf_counter()
    sentences = source_tokens = target_tokens = 0
    for translation in translate_lines(
        model,
        tokenizers,
        lines,
        config,
        device,
        attention_lines=attention_lines,
        check_attention=check_attention,
        chunk_size=chunk_size,
    ):
        out.write(format_nbest(translation, config.nbest) if config.nbest > 1 else translation.text + "\n")
        if chunk_size == 1:
            out.flush()
        sentences += 1
        source_tokens += len(translation.source_pieces)
        target_tokens += len(translation.target_pieces)
        if on_translation is not None:
            on_translation(translation)
    return TranslationReport(sentences, source_tokens, target_tokens, time.perf_counter() - started)


def translate_to_file(path: Path, translate) -> TranslationReport:
    """Call `translate(text_stream)` on a temporary file beside `path` and rename it to `path` at the end:
    a failure half-way leaves an existing `path` untouched and no partial output."""
    report = None

    def write(handle):
        nonlocal report
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="\n")
        try:
            report = translate(text)
            text.flush()
        finally:
            text.detach()  # leave the binary handle open for atomic_write's fsync

    atomic_write(path, write)
    return report


def translate_texts(
    model: Seq2Seq, tokenizers: TokenizerPair, lines: list[str], decode: DecodeConfig, device: torch.device
) -> list[str]:
    """Translate `lines` with a loaded model (`load_translator`): one output line per input line (`nmt eval`
    loads each checkpoint once, to translate and then to align)."""
    logger.info("translating %d lines on %s", len(lines), device)
    return [result.text for result in translate_lines(model, tokenizers, lines, decode, device)]


__all__ = [
    "ATTENTION_KINDS",
    "ScoredText",
    "Translation",
    "TranslationReport",
    "attention_inventory",
    "check_decode_config",
    "check_sampling_config",
    "format_nbest",
    "load_translator",
    "rows_per_sentence",
    "sentence_attention",
    "source_pieces",
    "translate_lines",
    "translate_stream",
    "translate_texts",
    "translate_to_file",
]
