"""`nmt`: the command-line entry point. Each command lives in its own module and is registered here."""

from __future__ import annotations

import functools
import logging
import os
import sys

import typer

from cli import average, evaluate, prepare, train, translate
from nmt.errors import UserError

app = typer.Typer(
    name="nmt",
    help=(
        "Neural machine translation, from raw corpus to BLEU by sentence length.\n\n"
        "Typical use: 'nmt prepare' a corpus, 'nmt train' a model on it, 'nmt translate' text with the "
        "checkpoint, and 'nmt eval' several systems side by side."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def reports_user_errors(command):
    """Turn a `UserError` into one line on stderr and exit code 2, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("NMT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


@app.callback()
def _main_options() -> None:
    _configure_logging()


app.command("prepare", no_args_is_help=True)(reports_user_errors(prepare.prepare))
app.command("train", no_args_is_help=True)(reports_user_errors(train.train))
app.command("translate")(reports_user_errors(translate.translate))
app.command("eval", no_args_is_help=True)(reports_user_errors(evaluate.evaluate))
app.command("average", no_args_is_help=True)(reports_user_errors(average.average))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
