"""``hearth import``: bulk-load NDJSON or a FHIR Bundle through the gate."""

from __future__ import annotations

import sys
import time
from pathlib import Path

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


@click.command("import")
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path)
)
@click.option("--chunk", default=500, show_default=True, help="Resources per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_state
@handle_errors
def command(state: State, file: Path, chunk: int, as_json: bool) -> None:
    """Load FILE: NDJSON (.ndjson, .jsonl; one resource per line) or a Bundle (.json).

    The format is chosen by FILE's extension: .ndjson and .jsonl are NDJSON, any other name is
    read as a Bundle.

    FILE may be '-' for NDJSON on standard input. Memory stays bounded however large the input:
    NDJSON is read line by line, a Bundle with a streaming parser. Every resource is validated,
    sealed, indexed and audited (as system:import); each chunk is one transaction.

    Importing a file again does not duplicate it: records are matched by their id, a Bundle
    entry's ifNoneExist or urn:uuid fullUrl, or their first identifier, and unchanged ones are
    not written again. The first bad record stops the import; the error names its line (NDJSON)
    or entry (Bundle.entry[i]) and everything before it is imported.

    \b
    Example:
      hearth --home ./var import export/Patient.ndjson
      hearth --home ./var import synthea/fhir/Ann_Smith.json
      zcat export/Observation.ndjson.gz | hearth --home ./var import -
    """
    with container(state, bulk=True) as c:
        principal = c.system_principal("import")
        started = time.monotonic()
        importer = c.importer(principal, chunk=chunk)
        progress = RichProgress(enabled=not as_json)
        if str(file) == "-":
            report = importer.import_ndjson(sys.stdin.buffer, progress)
        else:
            report = importer.import_path(file, progress)
        if report.resources:
            c.refresh_statistics()  # the planner would otherwise think the new rows absent
        seconds = time.monotonic() - started
    rate = report.resources / seconds if seconds > 0 else 0.0
    if as_json:
        emit_json(
            {
                "entries": report.entries,
                "written": report.resources,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "existing": report.existing,
                "unkeyed": report.unkeyed,
                "seconds": round(seconds, 3),
                "per_second": round(rate, 1),
            }
        )
        return
    click.echo(
        f"Imported {count(report.resources, 'resource')} ({report.created:,} created, "
        f"{report.updated:,} updated) from {count(report.entries, 'record')} in {seconds:.1f} s "
        f"({rate:.0f}/s); {report.unchanged:,} unchanged and {report.existing:,} already present "
        "were not written."
    )
    if report.unkeyed:
        one = report.unkeyed == 1
        click.echo(
            f"Note: {count(report.unkeyed, 'resource')} had no id, urn:uuid fullUrl or "
            f"identifier; importing this file again would create {'it' if one else 'them'} again."
        )
