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
from hearth.domain import HearthError, Outcome, errors
from hearth.wiring import (
    KEY_PURPOSES,
    create_backup_recipient,
    rewrap_keys,
    write_secret_file,
)


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


@command.command("backup-recipient")
@click.option(
    "--identity-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the new identity here (mode 0600, must not exist); put it on offline media.",
)
@click.option("--print", "print_identity", is_flag=True, help="Print the identity instead.")
@click.option("--add", is_flag=True, help="Add a recipient instead of replacing the list.")
@pass_state
@handle_errors
def backup_recipient(
    state: State, identity_out: Path | None, print_identity: bool, add: bool
) -> None:
    """Create the age identity backups are encrypted to, and the manifest-signing key.

    The identity (its secret half) is written to --identity-out or printed, never kept by the
    server: store it offline, it is what opens backups. Its recipient (public half) goes to
    HOME/backup-recipients.txt. The manifest-signing key is created once, beside the
    key-encryption key; its public half is listed in HOME/backup-signing.pub: keep a copy of
    that line with the identity, so backups can be verified when this machine is gone.

    \b
    Example:
      hearth --home ./var keys backup-recipient --identity-out /media/offline/hearth-backup.key
    """
    if (identity_out is None) == (not print_identity):
        raise HearthError(errors.BAD_PARAMETER, "Give --identity-out FILE or --print.")
    if identity_out is not None and identity_out.exists():
        raise HearthError(errors.BAD_PARAMETER, f"{identity_out} exists; not overwriting it.")
    with container(state) as c:
        made = create_backup_recipient(c.settings, add=add, clock=c.clock, random=c.random)
        if identity_out is not None:
            write_secret_file(identity_out, made.identity_file)
        c.system_repository("keys", operator="cli").record("keys.backup_recipient", Outcome.SUCCESS)
    if print_identity:
        click.echo(made.identity_file.reveal(), nl=False)
    else:
        click.echo(f"Identity written to {identity_out}: keep it offline.")
    # With --print, standard output is the identity file alone; the rest goes to stderr.
    click.echo(
        f"Recipients ({len(made.recipients)}): {', '.join(made.recipients)}", err=print_identity
    )
    click.echo(
        f"Manifest signing key {made.signing_key_id} "
        f"({'created' if made.signing_created else 'kept'}), public key "
        f"{made.signing_public_hex}: keep this line with the identity.",
        err=print_identity,
    )
