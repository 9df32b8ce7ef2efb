"""`nmt translate`: translate text with a checkpoint (a file, a pipe, or an interactive prompt)."""

from __future__ import annotations

import dataclasses
import itertools
import sys
from pathlib import Path
from typing import Annotated

import typer

from nmt.config import BeamStop, DecodeConfig, LengthNormalization

STDIO = Path("-")
_DEFAULTS = DecodeConfig()
BEAM_STOP_HELP = (
    "When beam search leaves a sentence. first-k: once it has BEAM finished hypotheses (the usual rule; "
    "faster, but a live hypothesis that would still end with a better score is dropped, most often when "
    "the length penalty rewards length). "
    "exact: only when no live hypothesis can still beat the NBEST-th best finished one, given the length "
    "penalty and the length limit (never loses a hypothesis that way; decodes longer). first-k is the "
    "default because exact, measured on Multi30k, changed about 1 output in 80 and BLEU by 0.2 at most, for "
    "13-14% more decoding time (docs/results.md, section 6)."
)


INT8_HELP = (
    "Decode on the CPU with int8 weights in the matrix products (converted when loaded; the checkpoint is "
    "unchanged): faster for rnnsearch and the transformer, with outputs that may differ slightly "
    "(docs/results.md, section 8). --device auto then means the CPU."
)


SAMPLING_HELP = (
    "Draw translations at random from the model instead of searching for the best one (ancestral sampling): "
    "--nbest N samples per sentence, in the order drawn, each reproducible from --seed and its line number. "
    "The beam options do not apply."
)


def translate(
    checkpoint: Annotated[
        list[Path],
        typer.Option(
            "--checkpoint",
            "-c",
            metavar="CKPT",
            help="Checkpoint to translate with. Repeat it for an ensemble: the models' next-token "
            "probabilities are averaged at every step; they must share the source and target vocabularies "
            "(their architectures may differ).",
        ),
    ],
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
            help="Hypotheses (or, with --sampling, samples) per sentence. Above 1 each input line gives "
            "NBEST lines 'LINE<tab>RANK<tab>SCORE<tab>TEXT' (LINE and RANK count from 1; SCORE is the "
            "length-normalised log-probability, or with --sampling the sample's log-probability and RANK "
            "the order drawn).",
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
    beam_stop: Annotated[
        BeamStop | None,
        typer.Option(help=BEAM_STOP_HELP, show_default=_DEFAULTS.beam_stop.value),
    ] = None,
    sampling: Annotated[bool, typer.Option("--sampling", help=SAMPLING_HELP)] = False,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="With --sampling: divide the log-probabilities by T before drawing (below 1 sharper, "
            "above 1 flatter).",
            show_default=str(_DEFAULTS.temperature),
        ),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option(
            help="With --sampling: draw among the K likeliest tokens only (0: all), after --temperature.",
            show_default=str(_DEFAULTS.top_k),
        ),
    ] = None,
    top_p: Annotated[
        float | None,
        typer.Option(
            help="With --sampling: draw among the smallest set of likeliest tokens whose probability reaches "
            "P (nucleus sampling; 1: all), after --temperature and --top-k.",
            show_default=str(_DEFAULTS.top_p),
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="With --sampling: the seed of the random draws (the same seed gives the same samples).",
            show_default=str(_DEFAULTS.seed),
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
    ] = "auto",
    int8: Annotated[bool, typer.Option("--int8", help=INT8_HELP)] = False,
    attention_plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw each sentence's attention as DIR/0001.png, ... (rnnsearch and transformer).",
            metavar="DIR",
        ),
    ] = None,
    max_plots: Annotated[int, typer.Option(help="Attention plots for the first N lines only.")] = 50,
    attention_kind: Annotated[
        str | None,
        typer.Option(
            help="With --attention-plot, which attention: cross (the decoder's over the source: source "
            "pieces across, target pieces down), encoder (self-attention, source pieces on both axes) or "
            "decoder (self-attention over what the decoder read, <s> and the translation, on both axes).",
            metavar="cross|encoder|decoder",
            show_default="cross",
        ),
    ] = None,
    attention_layer: Annotated[
        str | None,
        typer.Option(
            help="With --attention-plot: layer N (from 1, nearest the embeddings), last, or all (one panel "
            "per layer).",
            metavar="N|last|all",
            show_default="last",
        ),
    ] = None,
    attention_head: Annotated[
        str | None,
        typer.Option(
            help="With --attention-plot: mean (of the layer's heads), all (one small map per head; with "
            "--attention-layer all, a grid of layers x heads), or head N (from 1).",
            metavar="mean|all|N",
            show_default="mean",
        ),
    ] = None,
    attention_token: Annotated[
        str | None,
        typer.Option(
            help="With --attention-plot: draw one query token's weights over every key as lines instead of "
            "heatmaps. TOKEN names a query, a row of the heatmap: a number N is the N-th row (from 1; rows "
            "are the source pieces + </s> for encoder, the translation's pieces + </s> for cross, <s> + the "
            "translation's pieces for decoder); anything else is a word (all its pieces) or a piece. Every "
            "plotted line must contain it (for encoder it is checked before translating).",
            metavar="TOKEN",
        ),
    ] = None,
) -> None:
    """Translate text with a trained checkpoint: one output line per input line, in order.

    Empty lines stay empty. Reading from a terminal, it answers each line as you type it (Ctrl-D ends).

    With --nbest N > 1, N lines per input line: LINE<tab>RANK<tab>SCORE<tab>TEXT, counting from 1.
    Several --checkpoint options translate with their ensemble; --sampling draws instead of searching.
    """
    # deferred: the library (torch, matplotlib) loads only when the command runs, so `nmt --help` is quick
    from nmt.decoding.translation import (
        CHUNK_LINES,
        attention_inventory,
        check_decode_config,
        load_translator,
        translate_stream,
        translate_to_file,
    )
    from nmt.devices import resolve_device
    from nmt.files import check_writable, iter_lines, stream_lines
    from nmt.models.quantization import int8_device

    beam_options = {
        "--beam": ("beam_size", beam),
        "--length-penalty": ("length_penalty", length_penalty),
        "--normalization": ("normalization", normalization),
        "--beam-stop": ("beam_stop", beam_stop),
    }
    sampling_options = {
        "--temperature": ("temperature", temperature),
        "--top-k": ("top_k", top_k),
        "--top-p": ("top_p", top_p),
        "--seed": ("seed", seed),
    }
    _check_search_options(sampling, beam_options, sampling_options)
    given = {
        "nbest": nbest,
        "batch_tokens": batch_tokens,
        "max_len_a": max_len_a,
        "max_len_b": max_len_b,
        "sampling": sampling,
        **dict(beam_options.values()),
        **dict(sampling_options.values()),
    }
    config = dataclasses.replace(_DEFAULTS, **{k: v for k, v in given.items() if v is not None})
    check_decode_config(config)
    # An output that cannot be written is found now, not after the whole input has been translated.
    if output_path != STDIO:
        check_writable(output_path)
    view = _attention_view(attention_plot, attention_kind, attention_layer, attention_head, attention_token)
    if attention_plot is not None:
        check_writable(attention_plot / "0001.png")
    # A file is checked whole now (a bad byte half-way fails before anything is translated); stdin streams.
    lines = (
        iter_lines(sys.stdin.buffer, "standard input") if input_path == STDIO else stream_lines(input_path)
    )
    target = resolve_device(int8_device(device) if int8 else device)
    model, ckpt = load_translator(checkpoint, target, int8=int8)
    interactive = input_path == STDIO and sys.stdin.isatty()
    if view is not None:
        view.check(attention_inventory(model, target))  # a kind, layer or head the model lacks: refused now
        if view.token is not None and view.queries_are_source and not interactive:
            lines = _source_token_checked(view, model, ckpt.tokenizers, lines, max_plots)
    if interactive:
        typer.echo("Type a sentence and press Enter (Ctrl-D ends).", err=True)
    plots = []

    def draw(translation) -> None:
        """The attention of the first --max-plots lines that are not empty, as DIR/0001.png, ..."""
        if attention_plot is not None and translation.attention_maps is not None:
            from nmt.plots import plot_translation_attention  # deferred: matplotlib, only for plots

            attention_plot.mkdir(parents=True, exist_ok=True)
            plots.append(attention_plot / f"{translation.index + 1:04d}.png")
            plot_translation_attention(translation, plots[-1], view)

    def run(out):
        return translate_stream(
            model,
            ckpt.tokenizers,
            lines,
            out,
            config,
            target,
            attention_lines=max_plots if attention_plot is not None else 0,
            check_attention=view.check_translation if view is not None else None,
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


def _check_search_options(sampling: bool, beam_options: dict, sampling_options: dict) -> None:
    """Refuse an option that would be silently ignored: a beam option with --sampling, a sampling option
    without it. Each dict maps an option's name to (its DecodeConfig field, the value given or None)."""
    from nmt.errors import UserError  # deferred with the rest of the library (see `translate`)

    if sampling:
        given = [name for name, (_, value) in beam_options.items() if value is not None]
        if given:
            raise UserError(
                f"{given[0]} is a beam search option: --sampling draws samples instead; leave one out"
            )
    else:
        given = [name for name, (_, value) in sampling_options.items() if value is not None]
        if given:
            raise UserError(f"{given[0]} is a sampling option: give --sampling too")


def _attention_view(plot_dir, kind, layer, head, token):
    """The `nmt.plots.AttentionView` of the --attention-* options, or None without --attention-plot (where
    any of them is an error: it would silently draw nothing)."""
    from nmt.errors import UserError  # deferred with the rest of the library (see `translate`)

    options = {
        "--attention-kind": kind,
        "--attention-layer": layer,
        "--attention-head": head,
        "--attention-token": token,
    }
    if plot_dir is None:
        given = [name for name, value in options.items() if value is not None]
        if given:
            raise UserError(f"{given[0]} chooses what --attention-plot DIR draws: give --attention-plot too")
        return None
    from nmt.plots import AttentionView  # deferred: matplotlib, only for plots

    return AttentionView.parse(kind, layer, head, token)


def _source_token_checked(view, model, tokenizers, lines, max_plots):
    """`lines`, after checking that every line to plot holds --attention-token among its source pieces:
    read ahead (a file or a pipe, never a prompt) so that a missing token stops before any translation."""
    # deferred: torch and matplotlib, loaded only when the command plots (see `translate`)
    from nmt.decoding.translation import source_pieces
    from nmt.plots import attention_axes

    first = list(itertools.islice(lines, max(0, max_plots)))
    for number, pieces in enumerate(source_pieces(model, tokenizers, first), start=1):
        if pieces:  # an empty line is not plotted
            queries, _ = attention_axes(view.kind, pieces, [])
            view.query_rows(queries, number)
    return itertools.chain(first, lines)
