"""``hearth reindex``: rebuild the search indexes from the sealed records."""

from __future__ import annotations

import click

from hearth.cli.common import (
    RichProgress,
    State,
    container,
    count,
    emit_json,
    handle_errors,
    pass_state,
)
from hearth.services.search_admin import rebuild_search_index


@click.command("reindex")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_state
@handle_errors
def command(state: State, as_json: bool) -> None:
    """Rebuild every search index table from the current version of each resource.

    Run it after upgrading to a Hearth with new search parameters, after restoring a backup
    taken without indexes, or if `hearth integrity verify` reports an index problem. Every
    version is opened and MAC-checked; searches keep working on the old index until it commits.

    \b
    Example:
      hearth --home ./var reindex
    """
    with container(state, bulk=True) as c:
        indexed = rebuild_search_index(
            c.system_repository("reindex", operator="cli"), RichProgress(enabled=not as_json)
        )
    if as_json:
        emit_json({"indexed": indexed})
    else:
        click.echo(f"Indexed {count(indexed, 'resource')}.")
