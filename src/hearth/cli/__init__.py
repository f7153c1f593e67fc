"""The ``hearth`` command line: one module per verb, each a thin adapter over a service."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from hearth import __version__
from hearth.cli.common import State, default_home

__all__ = ["COMMANDS", "main"]

#: Each verb and its module. A module is imported only when its verb runs (or when ``--help``
#: lists the verbs), so a command pays for its own imports alone: ``hearth backup create``
#: never loads the web framework that ``hearth serve`` needs (docs/design.md, "Start-up").
COMMANDS = {
    "access": "access",
    "alarm": "alarm",
    "audit": "audit",
    "backup": "backup",
    "cert": "cert",
    "client": "client",
    "demo": "demo",
    "import": "importing",
    "init": "init",
    "integrity": "integrity",
    "keys": "keys",
    "migrate": "migrate",
    "reindex": "reindex",
    "role": "role",
    "serve": "serve",
    "token": "token",
    "user": "user",
}


class _Verbs(click.Group):
    """A group whose verbs are imported from ``COMMANDS`` when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in COMMANDS:
            return found
        module = importlib.import_module(f"{__name__}.{COMMANDS[cmd_name]}")
        command: click.Command = module.command
        if command.name != cmd_name:
            raise RuntimeError(f"hearth.cli.{COMMANDS[cmd_name]} defines {command.name!r}.")
        self.add_command(command)
        return command


@click.group(cls=_Verbs, context_settings={"help_option_names": ["-h", "--help"]})
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
