"""``hearth init``: create an instance."""

from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path

import click

from hearth.cli.common import State, emit_json, handle_errors, pass_state
from hearth.domain import Secret
from hearth.wiring import init_instance


@click.command("init")
@click.option(
    "--database",
    "database_url",
    help="Database URL (default: SQLite in HOME/data, or HEARTH_DATABASE_URL). A password in it "
    "is not written to hearth.toml: set HEARTH_DATABASE_URL for that.",
)
@click.option(
    "--key-source",
    type=click.Choice(["file", "passphrase"]),
    default="file",
    show_default=True,
    help="Where the key-encryption key comes from (passphrase: HEARTH_KEY_PASSPHRASE).",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key file location (default HOME/keys/kek.key; keep it outside HOME in production; "
    "never inside HOME/data).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address `hearth serve` binds."
)
@click.option("--port", type=int, default=8080, show_default=True, help="Port `hearth serve` uses.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quiet", is_flag=True, help="Print only the admin token (valid 24 hours).")
@pass_state
@handle_errors
def command(
    state: State,
    database_url: str | None,
    key_source: str,
    key_file: Path | None,
    host: str,
    port: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Create a Hearth instance: config, keys, database schema and an admin token.

    \b
    Examples:
      hearth --home ./var init
      hearth --home /srv/hearth init --database postgresql://hearth@db/hearth \\
          --key-file /etc/hearth/kek.key
    """
    passphrase = os.environ.get("HEARTH_KEY_PASSPHRASE")
    env_url = os.environ.get("HEARTH_DATABASE_URL")
    result = init_instance(
        state.home,
        database_url=database_url or env_url,
        # A URL taken from the environment is never written to hearth.toml.
        database_from_env=database_url is None and env_url is not None,
        key_source=key_source,
        key_file=key_file,
        passphrase=Secret(passphrase) if passphrase else None,
        host=host,
        port=port,
    )
    # Warnings go to standard error, so that --quiet and --json print only what they promise.
    if result.password_stripped:
        click.echo(
            "Note: the database password was not written to hearth.toml. Set "
            "HEARTH_DATABASE_URL to the full URL for every hearth command.",
            err=True,
        )
    if result.database_from_env:
        click.echo(
            "Note: hearth.toml does not store the database URL from HEARTH_DATABASE_URL; keep "
            "it set for every hearth command.",
            err=True,
        )
    expires = result.token_expires.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if as_json:
        emit_json(
            {
                "home": str(result.home),
                "base_url": result.base_url,
                "admin_token": result.admin_token,
                "admin_token_expires": result.token_expires.astimezone(UTC).isoformat(),
                "database": result.database,
            }
        )
        return
    if quiet:
        click.echo(result.admin_token)
        return
    click.echo(f"Created a Hearth instance in {result.home} ({result.database}).")
    click.echo(f"FHIR base URL once served: {result.base_url}")
    click.echo(
        f"Administrator API token, valid until {expires} (shown once, store it safely; "
        "`hearth token issue` makes more):"
    )
    click.echo(f"  {result.admin_token}")
