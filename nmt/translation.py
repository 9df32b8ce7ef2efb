"""Translating raw text with a checkpoint: normalise, encode, batch by length, beam search, detokenise.

`translate_lines` is the one entry point that everything else uses (the `nmt translate` command, the
evaluator): it streams any number of lines with bounded memory, in chunks of `chunk_size` lines, and yields
exactly one `Translation` per input line, in input order.

- Lines are normalised as `nmt prepare` normalises corpora (`nmt.corpus.normalize`: NFC, one space for any
  run of whitespace), then encoded with the checkpoint's source SentencePiece model.
- An empty line (or one that encodes to nothing) gives an empty translation and never reaches the model.
- A line longer than the model can take is cut to `source_limits(...)` subwords, with a logged warning.
- Within a chunk, sentences are sorted by length and grouped so that each batch holds at most
  `DecodeConfig.batch_tokens` padded source tokens times the beam size (the rows that beam search runs).
- A batch that runs out of GPU memory anyway is translated in halves (nmt/memory.py); a line that does not
  fit even alone is left empty, with a warning that names it, and the rest of the input is still translated.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import torch
from torch import Tensor

from nmt.batching import pad_sources
from nmt.config import DecodeConfig, ModelConfig, TransformerConfig
from nmt.corpus import normalize, one_line
from nmt.decoding import Hypothesis, beam_search
from nmt.errors import UserError
from nmt.memory import run_in_pieces
from nmt.tokenizer import TokenizerPair

if TYPE_CHECKING:
    from nmt.checkpoint import Checkpoint
    from nmt.models.base import Seq2Seq

logger = logging.getLogger(__name__)

CHUNK_LINES = 10_000  # lines read, sorted and translated together; bounds the memory of a long input
RNN_MAX_SOURCE_TOKENS = 1024  # the RNNs have no position limit; this only keeps a runaway line affordable
EOS_PIECE = "</s>"


@dataclass
class ScoredText:
    """One entry of an n-best list."""

    text: str
    score: float  # the search's ranking score (length-normalised log-probability)
    log_prob: float


@dataclass
class Translation:
    """The translation of one input line."""

    index: int  # 0-based position of the line in the input
    source: str  # the line as read
    text: str  # the best translation, detokenised ("" for an empty line)
    hypotheses: list[ScoredText]  # the n-best list, best first (empty for an empty line)
    source_pieces: list[str]  # the subwords the model saw (after truncation), without EOS
    target_pieces: list[str]  # the subwords of the best translation, without EOS
    attention: Tensor | None  # (len(target_pieces) + 1, len(source_pieces) + 1), EOS last; None unless asked
    truncated: bool = False  # the source was longer than the model can take and was cut


@dataclass
class TranslationReport:
    """What `translate_stream` did, for the command's summary line."""

    sentences: int
    source_tokens: int
    target_tokens: int
    seconds: float
    plots: int

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
    if config.beam_size < 1:
        raise UserError(f"--beam must be at least 1 (got {config.beam_size})")
    if not 1 <= config.nbest <= config.beam_size:
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


def source_limits(config: ModelConfig) -> tuple[int, int | None]:
    """(most source subwords a model takes, most output tokens it can produce or None for no limit).

    The Transformer has `max_positions` learned/sinusoidal positions on each side, one of which the EOS takes;
    the RNNs have no such limit.
    """
    if isinstance(config, TransformerConfig):
        return config.max_positions - 1, config.max_positions - 1
    return RNN_MAX_SOURCE_TOKENS, None


def load_translator(path: Path, device: torch.device) -> tuple[Seq2Seq, Checkpoint]:
    """The model of a checkpoint, in eval mode on `device`, and the checkpoint (for its tokenizers)."""
    from nmt.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    try:
        model = checkpoint.build_model(device)
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{path}: the weights do not fit the model config they came with ({first[:200]})"
        ) from None
    return model, checkpoint


# ------------------------------------------------------------------------------------------------------------
# Reading input


def read_input_lines(path: Path | None, check_first: bool = True) -> Iterator[str]:
    """The lines of a UTF-8 file (None: standard input), streamed, without line endings.

    Lines end at "\\n" only (a "\\r" before it is dropped), so Unicode line separators inside a sentence do
    not change the line count. Invalid UTF-8 is a `UserError` naming the line; a regular file is checked
    whole first (`check_first`), so that nothing is translated from a file that will fail half-way.
    """
    name = "standard input" if path is None else str(path)
    if path is not None:
        if not path.exists():
            raise UserError(f"input file not found: {path}")
        if path.is_dir():
            raise UserError(f"input {path} is a directory, not a text file")
        if check_first and path.is_file():  # not for a pipe, which can be read only once
            for _ in _decoded_lines(_open_binary(path), name):
                pass
    handle = sys.stdin.buffer if path is None else _open_binary(path)
    return _decoded_lines(handle, name)


def _open_binary(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by _decoded_lines
    except OSError as error:
        raise UserError(f"cannot read input file {path}: {error.strerror or error}") from None


def _decoded_lines(handle: IO[bytes], name: str) -> Iterator[str]:
    try:
        for number, raw in enumerate(handle, start=1):
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise UserError(
                    f"{name} is not valid UTF-8: line {number}, byte {error.start + 1} ({error.reason})"
                ) from None
            if number == 1 and line.startswith("\ufeff"):  # a byte-order mark is not part of the text
                line = line[1:]
            yield line
    except OSError as error:
        raise UserError(f"cannot read {name}: {error.strerror or error}") from None
    finally:
        if handle is not getattr(sys.stdin, "buffer", None):
            handle.close()


# ------------------------------------------------------------------------------------------------------------
# Translating


def length_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first, each with at most `batch_tokens` padded
    tokens (a single longer sentence still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current, width = [], [], 0
    for i in order:
        new_width = max(width, lengths[i])
        if current and new_width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, new_width = [], lengths[i]
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


def translate_lines(
    model: Seq2Seq,
    tokenizers: TokenizerPair,
    lines: Iterable[str],
    config: DecodeConfig,
    device: torch.device | str,
    *,
    attention: bool = False,
    chunk_size: int = CHUNK_LINES,
) -> Iterator[Translation]:
    """Translate `lines` (raw text), yielding one `Translation` per line in input order.

    Reads `chunk_size` lines at a time, so memory stays bounded however long the input is; `chunk_size=1`
    answers each line as soon as it is read (interactive use). `attention=True` keeps the best hypothesis's
    attention (models with `has_attention` only).
    """
    check_decode_config(config)
    if attention and not model.has_attention:
        raise UserError("this model has no attention over the source to return (it is the rnn model)")
    max_source, max_output = source_limits(model.config)
    iterator = iter(lines)
    offset = 0
    while chunk := list(itertools.islice(iterator, chunk_size)):
        yield from _translate_chunk(
            model, tokenizers, chunk, offset, config, torch.device(device), attention, max_source, max_output
        )
        offset += len(chunk)


def _translate_chunk(
    model: Seq2Seq,
    tokenizers: TokenizerPair,
    chunk: list[str],
    offset: int,
    config: DecodeConfig,
    device: torch.device,
    attention: bool,
    max_source: int,
    max_output: int | None,
) -> list[Translation]:
    """Translate the lines of one chunk (`offset` is the index of its first line in the whole input)."""
    source_ids = tokenizers.source.encode_batch([normalize(line) for line in chunk])
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
    budget = max(1, config.batch_tokens // config.beam_size)  # the beams multiply the rows of a batch

    def search(rows: list[int]) -> list[list[Hypothesis]]:
        src, src_lengths = pad_sources([source_ids[i] for i in rows])
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
            return_attention=attention,
        )

    def does_not_fit(row: int) -> list[Hypothesis]:
        logger.warning(
            "line %d (%d subwords) does not fit in %s memory even alone at beam %d: left untranslated%s",
            offset + row + 1,
            len(source_ids[row]),
            device.type.upper(),
            config.beam_size,
            " (a smaller --beam or --device cpu would translate it)" if device.type != "cpu" else "",
        )
        return []

    for batch in length_batches([len(source_ids[i]) + 1 for i in nonempty], budget):
        rows = [nonempty[j] for j in batch]
        for i, result in zip(rows, run_in_pieces(search, rows, device, does_not_fit), strict=True):
            hypotheses[i] = result

    translations = []
    for i, line in enumerate(chunk):
        nbest = hypotheses[i]
        texts = [ScoredText(one_line(tokenizers.target.decode(h.tokens)), h.score, h.log_prob) for h in nbest]
        best = nbest[0] if nbest else None
        translations.append(
            Translation(
                index=offset + i,
                source=line,
                text=texts[0].text if texts else "",
                hypotheses=texts,
                source_pieces=tokenizers.source.id_to_piece(source_ids[i]),
                target_pieces=tokenizers.target.id_to_piece(best.tokens) if best else [],
                attention=best.attention if best else None,
                truncated=truncated[i],
            )
        )
    return translations


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


def plot_translation_attention(translation: Translation, path: Path) -> None:
    """A heatmap of the best hypothesis's attention: source subwords across, target subwords down."""
    from nmt.plots import plot_attention

    plot_attention(
        translation.attention,
        [*translation.source_pieces, EOS_PIECE],
        [*translation.target_pieces, EOS_PIECE],
        path,
        title=f"line {translation.index + 1}",
    )


def translate_stream(
    model: Seq2Seq,
    tokenizers: TokenizerPair,
    lines: Iterable[str],
    out: IO[str],
    config: DecodeConfig,
    device: torch.device | str,
    *,
    plot_dir: Path | None = None,
    max_plots: int = 50,
    chunk_size: int = CHUNK_LINES,
) -> TranslationReport:
    """Translate `lines` into `out`: one line per input line, or `nbest` lines in the `format_nbest` format
    when `config.nbest > 1`. With `plot_dir`, the attention of the first `max_plots` lines that are not empty
    is drawn to `plot_dir/0001.png`, ... (numbered by input line)."""
    if plot_dir is not None and not model.has_attention:
        raise UserError(
            "--attention-plot needs a model with attention: the rnn model reads the source as one fixed "
            "vector (use an rnnsearch or transformer checkpoint, or leave out --attention-plot)"
        )
    started = time.perf_counter()
    sentences = source_tokens = target_tokens = plots = 0
    want_attention = plot_dir is not None and max_plots > 0
    for translation in translate_lines(
        model, tokenizers, lines, config, device, attention=want_attention, chunk_size=chunk_size
    ):
        out.write(format_nbest(translation, config.nbest) if config.nbest > 1 else translation.text + "\n")
        if chunk_size == 1:
            out.flush()
        sentences += 1
        source_tokens += len(translation.source_pieces)
        target_tokens += len(translation.target_pieces)
        if want_attention and translation.index < max_plots and translation.attention is not None:
            plot_dir.mkdir(parents=True, exist_ok=True)
            plot_translation_attention(translation, plot_dir / f"{translation.index + 1:04d}.png")
            plots += 1
    return TranslationReport(sentences, source_tokens, target_tokens, time.perf_counter() - started, plots)


def translate_to_file(path: Path, translate) -> TranslationReport:
    """Call `translate(text_stream)` on a temporary file beside `path` and rename it to `path` at the end:
    a failure half-way leaves an existing `path` untouched and no partial output."""
    from nmt.files import atomic_write

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


__all__ = [
    "ScoredText",
    "Translation",
    "TranslationReport",
    "check_decode_config",
    "format_nbest",
    "length_batches",
    "load_translator",
    "read_input_lines",
    "source_limits",
    "translate_lines",
    "translate_stream",
    "translate_to_file",
]
