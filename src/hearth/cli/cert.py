"""``hearth cert``: map client certificates (and smart cards) to users and clients."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from hearth.cli.common import State, container, emit_json, fail, handle_errors, pass_state
from hearth.domain import HearthError, errors


@click.group("cert")
def command() -> None:
    """Map TLS client certificates to users or clients (mutual TLS, RFC 8705)."""


@command.command("add")
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--user", help="The user (user name or usr_ id) the certificate, e.g. a PIV/CAC card, is."
)
@click.option("--client", "client_id", help="The client id the certificate belongs to.")
@click.option("--label", default="", help="A note for operators (no PHI).")
@pass_state
@handle_errors
def add(
    state: State, certificate: Path, user: str | None, client_id: str | None, label: str
) -> None:
    """Map CERTIFICATE (PEM or DER) to exactly one user or client. A user's certificate signs
    them in to the console (with their second factor) when serve runs with --tls-client-ca.

    \b
    Examples:
      hearth cert add alice-piv.pem --user alice --label "PIV card"
      hearth cert add service.pem --client 3kq7...
    """
    if (user is None) == (client_id is None):
        fail("give exactly one of --user and --client.")
    with container(state) as c:
        if user is not None:
            # Mappings name the immutable user id, never the name typed (names can change).
            found = c.users.by_id(user) if user.startswith("usr_") else c.users.get(user)
            if found is None:
                raise HearthError(errors.USER_NOT_FOUND)
            kind, subject, who = "user", found.user_id, f"user {found.username} ({found.user_id})"
        else:
            kind, subject = "client", client_id or ""
            who = f"client {subject}"
        row = c.certificates.add(
            certificate.read_bytes(), subject_kind=kind, subject=subject, label=label, by="cli"
        )
    click.echo(f"Mapped certificate {row.thumbprint} to {who}.")


@command.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handle_errors
def list_certs(state: State, as_json: bool) -> None:
    """List certificate mappings (thumbprint x5t#S256, who, expiry, state).

    \b
    Example:
      hearth --home ./var cert list
    """
    with container(state) as c:
        rows = c.certificates.all()
    out = [
        {
            "thumbprint": r.thumbprint,
            "kind": r.subject_kind,
            "subject": r.subject,
            "not_after": datetime.fromtimestamp(r.not_after_us / 1e6, UTC).isoformat(),
            "state": "revoked" if r.revoked_us is not None else "active",
            "label": r.label,
        }
        for r in rows
    ]
    if as_json:
        emit_json(out)
        return
    for r in out:
        click.echo(
            f"{r['thumbprint']}  {r['state']:<7} {r['kind']:<6} {r['subject']}  "
            f"until {r['not_after']}  {r['label']}"
        )


# A base64url thumbprint may begin with "-" (one in 64 does): take such a word as the argument,
# not as an option, and leave no short option ("-h") it could be read as.
@command.command(
    "revoke", context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]}
)
@click.argument("thumbprint")
@pass_state
@handle_errors
def revoke(state: State, thumbprint: str) -> None:
    """Stop accepting a certificate (refused at once on every request that presents it).

    \b
    Example:
      hearth --home ./var cert revoke hb0rE6kNQpU1mV0e9pB1Yc4u8m3Xh2Zs5aTq7wLdJfE
    """
    with container(state) as c:
        c.certificates.revoke(thumbprint, by="cli")
    click.echo(f"Certificate {thumbprint} revoked.")
