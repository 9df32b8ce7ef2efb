"""The benchmark's results: one dataclass per kind of measurement, the whole report, its JSON and its table.

Nothing here measures or prints: `report_dict` and `write_report` give the JSON of docs/bench/*.json, and
`format_report` the text table that `make bench` shows.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nmt.benchmark.timing import Machine, Timing


@dataclass
class TrainingResult:
    model: str  # architecture, or the reference's name
    preset: str
    parameters: int
    sentences: int  # batch shape: sentences x source_len / target_len tokens
    source_len: int
    target_len: int
    target_tokens: int  # per update
    bf16_autocast: bool
    fused_adamw: bool
    compiled: bool
    seconds: Timing  # per update
    tokens_per_s: float  # target tokens / median seconds
    tokens_per_s_min: float  # at the slowest update
    tokens_per_s_max: float  # at the fastest update
    model_flops: int  # forward + backward FLOPs of one update, counted by torch.utils.flop_counter
    achieved_tflops: float  # model_flops / median seconds / 1e12
    mfu: float | None  # achieved / the device's dense bf16 peak (CUDA with a known device only)
    peak_memory_mb: float


@dataclass
class DecodingResult:
    model: str
    preset: str
    search: str  # "greedy" or "beam"
    beam_size: int
    sentences: int
    source_len: int
    max_output_len: int  # the length limit (tokens without EOS): floor(max_len_a * words + max_len_b)
    mean_output_len: float  # generated tokens per sentence, EOS included (the best hypothesis of a beam)
    generated_tokens: int  # per run
    seconds: Timing  # per run (the whole batch)
    sentences_per_s: float
    tokens_per_s: float
    peak_memory_mb: float
    precision: str = "float32"  # the weights of the products: "float32", or "int8" (`nmt translate --int8`)


@dataclass
class Comparison:
    """Two ways to do the same work, timed in turn; speedup = baseline median / candidate median."""

    name: str
    candidate: str  # ours / the fast path
    baseline: str  # the reference / the path without the optimisation
    work: str  # what one timed run does
    candidate_s: Timing
    baseline_s: Timing
    speedup: float  # > 1: the candidate is faster
    candidate_tokens_per_s: float | None  # target tokens (training) or generated tokens (decoding) per second
    baseline_tokens_per_s: float | None
    agreement: float | None  # decoding: the share of sentences with identical output (same weights only)


@dataclass
class PaddingResult:
    corpus: str
    unit: str  # what a token is: "subwords" or "words"
    pairs: int  # training pairs batched
    batch_tokens: int  # the token budget: B * max(source, target length) <= batch_tokens
    batches: int
    source_padding: float  # share of padding positions in the padded source tensors
    target_padding: float
    padding: float  # both together (nmt.data.batching.padding_stats)


@dataclass
class BenchReport:
    command: str
    mode: str  # "quick" or "full"
    started: str  # local time, ISO 8601
    seconds: float  # the whole run
    machine: Machine
    versions: dict[str, str | None]
    settings: dict[str, Any]
    memory_measure: str  # what peak_memory_mb means on this device
    training: list[TrainingResult]
    decoding: list[DecodingResult]
    padding: list[PaddingResult]
    references: list[Comparison]
    ablations: list[Comparison]
    notes: list[str]


# ------------------------------------------------------------------------------------------------------------
# JSON


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data: paths as strings, tuples as lists, NaN and infinities as null."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def report_dict(report: BenchReport) -> dict[str, Any]:
    """The report as plain JSON-ready data."""
    return jsonable(dataclasses.asdict(report))


def write_report(report: BenchReport, path: Path) -> None:
    """Write the report as JSON, atomically (a temporary file renamed over `path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(report_dict(report), indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


# ------------------------------------------------------------------------------------------------------------
# The table


def _ms(timing: Timing) -> str:
    return f"{1000 * timing.median_s:,.1f} [{1000 * timing.min_s:,.1f}-{1000 * timing.max_s:,.1f}]"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell: the first left-aligned, the others right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def format_report(report: BenchReport) -> str:
    """A readable table of the whole report."""
    m, v = report.machine, report.versions
    out = [
        f"nmt benchmark ({report.mode}) on {m.device}: {report.command}",
        f"machine: {m.cpu}, {m.usable_cpus or m.cpu_count} usable CPUs, torch threads {m.torch_threads}"
        + (f"; GPU {m.gpu} ({m.gpu_memory_gb} GB)" if m.gpu else "")
        + f"; load average {m.load_average_start} before, {m.load_average_end} after",
        "versions: " + ", ".join(f"{k} {x}" for k, x in v.items() if x is not None),
        f"started {report.started}, took {report.seconds / 60:.1f} min; memory: {report.memory_measure}",
        "",
        "Training: one full update (forward, smoothed loss, backward, clip, AdamW); ms median [min-max]",
    ]
    out += _table(
        [
            "model",
            "preset",
            "params",
            "batch",
            "bf16",
            "fused",
            "compile",
            "ms/update",
            "tok/s",
            "TFLOP/s",
            "MFU",
            "peak MiB",
        ],
        [
            [
                r.model,
                r.preset,
                f"{r.parameters / 1e6:.1f}M",
                f"{r.sentences}x{r.target_len}",
                _yes(r.bf16_autocast),
                _yes(r.fused_adamw),
                _yes(r.compiled),
                _ms(r.seconds),
                f"{r.tokens_per_s:,.0f}",
                f"{r.achieved_tflops:.3f}",
                "-" if r.mfu is None else f"{100 * r.mfu:.1f}%",
                f"{r.peak_memory_mb:,.0f}",
            ]
            for r in report.training
        ],
    )
    out += ["", "Decoding: one batch; ms median [min-max] per batch"]
    out += _table(
        [
            "model",
            "preset",
            "weights",
            "search",
            "sentences",
            "out len",
            "ms/batch",
            "sent/s",
            "tok/s",
            "peak MiB",
        ],
        [
            [
                r.model,
                r.preset,
                r.precision,
                "greedy" if r.beam_size == 1 else f"beam {r.beam_size}",
                str(r.sentences),
                f"{r.mean_output_len:.1f}/{r.max_output_len + 1}",
                _ms(r.seconds),
                f"{r.sentences_per_s:,.1f}",
                f"{r.tokens_per_s:,.0f}",
                f"{r.peak_memory_mb:,.0f}",
            ]
            for r in report.decoding
        ],
    )
    for title, comparisons in (
        (
            "References: ours against what a user might otherwise pick (ratio > 1: ours faster)",
            report.references,
        ),
        (
            "Ablations: with the fast path against without it (ratio > 1: the fast path is faster)",
            report.ablations,
        ),
    ):
        if comparisons:
            out += ["", title, *_comparison_table(comparisons)]
    out += ["", "Padding of the trainer's length-bucketed batches (nmt.data.batching.token_batches, epoch 1)"]
    out += _table(
        ["corpus", "unit", "pairs", "budget", "batches", "source", "target", "all"],
        [
            [
                p.corpus,
                p.unit,
                str(p.pairs),
                str(p.batch_tokens),
                str(p.batches),
                f"{100 * p.source_padding:.1f}%",
                f"{100 * p.target_padding:.1f}%",
                f"{100 * p.padding:.1f}%",
            ]
            for p in report.padding
        ],
    )
    if report.notes:
        out += ["", "Notes:", *(f"- {note}" for note in report.notes)]
    return "\n".join(out)


def _comparison_table(comparisons: list[Comparison]) -> list[str]:
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    return _table(
        ["comparison", "ours / fast", "ms", "tok/s", "theirs / slow", "ms", "tok/s", "ratio", "same out"],
        [
            [
                c.name,
                c.candidate,
                f"{1000 * c.candidate_s.median_s:,.1f}",
                rate(c.candidate_tokens_per_s),
                c.baseline,
                f"{1000 * c.baseline_s.median_s:,.1f}",
                rate(c.baseline_tokens_per_s),
                f"{c.speedup:.2f}x",
                "-" if c.agreement is None else f"{100 * c.agreement:.0f}%",
            ]
            for c in comparisons
        ],
    )
