"""``hearth migrate``: bring the database schema up to date."""

from __future__ import annotations

import click

from hearth.cli.common import RichProgress, State, container, handle_errors, pass_state
from hearth.services.search_admin import rebuild_search_index
from hearth.settings import load_settings
from hearth.wiring import migrate_database

#: Migrations after which the search index must be rebuilt from the sealed records: crossing one
#: rebuilds it at once. 0008 added care relationships (until they are filled a clinician sees no
#: linked patient, which is safe but useless); 0011 marks the index without rows of its own for
#: Observation's combo-* parameters (older rows would be reported stale by the scanner); 0012
#: likewise for the fields of name and address that family, given, address-city ... index; 0013
#: for the "has a value" keys of literal references.
_REINDEX_AT = ("0008", "0011", "0012", "0013")


def needs_reindex(before: str | None, after: str | None) -> bool:
    """Whether migrating from ``before`` to ``after`` crossed a migration that needs a rebuild
    (never for a new, empty database)."""
    if before is None or after is None:
        return False
    return any(before < revision <= after for revision in _REINDEX_AT)


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
    if needs_reindex(before, after):
        click.echo("Rebuilding the search index (this Hearth indexes differently) ...")
        with container(state) as c:
            count = rebuild_search_index(
                c.system_repository("reindex", operator="cli"), RichProgress()
            )
        click.echo(f"Indexed {count} resources.")
