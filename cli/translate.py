"""`nmt translate`: translate text with a checkpoint (a file, a pipe, or an interactive prompt)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import typer

from nmt.config import DecodeConfig, LengthNormalization

STDIO = Path("-")
_DEFAULTS = DecodeConfig()


def translate(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint to translate with.")],
    input_path: Annotated[
        Path,
        typer.Option("--input", "-i", help="Source text, one sentence per line; '-' reads standard input."),
    ] = STDIO,
    output_path: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to write; '-' is standard output. A file appears only when complete.",
        ),
    ] = STDIO,
    beam: Annotated[
        int | None, typer.Option(help="Beam size (1: greedy).", show_default=str(_DEFAULTS.beam_size))
    ] = None,
    nbest: Annotated[
        int | None,
        typer.Option(
            help="Hypotheses per sentence. Above 1 each input line gives NBEST lines "
            "'LINE<tab>RANK<tab>SCORE<tab>TEXT' (LINE and RANK count from 1; SCORE is the length-normalised "
            "log-probability).",
            show_default=str(_DEFAULTS.nbest),
        ),
    ] = None,
    batch_tokens: Annotated[
        int | None,
        typer.Option(
            help="Padded source tokens times the beam size per batch (bigger is faster, if memory allows).",
            show_default=str(_DEFAULTS.batch_tokens),
        ),
    ] = None,
    max_len_a: Annotated[
        float | None,
        typer.Option(
            help="Outputs have at most A * source subwords + B subwords.",
            show_default=str(_DEFAULTS.max_len_a),
        ),
    ] = None,
    max_len_b: Annotated[
        int | None, typer.Option(help="See --max-len-a.", show_default=str(_DEFAULTS.max_len_b))
    ] = None,
    length_penalty: Annotated[
        float | None,
        typer.Option(
            help="GNMT length penalty alpha (0: rank by total log-probability).",
            show_default=str(_DEFAULTS.length_penalty),
        ),
    ] = None,
    normalization: Annotated[
        LengthNormalization | None,
        typer.Option(
            help="How hypotheses of different lengths are compared.",
            show_default=_DEFAULTS.normalization.value,
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
    ] = "auto",
    attention_plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw each sentence's attention as DIR/0001.png, ... (rnnsearch and transformer).",
            metavar="DIR",
        ),
    ] = None,
    max_plots: Annotated[int, typer.Option(help="Attention plots for the first N lines only.")] = 50,
) -> None:
    """Translate text with a trained checkpoint: one output line per input line, in order.

    Empty lines stay empty. Reading from a terminal, it answers each line as you type it (Ctrl-D ends).

    With --nbest N > 1, N lines per input line: LINE<tab>RANK<tab>SCORE<tab>TEXT, counting from 1.
    """
    # deferred: the library (torch, matplotlib) loads only when the command runs, so `nmt --help` is quick
    from nmt.decoding.translation import (
        CHUNK_LINES,
        check_decode_config,
        load_translator,
        translate_stream,
        translate_to_file,
    )
    from nmt.devices import resolve_device
    from nmt.errors import UserError
    from nmt.files import check_writable, iter_lines, stream_lines

    given = {
        "beam_size": beam,
        "nbest": nbest,
        "batch_tokens": batch_tokens,
        "max_len_a": max_len_a,
        "max_len_b": max_len_b,
        "length_penalty": length_penalty,
        "normalization": normalization,
    }
    config = dataclasses.replace(_DEFAULTS, **{k: v for k, v in given.items() if v is not None})
    check_decode_config(config)
    # An output that cannot be written is found now, not after the whole input has been translated.
    if output_path != STDIO:
        check_writable(output_path)
    if attention_plot is not None:
        check_writable(attention_plot / "0001.png")
    # A file is checked whole now (a bad byte half-way fails before anything is translated); stdin streams.
    lines = (
        iter_lines(sys.stdin.buffer, "standard input") if input_path == STDIO else stream_lines(input_path)
    )
    target = resolve_device(device)
    model, ckpt = load_translator(checkpoint, target)
    if attention_plot is not None and not model.has_attention:
        raise UserError(
            "--attention-plot needs a model with attention: the rnn model reads the source as one fixed "
            "vector (use an rnnsearch or transformer checkpoint, or leave out --attention-plot)"
        )
    interactive = input_path == STDIO and sys.stdin.isatty()
    if interactive:
        typer.echo("Type a sentence and press Enter (Ctrl-D ends).", err=True)
    plots = []

    def draw(translation) -> None:
        """The attention of the first --max-plots lines that are not empty, as DIR/0001.png, ..."""
        if attention_plot is not None and translation.attention is not None:
            from nmt.plots import plot_translation_attention  # deferred: matplotlib, only for plots

            attention_plot.mkdir(parents=True, exist_ok=True)
            plots.append(attention_plot / f"{translation.index + 1:04d}.png")
            plot_translation_attention(translation, plots[-1])

    def run(out):
        return translate_stream(
            model,
            ckpt.tokenizers,
            lines,
            out,
            config,
            target,
            attention_lines=max_plots if attention_plot is not None else 0,
            on_translation=draw,
            chunk_size=1 if interactive else CHUNK_LINES,
        )

    report = run(sys.stdout) if output_path == STDIO else translate_to_file(output_path, run)
    if interactive:
        return
    typer.echo(
        f"translated {report.sentences} sentences in {report.seconds:.1f} s: "
        f"{report.sentences_per_second:.1f} sentences/s, {report.tokens_per_second:.0f} target tokens/s"
        + (f"; {len(plots)} attention plots in {attention_plot}" if plots else ""),
        err=True,
    )
