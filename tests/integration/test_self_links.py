"""The two escalations a security tester found, over the FHIR API: a physician's PractitionerRole
for themselves (an organization's every patient), and a care team written under a
break-the-glass grant (access that outlived the grant). Both are refused with a stable code,
audited as denied, and raise ``access.snooping`` (kind ``self-link``); links for others are
written as before (docs/design.md, "Relationships are written by someone else")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from hearth.domain import AlarmKind
from hearth.web.app import create_app
from tests.access_world import LINKED, World, build_world
from tests.integration.auth.conftest import Instance, build
from tests.support import admin


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Instance, World, TestClient]]:
    inst = build(tmp_path)
    try:
        yield (
            inst,
            build_world(inst.container),
            TestClient(create_app(inst.container), base_url="http://127.0.0.1"),
        )
    finally:
        inst.container.close()


def bearer(inst: Instance, world: World, role: str) -> dict[str, str]:
    token = inst.container.authenticator.issue_token(
        subject=world.users[role], roles=frozenset({role}), label="t", ttl=timedelta(days=1), by="t"
    )
    return {"Authorization": f"Bearer {token}"}


def code_of(answer: Any) -> str:
    return str(answer.json()["issue"][0]["details"]["coding"][0]["code"])


def self_links(inst: Instance) -> list[dict[str, str]]:
    return [
        a.details
        for a in inst.alarms.raised
        if a.kind is AlarmKind.ACCESS_SNOOPING and a.details.get("kind") == "self-link"
    ]


def denied(inst: Instance, actor: str, code: str) -> list[dict[str, Any]]:
    with inst.container.db.read.connect() as conn:
        rows = conn.execute(
            text("SELECT body FROM audit_entry WHERE actor = :a ORDER BY seq"), {"a": actor}
        ).scalars()
        bodies = [orjson.loads(bytes(b)) for b in rows]
    return [b for b in bodies if b.get("code") == code and b["outcome"] == "denied"]


def test_a_physician_cannot_give_themselves_an_organizations_patients(
    site: tuple[Instance, World, TestClient],
) -> None:
    inst, world, api = site
    root = inst.container.repository(admin())
    org = root.create({"resourceType": "Organization", "name": "Elsewhere"}).res_id
    for _ in range(5):
        root.create(
            {
                "resourceType": "Patient",
                "managingOrganization": {"reference": f"Organization/{org}"},
            }
        )
    doc = bearer(inst, world, "physician")
    assert api.get("/fhir/Patient", headers=doc).json()["total"] == len(LINKED)

    role = {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": f"Practitioner/{world.ids['doc']}"},
        "organization": {"reference": f"Organization/{org}"},
    }
    answer = api.post("/fhir/PractitionerRole", json=role, headers=doc)
    assert answer.status_code == 403
    assert code_of(answer) == "HRT-1114"
    assert api.get("/fhir/Patient", headers=doc).json()["total"] == len(LINKED)
    (entry,) = denied(inst, world.users["physician"], "HRT-1114")
    assert (entry["action"], entry["type"]) == ("create", "PractitionerRole")
    (alarm,) = self_links(inst)
    assert alarm["user"] == world.users["physician"]
    assert alarm["action"] == "create"
    assert alarm["resource"].startswith("PractitionerRole/")
    assert "Osler" not in str(alarm)  # ids, never a name
    assert "Osler" not in answer.text

    # A colleague's role is written as before, and raises nothing.
    colleague = {**role, "practitioner": {"reference": f"Practitioner/{world.ids['other_p']}"}}
    assert api.post("/fhir/PractitionerRole", json=colleague, headers=doc).status_code == 201
    assert len(self_links(inst)) == 1


def test_emergency_access_does_not_outlive_the_grant(
    site: tuple[Instance, World, TestClient],
) -> None:
    inst, world, api = site
    stranger = world.ids["stranger"]
    grant = inst.container.break_glass.declare(
        world.principal("physician"), stranger, reason="Found unresponsive in the car park."
    ).grant_id
    doc = bearer(inst, world, "physician")
    invoked = {**doc, "X-Hearth-Break-Glass": grant}
    assert api.get(f"/fhir/Patient/{stranger}", headers=invoked).status_code == 200

    def team(*members: str) -> dict[str, Any]:
        return {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{stranger}"},
            "participant": [{"member": {"reference": f"Practitioner/{m}"}} for m in members],
        }

    own = api.post("/fhir/CareTeam", json=team(world.ids["doc"]), headers=invoked)
    assert own.status_code == 403
    assert code_of(own) == "HRT-1114"
    theirs = api.post("/fhir/CareTeam", json=team(world.ids["nurse_p"]), headers=invoked)
    assert theirs.status_code == 403
    assert code_of(theirs) == "HRT-1115"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "CareTeam"}, "resource": team(world.ids["doc"])}
        ],
    }
    assert api.post("/fhir", json=bundle, headers=invoked).status_code == 403
    user = world.users["physician"]
    assert len(denied(inst, user, "HRT-1114")) == 2
    assert {e["purpose"] for e in denied(inst, user, "HRT-1115")} == {"ETREAT"}
    assert len(self_links(inst)) == 2  # the grant's own alarm aside, each self-link attempt

    ended = api.post(f"/api/access/break-glass/{grant}/end", headers=doc)
    assert ended.status_code == 204, ended.text
    assert api.get(f"/fhir/Patient/{stranger}", headers=doc).status_code == 404
    assert api.get(f"/fhir/Patient/{stranger}", headers=invoked).status_code == 403
