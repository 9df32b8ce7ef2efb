"""`nmt train`: train a model on a prepared data directory."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Annotated

import typer

from nmt.cli.evaluate import BleuTokenizer
from nmt.config import Schedule
from nmt.models.configs import AttentionScore, Positions
from nmt.models.presets import DEFAULT_PRESET
from nmt.models.registry import ARCHITECTURES

#: --model's choices: the registry's architectures.
Arch = enum.Enum("Arch", {name: name for name in ARCHITECTURES}, type=str)
MODEL_HELP = "The architecture, the only thing that differs between runs: " + "; ".join(
    f"{name}, {architecture.summary}" for name, architecture in ARCHITECTURES.items()
)


def train(
    data: Annotated[Path, typer.Option("--data", help="Prepared data directory (from 'nmt prepare').")],
    model: Annotated[Arch, typer.Option("--model", help=MODEL_HELP)],
    out: Annotated[
        Path, typer.Option("--out", help="Run directory for best.pt, last.pt, log.jsonl, config.yaml.")
    ],
    preset: Annotated[
        str,
        typer.Option(
            help="Size preset: tiny, small, base, or the paper's (rnnsearch-paper, transformer-base, ...)."
        ),
    ] = DEFAULT_PRESET,
    config: Annotated[
        Path | None, typer.Option(help="YAML file with 'model:' and 'train:' sections.")
    ] = None,
    attention: Annotated[
        AttentionScore | None,
        typer.Option(
            help="rnnsearch: how the decoder scores each source annotation (additive is Bahdanau's; linear "
            "cannot depend on the decoder's state, a control; docs/attention.md)."
        ),
    ] = None,
    positions: Annotated[
        Positions | None,
        typer.Option(
            help="transformer: how positions are encoded (sinusoidal is the paper's; none: a bag of words)."
        ),
    ] = None,
    scale_attention: Annotated[
        bool | None,
        typer.Option(
            "--scale-attention/--no-scale-attention",
            help="transformer: divide attention scores by sqrt(d_k) (Vaswani et al. 2017, Section 3.2.1).",
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many updates.")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Stop after this many passes over the data.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after this much training time.")] = None,
    batch_tokens: Annotated[
        int | None,
        typer.Option(help="Token budget per batch: sentences x longest length (padding included)."),
    ] = None,
    accumulate: Annotated[
        int | None, typer.Option(help="Batches per update (gradient accumulation).")
    ] = None,
    max_source_len: Annotated[
        int | None, typer.Option(help="Train only on pairs with at most this many source words.")
    ] = None,
    max_target_len: Annotated[
        int | None, typer.Option(help="Train only on pairs with at most this many target words.")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    schedule: Annotated[Schedule | None, typer.Option(help="Learning-rate schedule.")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="Warmup updates (inverse-sqrt).")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing epsilon.")] = None,
    clip_norm: Annotated[float | None, typer.Option(help="Gradient norm clipping (0: off).")] = None,
    validate_every: Annotated[int | None, typer.Option(help="Updates between validations.")] = None,
    save_every: Annotated[int | None, typer.Option(help="Updates between checkpoints.")] = None,
    keep_checkpoints: Annotated[int | None, typer.Option(help="Step checkpoints to keep.")] = None,
    patience: Annotated[
        int | None, typer.Option(help="Validations without better BLEU before stopping.")
    ] = None,
    dev_sentences: Annotated[int | None, typer.Option(help="Dev sentences scored (a fixed prefix).")] = None,
    bleu_tokenize: Annotated[
        BleuTokenizer | None,
        typer.Option(
            help="sacreBLEU's tokenizer for dev BLEU, which picks best.pt (a resumed run keeps its own).",
            show_default="the data's target language's: zh, ja-mecab, ko-mecab, else 13a",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (initialisation, batches, dropout).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = None,
    bf16: Annotated[
        bool | None,
        typer.Option(
            "--bf16/--no-bf16",
            help="bf16 autocast on CUDA (the weights stay float32); the CPU always trains in float32.",
        ),
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile", help="Compile the transformer's training step (torch.compile)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")
    ] = False,
    resume_from: Annotated[Path | None, typer.Option(help="Continue from this checkpoint.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Start over in a run directory with checkpoints.")
    ] = False,
) -> None:
    """Train a model, keeping the best checkpoint by dev BLEU (best.pt) and the latest (last.pt)."""
    # deferred: torch and the library load only when the command runs, so that `nmt --help` is quick
    from nmt.errors import UserError
    from nmt.models import architecture
    from nmt.training import train_from_settings

    given = dict(locals())
    given["bleu_tokenize"] = bleu_tokenize.value if bleu_tokenize is not None else None
    names = [
        "max_steps",
        "max_epochs",
        "max_minutes",
        "batch_tokens",
        "accumulate",
        "max_source_len",
        "max_target_len",
        "lr",
        "schedule",
        "warmup_steps",
        "label_smoothing",
        "clip_norm",
        "validate_every",
        "save_every",
        "keep_checkpoints",
        "patience",
        "dev_sentences",
        "bleu_tokenize",
        "seed",
        "device",
        "bf16",
        "compile",
    ]
    overrides = {name: given[name] for name in names if given[name] is not None}
    # Model options: each belongs to the architectures whose config has it.
    model_fields = {field.name for field in dataclasses.fields(architecture(model.value).config)}
    model_flags = {
        name: given[name] for name in ("attention", "positions", "scale_attention") if given[name] is not None
    }
    for name in model_flags:
        if name not in model_fields:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} does not apply to model '{model.value}' (it has no '{name}' option)")
    try:
        result = train_from_settings(
            data,
            model.value,
            out,
            preset=preset,
            config_file=config,
            model_settings=model_flags,
            train_settings=overrides,
            resume=resume,
            resume_from=resume_from,
            force=force,
        )
    except RuntimeError as error:
        message = lost_process_message(error, out)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=1) from None  # not 2: nothing the user gave was wrong
    best = "no validation" if result.best_bleu is None else f"best dev BLEU {result.best_bleu:.2f}"
    typer.echo(f"{result.stop_reason.value} after {result.steps} updates ({result.minutes:.1f} min): {best}")
    if result.stop_reason.value == "interrupted":
        typer.echo(f"resume with: nmt train --data {data} --model {model.value} --out {out} --resume")
    typer.echo(f"checkpoints: {result.best_checkpoint} {result.last_checkpoint}")


def lost_process_message(error: RuntimeError, out: Path) -> str | None:
    """The one line for a data-parallel run that lost one of its processes (killed, hung past the timeout,
    or unreachable), which every surviving process reports; None for any other error."""
    from nmt.training import distributed  # deferred, as in train(): torch loads only when a command runs

    context = distributed.from_environment()
    reason = distributed.lost_process(error) if context.enabled else None
    if reason is None:
        return None
    last = out / "last.pt"
    restart = (
        f"{last} is the last whole checkpoint: restart every process with --resume"
        if last.is_file()
        else "no checkpoint was written yet: start the run again"
    )
    return (
        f"rank {context.rank} of {context.world_size}: lost contact with the other training processes "
        f"({reason}); {restart}"
    )
