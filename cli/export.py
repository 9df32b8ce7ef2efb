"""`nmt export`: write a checkpoint in another engine's format (CTranslate2), for serving it there."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer


class ExportFormat(str, enum.Enum):
    ctranslate2 = "ctranslate2"  # a CTranslate2 model directory (the ctranslate2 extra)


class Quantization(str, enum.Enum):
    float32 = "float32"  # the weights as trained: greedy translations equal nmt's
    int8 = "int8"  # 8-bit weights: about a quarter of the size, faster on a CPU, outputs may differ slightly


def export(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", metavar="CKPT", help="The checkpoint.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The model directory to write; it appears only when complete.")
    ],
    export_format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="ctranslate2: a Transformer checkpoint as a CTranslate2 model directory (needs the "
            "ctranslate2 extra of nmt-bottleneck); translate with ctranslate2.Translator, giving it the "
            "SentencePiece pieces of the source. In float32 its greedy output is nmt's.",
        ),
    ] = ExportFormat.ctranslate2,
    quantization: Annotated[
        Quantization, typer.Option(help="The weights' type in the exported model.")
    ] = Quantization.float32,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier export in --out.")] = False,
) -> None:
    """Export a Transformer checkpoint to CTranslate2, with its vocabularies and special tokens."""
    # deferred: torch and the library load only when the command runs, so that `nmt --help` is quick
    from nmt.checkpoint import load_checkpoint
    from nmt.models.ctranslate2_export import check_out_dir, export_ctranslate2

    check_out_dir(out, force)
    export_ctranslate2(load_checkpoint(checkpoint), out, quantization.value, force)
    typer.echo(f"exported {checkpoint} to {out} ({export_format.value}, {quantization.value})", err=True)
