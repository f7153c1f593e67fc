"""Break-the-glass end to end (issue 5 item 6; HIPAA 164.312(a)(2)(ii)): declared on the console
after step-up, invoked on the FHIR API by header, time-boxed, patient-scoped, audited as ETREAT,
alarmed at once, and reviewed by someone else."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from starlette.testclient import TestClient

from hearth.cli import main
from hearth.domain import AlarmKind, HearthError, errors
from hearth.web.app import create_app
from tests.access_world import World, build_world
from tests.integration.auth.conftest import Instance, build


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Instance, World]]:
    inst = build(tmp_path)
    try:
        yield inst, build_world(inst.container)
    finally:
        inst.container.close()


def token_for(inst: Instance, role: str, world: World) -> str:
    return inst.container.authenticator.issue_token(
        subject=world.users[role],
        roles=frozenset({role}),
        label="t",
        ttl=timedelta(days=7),
        by="test",
    )


def audit_bodies(inst: Instance, actor: str) -> list[dict[str, object]]:
    with inst.container.db.read.connect() as conn:
        rows = conn.execute(
            text("SELECT body FROM audit_entry WHERE actor = :a ORDER BY seq"), {"a": actor}
        ).scalars()
        return [orjson.loads(bytes(b)) for b in rows]


def test_break_the_glass_end_to_end(site: tuple[Instance, World]) -> None:
    inst, world = site
    container = inst.container
    stranger = world.ids["stranger"]
    obs = world.obs["stranger:V"]  # very restricted too: emergency access lifts labels

    # A physician with console credentials, linked to the practitioner "doc".
    link = inst.add_user("drwho", frozenset({"physician"}))
    browser = inst.browser()
    browser.enrol_password(link)
    drwho = container.users.get("drwho").user_id
    container.access.link_user(
        container.system_principal("cli"), "drwho", practitioner=world.ids["doc"], patient=None
    )
    token = container.authenticator.issue_token(
        subject=drwho, roles=frozenset({"physician"}), label="t", ttl=timedelta(days=7), by="test"
    )
    api = TestClient(create_app(container), base_url="http://127.0.0.1")
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get(f"/fhir/Observation/{obs}", headers=bearer).status_code == 404

    # Declaring needs a signed-in session with a recent second factor.
    browser.sign_in("drwho")
    inst.clock.advance(minutes=10)  # the sign-in's second factor is no longer recent
    assert browser.get("/access/break-glass").headers["location"].startswith("/step-up")
    browser.get("/step-up?next=/access/break-glass")
    inst.clock.advance(seconds=30)
    stepped = browser.post("/step-up/totp", {"code": browser.code(), "next": "/access/break-glass"})
    assert stepped.status_code == 303
    assert browser.get("/access/break-glass").status_code == 200
    short = browser.post("/access/break-glass", {"patient": stranger, "reason": "too short"})
    assert short.status_code == 400
    declared = browser.post(
        "/access/break-glass",
        {"patient": stranger, "reason": "Unconscious in the emergency room.", "purpose": "ETREAT"},
    )
    assert declared.status_code == 201, declared.text
    found = re.search(r"<code>(btg_[a-z2-7]+)</code>", declared.text)
    assert found
    grant = found.group(1)

    # The privacy officer was alarmed at once; the alarm names ids, never the reason.
    alarm = next(a for a in inst.alarms.raised if a.kind is AlarmKind.ACCESS_BREAK_GLASS)
    assert alarm.details["grant"] == grant
    assert alarm.details["patient"] == f"Patient/{stranger}"
    assert "Unconscious" not in repr(alarm)

    # The grant opens that patient's record, labels included, only when invoked.
    invoked = {**bearer, "X-Hearth-Break-Glass": grant}
    assert api.get(f"/fhir/Observation/{obs}", headers=invoked).status_code == 200
    assert api.get(f"/fhir/Patient/{stranger}", headers=invoked).status_code == 200
    assert api.get(f"/fhir/Observation/{obs}", headers=bearer).status_code == 404
    other = world.obs["cancelled"]  # another unlinked patient: not covered by the grant
    assert api.get(f"/fhir/Observation/{other}", headers=invoked).status_code == 404
    found_all = api.post(
        "/fhir/Observation/_search", data={"subject": f"Patient/{stranger}"}, headers=invoked
    )
    assert found_all.json()["total"] == 5
    entries = [e for e in audit_bodies(inst, drwho) if e.get("type") == "Observation"]
    assert {e["purpose"] for e in entries if e["outcome"] == "success"} == {"ETREAT"}

    # Someone else's grant, a malformed one, or an expired one: refused, never a fallback.
    nurse = token_for(inst, "nurse", world)
    foreign = api.get(
        f"/fhir/Patient/{stranger}",
        headers={"Authorization": f"Bearer {nurse}", "X-Hearth-Break-Glass": grant},
    )
    assert foreign.status_code == 403
    assert foreign.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-1105"
    malformed = api.get(
        f"/fhir/Patient/{stranger}", headers={**bearer, "X-Hearth-Break-Glass": "x"}
    )
    assert malformed.status_code == 403

    # The review queue: a privacy officer sees the reason and the accesses, and closes it.
    officer = {"Authorization": f"Bearer {token_for(inst, 'privacy-officer', world)}"}
    queue = api.get("/api/access/break-glass", headers=officer)
    assert queue.status_code == 200
    (item,) = queue.json()["grants"]
    assert item["grant_id"] == grant
    assert item["reason"] == "Unconscious in the emergency room."
    assert item["accesses"] >= 3
    assert item["active"] is True
    own = api.post(
        f"/api/access/break-glass/{grant}/review",
        json={"finding": "justified"},
        headers=bearer,
    )
    assert own.status_code == 403  # a physician has no review capability, and it is their own
    reviewed = api.post(
        f"/api/access/break-glass/{grant}/review",
        json={"finding": "justified", "note": "Confirmed with the ED charge nurse."},
        headers=officer,
    )
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["review_status"] == "closed"
    again = api.post(
        f"/api/access/break-glass/{grant}/review", json={"finding": "unjustified"}, headers=officer
    )
    assert again.status_code == 409
    assert api.get("/api/access/break-glass", headers=officer).json()["grants"] == []

    # Time-boxed: after the hour the grant no longer opens anything.
    inst.clock.advance(minutes=61)
    expired = api.get(f"/fhir/Observation/{obs}", headers=invoked)
    assert expired.status_code == 403


def test_only_roles_that_may_break_the_glass_declare(site: tuple[Instance, World]) -> None:
    inst, world = site
    service = inst.container.break_glass
    desk = world.principal("front-desk")
    with pytest.raises(HearthError) as refused:
        service.declare(desk, world.ids["stranger"], reason="Needs to see everything now.")
    assert refused.value.code is errors.FORBIDDEN
    doc = world.principal("physician")
    with pytest.raises(HearthError) as missing:
        service.declare(doc, "no-such-patient", reason="A patient who does not exist.")
    assert missing.value.code is errors.NOT_FOUND
    with pytest.raises(HearthError) as purpose:
        service.declare(doc, world.ids["stranger"], reason="Long enough reason.", purpose="FUN")
    assert purpose.value.code is errors.BREAK_GLASS_REASON
    grant = service.declare(doc, world.ids["stranger"], reason="Cardiac arrest in the lobby.")
    assert [g.grant_id for g in service.mine(doc)] == [grant.grant_id]
    service.end(doc, grant.grant_id)
    assert service.mine(doc) == []
    repo = inst.container.repository(world.principal("physician", break_glass=grant.grant_id))
    with pytest.raises(HearthError) as ended:
        repo.read("Patient", world.ids["stranger"])
    assert ended.value.code is errors.BREAK_GLASS_NOT_ACTIVE
    # The review queue still holds it: ending early does not close the review.
    officer = world.principal("privacy-officer")
    assert [g.grant_id for g in service.queue(officer)] == [grant.grant_id]
    with pytest.raises(HearthError) as not_officer:
        service.queue(world.principal("nurse"))
    assert not_officer.value.code is errors.FORBIDDEN


def test_nobody_reviews_their_own_emergency_access(site: tuple[Instance, World]) -> None:
    inst, world = site
    both = world.principal("physician")
    both = type(both)(
        subject=both.subject, kind=both.kind, roles=frozenset({"physician", "privacy-officer"})
    )
    service = inst.container.break_glass
    grant = service.declare(both, world.ids["stranger"], reason="Stroke alert, needs history.")
    with pytest.raises(HearthError) as own:
        service.review(both, grant.grant_id, finding="justified")
    assert own.value.code is errors.REVIEW_OWN
    with pytest.raises(HearthError) as bad:
        service.review(world.principal("privacy-officer"), grant.grant_id, finding="fine")
    assert bad.value.code is errors.BAD_PARAMETER


def test_the_access_command_line(site: tuple[Instance, World]) -> None:
    """``hearth access``: the review queue, closing a review, and lifting a pause."""
    inst, world = site
    doc = world.principal("physician")
    grant = inst.container.break_glass.declare(
        doc, world.ids["stranger"], reason="Anaphylaxis, allergies unknown."
    )

    def hearth(*args: str) -> str:
        result = CliRunner().invoke(main, ["--home", str(inst.home), *args])
        assert result.exit_code == 0, result.output
        return result.output

    listed = hearth("access", "break-glass")
    assert grant.grant_id in listed
    assert "Anaphylaxis, allergies unknown." in listed
    (item,) = orjson.loads(hearth("access", "break-glass", "--json"))
    assert item["grant_id"] == grant.grant_id
    assert item["review_status"] == "open"
    assert "closed: justified" in hearth(
        "access", "review", grant.grant_id, "--finding", "justified", "--note", "Seen by the ED."
    )
    assert hearth("access", "break-glass") == "No break-the-glass grants.\n"
    (closed,) = orjson.loads(hearth("access", "break-glass", "--status", "all", "--json"))
    assert closed["finding"] == "justified"
    again = CliRunner().invoke(
        main,
        ["--home", str(inst.home), "access", "review", grant.grant_id, "--finding", "justified"],
    )
    assert again.exit_code == 1
    assert "Traceback" not in again.output
    assert "resumed" in hearth("access", "resume", "u-physician")
    unknown = CliRunner().invoke(main, ["--home", str(inst.home), "access", "resume", "nobody"])
    assert unknown.exit_code == 1
