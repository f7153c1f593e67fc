"""``hearth backup``: backups, their targets, the copy policy, retention and verification."""

from __future__ import annotations

import sys
from typing import Any

import click

from hearth.cli.common import State, emit_json, handle_errors, pass_state
from hearth.domain import HearthError
from hearth.settings import load_settings
from hearth.wiring import open_target

__all__ = ["command"]


@click.group("backup")
def command() -> None:
    """Encrypted, signed, verified backups and their copies on several targets.

    \b
    Targets, the copy policy and retention are set in hearth.toml ([backup] and
    [[backup.targets]]; docs/operations.md, "Backups").
    """


@command.command("targets")
@click.option("--check", is_flag=True, help="Contact every target and count its backups.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def targets(state: State, check: bool, as_json: bool) -> None:
    """List the configured backup targets; with --check, reach each one.

    Exits 1 when a checked target cannot be reached or a target's region is outside
    backup.allowed_regions.

    \b
    Example:
      hearth --home ./var backup targets --check
    """
    settings = load_settings(state.home)
    section = settings.backup
    rows: list[dict[str, Any]] = []
    ok = True
    for config in section.targets:
        row: dict[str, Any] = {
            "name": config.name,
            "kind": config.kind,
            "region": config.region,
            "offsite": config.region != section.primary_region,
            "region_allowed": section.region_allowed(config.region),
            "object_lock_days": section.lock_days(config),
        }
        ok = ok and row["region_allowed"]
        if check:
            try:
                target = open_target(settings, config.name)
                row["backups"] = len(target.list_names("manifests/"))
                row["reachable"] = True
            except HearthError as exc:
                row["reachable"] = False
                row["error"] = f"{exc.detail} [{exc.code.code}]"
                ok = False
        rows.append(row)
    if as_json:
        emit_json({"ok": ok, "primary_region": section.primary_region, "targets": rows})
        sys.exit(0 if ok else 1)
    if not rows:
        click.echo("No backup targets configured: add [[backup.targets]] to hearth.toml.")
        sys.exit(1)
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
