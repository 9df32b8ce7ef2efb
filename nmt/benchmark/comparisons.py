"""Comparisons: two ways to do the same work (ours and a reference, or a fast path and the work without it),
warmed up and then timed in turn, A B A B ..., so that a change in the machine's load affects both alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nmt.benchmark.decoding import output_tokens
from nmt.benchmark.report import Comparison
from nmt.benchmark.timing import Timing, time_interleaved
from nmt.benchmark.training import TrainingSetup
from nmt.decoding.search import Hypothesis


@dataclass
class Contender:
    """One side of a comparison: a label, a run, and what one run produced (tokens, and the outputs for
    decoding)."""

    label: str
    run: Callable[[], Any]
    tokens: Callable[[], int] | None = None  # target (training) or generated (decoding) tokens of one run
    outputs: Callable[[], list[Hypothesis]] | None = None


def compare(
    name: str,
    work: str,
    candidate: Contender,
    baseline: Contender,
    device: torch.device,
    warmup: int,
    repeats: int,
) -> Comparison:
    """Time `candidate` and `baseline` interleaved (see `time_interleaved`); speedup > 1: candidate faster."""
    fast, slow = time_interleaved([candidate.run, baseline.run], device, warmup, repeats)
    return comparison_of(name, work, candidate, baseline, fast, slow)


def compare_with_each(
    names: Sequence[str],
    work: str,
    candidate: Contender,
    baselines: Sequence[Contender],
    device: torch.device,
    warmup: int,
    repeats: int,
) -> list[Comparison]:
    """`candidate` against each of `baselines`, all timed in one interleaved loop (A B C A B C ...): one
    comparison per baseline, named by `names`, the candidate's timing shared, so it runs once per round."""
    timings = time_interleaved([candidate.run, *(b.run for b in baselines)], device, warmup, repeats)
    return [
        comparison_of(name, work, candidate, baseline, timings[0], timing)
        for name, baseline, timing in zip(names, baselines, timings[1:], strict=True)
    ]


def comparison_of(
    name: str, work: str, candidate: Contender, baseline: Contender, fast: Timing, slow: Timing
) -> Comparison:
    """The `Comparison` of two contenders, the candidate timed `fast` and the baseline `slow` (the names of
    the hoped-for outcome; either may be the faster)."""
    agreement = None
    if candidate.outputs is not None and baseline.outputs is not None:
        a, b = candidate.outputs(), baseline.outputs()
        agreement = sum(x.tokens == y.tokens for x, y in zip(a, b, strict=True)) / max(1, len(a))
    return Comparison(
        name=name,
        candidate=candidate.label,
        baseline=baseline.label,
        work=work,
        candidate_s=fast,
        baseline_s=slow,
        speedup=slow.median_s / fast.median_s,
        candidate_tokens_per_s=None if candidate.tokens is None else candidate.tokens() / fast.median_s,
        baseline_tokens_per_s=None if baseline.tokens is None else baseline.tokens() / slow.median_s,
        agreement=agreement,
    )


def training_contender(setup: TrainingSetup) -> Contender:
    """One update of `setup` per run, labelled with the setup's label."""
    return Contender(setup.label, setup.update, tokens=lambda: setup.batch.num_tokens)


def decoding_contender(label: str, search: Callable[[], list[Hypothesis]], same_model: bool) -> Contender:
    """A decoding run; its token count is that of the last run. With `same_model` (both sides decode with
    the same weights) the comparison also reports how often the two outputs agree."""
    found: list[Hypothesis] = []

    def run() -> None:
        found[:] = search()

    return Contender(
        label, run, tokens=lambda: output_tokens(found), outputs=(lambda: found) if same_model else None
    )
