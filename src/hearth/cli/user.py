"""``hearth user``: add, list, disable, enable, unlock and reset users; set-up links; roles."""

from __future__ import annotations

from datetime import timedelta

import click

from hearth.cli.common import State, container, count, emit_json, handle_errors, pass_state
from hearth.cli.serve import console_url
from hearth.services.users import SetUpLink, UserInfo
from hearth.settings import Settings

_BY = "cli"


def _tokens(n: int) -> str:
    """API tokens and OAuth grants (each grant with its access and refresh tokens)."""
    return count(n, "API token or app grant", "API tokens and app grants")


def _link_url(settings: Settings, link: SetUpLink) -> str:
    scheme = "https" if settings.tls_cert else "http"
    base = console_url(settings.public_base_url, scheme, settings.host, settings.port)
    return f"{base}/enrol?token={link.token}"


def _show_link(settings: Settings, link: SetUpLink) -> None:
    click.echo(
        f"One-time set-up link for {link.username} (valid until "
        f"{link.expires:%Y-%m-%d %H:%M} UTC; give it to them in person or over a trusted "
        f"channel):\n  {_link_url(settings, link)}"
    )


def _as_dict(u: UserInfo) -> dict[str, object]:
    return {
        "user_id": u.user_id,
        "username": u.username,
        "display_name": u.display_name,
        "roles": sorted(u.roles),
        "status": u.status,
        "locked": u.locked,
        "password": u.has_password,
        "totp": u.has_totp,
        "keys": u.keys,
        "pin": u.has_pin,
        "recovery_codes": u.recovery_codes,
        "created": u.created.isoformat(),
    }


@click.group("user")
def command() -> None:
    """Manage the people who sign in to the console (one account per person).

    \b
    Examples:
      hearth user add alice --role bootstrap-admin --name "Alice Smith"
      hearth user list
      hearth user disable alice
    """


@command.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeatable).")
@click.option("--name", "display_name", default="", help="The person's name, as shown.")
@click.option("--link-hours", type=click.IntRange(1, 72), default=24, show_default=True)
@pass_state
@handle_errors
def add(
    state: State, username: str, roles: tuple[str, ...], display_name: str, link_hours: int
) -> None:
    """Add USERNAME with no credentials and print their one-time set-up link.

    \b
    Example:
      hearth user add alice --role bootstrap-admin --name "Alice Smith"
    """
    with container(state) as c:
        info, link = c.users.add(
            username,
            roles=frozenset(roles),
            display_name=display_name,
            by=_BY,
            link_ttl=timedelta(hours=link_hours),
        )
        click.echo(f"Added {info.username} ({info.user_id}).")
        if link is not None:
            _show_link(c.settings, link)


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def list_users(state: State, as_json: bool) -> None:
    """List users, their roles and which sign-in methods they have (never a secret).

    \b
    Example:
      hearth user list --json
    """
    with container(state) as c:
        users = c.users.list()
    if as_json:
        emit_json([_as_dict(u) for u in users])
        return
    for u in users:
        methods = [
            m
            for m, on in (
                ("password", u.has_password),
                ("totp", u.has_totp),
                (f"{u.keys} keys", u.keys > 0),
                ("pin", u.has_pin),
            )
            if on
        ]
        flags = u.status + (", locked" if u.locked else "")
        click.echo(
            f"{u.username:<20} {u.user_id:<26} {flags:<16} {','.join(sorted(u.roles)):<20} "
            f"{' '.join(methods) or 'not set up'}"
        )


@command.command("disable")
@click.argument("username")
@pass_state
@handle_errors
def disable(state: State, username: str) -> None:
    """Disable USERNAME: every session ends and every API token and app grant is revoked.

    \b
    Example:
      hearth user disable alice
    """
    with container(state) as c:
        ended, revoked = c.users.disable(username, by=_BY)
    click.echo(f"Disabled {username}: ended {count(ended, 'session')}, revoked {_tokens(revoked)}.")


@command.command("enable")
@click.argument("username")
@pass_state
@handle_errors
def enable(state: State, username: str) -> None:
    """Enable a disabled USERNAME again.

    \b
    Example:
      hearth user enable alice
    """
    with container(state) as c:
        c.users.enable(username, by=_BY)
    click.echo(f"Enabled {username}.")


@command.command("unlock")
@click.argument("username")
@pass_state
@handle_errors
def unlock(state: State, username: str) -> None:
    """Unlock USERNAME after too many failed sign-ins.

    \b
    Example:
      hearth user unlock alice
    """
    with container(state) as c:
        c.users.unlock(username, by=_BY)
    click.echo(f"Unlocked {username}.")


@command.command("reset-mfa")
@click.argument("username")
@click.option("--link-hours", type=click.IntRange(1, 72), default=24, show_default=True)
@pass_state
@handle_errors
def reset_mfa(state: State, username: str, link_hours: int) -> None:
    """Remove every credential of USERNAME (password, app, keys, PIN, recovery codes), end
    their sessions, revoke their API tokens and app grants (OAuth access and refresh tokens),
    and print a new one-time set-up link. Check who they are first.

    \b
    Example:
      hearth user reset-mfa alice
    """
    with container(state) as c:
        link, ended, revoked = c.users.reset_mfa(
            username, by=_BY, link_ttl=timedelta(hours=link_hours)
        )
        click.echo(
            f"Reset the credentials of {username}: ended {count(ended, 'session')}, "
            f"revoked {_tokens(revoked)}."
        )
        _show_link(c.settings, link)


@command.command("link")
@click.argument("username")
@click.option("--link-hours", type=click.IntRange(1, 72), default=24, show_default=True)
@pass_state
@handle_errors
def link(state: State, username: str, link_hours: int) -> None:
    """Print a new one-time set-up link for USERNAME (to add a key or set up again).

    \b
    Example:
      hearth user link admin
    """
    with container(state) as c:
        _show_link(
            c.settings, c.users.set_up_link(username, by=_BY, ttl=timedelta(hours=link_hours))
        )


@command.command("roles")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeatable).")
@pass_state
@handle_errors
def roles(state: State, username: str, roles: tuple[str, ...]) -> None:
    """Replace the roles of USERNAME; their sessions end, and their API tokens and app grants
    act with the new roles within 5 seconds.

    \b
    Example:
      hearth user roles alice --role bootstrap-admin
    """
    with container(state) as c:
        ended = c.users.set_roles(username, frozenset(roles), by=_BY)
    click.echo(f"Roles of {username}: {', '.join(sorted(roles))}; ended {ended} sessions.")
