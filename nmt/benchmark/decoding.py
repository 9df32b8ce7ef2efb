"""Decoding speed: greedy and beam search (`nmt.decoding.search`) over one batch, as `nmt translate` decodes
(float32, the default length limit and normalisation of `DecodeConfig`)."""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.benchmark.report import DecodingResult
from nmt.benchmark.timing import peak_memory_mb, reset_peak_memory, time_runs
from nmt.config import DecodeConfig
from nmt.data.batching import Batch
from nmt.decoding.search import Hypothesis, beam_search, greedy_search, max_output_lengths
from nmt.models.base import Seq2Seq


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
) -> DecodingResult:
    """Time decoding `batch.src` in one batch (float32, as `nmt translate` does)."""
    model.to(device).eval()
    src, src_lengths = batch.src.to(device), batch.src_lengths.to(device)
    reset_peak_memory(device)
    found: list[Hypothesis] = []

    def run() -> None:
        found[:] = decode(model, src, src_lengths, beam_size)

    seconds = time_runs(run, device, warmup, repeats)
    tokens = output_tokens(found)
    return DecodingResult(
        model=name,
        preset=preset,
        search="greedy" if beam_size == 1 else "beam",
        beam_size=beam_size,
        sentences=src.size(0),
        source_len=src.size(1),
        max_output_len=output_limit(batch.src_lengths),
        mean_output_len=tokens / src.size(0),
        generated_tokens=tokens,
        seconds=seconds,
        sentences_per_s=src.size(0) / seconds.median_s,
        tokens_per_s=tokens / seconds.median_s,
        peak_memory_mb=peak_memory_mb(device),
    )
