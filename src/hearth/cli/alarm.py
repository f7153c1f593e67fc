"""``hearth alarm``: list, show, acknowledge and resolve alarms; retry pending notices."""

from __future__ import annotations

import getpass

import click

from hearth.cli.common import State, container, emit_json, handle_errors, pass_state
from hearth.domain import AlarmKind, AlarmState
from hearth.services.alarms import alarm_document, iso_seconds


def _operator(by: str | None) -> str:
    """Who acts, as the audit chain records it: ``--by``, else the operating-system user."""
    name = by or getpass.getuser()
    return f"operator:{name}"[:128]


_STATE_COLOURS = {AlarmState.OPEN: "red", AlarmState.ACKNOWLEDGED: "yellow"}


@click.group("alarm")
def command() -> None:
    """Alarms: integrity, audit, backup and sign-in problems that need a person."""


@command.command("list")
@click.option(
    "--state",
    "states",
    type=click.Choice([s.value for s in AlarmState]),
    multiple=True,
    help="Only alarms in this state (repeatable). Default: open and acknowledged.",
)
@click.option("--all", "show_all", is_flag=True, help="Include resolved alarms.")
@click.option("--kind", type=click.Choice([k.value for k in AlarmKind]), help="Only this kind.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def list_(
    state: State,
    states: tuple[str, ...],
    show_all: bool,
    kind: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List alarms, newest activity first.

    \b
    Examples:
      hearth --home ./var alarm list
      hearth --home ./var alarm list --all --kind integrity.mismatch --json
    """
    chosen: tuple[AlarmState, ...]
    if states:
        chosen = tuple(AlarmState(s) for s in states)
    elif show_all:
        chosen = ()
    else:
        chosen = (AlarmState.OPEN, AlarmState.ACKNOWLEDGED)
    with container(state) as c:
        alarms = c.alarm_service.list_alarms(
            states=chosen, kind=AlarmKind(kind) if kind else None, limit=limit
        )
    if as_json:
        emit_json([alarm_document(a, deliveries=False) for a in alarms])
        return
    if not alarms:
        click.echo("No alarms.")
        return
    for a in alarms:
        colour = _STATE_COLOURS.get(a.state)
        click.echo(
            f"{a.alarm_id}  {click.style(a.state.value, fg=colour):<12}  {a.severity.value:<8}  "
            f"{a.kind}  {a.subject}  x{a.count}  last {iso_seconds(a.last_seen)}"
        )


@command.command("show")
@click.argument("alarm_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def show(state: State, alarm_id: str, as_json: bool) -> None:
    """Show one alarm: what, how often, who acknowledged or resolved it, and each notice.

    \b
    Example:
      hearth --home ./var alarm show 3f2a9c
    """
    with container(state) as c:
        alarm = c.alarm_service.get(alarm_id)
    doc = alarm_document(alarm)
    if as_json:
        emit_json(doc)
        return
    for key in ("id", "kind", "severity", "subject", "summary", "state", "count"):
        click.echo(f"{key + ':':<15}{doc[key]}")
    click.echo(f"{'seen:':<15}first {doc['first_seen']}, last {doc['last_seen']}")
    for key, value in sorted(alarm.details.items()):
        click.echo(f"{'  ' + key + ':':<15}{value}")
    for label in ("acknowledged", "resolved"):
        step = doc[label]
        if step is not None:
            note = f": {step['note']}" if step["note"] else ""
            click.echo(f"{label + ':':<15}{step['at']} by {step['by']}{note}")
    for d in doc["deliveries"]:
        error = f" ({d['last_error']})" if d["last_error"] else ""
        click.echo(
            f"notice {d['notice']} -> {d['sink']}: {d['state']} after {d['attempts']} "
            f"attempt(s){error}"
        )


def _transition(state: State, alarm_id: str, target: str, by: str | None, note: str | None) -> None:
    with container(state) as c:
        service = c.alarm_service
        act = service.acknowledge if target == "acknowledged" else service.resolve
        alarm = act(alarm_id, by=_operator(by), note=note)
    click.echo(f"Alarm {alarm.alarm_id} is {alarm.state.value}.")


@command.command("ack")
@click.argument("alarm_id")
@click.option("--note", help="What you are doing about it (stored sealed, and audited).")
@click.option("--by", help="Your name for the audit trail (default: your login name).")
@pass_state
@handle_errors
def ack(state: State, alarm_id: str, note: str | None, by: str | None) -> None:
    """Acknowledge an open alarm: someone is on it, so it stops re-notifying.

    \b
    Example:
      hearth --home ./var alarm ack 3f2a9c --note "restoring from last night's backup"
    """
    _transition(state, alarm_id, "acknowledged", by, note)


@command.command("resolve")
@click.argument("alarm_id")
@click.option("--note", help="What was found and done (stored sealed, and audited).")
@click.option("--by", help="Your name for the audit trail (default: your login name).")
@pass_state
@handle_errors
def resolve(state: State, alarm_id: str, note: str | None, by: str | None) -> None:
    """Resolve an open or acknowledged alarm; a later repeat opens a new one.

    \b
    Example:
      hearth --home ./var alarm resolve 3f2a9c --note "record repaired from backup 2026-01-14"
    """
    _transition(state, alarm_id, "resolved", by, note)


@command.command("deliver")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def deliver(state: State, as_json: bool) -> None:
    """Try every pending notice that is due now (``hearth serve`` does this continuously).

    \b
    Example:
      hearth --home ./var alarm deliver
    """
    with container(state) as c:
        run = c.alarm_service.process()
        pending = c.alarm_service.pending_deliveries()
    if as_json:
        emit_json({"delivered": run.delivered, "failed": run.failed, "pending": pending})
    else:
        click.echo(f"{run.delivered} delivered, {run.failed} failed, {pending} still pending.")
