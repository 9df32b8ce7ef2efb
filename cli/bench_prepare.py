"""`python -m nmt.cli.bench_prepare`: how `nmt prepare` scales with the corpus (`make bench-prepare`).

A standalone script, as `nmt.cli.bench`: it prepares a repeated corpus at each size in a child process and
writes wall time and peak memory as JSON, and a plot.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from nmt.cli.main import _configure_logging, reports_user_errors
from nmt.errors import UserError

DEFAULT_CORPUS = Path("../shared/corpora/europarl-it-en/train")


def bench_prepare(
    sizes: Annotated[
        str, typer.Option(help="Training pairs to prepare, comma-separated.")
    ] = "300000,1200000,4800000",
    corpus: Annotated[
        Path,
        typer.Option(
            help="The training files PREFIX.SRC[.gz] and PREFIX.TGT[.gz] to repeat up to each size; when "
            "they are missing, the synthetic pair is prepared instead."
        ),
    ] = DEFAULT_CORPUS,
    source_lang: Annotated[str, typer.Option("--source-lang", "-s")] = "it",
    target_lang: Annotated[str, typer.Option("--target-lang", "-t")] = "en",
    prepare_args: Annotated[
        str, typer.Option(help="Further options for every `nmt prepare` run.")
    ] = "--vocab-size 8000 --num-workers 2",
    nmt: Annotated[
        str,
        typer.Option(help="The command that runs nmt (another installation's, to compare)."),
    ] = "",
    cwd: Annotated[Path | None, typer.Option(help="Working directory of the `nmt` runs.")] = None,
    work: Annotated[
        Path | None,
        typer.Option(help="Where the inputs and prepared directories go (default: a temporary directory)."),
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(
            help="LABEL=REPORT.json: another run's report (e.g. of an earlier version, with --nmt) to draw "
            "beside this one. Repeatable."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="The JSON report.")] = Path("docs/bench/prepare.json"),
    plot: Annotated[Path | None, typer.Option(help="The plot (time and memory against size).")] = Path(
        "docs/prepare-scaling.png"
    ),
) -> None:
    """Prepare a corpus at growing sizes on the same settings; report wall time and peak RSS per size."""
    _configure_logging()
    from nmt.benchmark import prepare_scaling  # deferred: the benchmark loads the data pipeline's libraries

    counts, baselines = _sizes(sizes), _baselines(baseline or [])
    langs = (source_lang, target_lang)
    source = corpus if prepare_scaling.corpus_available(corpus, langs) else None
    if source is None:
        typer.echo(f"{corpus}.{{{','.join(langs)}}}[.gz] not found: preparing the synthetic pair instead")
    command = shlex.split(nmt) if nmt else [sys.executable, "-m", "nmt.cli.main"]
    folder = work or Path(tempfile.mkdtemp(prefix="bench-prepare-"))

    def report_run(run) -> None:
        typer.echo(
            f"{run.pairs:>10,} pairs: {run.wall_s:8.1f} s, peak RSS {run.peak_rss_mb:8.1f} MB "
            f"(all processes {run.peak_tree_rss_mb:.1f} MB); kept {run.kept}"
        )

    try:
        report = prepare_scaling.run_scaling(
            counts,
            folder,
            [*command, "prepare"],
            source,
            langs,
            shlex.split(prepare_args),
            cwd=cwd,
            on_run=report_run,
        )
    finally:
        if work is None:
            shutil.rmtree(folder, ignore_errors=True)
    prepare_scaling.write_report(report, out)
    typer.echo(f"wrote {out}")
    if plot is not None:
        reports = {"nmt prepare": report}
        reports.update({label: prepare_scaling.read_report(path) for label, path in baselines.items()})
        prepare_scaling.plot_report(reports, plot)
        typer.echo(f"wrote {plot}")


def _sizes(text: str) -> list[int]:
    """--sizes as positive integers, checked before anything runs."""
    try:
        sizes = [int(size) for size in text.split(",")]
    except ValueError:
        raise UserError(f"--sizes takes whole numbers of pairs separated by commas, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise UserError(f"--sizes must all be at least 1, got {text!r}")
    return sizes


def _baselines(items: list[str]) -> dict[str, Path]:
    """--baseline LABEL=FILE, each file present, checked before anything runs."""
    baselines = {}
    for item in items:
        label, separator, path = item.partition("=")
        if not separator or not label or not path:
            raise UserError(f"--baseline takes LABEL=FILE, got {item!r}")
        if not Path(path).is_file():
            raise UserError(f"--baseline {label}: {path} is not a file")
        baselines[label] = Path(path)
    return baselines


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command(help=bench_prepare.__doc__)(reports_user_errors(bench_prepare))


if __name__ == "__main__":
    app()
