"""``hearth access``: the break-the-glass review queue and snooping pauses.

The command line acts as the host operator (``system:cli``); reading the queue and closing a
review are audited under that name.
"""

from __future__ import annotations

import click

from hearth.cli.common import State, container, emit_json, handle_errors, pass_state
from hearth.services.breakglass import FINDINGS, grant_document

_ACTOR = "cli"


@click.group("access")
def command() -> None:
    """Review emergency (break-the-glass) access and lift snooping pauses.

    \b
    Examples:
      hearth access break-glass
      hearth access review btg_... --finding justified --note "Confirmed with the ED"
    """


@command.command("break-glass")
@click.option(
    "--status", type=click.Choice(["open", "closed", "all"]), default="open", show_default=True
)
@click.option("--patient", default=None, help="Only grants for this Patient id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def break_glass(state: State, status: str, patient: str | None, as_json: bool) -> None:
    """List break-the-glass grants (open reviews by default), with their reasons.

    \b
    Example:
      hearth access break-glass --status all
    """
    with container(state) as c:
        grants = c.break_glass.queue(
            c.system_principal(_ACTOR),
            status=None if status == "all" else status,
            patient_id=patient,
        )
    if as_json:
        emit_json([grant_document(g) for g in grants])
        return
    if not grants:
        click.echo("No break-the-glass grants.")
    for g in grants:
        state_text = "active" if g.active else "expired" if g.ended is None else "ended"
        click.echo(
            f"{g.grant_id} {g.review_status} user={g.user_id} patient=Patient/{g.patient_id} "
            f"{g.created:%Y-%m-%d %H:%M}Z {state_text} accesses={g.accesses}"
        )
        click.echo(f"  reason: {g.reason}")
        if g.finding:
            click.echo(f"  finding: {g.finding} by {g.reviewed_by}")


@command.command("review")
@click.argument("grant_id")
@click.option("--finding", type=click.Choice(FINDINGS), required=True)
@click.option("--note", default=None, help="What the review found.")
@pass_state
@handle_errors
def review(state: State, grant_id: str, finding: str, note: str | None) -> None:
    """Close the review of a break-the-glass grant with a finding.

    \b
    Example:
      hearth access review btg_... --finding justified
    """
    with container(state) as c:
        c.break_glass.review(c.system_principal(_ACTOR), grant_id, finding=finding, note=note)
    click.echo(f"Review of {grant_id} closed: {finding}.")


@command.command("resume")
@click.argument("username")
@pass_state
@handle_errors
def resume(state: State, username: str) -> None:
    """Lift the snooping pause of USERNAME. The resume is recorded in the database and audited
    (as ``system:cli``); every serving process honours it at its user's next request, with or
    without Redis.

    \b
    Example:
      hearth access resume alice
    """
    with container(state) as c:
        c.monitor.lift(c.system_principal(_ACTOR), c.users.get(username).user_id)
    click.echo(f"Access of {username} resumed.")
