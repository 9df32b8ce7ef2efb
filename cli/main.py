"""`nmt`: the command-line entry point. Each command lives in its own module and is registered here."""

from __future__ import annotations

import functools
import logging
import os
import sys

import typer
from typer.core import TyperGroup

from nmt.cli import average, evaluate, export, prepare, score, train, translate
from nmt.errors import UserError, os_problem


class OneLineUsageErrors(TyperGroup):
    """Usage errors (an unknown option, a value of the wrong type) as one line and exit code 2, like every
    other error, instead of a usage banner and a framed box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("aborted", err=True)
            code = 130
        except Exception as error:  # noqa: BLE001 - only Click's own usage errors are handled here
            # Matched by shape: depending on the version, Typer raises click's exception classes or its own
            # vendored copies of them.
            if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
                raise
            if type(error).__name__ == "NoArgsIsHelpError":
                error.show()  # the command's help text, as for --help
            else:
                context = getattr(error, "ctx", None)
                command = context.command_path if context is not None else "nmt"
                typer.echo(f"error: {error.format_message()} (see '{command} --help')", err=True)
            code = error.exit_code
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineUsageErrors,
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
    """Turn a `UserError`, or an OS error the user can fix (a full disk, a read-only directory), into one
    line on stderr and exit code 2, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            message = str(error)
        except OSError as error:
            problem = os_problem(error)
            if problem is None:
                raise
            message = f"{error.filename or 'a file'}: {problem}"
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(code=2)

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
app.command("score", no_args_is_help=True)(reports_user_errors(score.score))
app.command("export", no_args_is_help=True)(reports_user_errors(export.export))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
