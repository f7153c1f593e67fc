"""``hearth backup check-policy|copy|prune``: the copy policy, replication between targets and
retention. Thin adapters over ``hearth.services.backup_policy``, ``backup_copy`` and
``backup_retention``; registered on the ``hearth backup`` group."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from hearth.cli.common import RichProgress, State, container, emit_json, handle_errors, pass_state
from hearth.domain import HearthError, errors
from hearth.services.backup_copy import copy_backups
from hearth.services.backup_inventory import survey
from hearth.services.backup_policy import apply_policy_alarms, check_policy
from hearth.services.backup_retention import apply_prune, plan_prune
from hearth.services.backup_schedule import run_scheduled_verification
from hearth.settings import load_settings
from hearth.wiring import (
    default_backup_targets,
    load_backup_keys,
    open_target,
    resolve_backup_targets,
)

__all__ = ["check_policy_command", "copy_command", "prune_command", "scheduled_verification"]


@click.command("check-policy")
@click.option("--json", "as_json", is_flag=True, help="Print the structured report.")
@pass_state
@handle_errors
def check_policy_command(state: State, as_json: bool) -> None:
    """Check the copy policy and the RPO against what every target holds.

    At least min_copies complete copies of each backup on distinct targets, one of them in a
    region other than primary_region, every target in allowed_regions, and a restorable
    backup younger than alarms.backup_rpo_hours. Raises or resolves the policy.offsite_missing
    and backup.stale alarms; exits 1 when anything is missing, naming it.

    \b
    Example:
      hearth --home ./var backup check-policy
      hearth --home ./var backup check-policy --json
    """
    settings = load_settings(state.home)
    targets = default_backup_targets(settings)
    with container(state) as c:
        now = c.clock.now()
        inventory = survey(targets, load_backup_keys(settings).verifier)
        report = check_policy(
            settings.backup, inventory, now=now, rpo_hours=settings.alarms.backup_rpo_hours
        )
        apply_policy_alarms(report, c.alarm_service, now=now)
    if as_json:
        emit_json(report.to_json())
        sys.exit(0 if report.ok else 1)
    for target in report.targets:
        where = "off-site" if target["offsite"] else "primary"
        status = "unreachable" if not target["reachable"] else f"{target['backups']} backup(s)"
        click.echo(f"{target['name']:<16} {target['region']:<16} {where:<9} {status}")
    rpo = report.to_json()["rpo"]
    if rpo["newest_backup"] is not None:
        click.echo(
            f"newest restorable backup: {rpo['newest_backup']} ({rpo['age_hours']} h old, "
            f"RPO {rpo['hours']:g} h)"
        )
    if report.ok:
        click.secho(f"Policy met for {len(report.backups)} backup(s).", fg="green")
        return
    for finding in report.findings:
        click.secho(f"{finding.rule:<18} {finding.subject}: {finding.detail}", fg="red")
    click.secho(f"Policy NOT met: {len(report.findings)} finding(s).", fg="red")
    sys.exit(1)


@click.command("copy")
@click.option("--from", "source", required=True, metavar="TARGET", help="Copy from this target.")
@click.option("--to", "destination", required=True, metavar="TARGET", help="Copy to this one.")
@click.option("--all", "every", is_flag=True, help="Every backup on the source.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("backup_ids", nargs=-1, metavar="[ID]...")
@pass_state
@handle_errors
def copy_command(
    state: State,
    source: str,
    destination: str,
    every: bool,
    as_json: bool,
    backup_ids: tuple[str, ...],
) -> None:
    """Replicate backups between targets without decrypting them.

    Each manifest's signature is checked first, the backups an incremental depends on come
    along, every object's SHA-256 is checked against the signed manifest, and the manifest is
    written last. Objects already on the destination are skipped, so a re-run only finishes
    what is missing. On targets with Object Lock the copies get object_lock_days of
    retention.

    \b
    Example:
      hearth --home ./var backup copy --from here --to offsite --all
      hearth --home ./var backup copy --from here --to offsite 20260115T093000Z-0123456789abcdef
    """
    if every == bool(backup_ids):
        raise HearthError(errors.BACKUP_ARGUMENT, "Name the backups to copy, or pass --all.")
    settings = load_settings(state.home)
    src = open_target(settings, source)
    dst = open_target(settings, destination)
    progress = RichProgress(enabled=not as_json)
    with container(state) as c:
        progress.start(f"copy {source} -> {destination}", None)
        try:
            report = copy_backups(
                src,
                dst,
                load_backup_keys(settings).verifier,
                policy=settings.backup,
                backup_ids=None if every else list(backup_ids),
                now=c.clock.now(),
                spool=settings.home / ".backup" / "copy",
                instance_id=settings.instance_id,
                alarms=c.alarm_service,
                on_segment=lambda _size: progress.advance(),
            )
        finally:
            progress.finish()
    if as_json:
        emit_json(report.to_json())
        return
    retention = (
        f", retained until {report.retain_until:%Y-%m-%d %H:%M} UTC" if report.retain_until else ""
    )
    click.echo(
        f"Copied {len(report.copied)} backup(s) ({report.segments_copied} segments, "
        f"{report.bytes_copied} bytes) from {source} to {destination}{retention}; "
        f"{len(report.present)} already there."
    )


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Print the plan; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan and result as JSON.")
@pass_state
@handle_errors
def prune_command(state: State, dry_run: bool, as_json: bool) -> None:
    """Delete backups the retention policy no longer keeps (grandfather-father-son).

    Never deletes a backup a kept incremental depends on, the newest restorable backup, an
    unreadable manifest, a segment a kept backup names, or anything under Object Lock (held
    objects are listed with their date; a delete the server refuses is reported).

    \b
    Example:
      hearth --home ./var backup prune --dry-run
      hearth --home ./var backup prune
    """
    settings = load_settings(state.home)
    targets = default_backup_targets(settings)
    with container(state) as c:
        now = c.clock.now()
        inventory = survey(targets, load_backup_keys(settings).verifier)
        plan = plan_prune(inventory, settings.backup, targets, now=now)
        result = None
        if not dry_run:
            progress = RichProgress(enabled=not as_json)
            progress.start("prune", sum(1 + len(d.segments) for d in plan.to_delete))
            try:
                result = apply_prune(plan, targets, on_object=progress.advance)
            finally:
                progress.finish()
    if as_json:
        out: dict[str, Any] = {"dry_run": dry_run, "plan": plan.to_json()}
        if result is not None:
            out["result"] = result.to_json()
        emit_json(out)
        return
    if plan.note:
        click.secho(plan.note, fg="yellow")
    for backup_id, reasons in sorted(plan.keep.items()):
        click.echo(f"keep    {backup_id}  ({', '.join(reasons)})")
    verb = "would delete" if dry_run else "delete"
    for deletion in plan.to_delete:
        click.echo(
            f"{verb:<7} {deletion.backup_id}  on {deletion.target} "
            f"({1 + len(deletion.segments)} objects, {deletion.bytes} bytes)"
        )
    for deletion in plan.held:
        until = deletion.held_until.isoformat() if deletion.held_until else "?"
        click.secho(
            f"held    {deletion.backup_id}  on {deletion.target} (Object Lock until {until})",
            fg="yellow",
        )
    for item in plan.untouched:
        click.secho(f"skip    {item.get('backup_id', '')} on {item['target']}: {item['why']}")
    if result is not None:
        for refused in result.refused:
            click.secho(
                f"refused {refused['object']} on {refused['target']}: {refused['why']}",
                fg="yellow",
            )
        click.echo(f"Deleted {len(result.deleted)} backup cop(ies).")


def scheduled_verification(state: State, names: tuple[str, ...], as_json: bool) -> None:
    """``hearth backup verify --scheduled``: the next slice of the rolling verification pass
    (``hearth.services.backup_schedule``), sized for one run a day; exit 1 on a failure."""
    settings = load_settings(state.home)
    targets = resolve_backup_targets(settings, names)
    with container(state) as c:
        run = run_scheduled_verification(
            targets,
            load_backup_keys(settings).verifier,
            c.backup_state(),
            period=timedelta(days=settings.backup.verify_period_days),
            now=c.clock.now(),
            interval=timedelta(days=1),
            alarms=c.alarm_service,
        )
    if as_json:
        emit_json(run.to_json())
        sys.exit(0 if run.ok else 1)
    for item in run.unreachable:
        click.secho(f"{item['target']}: {item['error']}", fg="red")
    for check in run.checked:
        if check["ok"]:
            click.echo(f"{check['backup_id']} on {check['target']}: verified")
        else:
            for problem in check["problems"]:
                click.secho(f"{check['backup_id']} on {check['target']}: {problem}", fg="red")
    left = run.remaining_before - len(run.checked)
    ends = run.deadline.strftime("%Y-%m-%d %H:%M UTC")
    click.echo(
        f"{len(run.checked)} of {run.total} copies read; "
        + ("pass complete." if run.pass_completed else f"{left} left in this pass (due {ends}).")
    )
    sys.exit(0 if run.ok else 1)
