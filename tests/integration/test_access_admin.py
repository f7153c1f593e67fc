"""Access administration: roles as data, assignments, links, care teams, and the two-person rule
for self-granted clinical access (issue 5 item 9)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from hearth.cli import main
from hearth.domain import HearthError, Principal, PrincipalKind, errors
from hearth.fhir.search import Context, parse_search
from tests.support import Instance, admin


def user(instance: Instance, name: str, *roles: str) -> Principal:
    info, _ = instance.container.users.add(name, roles=frozenset(roles), by="test", link_ttl=None)
    return Principal(subject=info.user_id, kind=PrincipalKind.USER, roles=frozenset(roles))


def audited(instance: Instance, action: str) -> list[dict[str, object]]:
    with instance.container.db.read.connect() as conn:
        rows = conn.execute(
            text("SELECT body FROM audit_entry WHERE action = :a ORDER BY seq"), {"a": action}
        ).scalars()
        return [orjson.loads(bytes(b)) for b in rows]


def test_two_administrators_are_needed_for_self_granted_clinical_access(
    sqlite_instance: Instance,
) -> None:
    access = sqlite_instance.container.access
    ann = user(sqlite_instance, "ann", "administrator")
    bob = user(sqlite_instance, "bob", "administrator")
    user(sqlite_instance, "doc", "nurse")

    # Another user: applied at once, audited as the user change it is.
    assert access.assign_roles(ann, "doc", frozenset({"physician"})).applied
    assert sqlite_instance.container.users.get("doc").roles == {"physician"}

    # Herself: waits for a second administrator; she may not approve it.
    pending = access.assign_roles(ann, "ann", frozenset({"administrator", "physician"}))
    assert not pending.applied
    assert pending.request_id is not None
    assert sqlite_instance.container.users.get("ann").roles == {"administrator"}
    with pytest.raises(HearthError) as own:
        access.decide(ann, pending.request_id, approve=True)
    assert own.value.code is errors.APPROVAL_SELF
    listed = access.requests(bob)
    assert [r.request_id for r in listed] == [pending.request_id]
    assert listed[0].payload["roles"] == ["administrator", "physician"]
    access.decide(bob, pending.request_id, approve=True)
    assert sqlite_instance.container.users.get("ann").roles == {"administrator", "physician"}
    with pytest.raises(HearthError) as twice:
        access.decide(bob, pending.request_id, approve=True)
    assert twice.value.code is errors.APPROVAL_NOT_FOUND

    # Dropping a clinical role for oneself needs nobody.
    assert access.assign_roles(ann, "ann", frozenset({"administrator"})).applied

    # Editing a role one holds so that it reaches patient data: the same rule.
    clinical_admin = {
        "patients": "all",
        "permissions": ["user/*.rs"],
        "capabilities": ["roles.admin"],
        "purpose": "HSYSADMIN",
    }
    edit = access.set_role(ann, "administrator", clinical_admin)
    assert not edit.applied
    assert edit.request_id is not None
    assert not access.catalog.roles["administrator"].clinical
    access.decide(bob, edit.request_id, approve=False)
    assert not access.catalog.roles["administrator"].clinical
    assert [e["action"] for e in audited(sqlite_instance, "access.reject")] == ["access.reject"]
    requests = access.requests(bob, None)
    assert {r.status for r in requests} == {"approved", "rejected"}


def test_roles_are_data_that_administrators_edit(sqlite_instance: Instance) -> None:
    access = sqlite_instance.container.access
    ann = user(sqlite_instance, "ann", "administrator")
    scribe = {
        "description": "Writes notes for linked patients.",
        "patients": "linked",
        "permissions": ["user/DocumentReference.cru"],
        "labels": ["R"],
    }
    assert access.set_role(ann, "scribe", scribe).applied
    assert access.role("scribe").patients.value == "linked"
    assert "scribe" in sqlite_instance.container.users.known_roles
    user(sqlite_instance, "sam", "scribe")  # the new role is assignable at once
    with pytest.raises(HearthError) as invalid:
        access.set_role(ann, "broken", {"patients": "everyone"})
    assert invalid.value.code is errors.ROLE_INVALID
    with pytest.raises(HearthError) as builtin:
        access.set_role(ann, "bootstrap-admin", scribe)
    assert builtin.value.code is errors.ROLE_BUILTIN
    access.delete_role(ann, "scribe")
    with pytest.raises(HearthError):
        access.role("scribe")
    # A shipped role edited, then reset to its default.
    nurse = {"patients": "linked", "permissions": ["user/Observation.rs"]}
    assert access.set_role(ann, "nurse", nurse).applied
    assert access.catalog.edited == {"nurse", "scribe"}
    assert access.reset_role(ann, "nurse").applied
    assert "user/Observation.cru" in {str(p) for p in access.role("nurse").permissions}
    actions = [e["action"] for e in audited(sqlite_instance, "access.role-set")]
    assert actions == ["access.role-set", "access.role-set"]
    assert len(audited(sqlite_instance, "access.role-delete")) == 1
    assert len(audited(sqlite_instance, "access.role-reset")) == 1
    # Only roles.admin may do any of it; the refusal is audited.
    nurse_user = user(sqlite_instance, "nina", "nurse")
    with pytest.raises(HearthError) as refused:
        access.set_role(nurse_user, "scribe", scribe)
    assert refused.value.code is errors.FORBIDDEN
    denied = audited(sqlite_instance, "access.role-set")[-1]
    assert denied["outcome"] == "denied"
    assert denied["actor"] == nurse_user.subject


def test_links_and_care_teams_scope_a_clinician(sqlite_instance: Instance) -> None:
    container = sqlite_instance.container
    access = container.access
    root = container.repository(admin())
    practitioner = root.create({"resourceType": "Practitioner", "name": [{"family": "Lee"}]})
    patient = root.create({"resourceType": "Patient", "name": [{"family": "Ng"}]})
    ann = user(sqlite_instance, "ann", "administrator")
    doc = user(sqlite_instance, "doc", "physician")
    with pytest.raises(HearthError) as missing:
        access.link_user(ann, "doc", practitioner="no-such-id", patient=None)
    assert missing.value.code is errors.LINK_INVALID
    assert access.link_user(ann, "doc", practitioner=practitioner.res_id, patient=None).applied
    link = access.link(doc.subject)
    assert link is not None
    assert link.practitioner == practitioner.res_id
    request = parse_search("Patient", [], ctx=Context(now_us=0), default_count=10, max_count=10)
    assert container.repository(doc).search(request).total == 0
    assert access.assign_care_team(
        ann, practitioner=practitioner.res_id, patient=patient.res_id
    ).applied
    assert [s.res_id for s in container.repository(doc).search(request).matches] == [patient.res_id]
    # The administrator saw nothing of the record, and is named in the audit.
    entry = audited(sqlite_instance, "access.care-team")[0]
    assert entry["actor"] == ann.subject
    assert entry["patient"] == patient.res_id
    with pytest.raises(HearthError) as none:
        container.repository(ann).read("Patient", patient.res_id)
    assert none.value.code is errors.FORBIDDEN

    # An administrator who is that practitioner: the care-team link waits for a second one.
    access.link_user(admin(), "ann", practitioner=practitioner.res_id, patient=None)
    other = root.create({"resourceType": "Patient", "name": [{"family": "Oh"}]})
    waiting = access.assign_care_team(ann, practitioner=practitioner.res_id, patient=other.res_id)
    assert not waiting.applied


def test_the_role_command_line(tmp_path: Path, sqlite_instance: Instance) -> None:
    home = sqlite_instance.home

    def hearth(*args: str) -> str:
        result = CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    listed = json.loads(hearth("role", "list", "--json"))
    assert listed["version"] == 1
    assert listed["roles"]["physician"]["patients"] == "linked"
    assert "physician" in hearth("role", "list")
    definition = tmp_path / "scribe.json"
    definition.write_text(json.dumps({"patients": "linked", "permissions": ["user/Patient.rs"]}))
    assert "saved" in hearth("role", "set", "scribe", str(definition))
    assert json.loads(hearth("role", "show", "scribe"))["permissions"] == ["user/Patient.rs"]
    hearth("user", "add", "sam", "--role", "nurse")
    assert "scribe" in hearth("role", "assign", "sam", "--role", "scribe")
    root = sqlite_instance.container.repository(admin())
    practitioner = root.create({"resourceType": "Practitioner", "name": [{"family": "Lee"}]})
    patient = root.create({"resourceType": "Patient"})
    hearth("role", "link", "sam", "--practitioner", practitioner.res_id)
    assert practitioner.res_id in hearth("role", "links")
    hearth("role", "care-team", "--practitioner", practitioner.res_id, "--patient", patient.res_id)
    assert json.loads(hearth("role", "requests", "--json")) == []
    failed = CliRunner().invoke(main, ["--home", str(home), "role", "approve", "req_nope"])
    assert failed.exit_code == 1
    assert "HRT-1103" in failed.output


def test_the_access_api(sqlite_instance: Instance) -> None:
    from starlette.testclient import TestClient

    from hearth.web.app import create_app

    container = sqlite_instance.container
    ann = user(sqlite_instance, "ann", "administrator")
    bob = user(sqlite_instance, "bob", "administrator")
    nina = user(sqlite_instance, "nina", "nurse")

    def bearer(p: Principal) -> dict[str, str]:
        token = container.authenticator.issue_token(
            subject=p.subject, roles=p.roles, label="t", ttl=None, by="test"
        )
        return {"Authorization": f"Bearer {token}"}

    api = TestClient(create_app(container), base_url="http://127.0.0.1")
    listed = api.get("/api/access/roles", headers=bearer(ann))
    assert listed.status_code == 200
    assert listed.json()["roles"]["researcher"]["permissions"] == []
    assert api.get("/api/access/roles", headers=bearer(nina)).status_code == 403
    assert api.get("/api/access/roles").status_code == 401
    made = api.put(
        "/api/access/roles/scribe",
        json={"patients": "linked", "permissions": ["user/Patient.rs"]},
        headers=bearer(ann),
    )
    assert made.json() == {"applied": True}
    bad = api.put("/api/access/roles/scribe", json={"patients": 1}, headers=bearer(ann))
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-1101"
    mine = api.put(
        "/api/access/users/ann/roles",
        json={"roles": ["administrator", "scribe"]},
        headers=bearer(ann),
    )
    assert mine.status_code == 202
    request_id = mine.json()["request_id"]
    assert (
        api.post(f"/api/access/requests/{request_id}/approve", headers=bearer(ann)).status_code
        == 403
    )
    pending = api.get("/api/access/requests", headers=bearer(bob)).json()["requests"]
    assert [r["request_id"] for r in pending] == [request_id]
    done = api.post(f"/api/access/requests/{request_id}/approve", headers=bearer(bob))
    assert done.json()["status"] == "approved"
    assert container.users.get("ann").roles == {"administrator", "scribe"}
    assert (
        api.post(f"/api/access/requests/{request_id}/maybe", headers=bearer(bob)).status_code == 404
    )
    root = container.repository(admin())
    practitioner = root.create({"resourceType": "Practitioner"}).res_id
    patient = root.create({"resourceType": "Patient"}).res_id
    linked = api.put(
        "/api/access/users/nina/link", json={"practitioner": practitioner}, headers=bearer(bob)
    )
    assert linked.json() == {"applied": True}
    team = api.post(
        "/api/access/care-teams",
        json={"practitioner": practitioner, "patient": patient},
        headers=bearer(bob),
    )
    assert team.json() == {"applied": True}
    assert container.repository(nina).read("Patient", patient).res_id == patient
    assert api.post("/api/access/roles/nurse/reset", headers=bearer(bob)).json() == {
        "applied": True
    }
    assert api.delete("/api/access/roles/scribe", headers=bearer(bob)).status_code == 204
