"""``hearth audit``: the audit chain."""

from __future__ import annotations

import sys

import click

from hearth.cli.common import RichProgress, State, container, emit_json, handle_errors, pass_state
from hearth.services.integrity import verify_audit


@click.group("audit")
def command() -> None:
    """Inspect and verify the audit trail."""


@command.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_state
@handle_errors
def verify(state: State, as_json: bool) -> None:
    """Verify the hash chain, signed checkpoints and signed head; exit 1 on any finding.

    \b
    Example:
      hearth --home ./var audit verify
    """
    with container(state) as c:
        report = verify_audit(
            c.system_repository("audit-verify"),
            RichProgress(enabled=not as_json),
            alarms=c.alarms,
        )
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "findings": [
                    {"seq": f.seq, "kind": f.kind.value, "message": f.message}
                    for f in report.findings
                ],
            }
        )
    else:
        for finding in report.findings:
            click.secho(str(finding), fg="red")
        verdict = "intact" if report.ok else f"BROKEN ({len(report.findings)} findings)"
        click.echo(f"audit chain: {report.entries} entries, {verdict}")
    sys.exit(0 if report.ok else 1)
