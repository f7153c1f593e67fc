"""``hearth token``: bootstrap API tokens."""

from __future__ import annotations

from datetime import timedelta

import click

from hearth.cli.common import State, container, handle_errors, pass_state


@click.group("token")
def command() -> None:
    """Issue and revoke bearer API tokens that act as a user, with that user's roles."""


@command.command("issue")
@click.option(
    "--user",
    "--subject",
    "username",
    default="admin",
    show_default=True,
    help="The user (by user name) the token acts as, with that user's roles.",
)
@click.option("--hours", type=click.IntRange(1, 24 * 90), default=12, show_default=True)
@pass_state
@handle_errors
def issue(state: State, username: str, hours: int) -> None:
    """Issue a token for a user, with their roles; it is shown once.

    \b
    Example:
      hearth --home ./var token issue --user admin --hours 8
    """
    with container(state) as c:
        token = c.users.issue_api_token(username, ttl=timedelta(hours=hours), by="cli")
    click.echo(token)


@command.command("revoke")
@click.argument("username")
@pass_state
@handle_errors
def revoke(state: State, username: str) -> None:
    """Revoke every token of the user USERNAME at once.

    \b
    Example:
      hearth --home ./var token revoke admin
    """
    with container(state) as c:
        count = c.users.revoke_api_tokens(username, by="cli")
    click.echo(f"Revoked {count} tokens.")
