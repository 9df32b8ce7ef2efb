"""Decoding speed: greedy and beam search (`nmt.decoding.search`) over one batch, as `nmt translate` decodes
(float32, or with `--int8` int8 weights on the CPU; the default length limit and normalisation of
`DecodeConfig`)."""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.benchmark.report import DecodingResult
from nmt.benchmark.timing import Timing, peak_memory_mb, reset_peak_memory, time_runs
from nmt.config import DecodeConfig
from nmt.data.batching import Batch
from nmt.decoding.search import Hypothesis, beam_search, greedy_search, max_output_lengths
from nmt.models.base import Seq2Seq

FLOAT32, INT8 = "float32", "int8"  # what the weights of the decoding table's models are


def decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam_size: int) -> list[Hypothesis]:
    """The best hypothesis of each sentence: greedy search for beam size 1, else batched beam search,
    with the default length limit and normalisation (`DecodeConfig`)."""
    config = DecodeConfig()
    if beam_size == 1:
        return greedy_search(model, src, src_lengths, max_len_a=config.max_len_a, max_len_b=config.max_len_b)
    found = beam_search(
        model,
        src,
        src_lengths,
        beam_size=beam_size,
        length_penalty=config.length_penalty,
        normalization=config.normalization,
        max_len_a=config.max_len_a,
        max_len_b=config.max_len_b,
    )
    return [hypotheses[0] for hypotheses in found]


def decode_one_at_a_time(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam_size: int
) -> list[Hypothesis]:
    """The same search, one sentence per call."""
    return [decode(model, src[i : i + 1], src_lengths[i : i + 1], beam_size)[0] for i in range(src.size(0))]


def output_tokens(found: list[Hypothesis]) -> int:
    """Tokens generated for `found`, each sentence's EOS included."""
    return sum(len(h.tokens) + 1 for h in found)


def output_limit(src_lengths: Tensor) -> int:
    """The longest output (tokens without EOS) that the default length limit allows for these sources."""
    config = DecodeConfig()
    return int(max_output_lengths(src_lengths, config.max_len_a, config.max_len_b).max())


def measure_decoding(
    name: str,
    preset: str,
    model: Seq2Seq,
    batch: Batch,
    beam_size: int,
    device: torch.device,
    warmup: int,
    repeats: int,
    precision: str = FLOAT32,
) -> DecodingResult:
    """Time decoding `batch.src` in one batch, as `nmt translate` does (`precision` says which weights
    `model` has: float32, or int8 from `nmt.models.quantization.quantize_int8`)."""
    model.to(device).eval()
    src, src_lengths = batch.src.to(device), batch.src_lengths.to(device)
    reset_peak_memory(device)
    found: list[Hypothesis] = []

    def run() -> None:
        found[:] = decode(model, src, src_lengths, beam_size)

    seconds = time_runs(run, device, warmup, repeats)
    return decoding_result(name, preset, batch, beam_size, found, seconds, peak_memory_mb(device), precision)


def decoding_result(
    name: str,
    preset: str,
    batch: Batch,
    beam_size: int,
    found: list[Hypothesis],
    seconds: Timing,
    peak_mb: float,
    precision: str = FLOAT32,
) -> DecodingResult:
    """The decoding table's row of a search of `batch` that found `found` in `seconds` per run."""
    return decoding_row(name, preset, batch, beam_size, output_tokens(found), seconds, peak_mb, precision)


def decoding_row(
    name: str,
    preset: str,
    batch: Batch,
    beam_size: int,
    tokens: int,
    seconds: Timing,
    peak_mb: float,
    precision: str = FLOAT32,
) -> DecodingResult:
    """The decoding table's row of a search of `batch` that wrote `tokens` target tokens (EOS included) in
    `seconds` per run, whoever searched (ours, or a reference such as CTranslate2)."""
    sentences = batch.src.size(0)
    return DecodingResult(
        model=name,
        preset=preset,
        search="greedy" if beam_size == 1 else "beam",
        beam_size=beam_size,
        sentences=sentences,
        source_len=batch.src.size(1),
        max_output_len=output_limit(batch.src_lengths),
        mean_output_len=tokens / sentences,
        generated_tokens=tokens,
        seconds=seconds,
        sentences_per_s=sentences / seconds.median_s,
        tokens_per_s=tokens / seconds.median_s,
        peak_memory_mb=peak_mb,
        precision=precision,
    )


def peak_of_one_search(
    model: Seq2Seq, batch: Batch, beam_size: int, device: torch.device
) -> tuple[float, list[Hypothesis]]:
    """The peak memory (`peak_memory_mb`) of one search with `model`, and what it found. Call it while
    `model` is the only model alive, so that the peak is that of one engine."""
    src, src_lengths = batch.src.to(device), batch.src_lengths.to(device)
    reset_peak_memory(device)
    found = decode(model, src, src_lengths, beam_size)
    return peak_memory_mb(device), found
