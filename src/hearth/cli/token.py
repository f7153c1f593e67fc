"""``hearth token``: operator API tokens (at most 7 days; see docs/design.md, threat model)."""

from __future__ import annotations

from datetime import timedelta

import click

from hearth.cli.common import State, container, handle_errors, pass_state
from hearth.cli.common import count as count_of


@click.group("token")
def command() -> None:
    """Issue and revoke bearer API tokens that act as a user, with that user's roles.

    Tokens live at most 7 days. A system that runs for longer registers as a backend service
    (hearth client add) and signs in with private_key_jwt; people sign in to the console.
    """


@command.command("issue")
@click.option(
    "--user",
    "--subject",
    "username",
    default="admin",
    show_default=True,
    help="The user (by user name) the token acts as, with that user's roles.",
)
@click.option(
    "--hours",
    type=click.IntRange(1, 24 * 7),
    default=12,
    show_default=True,
    help="How long the token lives (at most 168, a week).",
)
@pass_state
@handle_errors
def issue(state: State, username: str, hours: int) -> None:
    """Issue a token for a user, with their roles; it is shown once and audited by its id.

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
    click.echo(f"Revoked {count_of(count, 'API token or app grant', 'API tokens and app grants')}.")
