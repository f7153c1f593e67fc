"""``hearth integrity``: verify stored records."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hearth.cli.backup import _identity, identity_option, target_option
from hearth.cli.common import (
    RichProgress,
    State,
    container,
    count,
    emit_json,
    handle_errors,
    pass_state,
)
from hearth.services.integrity import verify_integrity
from hearth.services.repair import RepairReport, ServiceBackup
from hearth.services.scanner import ScanReport, finding_fields
from hearth.settings import load_settings
from hearth.wiring import backup_decryptor, backup_service, resolve_backup_targets


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


@command.command("scan")
@click.option(
    "--full",
    is_flag=True,
    help="Check everything now (every version, index rows, the whole audit trail), not only "
    "what was written since the last scan.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_state
@handle_errors
def scan(state: State, full: bool, as_json: bool) -> None:
    """Check versions and audit entries written since the last scan (or, with --full,
    everything); alarm on new findings; exit 1 while any finding is open.

    \b
    Examples:
      hearth --home ./var integrity scan
      hearth --home ./var integrity scan --full --json
    """
    with container(state) as c:
        report = c.integrity_scanner(operator="cli").scan(
            full=full, progress=RichProgress(enabled=not as_json)
        )
    if as_json:
        emit_json(scan_json(report))
    else:
        for finding in report.open:
            click.secho(str(finding.finding), fg="red")
        verdict = "no findings" if report.ok else count(len(report.open), "OPEN FINDING").upper()
        click.echo(
            f"{count(report.versions_read, 'version')} and "
            f"{count(report.audit_entries, 'audit entry', 'audit entries')} checked "
            f"in {report.seconds:.1f} s ({report.rate:,.0f} versions/s); "
            f"{count(len(report.new), 'new finding')}; {verdict}"
        )
    sys.exit(0 if report.ok else 1)


def scan_json(report: ScanReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "full": report.full,
        "versions": report.versions_read,
        "audit_entries": report.audit_entries,
        "seconds": round(report.seconds, 3),
        "versions_per_second": round(report.rate),
        "new": [finding_fields(f) for f in report.new],
        "open": [
            {**finding_fields(s.finding), "first_found_us": s.first_found_us} for s in report.open
        ],
    }


@command.command("repair")
@click.option(
    "--from-backup",
    "backup_id",
    required=True,
    metavar="ID",
    help="The backup to take the original rows from (`hearth backup list`).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be repaired; change nothing.")
@identity_option
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_state
@handle_errors
def repair(
    state: State,
    backup_id: str,
    dry_run: bool,
    identity: Path | None,
    targets: tuple[str, ...],
    as_json: bool,
) -> None:
    """Rewrite the rows the scanner found damaged with their original bytes from a verified
    backup; never touches an intact row. Exit 1 unless everything was repaired.

    Run `hearth integrity scan --full` first: repair acts on its findings.

    \b
    Example:
      hearth --home ./var integrity repair --from-backup 20260115T093000Z-0123456789abcdef \\
          --identity /media/offline/backup-identity.txt --dry-run
    """
    decryptor = backup_decryptor(_identity(identity))
    settings = load_settings(state.home)
    with container(state) as c:
        service = backup_service(
            settings, c, targets=resolve_backup_targets(settings, targets), operator="cli"
        )
        report = c.integrity_repair(
            ServiceBackup(service, backup_id, decryptor), dry_run=dry_run, operator="cli"
        )
    if as_json:
        emit_json(repair_json(report))
    else:
        for item in report.items:
            click.secho(
                str(item), fg=None if item.outcome in ("restored", "would-restore") else "red"
            )
        for finding in report.remaining:
            click.secho(f"still damaged: {finding}", fg="red")
        verb = "would restore" if dry_run else "restored"
        done = sum(1 for i in report.items if i.outcome in ("restored", "would-restore"))
        click.echo(
            f"{verb} {count(done, 'row')} from {report.backup_id} "
            f"(its last version is {report.backup_last_seq}); "
            f"{count(len(report.pointers), 'pointer')} and "
            f"{count(len(report.reindexed), 'index entry', 'index entries')} recomputed"
            + ("" if report.ok else "; NOT EVERYTHING COULD BE REPAIRED")
        )
    sys.exit(0 if report.ok else 1)


def repair_json(report: RepairReport) -> dict[str, object]:
    return {
        "ok": report.ok,
        "backup_id": report.backup_id,
        "backup_last_seq": report.backup_last_seq,
        "dry_run": report.dry_run,
        "items": [
            {
                "seq": i.seq,
                "type": i.res_type,
                "id": i.res_id,
                "version": i.version,
                "outcome": i.outcome,
                "reason": i.reason,
            }
            for i in report.items
        ],
        "pointers": report.pointers,
        "reindexed": report.reindexed,
        "remaining": [finding_fields(f) for f in report.remaining],
    }
