"""Access administration: roles as data, assignments, links, care teams, and the two-person rule
for self-granted clinical access (issue 5 item 9)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from starlette.testclient import TestClient

from hearth.cli import main
from hearth.domain import HearthError, Principal, PrincipalKind, errors
from hearth.fhir.search import Context, parse_search
from hearth.web.app import create_app
from tests.integration.auth.conftest import Browser, build
from tests.integration.auth.conftest import Instance as AuthInstance
from tests.support import Instance, admin


def user(instance: Instance, name: str, *roles: str) -> Principal:
    info, _ = instance.container.users.add(name, roles=frozenset(roles), by="test", link_ttl=None)
    return Principal(subject=info.user_id, kind=PrincipalKind.USER, roles=frozenset(roles))


def audited(instance: Instance | AuthInstance, action: str) -> list[dict[str, object]]:
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


def test_a_mask_names_an_element_its_type_has(sqlite_instance: Instance) -> None:
    """A misspelt mask would hide nothing: a role whose mask names no top-level element of its
    type in R4 (a choice is ``value[x]``; for ``*``, no type has it) is refused."""
    access = sqlite_instance.container.access
    ann = user(sqlite_instance, "ann", "administrator")
    scribe = {"patients": "linked", "permissions": ["user/Observation.rs"]}
    # A mask must name an element its type has: a misspelt one would hide nothing.
    for masks in (
        {"Observation": ["value"]},  # a choice is value[x]
        {"Observation": ["valueQuantity"]},
        {"Obsrvation": ["note"]},
        {"*": ["notes"]},
    ):
        with pytest.raises(HearthError) as unmasked:
            access.set_role(ann, "masked", {**scribe, "masks": masks})
        assert unmasked.value.code is errors.ROLE_INVALID
    masked = {**scribe, "masks": {"Observation": ["value[x]", "note"], "*": ["text"]}}
    assert access.set_role(ann, "masked", masked).applied
    assert access.role("masked").masks_for("Observation") == ("note", "text", "value[x]")


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


def _code(response: Any) -> str:
    code: str = response.json()["issue"][0]["details"]["coding"][0]["code"]
    return code


def test_the_access_api(tmp_path: Path) -> None:
    """Reads take a bearer token or the console session; every change to users and roles takes
    only a console session with a recent step-up (ASVS v5.0.0-7.5.3), never a token."""
    site = build(tmp_path)
    try:
        _the_access_api(site)
    finally:
        site.container.close()


def _console(site: AuthInstance, name: str, role: str = "administrator") -> Browser:
    """A browser signed in as ``name`` (password + TOTP; the sign-in's factor is a step-up)."""
    browser = site.browser()
    browser.enrol_password(site.add_user(name, frozenset({role})))
    browser.get("/")
    return browser


def _the_access_api(site: AuthInstance) -> None:
    container = site.container
    ann, bob = _console(site, "ann"), _console(site, "bob")
    ann_id = container.users.get("ann").user_id
    container.users.add("nina", roles=frozenset({"nurse"}), by="test", link_ttl=None)
    nina = Principal(
        subject=container.users.get("nina").user_id, roles=frozenset({"nurse"}), source=None
    )

    def bearer(username: str) -> dict[str, str]:
        token = container.users.issue_api_token(username, ttl=timedelta(hours=1), by="test")
        return {"Authorization": f"Bearer {token}"}

    def change(browser: Browser, method: str, url: str, body: Any = None) -> Any:
        return browser.client.request(
            method, url, json=body, headers={"X-CSRF-Token": browser.csrf()}
        )

    # Reads: a bearer token, like the FHIR API, or the console session.
    api = TestClient(create_app(container), base_url="https://localhost")
    listed = api.get("/api/access/roles", headers=bearer("ann"))
    assert listed.status_code == 200
    assert listed.json()["roles"]["researcher"]["view"] == "deidentified"
    assert api.get("/api/access/roles", headers=bearer("nina")).status_code == 403
    assert api.get("/api/access/roles").status_code == 401
    assert ann.client.get("/api/access/roles").status_code == 200

    # Changes: a token is refused whoever holds it, and the refusal is audited.
    scribe = {"patients": "linked", "permissions": ["user/Patient.rs"]}
    refused = api.put("/api/access/roles/scribe", json=scribe, headers=bearer("ann"))
    assert refused.status_code == 403
    assert _code(refused) == "HRT-0721"
    assert "hearth role" in refused.json()["issue"][0]["diagnostics"]
    assert "scribe" not in container.access.catalog.roles
    denied = audited(site, "access.role-set")[-1]
    assert (denied["outcome"], denied["actor"], denied["code"]) == ("denied", ann_id, "HRT-0721")
    for method, url in (
        ("PUT", "/api/access/users/nina/roles"),
        ("PUT", "/api/access/users/nina/link"),
        ("POST", f"/api/access/users/{ann_id}/resume"),
        ("POST", "/api/access/care-teams"),
        ("POST", "/api/access/requests/req_x/approve"),
        ("POST", "/api/access/roles/nurse/reset"),
        ("DELETE", "/api/access/roles/nurse"),
    ):
        body = {"roles": ["nurse"], "practitioner": "x", "patient": "y"}
        answer = api.request(method, url, json=body, headers=bearer("ann"))
        assert (answer.status_code, _code(answer)) == (403, "HRT-0721"), (method, url)
    invalid = api.put(
        "/api/access/roles/scribe", json=scribe, headers={"Authorization": "Bearer x"}
    )
    assert invalid.status_code == 401

    # The console session: its CSRF token is required, and a recent second factor.
    forged = ann.client.put("/api/access/roles/scribe", json=scribe)
    assert (forged.status_code, _code(forged)) == (403, "HRT-0704")
    made = change(ann, "PUT", "/api/access/roles/scribe", scribe)
    assert made.json() == {"applied": True}, made.text  # the sign-in's second factor counts
    site.clock.advance(minutes=6)  # past [sessions] step_up_minutes
    stale = change(ann, "PUT", "/api/access/users/nina/roles", {"roles": ["scribe"]})
    assert (stale.status_code, _code(stale)) == (401, "HRT-0705")
    assert container.users.get("nina").roles == {"nurse"}
    assert audited(site, "access.user-roles")[-1]["code"] == "HRT-0705"
    ann.get("/step-up?next=/")
    site.clock.advance(seconds=30)
    assert ann.post("/step-up/totp", {"code": ann.code(), "next": "/"}).status_code == 303
    ann.get("/")  # the step-up rotated the session and its CSRF token
    assert change(ann, "PUT", "/api/access/users/nina/roles", {"roles": ["scribe"]}).json() == {
        "applied": True
    }
    assert container.users.get("nina").roles == {"scribe"}
    bad = change(ann, "PUT", "/api/access/roles/scribe", {"patients": 1})
    assert (bad.status_code, _code(bad)) == (400, "HRT-1101")

    # The two-person rule over the API: ann asks for herself, bob approves.
    bob.get("/step-up?next=/")
    bob.post("/step-up/totp", {"code": bob.code(), "next": "/"})
    bob.get("/")
    mine = change(ann, "PUT", "/api/access/users/ann/roles", {"roles": ["administrator", "scribe"]})
    assert mine.status_code == 202
    request_id = mine.json()["request_id"]
    own = change(ann, "POST", f"/api/access/requests/{request_id}/approve")
    assert own.status_code == 403
    pending = bob.client.get("/api/access/requests").json()["requests"]
    assert [r["request_id"] for r in pending] == [request_id]
    done = change(bob, "POST", f"/api/access/requests/{request_id}/approve")
    assert done.json()["status"] == "approved"
    assert container.users.get("ann").roles == {"administrator", "scribe"}
    assert change(bob, "POST", f"/api/access/requests/{request_id}/maybe").status_code == 404

    # Links, care teams, resets, removal and lifting a pause, all from bob's console.
    root = container.repository(admin())
    practitioner = root.create({"resourceType": "Practitioner"}).res_id
    patient = root.create({"resourceType": "Patient"}).res_id
    container.users.set_roles("nina", frozenset({"nurse"}), by="test")
    linked = change(bob, "PUT", "/api/access/users/nina/link", {"practitioner": practitioner})
    assert linked.json() == {"applied": True}
    team = change(
        bob, "POST", "/api/access/care-teams", {"practitioner": practitioner, "patient": patient}
    )
    assert team.json() == {"applied": True}
    assert container.repository(nina).read("Patient", patient).res_id == patient
    assert change(bob, "POST", "/api/access/roles/nurse/reset").json() == {"applied": True}
    container.users.set_roles("nina", frozenset(), by="test")
    assert change(bob, "DELETE", "/api/access/roles/scribe").status_code == 204
    resumed = change(bob, "POST", f"/api/access/users/{nina.subject}/resume")
    assert resumed.status_code == 403  # an administrator is not a privacy officer
    assert audited(site, "access.resume")[-1]["outcome"] == "denied"
    officer = _console(site, "olga", "privacy-officer")
    assert change(officer, "POST", f"/api/access/users/{nina.subject}/resume").status_code == 204
    lifted = audited(site, "access.resume")[-1]
    assert (lifted["outcome"], lifted["type"], lifted["id"]) == ("success", "User", nina.subject)

    # A locked session is no step-up either.
    site.clock.advance(minutes=20)
    locked = change(bob, "POST", "/api/access/roles/nurse/reset")
    assert (locked.status_code, _code(locked)) == (401, "HRT-0703")
