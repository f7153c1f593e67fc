"""``hearth migrate``: bring the database schema up to date."""

from __future__ import annotations

import click

from hearth.cli.common import State, handle_errors, pass_state
from hearth.settings import load_settings
from hearth.wiring import migrate_database


@click.command("migrate")
@pass_state
@handle_errors
def command(state: State) -> None:
    """Apply pending schema migrations (back up first).

    \b
    Example:
      hearth --home ./var migrate
    """
    before, after = migrate_database(load_settings(state.home))
    click.echo(f"Schema at {after} (was {before or 'empty'}).")
