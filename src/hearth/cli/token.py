"""``hearth token``: bootstrap API tokens."""

from __future__ import annotations

from datetime import timedelta

import click

from hearth.cli.common import State, container, handle_errors, pass_state
from hearth.wiring import ADMIN_ROLE


@click.group("token")
def command() -> None:
    """Issue and revoke API tokens (until full sign-in replaces them)."""


@command.command("issue")
@click.option("--subject", default="admin", show_default=True, help="The user the token acts as.")
@click.option("--hours", type=click.IntRange(1, 24 * 90), default=12, show_default=True)
@pass_state
@handle_errors
def issue(state: State, subject: str, hours: int) -> None:
    """Issue a token for SUBJECT with the administrator role; it is shown once.

    \b
    Example:
      hearth --home ./var token issue --hours 8
    """
    with container(state) as c:
        token = c.authenticator.issue_token(
            subject=subject,
            roles=frozenset({ADMIN_ROLE}),
            label="hearth token issue",
            ttl=timedelta(hours=hours),
            by="cli",
        )
    click.echo(token)


@command.command("revoke")
@click.argument("subject")
@pass_state
@handle_errors
def revoke(state: State, subject: str) -> None:
    """Revoke every token of SUBJECT at once.

    \b
    Example:
      hearth --home ./var token revoke admin
    """
    with container(state) as c:
        count = c.authenticator.revoke_all(subject, by="cli")
    click.echo(f"Revoked {count} tokens.")
