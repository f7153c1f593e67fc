"""``hearth integrity``: verify stored records."""

from __future__ import annotations

import sys

import click

from hearth.cli.common import RichProgress, State, container, emit_json, handle_errors, pass_state
from hearth.services.integrity import verify_integrity


@click.group("integrity")
def command() -> None:
    """Check that no stored record was altered or lost."""


@command.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_state
@handle_errors
def verify(state: State, as_json: bool) -> None:
    """Open every version, check its MAC, pointers and the audit chain; exit 1 on any finding.

    \b
    Example:
      hearth --home ./var integrity verify
    """
    with container(state) as c:
        report = verify_integrity(
            c.system_repository("integrity-verify"),
            RichProgress(enabled=not as_json),
            alarms=c.alarms,
        )
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "versions": report.versions,
                "findings": [
                    {
                        "seq": f.seq,
                        "type": f.res_type,
                        "id": f.res_id,
                        "version": f.version,
                        "problem": f.problem,
                    }
                    for f in report.version_findings
                ],
                "audit": {
                    "entries": report.audit.entries,
                    "findings": [
                        {"seq": f.seq, "kind": f.kind.value, "message": f.message}
                        for f in report.audit.findings
                    ],
                },
            }
        )
    else:
        for finding in report.version_findings:
            click.secho(str(finding), fg="red")
        for chain_finding in report.audit.findings:
            click.secho(str(chain_finding), fg="red")
        verdict = "all verified" if report.ok else "PROBLEMS FOUND"
        click.echo(f"{report.versions} versions, {report.audit.entries} audit entries: {verdict}")
    sys.exit(0 if report.ok else 1)
