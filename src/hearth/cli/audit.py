"""``hearth audit``: the audit chain."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click

from hearth.cli.common import (
    RichProgress,
    State,
    container,
    count,
    emit_json,
    handle_errors,
    pass_state,
)
from hearth.services.integrity import verify_audit
from hearth.wiring import Container


@click.group("audit")
def command() -> None:
    """Inspect and verify the audit trail."""


@command.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_state
@handle_errors
def verify(state: State, as_json: bool) -> None:
    """Verify the hash chain, signed checkpoints and signed head; exit 1 on any finding.

    \b
    Example:
      hearth --home ./var audit verify
    """
    with container(state) as c:
        report = verify_audit(
            c.system_repository("audit-verify"),
            RichProgress(enabled=not as_json),
            alarms=c.alarms,
        )
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "findings": [
                    {"seq": f.seq, "kind": f.kind.value, "message": f.message}
                    for f in report.findings
                ],
            }
        )
    else:
        for finding in report.findings:
            click.secho(str(finding), fg="red")
        verdict = "intact" if report.ok else f"BROKEN ({count(len(report.findings), 'finding')})"
        click.echo(f"audit chain: {count(report.entries, 'entry', 'entries')}, {verdict}")
    sys.exit(0 if report.ok else 1)


@command.command("anchor-reset")
@click.option("--reason", required=True, help="Why: the restore or event this follows.")
@pass_state
@handle_errors
def anchor_reset(state: State, reason: str) -> None:
    """Accept this database's audit head after a deliberate restore.

    The copy of the signed audit head kept outside the database (HOME/audit-anchor.json) only
    moves forward, so after restoring an older backup every verification reports a rollback
    until you say it was deliberate. This checks that the chain verifies on its own, records
    the reset (with the previous anchor and your reason) in the audit trail, and re-anchors.
    Never run it to silence a rollback you did not make: investigate that instead.

    \b
    Example:
      hearth --home ./var audit anchor-reset --reason "restored last night's backup after disk loss"
    """
    with container(state) as c:
        previous, new = c.system_repository("audit-anchor", operator="cli").reset_anchor(reason)
    was = f"entry {previous.seq}" if previous is not None else "nothing"
    click.echo(f"Audit anchor moved from {was} to entry {new.seq}; the reset is audited.")


# -- examining the trail (issue 5 item 8): the accounting of disclosures and access reports ------


def _when(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise click.BadParameter(f"{raw!r} is not a date (YYYY-MM-DD).") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _who(c: Container, user_id: str, names: dict[str, str]) -> str:
    if user_id not in names:
        info = c.users.by_id(user_id)
        names[user_id] = f"{info.username} ({user_id})" if info is not None else user_id
    return names[user_id]


def _what(event: dict[str, Any]) -> str:
    """The resource an event touched: its domain-resource entity (role 4) or, for a Patient
    read or refused as itself, its patient entity (role 1, where BALP puts it), else ``-``."""
    for role in ("4", "1"):
        for entity in event.get("entity", []):
            if entity.get("role", {}).get("code") == role and "reference" in entity.get("what", {}):
                return str(entity["what"]["reference"])
    return "-"


def _print_events(c: Container, events: list[dict[str, Any]]) -> None:
    names: dict[str, str] = {}
    if not events:
        click.echo("No entries.")
    for event in events:
        agent = event["agent"][0]["who"]["identifier"]["value"]
        purpose = event.get("purposeOfEvent", [{}])[0].get("coding", [{}])[0].get("code", "-")
        what = _what(event)
        subtype = event.get("subtype", [{}])[0].get("code", "?")
        outcome = "ok" if event["outcome"] == "0" else f"refused ({event.get('outcomeDesc', '')})"
        click.echo(
            f"{event['recorded']}  {_who(c, agent, names)}  {subtype}  {what}  "
            f"purpose={purpose}  {outcome}"
        )


@command.command("disclosures")
@click.argument("patient_id")
@click.option("--since", default=None, help="From this date (at most six years back).")
@click.option("--until", default=None, help="Up to this date.")
@click.option("--access", "every_access", is_flag=True, help="Every access, not only disclosures.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the AuditEvents as JSON.")
@pass_state
@handle_errors
def disclosures(
    state: State,
    patient_id: str,
    since: str | None,
    until: str | None,
    every_access: bool,
    limit: int,
    as_json: bool,
) -> None:
    """The accounting of disclosures of PATIENT_ID (45 CFR 164.528), newest first.

    Disclosures for purposes other than treatment, payment and operations, over up to six
    years; with --access, every access to the patient's records (who looked, and why).

    \b
    Example:
      hearth audit disclosures 3f1c0d6e-... --since 2021-01-01
    """
    with container(state) as c:
        page = c.audit_views.disclosures(
            c.system_principal("cli"),
            patient_id,
            since=_when(since),
            until=_when(until),
            kind="access" if every_access else "accounting",
            count=limit,
        )
        if as_json:
            emit_json(page.events)
        else:
            _print_events(c, page.events)


@command.group("report")
def report() -> None:
    """Access reports: who opened a patient's records, what a user opened, break-the-glass."""


@report.command("patient")
@click.argument("patient_id")
@click.option("--since", default=None, help="From this date.")
@click.option("--json", "as_json", is_flag=True, help="Print the AuditEvents as JSON.")
@pass_state
@handle_errors
def report_patient(state: State, patient_id: str, since: str | None, as_json: bool) -> None:
    """Everyone who accessed PATIENT_ID's records, and whether they were allowed.

    \b
    Example:
      hearth audit report patient 3f1c0d6e-...
    """
    with container(state) as c:
        page = c.audit_views.disclosures(
            c.system_principal("cli"), patient_id, since=_when(since), kind="access", count=10_000
        )
        emit_json(page.events) if as_json else _print_events(c, page.events)


@report.command("user")
@click.argument("username")
@click.option("--since", default=None, help="From this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Print the AuditEvents as JSON.")
@pass_state
@handle_errors
def report_user(state: State, username: str, since: str | None, as_json: bool) -> None:
    """Everything USERNAME accessed (a user id works too), newest first.

    \b
    Example:
      hearth audit report user alice --since 2026-01-01
    """
    with container(state) as c:
        info = c.users.by_id(username) if username.startswith("usr_") else c.users.get(username)
        user_id = info.user_id if info is not None else username
        params = [("agent", user_id)] + ([("date", f"ge{since}")] if since else [])
        page = c.audit_views.search(c.system_principal("cli"), params, count=10_000)
        emit_json(page.events) if as_json else _print_events(c, page.events)


@report.command("break-glass")
@click.option("--since", default=None, help="From this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@handle_errors
def report_break_glass(state: State, since: str | None, as_json: bool) -> None:
    """Every break-the-glass use: each grant, its review, and every access made under it.

    \b
    Example:
      hearth audit report break-glass --since 2026-01-01
    """
    from hearth.services.breakglass import grant_document

    with container(state) as c:
        cli = c.system_principal("cli")
        start = _when(since)
        grants = [
            g for g in c.break_glass.queue(cli, status=None) if start is None or g.created >= start
        ]
        params = [("purpose", "ETREAT")] + ([("date", f"ge{since}")] if since else [])
        accesses = [
            e
            for e in c.audit_views.search(cli, params, count=10_000).events
            if not e["subtype"][0]["code"].startswith("break-glass.")
        ]
        if as_json:
            emit_json({"grants": [grant_document(g) for g in grants], "accesses": accesses})
            return
        for g in grants:
            click.echo(
                f"{g.grant_id} {g.created:%Y-%m-%d %H:%M}Z {_who(c, g.user_id, {})} "
                f"Patient/{g.patient_id} review={g.review_status}"
                + (f" ({g.finding})" if g.finding else "")
            )
            click.echo(f"  reason: {g.reason}")
        click.echo(f"{len(accesses)} accesses recorded under emergency treatment (ETREAT):")
        _print_events(c, accesses)
