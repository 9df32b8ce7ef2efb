"""`nmt eval`: sacreBLEU scores overall and by source sentence length, with bootstrap intervals; with gold
word alignments, the alignment error rate of each model's attention."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from nmt.cli.translate import BEAM_STOP_HELP
from nmt.config import BeamStop, Correction, DecodeConfig, LengthUnit

_BEAM_STOP_DEFAULT = DecodeConfig().beam_stop.value


class BleuTokenizer(str, Enum):
    """sacreBLEU's tokenizers for BLEU (ja-mecab, ko-mecab, spm and flores need extra packages or models)."""

    t13a = "13a"
    intl = "intl"
    none = "none"
    zh = "zh"
    char = "char"
    ja_mecab = "ja-mecab"
    ko_mecab = "ko-mecab"
    spm = "spm"
    flores101 = "flores101"
    flores200 = "flores200"


def evaluate(
    source: Annotated[
        Path, typer.Option("--source", "-s", help="Source sentences, one per line (sets the buckets).")
    ],
    reference: Annotated[
        Path, typer.Option("--reference", "-r", help="Reference translations, one per line.")
    ],
    system: Annotated[
        list[str] | None,
        typer.Option("--system", help="NAME=FILE: a system's translations, one per source line. Repeatable."),
    ] = None,
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--checkpoint",
            help="NAME=CKPT: translate the source with this model first; NAME=A.pt+B.pt translates with the "
            "ensemble of A.pt and B.pt (same vocabularies). Repeatable.",
        ),
    ] = None,
    beam: Annotated[int | None, typer.Option(help="Beam size for --checkpoint translation.")] = None,
    beam_stop: Annotated[
        BeamStop | None,
        typer.Option(help=f"For --checkpoint translation: {BEAM_STOP_HELP}", show_default=_BEAM_STOP_DEFAULT),
    ] = None,
    alignment: Annotated[
        Path | None,
        typer.Option(
            help="Gold word alignments of --source and --reference, one Pharaoh line per line ('i-j': "
            "source word i, target word j, from 0; 'ipj': a possible link), e.g. the text/test.align of a "
            "prepared synthetic corpus. Each --checkpoint with attention is then scored by the alignment "
            "error rate of its attention (n/a for one without).",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="Device for --checkpoint translation: auto, cpu, cuda...")
    ] = "auto",
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Translate every --checkpoint on the CPU with int8 weights (as 'nmt translate --int8'); "
            "to compare with float32, give the float32 translations as a --system beside them.",
        ),
    ] = False,
    tokenize: Annotated[
        BleuTokenizer | None,
        typer.Option(
            help="sacreBLEU's BLEU tokenizer (ja-mecab needs the package's 'ja' extra, ko-mecab its 'ko' "
            "extra).",
            show_default="the target language's: zh for Chinese, ja-mecab for Japanese, ko-mecab for Korean, "
            "13a for any other or unknown",
        ),
    ] = None,
    source_lang: Annotated[
        str | None,
        typer.Option(
            help="Language of --source (e.g. zh): a language written without spaces gets buckets in "
            "characters.",
            show_default="the checkpoints' source language when they agree, else judged from the text",
        ),
    ] = None,
    target_lang: Annotated[
        str | None,
        typer.Option(
            help="Language of --reference (e.g. zh, ja, ko): chooses the BLEU tokenizer.",
            show_default="the checkpoints' target language when they agree, else unknown (13a)",
        ),
    ] = None,
    length_unit: Annotated[
        LengthUnit | None,
        typer.Option(
            help="What the source-length buckets count: whitespace words, or characters (without spaces).",
            show_default="characters for a source written without spaces (zh, ja, th, ...), else words",
        ),
    ] = None,
    ter: Annotated[
        bool,
        typer.Option(
            "--ter",
            help="Also compute TER (slow: an edit distance per sentence; minutes on thousands of long ones).",
        ),
    ] = False,
    buckets: Annotated[
        str | None,
        typer.Option(
            help="Source-length bucket edges in the length unit, from 0: '0,10,20' gives [0,10), [10,20), "
            "[20,inf), so a 10-word sentence is in 10-19.",
            show_default="0,10,20,30,40,50,60 in words; 0,15,30,45,60,75,90 in characters",
        ),
    ] = None,
    bootstrap: Annotated[
        int | None,
        typer.Option(
            help="Bootstrap resamples for intervals and paired tests; 0 = off.", show_default="1000"
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the bootstrap resamples.", show_default="1")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Test every system against this one.", show_default="every pair")
    ] = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SYSTEM=BASELINE",
            help="Test only this pair (instead of --baseline or every pair). Repeatable.",
        ),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(
            help="Significance level of the paired tests (marked * in the table).", show_default="0.05"
        ),
    ] = None,
    correction: Annotated[
        Correction | None,
        typer.Option(
            help="Correct the p-values for testing every pair in every bucket: holm = Holm's step-down "
            "adjustment over all of a metric's comparisons; none = each test on its own.",
            show_default="none",
        ),
    ] = None,
    json: Annotated[
        Path | None, typer.Option("--json", help="Write every number and signature as JSON.")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write one row per system and bucket as CSV.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw BLEU against source length as a PNG.")
    ] = None,
) -> None:
    """Score systems against a reference: BLEU and chrF (sacreBLEU) overall and by source length (in words,
    or in characters for a source written without spaces), with bootstrap confidence intervals and paired
    significance tests (Koehn 2004; docs/statistics.md), and, given gold word alignments, how well each
    model's attention aligns (AER, Och and Ney 2003). BLEU's tokenizer follows the target language."""
    # deferred: the library (sacreBLEU, matplotlib) loads only when the command runs, so `nmt --help` is quick
    from nmt.api import evaluate as evaluate_all
    from nmt.cli import eval_inputs
    from nmt.config import EvalConfig
    from nmt.evaluation import compared_pairs, parse_bucket_edges, write_csv, write_json
    from nmt.files import check_writable
    from nmt.plots import plot_bleu_by_length

    overrides = {
        "bucket_edges": parse_bucket_edges(buckets) if buckets is not None else None,
        "bootstrap_samples": bootstrap,
        "seed": seed,
        "tokenize": tokenize.value if tokenize is not None else None,
        "baseline": baseline,
        "compare": tuple(compare) if compare else None,
        "alpha": alpha,
        "correction": correction,
        "source_lang": source_lang,
        "target_lang": target_lang,
        "length_unit": length_unit,
    }
    config = EvalConfig(ter=ter, **{key: value for key, value in overrides.items() if value is not None})
    given = {"beam_size": beam, "beam_stop": beam_stop}
    decode = DecodeConfig(**{key: value for key, value in given.items() if value is not None})
    named = [("--system", spec) for spec in system or []] + [
        ("--checkpoint", spec) for spec in checkpoint or []
    ]
    compared_pairs(config, [eval_inputs.parse_named_path(spec, option)[0] for option, spec in named])
    for output in (json, csv, plot):  # found now, not after translating and scoring
        if output is not None:
            check_writable(output)
    data, checkpoints = eval_inputs.read_test_set(
        source, reference, system or [], checkpoint or [], alignment=alignment
    )
    report = evaluate_all(
        data.sources,
        data.references,
        systems=data.systems,
        checkpoints=dict(checkpoints),
        config=config,
        decode=decode,
        device=_int8_device(device) if int8 else device,
        gold_alignments=data.gold_alignments,
        int8=int8,
    )
    typer.echo(report.format_table())
    if json is not None:
        write_json(report, json)
    if csv is not None:
        write_csv(report, csv)
    if plot is not None:
        plot_bleu_by_length(report, plot)


def _int8_device(device: str) -> str:
    """The device for --int8 (the CPU), imported only then: the int8 module loads torch, which scoring
    translation files never needs."""
    from nmt.models.quantization import int8_device  # deferred: torch

    return int8_device(device)
