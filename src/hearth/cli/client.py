"""``hearth client``: register, list and revoke OAuth clients (SMART apps, backend services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from hearth.cli.common import State, container, emit_json, fail, handle_errors, pass_state
from hearth.services.oauth import ClientSpec


@click.group("client")
def command() -> None:
    """Register SMART apps and backend services, list them, revoke them."""


def _jwks(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{path} is not a readable JSON Web Key Set: {exc}")
        raise AssertionError("unreachable") from exc
    if not isinstance(value, dict):
        fail(f"{path} is not a JSON Web Key Set.")
    return value if isinstance(value, dict) else None


@command.command("add")
@click.option("--name", required=True, help="A name people recognise on the consent page.")
@click.option(
    "--kind",
    type=click.Choice(["app", "backend"]),
    default="app",
    show_default=True,
    help="A SMART app (authorization code) or a backend service (client credentials).",
)
@click.option("--scope", required=True, help='Scopes it may be granted, e.g. "system/*.rs".')
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact redirect URI.")
@click.option("--launch-uri", help="Where an EHR launch sends the browser (SMART apps).")
@click.option(
    "--jwks",
    "jwks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Its public JWK Set, for private_key_jwt.",
)
@click.option("--jwks-uri", help="The URL of its public JWK Set, for private_key_jwt.")
@click.option("--secret", is_flag=True, help="Issue a client secret (client_secret_basic).")
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Authenticate it by this client certificate (tls_client_auth, RFC 8705).",
)
@click.option("--role", "roles", multiple=True, help="Roles it acts with (backend services).")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handle_errors
def add(
    state: State,
    name: str,
    kind: str,
    scope: str,
    redirect_uris: tuple[str, ...],
    launch_uri: str | None,
    jwks_file: Path | None,
    jwks_uri: str | None,
    secret: bool,
    tls_cert: Path | None,
    roles: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a client. Prints its client id (and, with --secret, its secret, once).

    \b
    Examples:
      hearth client add --kind backend --name "Nightly export" \\
          --scope "system/Patient.rs system/Observation.rs" --jwks service-jwks.json
      hearth client add --name "Growth charts" --scope "patient/*.rs launch openid fhirUser" \\
          --redirect-uri https://charts.example.org/callback
    """
    methods = [jwks_file is not None or jwks_uri is not None, secret, tls_cert is not None]
    if sum(methods) > 1:
        fail("choose one of --jwks/--jwks-uri, --secret and --tls-cert.")
    if jwks_file is not None or jwks_uri is not None:
        auth_method = "private_key_jwt"
    elif secret:
        auth_method = "client_secret_basic"
    elif tls_cert is not None:
        auth_method = "tls_client_auth"
    else:
        auth_method = "none"
    spec = ClientSpec(
        name=name,
        kind=kind,
        auth_method=auth_method,
        scope=scope,
        redirect_uris=redirect_uris,
        launch_uri=launch_uri,
        jwks=_jwks(jwks_file),
        jwks_uri=jwks_uri,
        roles=roles,
    )
    with container(state) as c:
        client, issued = c.clients.register(spec, by="cli")
        if tls_cert is not None:
            c.certificates.add(
                tls_cert.read_bytes(),
                subject_kind="client",
                subject=client.client_id,
                label=name,
                by="cli",
            )
    if as_json:
        body: dict[str, Any] = {"client_id": client.client_id, "auth_method": auth_method}
        if issued is not None:
            body["client_secret"] = issued
        emit_json(body)
        return
    click.echo(f"client_id: {client.client_id}")
    if issued is not None:
        click.echo(f"client_secret (shown once): {issued}")


@command.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handle_errors
def list_clients(state: State, as_json: bool) -> None:
    """List registered clients with their kind, authentication, scopes and state.

    \b
    Example:
      hearth --home ./var client list --json
    """
    with container(state) as c:
        clients = c.clients.all()
    rows = [
        {
            "client_id": k.client_id,
            "name": k.name,
            "kind": k.kind,
            "auth_method": k.auth_method,
            "scope": k.allowed.text(),
            "redirect_uris": list(k.redirect_uris),
            "state": "revoked" if k.revoked else "active",
            "created": datetime.fromtimestamp(k.created_us / 1e6, UTC).isoformat(),
        }
        for k in clients
    ]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['client_id']}  {r['state']:<7} {r['kind']:<7} {r['auth_method']:<19} "
            f"{r['name']}  [{r['scope']}]"
        )


@command.command("revoke")
@click.argument("client_id")
@pass_state
@handle_errors
def revoke(state: State, client_id: str) -> None:
    """Revoke a client: it can no longer get tokens, and every token it holds stops working.

    \b
    Example:
      hearth --home ./var client revoke 3kq7m2x4vbnd5e6fgh7jk2lm3n4p
    """
    with container(state) as c:
        ended = c.clients.revoke(client_id, by="cli")
    click.echo(f"Client {client_id} revoked; {len(ended)} grants ended.")
