"""The ``hearth`` command line: one module per verb, each a thin adapter over a service."""

from __future__ import annotations

from pathlib import Path

import click

from hearth import __version__
from hearth.cli import (
    access,
    alarm,
    audit,
    backup,
    cert,
    client,
    demo,
    importing,
    init,
    integrity,
    keys,
    migrate,
    reindex,
    role,
    serve,
    token,
    user,
)
from hearth.cli.common import State, default_home

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_home,
    show_default="$HEARTH_HOME, else ./var",
    help="The instance directory (config, SQLite database, keys).",
)
@click.version_option(__version__, prog_name="hearth")
@click.pass_context
def main(ctx: click.Context, home: Path) -> None:
    """Hearth: a FHIR R4 server with HIPAA safeguards built in.

    \b
    Example:
      hearth --home ./var init
      hearth --home ./var serve --port 8080
    """
    ctx.obj = State(home)


for module in (
    init,
    serve,
    demo,
    keys,
    audit,
    integrity,
    backup,
    alarm,
    backup,
    token,
    user,
    migrate,
    reindex,
    role,
    access,
    client,
    cert,
    importing,
):
    main.add_command(module.command)
