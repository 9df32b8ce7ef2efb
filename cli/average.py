"""`nmt average`: average the weights of several checkpoints of one run into one checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nmt.errors import UserError
from nmt.files import check_writable


def average(
    checkpoints: Annotated[
        list[Path] | None, typer.Argument(help="Checkpoints to average.", show_default=False)
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The averaged checkpoint to write.")] = ...,
    inputs: Annotated[
        list[Path] | None,
        typer.Option("--inputs", help="Checkpoints to average: 'nmt average --inputs a.pt b.pt -o avg.pt'."),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="A training run directory: average its --last periodic checkpoints.")
    ] = None,
    last: Annotated[int, typer.Option(help="With --run-dir: how many of the newest checkpoints.")] = 5,
) -> None:
    """Average model weights element-wise (Vaswani et al. 2017, Section 6.1), without the training state.

    The checkpoints must share the architecture, model config and tokenizers.
    """
    # deferred: torch and the library load only when the command runs, so that `nmt --help` is quick
    from nmt.checkpoint import save_checkpoint
    from nmt.training.averaging import average_checkpoints, last_checkpoints

    listed = [*(inputs or []), *(checkpoints or [])]
    if bool(listed) == (run_dir is not None):
        raise UserError("give either --inputs CKPT... or --run-dir DIR (with --last N), not both or neither")
    check_writable(output)
    paths = listed or last_checkpoints(run_dir, last)
    save_checkpoint(output, average_checkpoints(paths))
    typer.echo(f"averaged {len(paths)} checkpoints into {output}", err=True)
