"""``hearth role``: roles as data, users' roles, links to FHIR resources, care teams, approvals.

The command line acts as the host operator (``system:cli``): every change is audited under that
name. Changes that give an administrator clinical access to themselves are made through the API
by that administrator and wait for a second one (``hearth role approve``); see docs/design.md,
"Access control".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from hearth.cli.common import State, container, emit_json, handle_errors, pass_state
from hearth.security import role_to_json
from hearth.services.access import AdminResult, scope_label

_ACTOR = "cli"


def _done(result: AdminResult, what: str) -> None:
    if result.applied:
        click.echo(what)
    else:
        click.echo(f"Waiting for a second administrator: request {result.request_id}.")


@click.group("role")
def command() -> None:
    """Roles, users' roles and links, care teams, and approvals.

    \b
    Examples:
      hearth role list
      hearth role assign alice --role physician
      hearth role link alice --practitioner 3f1c...
      hearth role care-team --practitioner 3f1c... --patient 9a2b...
    """


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def list_roles(state: State, as_json: bool) -> None:
    """List the roles this instance knows.

    \b
    Example:
      hearth role list
    """
    with container(state) as c:
        roles = c.access.roles()
        edited = c.access.catalog.edited
        version = c.access.catalog.version
    if as_json:
        emit_json(
            {
                "version": version,
                "roles": {
                    r.name: {**role_to_json(r), "edited": r.name in edited, "builtin": r.builtin}
                    for r in roles
                },
            }
        )
        return
    click.echo(f"Default role set version {version}.")
    for r in roles:
        mark = " (edited)" if r.name in edited else ""
        click.echo(f"{r.name}{mark}: {scope_label(r)}; {r.description}")


@command.command("show")
@click.argument("name")
@pass_state
@handle_errors
def show(state: State, name: str) -> None:
    """Print one role's definition as JSON (what ``hearth role set`` reads).

    \b
    Example:
      hearth role show nurse > nurse.json
    """
    with container(state) as c:
        emit_json(role_to_json(c.access.role(name)))


@command.command("set")
@click.argument("name")
@click.argument(
    "definition", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path)
)
@pass_state
@handle_errors
def set_role(state: State, name: str, definition: Path) -> None:
    """Create or replace role NAME from a JSON file (``-`` for standard input).

    \b
    Example:
      hearth role set scribe scribe.json
    """
    text = sys.stdin.read() if str(definition) == "-" else definition.read_text("utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise click.BadParameter("The definition is not valid JSON.") from None
    with container(state) as c:
        _done(c.access.set_role(c.system_principal(_ACTOR), name, raw), f"Role {name} saved.")


@command.command("delete")
@click.argument("name")
@pass_state
@handle_errors
def delete(state: State, name: str) -> None:
    """Remove role NAME (users who hold it lose what it granted).

    \b
    Example:
      hearth role delete scribe
    """
    with container(state) as c:
        c.access.delete_role(c.system_principal(_ACTOR), name)
    click.echo(f"Role {name} removed.")


@command.command("reset")
@click.argument("name")
@pass_state
@handle_errors
def reset(state: State, name: str) -> None:
    """Put role NAME back to its shipped default definition.

    \b
    Example:
      hearth role reset nurse
    """
    with container(state) as c:
        _done(c.access.reset_role(c.system_principal(_ACTOR), name), f"Role {name} reset.")


@command.command("assign")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeatable).")
@pass_state
@handle_errors
def assign(state: State, username: str, roles: tuple[str, ...]) -> None:
    """Replace the roles of USERNAME (their sessions end; their API tokens and app grants act
    with the new roles within 5 seconds).

    \b
    Example:
      hearth role assign alice --role physician
    """
    with container(state) as c:
        result = c.access.assign_roles(c.system_principal(_ACTOR), username, frozenset(roles))
    _done(result, f"Roles of {username}: {', '.join(sorted(roles))}.")


@command.command("link")
@click.argument("username")
@click.option("--practitioner", default=None, help="The Practitioner id the user works as.")
@click.option("--patient", default=None, help="The Patient id the user is.")
@pass_state
@handle_errors
def link(state: State, username: str, practitioner: str | None, patient: str | None) -> None:
    """Link USERNAME to the FHIR resource they are (neither option clears the link).

    \b
    Example:
      hearth role link alice --practitioner 3f1c0d6e-...
    """
    with container(state) as c:
        result = c.access.link_user(
            c.system_principal(_ACTOR), username, practitioner=practitioner, patient=patient
        )
    _done(result, f"{username} linked.")


@command.command("links")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def links(state: State, as_json: bool) -> None:
    """List the users linked to a Practitioner or Patient.

    \b
    Example:
      hearth role links
    """
    with container(state) as c:
        found = c.access.links()
    rows = [
        {"user_id": i.user_id, "practitioner": i.practitioner, "patient": i.patient} for i in found
    ]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['user_id']}: practitioner={row['practitioner']} patient={row['patient']}")


@command.command("care-team")
@click.option("--practitioner", required=True, help="The Practitioner id.")
@click.option("--patient", required=True, help="The Patient id.")
@pass_state
@handle_errors
def care_team(state: State, practitioner: str, patient: str) -> None:
    """Put a Practitioner on a Patient's care team (a new active CareTeam).

    \b
    Example:
      hearth role care-team --practitioner 3f1c... --patient 9a2b...
    """
    with container(state) as c:
        result = c.access.assign_care_team(
            c.system_principal(_ACTOR), practitioner=practitioner, patient=patient
        )
    _done(result, "Care team updated.")


@command.command("requests")
@click.option("--all", "everything", is_flag=True, help="Include decided requests.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def requests(state: State, everything: bool, as_json: bool) -> None:
    """List changes waiting for a second administrator.

    \b
    Example:
      hearth role requests
    """
    with container(state) as c:
        found = c.access.requests(c.system_principal(_ACTOR), None if everything else "pending")
    rows = [
        {
            "request_id": r.request_id,
            "kind": r.kind,
            "target": r.target,
            "payload": r.payload,
            "requested_by": r.requested_by,
            "requested": r.requested.isoformat(),
            "expires": r.expires.isoformat(),
            "status": r.status,
            "decided_by": r.decided_by,
        }
        for r in found
    ]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['request_id']} {row['status']} {row['kind']} {row['target']} "
            f"by {row['requested_by']} until {row['expires']}"
        )


@command.command("approve")
@click.argument("request_id")
@pass_state
@handle_errors
def approve(state: State, request_id: str) -> None:
    """Approve and apply a pending change (the requester may not approve it).

    \b
    Example:
      hearth role approve req_abc...
    """
    with container(state) as c:
        c.access.decide(c.system_principal(_ACTOR), request_id, approve=True)
    click.echo(f"Request {request_id} approved.")


@command.command("reject")
@click.argument("request_id")
@pass_state
@handle_errors
def reject(state: State, request_id: str) -> None:
    """Reject a pending change.

    \b
    Example:
      hearth role reject req_abc...
    """
    with container(state) as c:
        c.access.decide(c.system_principal(_ACTOR), request_id, approve=False)
    click.echo(f"Request {request_id} rejected.")
