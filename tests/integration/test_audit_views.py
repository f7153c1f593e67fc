"""Audit you can examine (issue 5 item 8): AuditEvent read and search for auditors, rendered
BALP-shaped from the chain; a patient's accounting of disclosures over up to six years."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from starlette.testclient import TestClient

from hearth.cli import main
from hearth.domain import HearthError, errors
from hearth.fhir.search import Context, parse_search
from hearth.web.app import create_app
from tests.access_world import World, build_world
from tests.support import FixedClock, Instance, make_instance

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[tuple[Instance, World, FixedClock]]:
    clock = FixedClock()
    inst = make_instance(tmp_path / "home", None, clock=clock)
    try:
        world = build_world(inst.container)
        # A public-health registry: reads every patient's Observations, for a purpose outside
        # treatment, payment and operations, so its reads belong in accountings of disclosures.
        access = inst.container.access
        cli = inst.container.system_principal("cli")
        registry = {"patients": "all", "permissions": ["user/Observation.rs"], "purpose": "PUBHLTH"}
        access.set_role(cli, "registry", registry)
        info, _ = inst.container.users.add(
            "reg", roles=frozenset({"registry"}), by="t", link_ttl=None
        )
        world.users["registry"] = info.user_id
        yield inst, world, clock
    finally:
        inst.container.close()


def bearer(inst: Instance, world: World, role: str) -> dict[str, str]:
    token = inst.container.authenticator.issue_token(
        subject=world.users[role],
        roles=frozenset({role}),
        label="t",
        ttl=timedelta(days=7),
        by="test",
    )
    return {"Authorization": f"Bearer {token}"}


def entities(event: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [e for e in event.get("entity", []) if e.get("role", {}).get("code") == role]


def test_an_auditor_produces_a_patients_accounting_of_disclosures(
    clinic: tuple[Instance, World, FixedClock],
) -> None:
    inst, world, clock = clinic
    api = TestClient(create_app(inst.container), base_url="http://127.0.0.1")
    ann = world.ids["careteam"]
    # Treatment: the physician reads the record (not in the accounting, in the access report).
    doc = bearer(inst, world, "physician")
    assert api.get(f"/fhir/Patient/{ann}", headers=doc).status_code == 200
    # A disclosure to the registry, in a search touching many patients at once.
    clock.advance(minutes=1)
    found = api.post(
        "/fhir/Observation/_search",
        data={"category": "vital-signs"},
        headers=bearer(inst, world, "registry"),
    )
    assert found.status_code == 200
    assert found.json()["total"] > 10
    # A refused attempt on another patient.
    assert api.get(f"/fhir/Patient/{world.ids['stranger']}", headers=doc).status_code == 404

    auditor = bearer(inst, world, "auditor")
    accounting = api.get(f"/fhir/Patient/{ann}/$disclosures", headers=auditor)
    assert accounting.status_code == 200, accounting.text
    events = [e["resource"] for e in accounting.json()["entry"]]
    assert len(events) == 1
    (disclosure,) = events
    assert disclosure["resourceType"] == "AuditEvent"
    assert disclosure["purposeOfEvent"][0]["coding"][0]["code"] == "PUBHLTH"
    assert disclosure["agent"][0]["who"]["identifier"]["value"] == world.users["registry"]
    assert disclosure["meta"]["profile"] == [BALP + "PatientQuery"]
    assert {"reference": f"Patient/{ann}"} in [e["what"] for e in entities(disclosure, "1")]
    query = entities(disclosure, "24")[0]["query"]
    assert base64.b64decode(query).decode() == "category=vital-signs"
    # The same search appears in every other patient's accounting too.
    other = api.get(f"/fhir/Patient/{world.ids['stranger']}/$disclosures", headers=auditor)
    assert [e["resource"]["id"] for e in other.json()["entry"]] == [disclosure["id"]]

    # The access report: who looked, and why, refusals included.
    report = api.get(
        f"/fhir/Patient/{world.ids['stranger']}/$disclosures?kind=access", headers=auditor
    )
    kinds = {
        (e["resource"]["agent"][0]["who"]["identifier"]["value"], e["resource"]["outcome"])
        for e in report.json()["entry"]
    }
    assert (world.users["physician"], "4") in kinds
    assert (world.users["registry"], "0") in kinds

    # A patient asks for their own accounting: no query, no other patients.
    own = api.get(f"/fhir/Patient/{ann}/$disclosures", headers=bearer(inst, world, "patient"))
    assert own.status_code == 200
    (mine,) = [e["resource"] for e in own.json()["entry"]]
    assert entities(mine, "24") == []
    assert [e["what"]["reference"] for e in entities(mine, "1")] == [f"Patient/{ann}"]
    assert entities(mine, "4") == []
    theirs = api.get(
        f"/fhir/Patient/{world.ids['stranger']}/$disclosures",
        headers=bearer(inst, world, "patient"),
    )
    assert theirs.status_code == 403
    assert api.get(f"/fhir/Patient/{ann}/$disclosures", headers=doc).status_code == 403

    # Six years: after seven, the disclosure is out of the accounting.
    clock.advance(days=7 * 366)
    later = api.get(f"/fhir/Patient/{ann}/$disclosures", headers=auditor)
    assert "entry" not in later.json()


def test_audit_events_are_read_and_searched_by_auditors(
    clinic: tuple[Instance, World, FixedClock],
) -> None:
    inst, world, clock = clinic
    api = TestClient(create_app(inst.container), base_url="http://127.0.0.1")
    doc = bearer(inst, world, "physician")
    ann = world.ids["careteam"]
    for _ in range(3):
        clock.advance(seconds=1)
        api.get(f"/fhir/Observation/{world.obs['careteam']}", headers=doc)
    officer = bearer(inst, world, "privacy-officer")
    searched = api.get(
        f"/fhir/AuditEvent?agent={world.users['physician']}&action=R&_count=2", headers=officer
    )
    assert searched.status_code == 200, searched.text
    bundle = searched.json()
    assert len(bundle["entry"]) == 2
    nxt = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert "_page=" in nxt
    assert world.users["physician"] not in nxt  # the page link carries no search values
    rest = api.get(nxt.replace("http://127.0.0.1", ""), headers=officer).json()
    assert len(rest["entry"]) >= 1
    event = bundle["entry"][0]["resource"]
    assert event["type"]["code"] == "rest"
    assert event["subtype"][0]["code"] == "read"
    assert event["action"] == "R"
    assert event["outcome"] == "0"
    assert event["meta"]["profile"] == [BALP + "PatientRead"]
    assert event["agent"][0]["requestor"] is True
    assert event["agent"][1]["type"]["coding"][0]["code"] == "110153"
    assert entities(event, "4")[0]["what"]["reference"].startswith(
        f"Observation/{world.obs['careteam']}/_history/"
    )
    chain = event["extension"][0]
    assert chain["extension"][0]["valueInteger"] == int(event["id"])
    one = api.get(f"/fhir/AuditEvent/{event['id']}", headers=officer)
    assert one.json() == event
    assert api.get(f"/fhir/AuditEvent/{event['id']}", headers=doc).status_code == 403
    assert api.get("/fhir/AuditEvent/999999", headers=officer).status_code == 404
    by_patient = api.post(
        "/fhir/AuditEvent/_search",
        data={"patient": f"Patient/{ann}", "subtype": "read", "date": "ge2026-01-01"},
        headers=officer,
    )
    assert all(e["resource"]["subtype"][0]["code"] == "read" for e in by_patient.json()["entry"])
    assert api.get("/fhir/AuditEvent?colour=red", headers=officer).status_code == 400
    # Looking at the trail is itself on the trail.
    with inst.container.db.read.connect() as conn:
        actions = conn.execute(
            text("SELECT action FROM audit_entry WHERE actor = :a"),
            {"a": world.users["privacy-officer"]},
        ).scalars()
        assert {"audit.search", "audit.read"} <= set(actions)


def test_a_tampered_entry_is_refused_not_rendered(
    clinic: tuple[Instance, World, FixedClock],
) -> None:
    inst, world, _clock = clinic
    container = inst.container
    with container.db.read.connect() as conn:
        seq = conn.execute(text("SELECT MAX(seq) FROM audit_entry")).scalar_one()
    with container.db.write.begin() as conn:
        conn.execute(
            text("UPDATE audit_entry SET body = :b WHERE seq = :s"),
            {"b": b'{"seq":%d,"actor":"nobody"}' % seq, "s": seq},
        )
    with pytest.raises(HearthError) as refused:
        container.audit_views.read(world.principal("auditor"), int(seq))
    assert refused.value.code is errors.INTEGRITY_FAILED


def test_the_audit_command_line_reports(clinic: tuple[Instance, World, FixedClock]) -> None:
    inst, world, _clock = clinic
    repo = inst.container.repository(world.principal("registry"))
    request = parse_search("Observation", [], ctx=Context(now_us=0), default_count=5, max_count=5)
    repo.search(request)
    grant = inst.container.break_glass.declare(
        world.principal("physician"), world.ids["stranger"], reason="Anaphylaxis in clinic."
    )
    inst.container.repository(world.principal("physician", break_glass=grant.grant_id)).read(
        "Patient", world.ids["stranger"]
    )
    with pytest.raises(HearthError):  # without the grant: refused, and audited
        inst.container.repository(world.principal("physician")).read(
            "Patient", world.ids["stranger"]
        )

    def hearth(*args: str) -> str:
        result = CliRunner().invoke(main, ["--home", str(inst.home), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    ann = world.ids["careteam"]
    accounting = hearth("audit", "disclosures", ann)
    assert "u-registry" not in accounting  # the registry user is "reg"
    assert "reg (" in accounting
    assert "purpose=PUBHLTH" in accounting
    assert "purpose=TREAT" not in accounting
    stranger = hearth("audit", "report", "patient", world.ids["stranger"])
    assert "purpose=ETREAT" in stranger
    # A refused Patient read names the Patient (BALP puts it in the patient entity), not "-".
    refused_line = next(line for line in stranger.splitlines() if "refused" in line)
    assert f"Patient/{world.ids['stranger']}" in refused_line
    assert "search" in hearth("audit", "report", "user", "reg")
    btg = hearth("audit", "report", "break-glass")
    assert grant.grant_id in btg
    assert "Anaphylaxis in clinic." in btg
    assert "1 accesses recorded under emergency treatment" in btg
