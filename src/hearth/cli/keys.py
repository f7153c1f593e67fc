"""``hearth keys``: the key ring."""

from __future__ import annotations

from datetime import UTC, datetime
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
from hearth.wiring import KEY_PURPOSES, rewrap_keys


@click.group("keys")
def command() -> None:
    """Manage the sealing, MAC and signing keys and the key-encryption key."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handle_errors
def list_keys(state: State, as_json: bool) -> None:
    """List keys with their state, how many stored rows use each, and how many messages each
    sealing key has sealed (rotate well before 2^32; see docs/design.md, "Keys").

    \b
    Example:
      hearth --home ./var keys list --json
    """
    with container(state) as c:
        keys = c.key_admin().list_keys()
    rows = [
        {
            "id": k.key_id,
            "purpose": k.purpose,
            "state": k.state,
            "created": datetime.fromtimestamp(k.created_us / 1e6, UTC).isoformat(),
            "rows_using": k.in_use,
            "seals": k.seals,
        }
        for k in keys
    ]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        used = "" if r["rows_using"] is None else f"  used by {r['rows_using']} rows"
        seals = "" if r["seals"] is None else f"  {r['seals']} seals"
        click.echo(f"{r['id']:>4}  {r['purpose']:<11} {r['state']:<13} {r['created']}{used}{seals}")


@command.command("rotate")
@click.option(
    "--purpose",
    "purposes",
    multiple=True,
    type=click.Choice(KEY_PURPOSES),
    help="Which keys (repeatable; default: data and mac).",
)
@pass_state
@handle_errors
def rotate(state: State, purposes: tuple[str, ...]) -> None:
    """Create new active keys; new writes use them, old versions stay readable.

    \b
    Example:
      hearth --home ./var keys rotate
      hearth --home ./var keys rotate --purpose audit-sign
    """
    with container(state) as c:
        created = c.rotate_keys(purposes or ("data", "mac"), operator="cli")
    click.echo(f"New active keys: {', '.join(str(k) for k in created)}.")


@command.command("reseal")
@click.argument("key_id", type=int)
@pass_state
@handle_errors
def reseal(state: State, key_id: int) -> None:
    """Move what the rotated-out key KEY_ID protects to the active keys, so it can retire.

    A data key: every version it sealed is opened, MAC-checked and sealed under the active data
    key. A mac key: every version it MACed is checked and MACed again under the active MAC key
    (backups taken afterwards carry the new MACs). A secrets key: every TOTP secret it sealed
    is re-sealed (sessions and page tokens expire instead). Audit-seal keys are never re-sealed.

    \b
    Example:
      hearth --home ./var keys reseal 1
    """
    with container(state) as c:
        progress = RichProgress()
        progress.start("re-sealing", None)
        resealed = c.key_admin(operator="cli").reseal(
            key_id, on_row=lambda _seq: progress.advance()
        )
        progress.finish()
    click.echo(f"Re-sealed {count(resealed, 'row')}.")


@command.command("retire")
@click.argument("key_id", type=int)
@pass_state
@handle_errors
def retire(state: State, key_id: int) -> None:
    """Destroy a rotated-out key; refused while any stored row still needs it.

    Servers that have not reloaded their keys yet cannot seal under the retired key: every
    write checks the key epoch under the lock that retirement takes.

    \b
    Example:
      hearth --home ./var keys retire 1
    """
    with container(state) as c:
        c.key_admin(operator="cli").retire(key_id)
    click.echo(f"Key {key_id} retired.")


@command.command("rewrap")
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to create the new key-encryption key (must not exist).",
)
@pass_state
@handle_errors
def rewrap(state: State, new_key_file: Path) -> None:
    """Rotate the key-encryption key: re-wrap every key under a new key file.

    keys.file in hearth.toml is then pointed at the new file (the file is replaced atomically);
    running servers pick it up without a restart. Keep the old key file offline until you have
    verified that the instance opens, then destroy it.

    \b
    Example:
      hearth --home ./var keys rewrap --new-key-file /etc/hearth/kek-2027.key
    """
    rewrapped = rewrap_keys(state.home, new_key_file)
    click.echo(
        f"Re-wrapped {count(rewrapped, 'key')} under {new_key_file}; hearth.toml now names it."
    )
