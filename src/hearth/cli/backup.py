"""``hearth backup``: backups, their targets, the copy policy, retention and verification."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from hearth.cli.backup_ops import (
    check_policy_command,
    copy_command,
    prune_command,
    scheduled_verification,
)
from hearth.cli.common import RichProgress, State, emit_json, handle_errors, pass_state
from hearth.domain import HearthError, errors
from hearth.settings import load_settings, sqlite_url_in
from hearth.wiring import (
    Container,
    backup_decryptor,
    backup_service,
    default_backup_targets,
    open_target,
    resolve_backup_targets,
)

if TYPE_CHECKING:
    from hearth.services.backup import BackupService

__all__ = ["command"]

IDENTITY_HELP = (
    "The age identity file `hearth keys backup-recipient` wrote (or $HEARTH_BACKUP_IDENTITY). "
    "Keep it offline; mount it only to verify or restore."
)


@click.group("backup")
def command() -> None:
    """Encrypted, signed, verified backups and their copies on several targets.

    \b
    Targets, the copy policy and retention are set in hearth.toml ([backup] and
    [[backup.targets]]; docs/operations.md, "Backups").
    """


class _Listing(Protocol):
    """What ``backup targets --check`` asks of a target (hearth.targets.BackupTarget)."""

    def list_names(self, prefix: str = "") -> list[str]: ...


@command.command("targets")
@click.option("--check", is_flag=True, help="Contact every target and count its backups.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def targets(state: State, check: bool, as_json: bool) -> None:
    """List the configured backup targets (without any: ``local``, HOME/backups); with --check,
    reach each one.

    Exits 1 when a checked target cannot be reached or a target's region is outside
    backup.allowed_regions.

    \b
    Example:
      hearth --home ./var backup targets --check
    """
    settings = load_settings(state.home)
    section = settings.backup
    listed: list[tuple[dict[str, Any], Callable[[], _Listing]]] = [
        (
            {
                "name": config.name,
                "kind": config.kind,
                "region": config.region,
                "offsite": config.region != section.primary_region,
                "region_allowed": section.region_allowed(config.region),
                "object_lock_days": section.lock_days(config),
            },
            partial(open_target, settings, config.name),
        )
        for config in section.targets
    ]
    if not section.targets:
        # Until targets are configured, backups go to one local directory, HOME/backups.
        default = {
            "name": "local",
            "kind": "local",
            "region": section.primary_region,
            "offsite": False,
            "region_allowed": section.region_allowed(section.primary_region),
            "object_lock_days": 0,
            "path": str(settings.home / "backups"),
            "default": True,
        }
        listed.append((default, lambda: default_backup_targets(settings)[0]))
    rows: list[dict[str, Any]] = []
    ok = True
    for row, opener in listed:
        ok = ok and row["region_allowed"]
        if check:
            try:
                row["backups"] = len(opener().list_names("manifests/"))
                row["reachable"] = True
            except HearthError as exc:
                row["reachable"] = False
                row["error"] = f"{exc.detail} [{exc.code.code}]"
                ok = False
        rows.append(row)
    if as_json:
        emit_json({"ok": ok, "primary_region": section.primary_region, "targets": rows})
        sys.exit(0 if ok else 1)
    if not section.targets:
        click.echo(
            f"No [[backup.targets]] in hearth.toml: backups go to {settings.home / 'backups'} "
            "(named local, primary region, not off-site)."
        )
    for row in rows:
        where = "off-site" if row["offsite"] else "primary"
        line = f"{row['name']:<16} {row['kind']:<8} {row['region']:<16} {where}"
        if not row["region_allowed"]:
            line += "  REGION NOT ALLOWED"
        if check:
            line += f"  {row['backups']} backup(s)" if row["reachable"] else f"  {row['error']}"
        healthy = row["region_allowed"] and row.get("reachable", True)
        click.secho(line, fg=None if healthy else "red")
    sys.exit(0 if ok else 1)


@contextmanager
def backups(
    state: State, targets: tuple[str, ...] = (), *, need_database: bool = True
) -> Iterator[BackupService]:
    """The backup service; without ``need_database`` it also works when the instance's own
    database is gone (restoring after a disaster)."""
    settings = load_settings(state.home)
    container: Container | None = None
    try:
        container = Container(settings)
    except HearthError as exc:
        if need_database or exc.code not in (errors.STORAGE_UNAVAILABLE,):
            raise
        click.secho(
            "note: the instance's database is not reachable; restoring without it.", err=True
        )
    try:
        yield backup_service(
            settings,
            container,
            targets=resolve_backup_targets(settings, targets),
            operator="cli",
        )
    finally:
        if container is not None:
            container.close()


def _identity(path: Path | None) -> Path:
    if path is None:
        raise HearthError(
            errors.BACKUP_ARGUMENT,
            "This needs the backup identity: pass --identity FILE (or set HEARTH_BACKUP_IDENTITY).",
        )
    return path


identity_option = click.option(
    "--identity",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="HEARTH_BACKUP_IDENTITY",
    help=IDENTITY_HELP,
)
target_option = click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="NAME",
    help="A configured target (repeatable; default: every configured target, else HOME/backups).",
)


@command.command("create")
@target_option
@click.option("--full", is_flag=True, help="A full backup even when an incremental would do.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
@handle_errors
def create(state: State, targets: tuple[str, ...], full: bool, as_json: bool) -> None:
    """Back up the database while it keeps serving: full the first time, then incremental.

    \b
    Example:
      hearth --home ./var backup create
      hearth --home ./var backup create --target offsite --full
    """
    with backups(state, targets) as service:
        result = service.create(full=full, progress=RichProgress(enabled=not as_json))
    if as_json:
        emit_json(result.to_json())
        return
    span = _versions(result.sequence_from, result.sequence_to)
    click.echo(
        f"Backup {result.backup_id} ({result.kind}, {span}, {result.stored_bytes} bytes) "
        f"stored on {', '.join(result.targets)} in {result.seconds:.1f} s."
    )


def _versions(first: int, last: int) -> str:
    if last < first:
        return "no new versions"
    return f"version {first}" if first == last else f"versions {first} to {last}"


@command.command("list")
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print the backups as JSON.")
@pass_state
@handle_errors
def list_backups(state: State, targets: tuple[str, ...], as_json: bool) -> None:
    """List the backups on the targets whose signed manifests verify, oldest first.

    \b
    Example:
      hearth --home ./var backup list
    """
    with backups(state, targets, need_database=False) as service:
        found = service.list_backups()
    if as_json:
        emit_json([b.to_json() for b in found])
        return
    if not found:
        click.echo("No backups.")
    for b in found:
        click.echo(
            f"{b.backup_id}  {b.kind:<11}  {_versions(b.sequence_from, b.sequence_to)}  "
            f"{b.stored_bytes} bytes  on {', '.join(b.targets)}"
        )


@command.command("verify")
@click.argument("backup_id", required=False)
@click.option("--all", "every", is_flag=True, help="Every backup and the chain (the default).")
@click.option("--deep", is_flag=True, help="Also restore into a scratch SQLite database.")
@click.option(
    "--scheduled",
    is_flag=True,
    help="Only the next slice of the rolling pass that reads every copy within "
    "verify_period_days (for cron; hearth serve runs it itself).",
)
@identity_option
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print the structured result.")
@pass_state
@handle_errors
def verify(
    state: State,
    backup_id: str | None,
    every: bool,
    deep: bool,
    scheduled: bool,
    identity: Path | None,
    targets: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check signatures, the chain and every segment's hash; with --identity every AEAD tag
    and Merkle root; with --deep restore into a scratch database and check every MAC. Exit 1
    (and an alarm) on any failure.

    \b
    Example:
      hearth --home ./var backup verify --all
      hearth --home ./var backup verify 20260115T093000Z-0123456789abcdef --deep \\
          --identity /media/offline/hearth-backup.key
      hearth --home ./var backup verify --scheduled
    """
    if scheduled:
        if backup_id or every or deep or identity is not None:
            raise HearthError(
                errors.BACKUP_ARGUMENT, "--scheduled takes no backup id, --all, --deep or identity."
            )
        scheduled_verification(state, targets, as_json)
        return
    if every and backup_id:
        raise HearthError(errors.BACKUP_ARGUMENT, "Give a backup id or --all, not both.")
    decryptor = backup_decryptor(identity) if identity is not None else None
    if deep:
        decryptor = backup_decryptor(_identity(identity))
    with backups(state, targets) as service:
        result = service.verify(
            backup_id, decryptor=decryptor, deep=deep, progress=RichProgress(enabled=not as_json)
        )
    if as_json:
        emit_json(result.to_json())
    else:
        for label, body in result.targets.items():
            failures = body.get("failures", [])
            if body.get("error"):
                click.secho(f"{label}: {body['error']}", fg="red")
            for check in failures:
                click.secho(
                    f"{label}: {check['check']} failed on {check['subject']}: {check['detail']}",
                    fg="red",
                )
            if body.get("ok"):
                count = len(body.get("backups", []))
                click.echo(f"{label}: {count} backups verified")
            if body.get("note"):
                click.echo(f"{label}: note: {body['note']}")
        if result.deep is not None:
            if result.deep.get("ok"):
                click.echo(
                    f"deep: restored {result.deep['versions']} versions, Merkle root and every "
                    "MAC recomputed"
                )
            else:
                click.secho(f"deep: {result.deep.get('error')}", fg="red")
        click.echo("all verified" if result.ok else "VERIFICATION FAILED")
    sys.exit(0 if result.ok else 1)


def _point(at: str | None) -> tuple[int | None, datetime | None]:
    if at is None:
        return None, None
    if at.isdigit():
        return int(at), None
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        raise HearthError(
            errors.BACKUP_ARGUMENT,
            "--at is a version sequence number or a time such as 2026-01-15T09:30:00Z.",
        ) from None
    if moment.tzinfo is None:
        raise HearthError(errors.BACKUP_ARGUMENT, "Give --at times with a time zone (or Z).")
    return None, moment


@command.command("restore")
@click.argument("backup_id")
@click.option("--into", "into", required=True, help="Database URL to restore into (empty).")
@click.option("--at", "at", help="Restore to this version sequence number or time instead.")
@click.option("--force", is_flag=True, help="Replace everything in a non-empty database.")
@identity_option
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
@handle_errors
def restore(
    state: State,
    backup_id: str,
    into: str,
    at: str | None,
    force: bool,
    identity: Path | None,
    targets: tuple[str, ...],
    as_json: bool,
) -> None:
    """Restore a backup (and the chain before it) into an empty database of any engine.

    Everything is verified before it is committed: segment hashes and AEAD tags, the chain's
    Merkle root, and every restored version's seal and MAC. The instance's key-encryption key
    must be the one the backup's keys are wrapped under.

    \b
    Example:
      hearth --home ./var backup restore 20260115T093000Z-0123456789abcdef \\
          --into postgresql://hearth@db.example.org/hearth --identity /media/offline/id.key
      hearth --home ./var backup restore ID --into sqlite:///restored.db --at 1500
          (a relative SQLite path is inside the home: ./var/restored.db)
    """
    at_seq, at_time = _point(at)
    decryptor = backup_decryptor(_identity(identity))
    into = sqlite_url_in(state.home, into)  # a relative SQLite path is inside the home
    with backups(state, targets, need_database=False) as service:
        result = service.restore(
            backup_id,
            into=into,
            decryptor=decryptor,
            at_seq=at_seq,
            at_time=at_time,
            force=force,
            progress=RichProgress(enabled=not as_json),
        )
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(
        f"Restored {result.backup_id} up to version {result.sequence} into a {result.engine} "
        f"database: {result.versions} versions, each seal and MAC checked, Merkle root "
        f"{result.merkle_root}; {result.indexed} resources indexed ({result.seconds:.1f} s)."
    )


@command.command("drill")
@identity_option
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_state
@handle_errors
def drill(state: State, identity: Path | None, targets: tuple[str, ...], as_json: bool) -> None:
    """Restore the newest backup into a scratch database, verify it, and record the recovery
    time (RTO) and the age of the newest restorable change (RPO) for the compliance report.

    \b
    Example:
      hearth --home ./var backup drill --identity /media/offline/hearth-backup.key
    """
    decryptor = backup_decryptor(_identity(identity))
    with backups(state, targets) as service:
        result = service.drill(decryptor=decryptor, progress=RichProgress(enabled=not as_json))
    if as_json:
        emit_json(result.to_json())
        return
    rpo = "n/a" if result.rpo_seconds is None else f"{result.rpo_seconds:.0f} s"
    click.echo(
        f"Drill restored {result.backup_id} ({result.restore.versions} versions, verified): "
        f"RTO {result.rto_seconds:.1f} s, RPO {rpo}."
    )


for _ops in (check_policy_command, copy_command, prune_command):
    command.add_command(_ops)
