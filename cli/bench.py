"""`python -m nmt.cli.bench`: speed and memory benchmarks (`make bench`), as a table and in JSON.

A standalone script, not an `nmt` command: it measures the toolkit rather than translating with it.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from nmt.cli.main import _configure_logging, reports_user_errors

DEFAULT_OUT = Path("docs/bench")


def bench(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Fewer, smaller runs (under 10 minutes on 2 CPU cores): the small presets fully, the paper "
            "presets at batch 16 with 3 timed updates. Without it every preset trains at batch 256.",
        ),
    ] = False,
    device: Annotated[str, typer.Option(help="Where to run: cpu, cuda or cuda:N.")] = "cpu",
    out: Annotated[
        Path | None,
        typer.Option(help="The JSON report.", show_default="docs/bench/cpu.json, or cuda.json on CUDA"),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="A prepared data directory (from 'nmt prepare') whose training batches' padding is "
            "measured, besides the synthetic corpus's. Repeatable.",
        ),
    ] = None,
    threads: Annotated[
        int,
        typer.Option(help="CPU threads for torch; 0 keeps torch's default (recorded in the report)."),
    ] = 0,
    references: Annotated[
        bool,
        typer.Option(
            help="Also time MarianMTModel (when transformers is installed) and a step-loop RNNsearch."
        ),
    ] = True,
    ablations: Annotated[
        bool, typer.Option(help="Also time each fast path against the same work without it.")
    ] = True,
) -> None:
    """Training throughput, decoding speed, peak memory, padding, references and fast-path ablations."""
    _configure_logging()
    # Deferred: torch and the models load when measuring, not for --help.
    import torch

    from nmt.benchmark import settings as bench_settings
    from nmt.benchmark.report import format_report, write_report
    from nmt.benchmark.run import run_benchmark

    if threads > 0:
        torch.set_num_threads(threads)
    settings = bench_settings.quick_settings(device) if quick else bench_settings.full_settings(device)
    settings = dataclasses.replace(
        settings, data_dirs=tuple(data or ()), references=references, ablations=ablations
    )
    path = out or DEFAULT_OUT / ("cpu.json" if device == "cpu" else "cuda.json")
    report = run_benchmark(settings, command=shlex.join(["python", "-m", "nmt.cli.bench", *sys.argv[1:]]))
    write_report(report, path)
    typer.echo(format_report(report))
    typer.echo(f"\nwrote {path}")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command(help=bench.__doc__)(reports_user_errors(bench))


if __name__ == "__main__":
    app()
