"""`nmt score`: the log-probability a model gives each given translation (forced decoding)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nmt.cli.translate import INT8_HELP
from nmt.config import DecodeConfig

STDOUT = Path("-")


def score(
    checkpoint: Annotated[
        list[Path],
        typer.Option(
            "--checkpoint",
            "-c",
            metavar="CKPT",
            help="Checkpoint to score with. Repeat it for an ensemble (probabilities averaged at every step; "
            "same vocabularies).",
        ),
    ],
    source: Annotated[Path, typer.Option("--source", "-s", help="Source sentences, one per line.")],
    target: Annotated[
        Path, typer.Option("--target", "-t", help="Their translations to score, one per source line.")
    ],
    output_path: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to write; '-' is standard output. A file appears only when complete.",
        ),
    ] = STDOUT,
    normalized: Annotated[
        bool,
        typer.Option(
            "--normalized",
            help="Add a column: the log-probability per token (the target's subwords and EOS).",
        ),
    ] = False,
    per_token: Annotated[
        bool,
        typer.Option(
            "--per-token",
            help="Add a column: the log-probability of each target subword and then of EOS, space-separated.",
        ),
    ] = False,
    batch_tokens: Annotated[
        int, typer.Option(help="Padded tokens per batch (bigger is faster, if memory allows).")
    ] = DecodeConfig().batch_tokens,
    device: Annotated[
        str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
    ] = "auto",
    int8: Annotated[bool, typer.Option("--int8", help=INT8_HELP)] = False,
) -> None:
    """Score given translations: for each line pair, the natural-log probability of the target given the
    source, summed over its subwords and the end of sentence (teacher forcing, no search). One output line per
    input pair: LOGPROB[<tab>PER-TOKEN MEAN][<tab>TOKEN LOGPROBS...]."""
    # deferred: the library (torch) loads only when the command runs, so `nmt --help` is quick
    from nmt.decoding.scoring import format_score, score_pairs
    from nmt.decoding.translation import load_translator
    from nmt.devices import resolve_device
    from nmt.errors import UserError
    from nmt.files import atomic_write, check_writable, read_lines
    from nmt.models.quantization import int8_device

    if batch_tokens < 1:
        raise UserError(f"--batch-tokens must be at least 1 (got {batch_tokens})")
    if output_path != STDOUT:
        check_writable(output_path)  # found now, not after scoring
    sources, targets = read_lines(source), read_lines(target)
    if len(sources) != len(targets):
        raise UserError(
            f"line counts differ: source {source} has {len(sources)} lines, target {target} has "
            f"{len(targets)} (every source line needs one target line)"
        )
    torch_device = resolve_device(int8_device(device) if int8 else device)
    model, loaded = load_translator(checkpoint, torch_device, int8=int8)
    scores = score_pairs(
        model,
        loaded.tokenizers,
        sources,
        targets,
        torch_device,
        batch_tokens=batch_tokens,
        target_name=f"target {target}",
    )
    text = "".join(format_score(s, normalized=normalized, per_token=per_token) for s in scores)
    if output_path == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write(output_path, lambda handle: handle.write(text.encode("utf-8")))
    typer.echo(f"scored {len(scores)} sentence pairs", err=True)
