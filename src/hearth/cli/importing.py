"""``hearth import``: bulk-load NDJSON or a FHIR Bundle through the gate."""

from __future__ import annotations

import time
from pathlib import Path

import click

from hearth.cli.common import RichProgress, State, container, emit_json, handle_errors, pass_state


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--chunk", default=500, show_default=True, help="Resources per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_state
@handle_errors
def command(state: State, file: Path, chunk: int, as_json: bool) -> None:
    """Load FILE: NDJSON (.ndjson, .jsonl; one resource per line) or a Bundle (.json).

    Memory stays bounded however large the file: NDJSON is read line by line, a Bundle with a
    streaming parser. Every resource is validated, sealed, indexed and audited (as
    system:import); each chunk is one transaction.

    \b
    Example:
      hearth --home ./var import export/Patient.ndjson
      hearth --home ./var import synthea/fhir/Ann_Smith.json
    """
    with container(state) as c:
        principal = c.system_principal("import")
        started = time.monotonic()
        report = c.importer(principal, chunk=chunk).import_path(
            file, RichProgress(enabled=not as_json)
        )
        seconds = time.monotonic() - started
    rate = report.resources / seconds if seconds > 0 else 0.0
    if as_json:
        emit_json(
            {
                "entries": report.entries,
                "written": report.resources,
                "existing": report.existing,
                "seconds": round(seconds, 3),
                "per_second": round(rate, 1),
            }
        )
    else:
        click.echo(
            f"Imported {report.resources} resources ({report.existing} already present) "
            f"in {seconds:.1f} s ({rate:.0f}/s)."
        )
