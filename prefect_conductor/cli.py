"""The ``prefect-conductor`` command: preview, submit, frames, sandbox, demo and friends.

Every user error ends as one line on stderr and a non-zero exit, never a traceback: commands raise
:class:`UserError` (or a client error) and :func:`main` renders it.
"""

from __future__ import annotations

import sys

import typer

from prefect_conductor.conductor_cloud.errors import UserError

app = typer.Typer(
    name="prefect-conductor",
    help="Submit Jobs scenes to Conductor's cloud render farm through Prefect flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


# Commands are registered below by the modules that own them (keep each command small: parse the
# arguments, call into the package, print). Register new commands with @app.command().


def main() -> None:
    """Console entry point: run the Typer app, turning user errors into one line and exit 2."""
    try:
        app()
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
