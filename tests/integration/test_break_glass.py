"""Break-the-glass end to end (issue 5 item 6; HIPAA 164.312(a)(2)(ii)): declared on the console
after step-up, invoked on the FHIR API by header, time-boxed, patient-scoped, audited as ETREAT,
alarmed at once, and reviewed by someone else."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from starlette.testclient import TestClient

from hearth.auth.oauth import AccessClaims
from hearth.cli import main
from hearth.domain import AlarmKind, HearthError, Principal, PrincipalKind, errors
from hearth.services.oauth import ClientSpec
from hearth.web.app import create_app
from tests.access_world import World, build_world
from tests.integration.auth.conftest import Browser, Instance, build
from tests.oauth_support import authorize_on_console, decode_unverified, exchange_code


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


# -- the token path: an access token that carries the grant (``hearth_break_glass``) ----------

FHIR = "https://localhost/fhir"
REDIRECT = "https://app.example/callback"


def _clinician(inst: Instance, username: str, role: str) -> tuple[Browser, Principal]:
    browser = inst.browser()
    browser.enrol_password(inst.add_user(username, frozenset({role})))
    browser.logout()
    user_id = inst.container.users.get(username).user_id
    return browser, Principal(subject=user_id, kind=PrincipalKind.USER, roles=frozenset({role}))


def _authorize(browser: Browser, app: str, scope: str, **extra: str) -> tuple[Any, str, str]:
    """Run the authorization request up to the app's redirect; the redirect, the PKCE verifier
    and the consent page."""
    return authorize_on_console(browser, app, scope, redirect=REDIRECT, aud=FHIR, **extra)


def _token(browser: Browser, app: str, scope: str, **extra: str) -> dict[str, Any]:
    answer, verifier, shown = _authorize(browser, app, scope, **extra)
    body = exchange_code(browser, app, answer, verifier, redirect=REDIRECT)
    return {**body, "consent_page": shown}


def _refused_code(response: Any) -> str:
    code: str = response.json()["issue"][0]["details"]["coding"][0]["code"]
    return code


def test_an_access_token_carries_the_grant(site: tuple[Instance, World]) -> None:
    """Break-the-glass by token claim (issue 5 item 6, "a header or a token claim"): asked for
    on the authorization request, checked at the token endpoint, capped at the grant's end,
    and checked by the gate on every request exactly as the header is."""
    inst, world = site
    c = inst.container
    stranger = world.ids["stranger"]
    obs = world.obs["stranger:V"]
    browser, doc = _clinician(inst, "drwho", "physician")
    c.access.link_user(
        c.system_principal("cli"), "drwho", practitioner=world.ids["doc"], patient=None
    )
    nurse_browser, nurse = _clinician(inst, "nightnurse", "nurse")
    client, _ = c.clients.register(
        ClientSpec(
            name="Emergency chart",
            kind="app",
            auth_method="none",
            scope="launch/patient patient/*.rs user/*.rs openid offline_access",
            redirect_uris=(REDIRECT,),
        ),
        by="test",
    )
    app = client.client_id
    grant = c.break_glass.declare(
        doc, stranger, reason="Unconscious, brought in by EMS.", minutes=5
    )
    http = browser.client

    def get(token: str, path: str, **headers: str) -> Any:
        return http.get(f"/fhir/{path}", headers={"Authorization": f"Bearer {token}", **headers})

    # The consent page names the emergency; the grant's patient becomes the launch patient.
    browser.sign_in("drwho")
    scope = "launch/patient patient/*.rs offline_access"
    issued = _token(browser, app, scope, hearth_break_glass=grant.grant_id)
    page = unescape(issued["consent_page"])
    assert f"Use your emergency access to Patient/{stranger} until" in page
    assert 'name="patient"' not in page  # no picker: the emergency names the patient
    assert issued["hearth_break_glass"] == grant.grant_id
    assert issued["patient"] == stranger
    assert issued["expires_in"] <= 5 * 60  # never outlives the grant
    _, claims = decode_unverified(issued["access_token"])
    assert claims["hearth_break_glass"] == grant.grant_id
    assert claims["exp"] <= int(grant.expires.timestamp())
    token = issued["access_token"]

    # The token reaches the emergency patient, labels included, audited as ETREAT.
    assert get(token, f"Observation/{obs}").status_code == 200
    assert get(token, f"Patient/{stranger}").status_code == 200
    entries = [e for e in audit_bodies(inst, doc.subject) if e.get("type") == "Observation"]
    assert entries
    assert {e["purpose"] for e in entries} == {"ETREAT"}
    used = [e for e in audit_bodies(inst, doc.subject) if e["action"] == "break-glass.token"]
    assert [(e["outcome"], e["purpose"]) for e in used] == [("success", "ETREAT")]
    # The same grant in the header as well is the same request; another one is refused.
    assert get(token, f"Patient/{stranger}", **{"X-Hearth-Break-Glass": grant.grant_id}).is_success
    other = get(token, f"Patient/{stranger}", **{"X-Hearth-Break-Glass": "btg_" + "a" * 24})
    assert other.status_code == 403
    assert _refused_code(other) == "HRT-1105"

    # A refresh without naming the grant gives an ordinary token: the patient is closed again.
    plain = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": issued["refresh_token"],
            "client_id": app,
        },
    )
    assert plain.status_code == 200, plain.text
    assert "hearth_break_glass" not in plain.json()
    assert get(plain.json()["access_token"], f"Observation/{obs}").status_code == 404
    # Naming it again on the refresh puts it back.
    again = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": plain.json()["refresh_token"],
            "client_id": app,
            "hearth_break_glass": grant.grant_id,
        },
    )
    assert again.status_code == 200, again.text
    assert get(again.json()["access_token"], f"Observation/{obs}").status_code == 200
    refresh = again.json()["refresh_token"]

    # Ended early by the user: the same token is refused at once (the gate reads the grant).
    c.break_glass.end(doc, grant.grant_id)
    ended = get(token, f"Observation/{obs}")
    assert ended.status_code == 403
    assert _refused_code(ended) == "HRT-1105"
    # ... and no new token can carry it; the refresh token is not spent by the refusal.
    refused = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": app,
            "hearth_break_glass": grant.grant_id,
        },
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    still = http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": app},
    )
    assert still.status_code == 200, still.text

    # Another user cannot claim someone else's grant: not on the authorization request ...
    second = c.break_glass.declare(doc, stranger, reason="Second arrest, same patient today.")
    nurse_browser.sign_in("nightnurse")
    answer, _, _ = _authorize(
        nurse_browser, app, "user/*.rs offline_access", hearth_break_glass=second.grant_id
    )
    assert answer.status_code == 303
    assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == ["invalid_request"]
    denied = [e for e in audit_bodies(inst, nurse.subject) if e["action"] == "break-glass.token"]
    assert [(e["outcome"], e["code"]) for e in denied] == [("denied", "HRT-1105")]
    # ... nor on a refresh of their own token ...
    own = _token(nurse_browser, app, "user/*.rs offline_access")
    theft = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": own["refresh_token"],
            "client_id": app,
            "hearth_break_glass": second.grant_id,
        },
    )
    assert theft.status_code == 400
    assert theft.json()["error"] == "invalid_grant"
    denied = [e for e in audit_bodies(inst, nurse.subject) if e["action"] == "break-glass.token"]
    assert [(e["outcome"], e["code"]) for e in denied] == [("denied", "HRT-1105")] * 2
    # ... and a token that names it anyway (signed with the server's own key) is refused by the
    # gate, as is one naming a grant that does not exist: fail closed, never normal access.
    _, nurse_claims = decode_unverified(own["access_token"])
    keys = c.token_keys()
    for forged_grant in (second.grant_id, "btg_" + "b" * 24):
        forged = keys.sign_access_token(
            replace(AccessClaims.from_claims(nurse_claims), break_glass=forged_grant)
        )
        refused_read = get(forged, f"Patient/{stranger}")
        assert refused_read.status_code == 403, refused_read.text
        assert _refused_code(refused_read) == "HRT-1105"
    assert get(own["access_token"], f"Patient/{stranger}").status_code == 404
    # An unknown grant on the authorization request fails closed too.
    unknown, _, _ = _authorize(browser, app, scope, hearth_break_glass="btg_" + "c" * 24)
    assert parse_qs(urlsplit(unknown.headers["location"]).query)["error"] == ["invalid_request"]


def test_declared_through_the_api_then_carried_by_a_token(site: tuple[Instance, World]) -> None:
    """The console's script declares through ``POST /api/access/break-glass`` (the session with
    a recent step-up, never a bearer token); the user's app then asks for a token carrying the
    grant on its next refresh."""
    inst, world = site
    c = inst.container
    stranger = world.ids["stranger"]
    obs = world.obs["stranger:V"]
    browser, doc = _clinician(inst, "drwho", "physician")
    client, _ = c.clients.register(
        ClientSpec(
            name="Ward list",
            kind="app",
            auth_method="none",
            scope="user/*.rs offline_access",
            redirect_uris=(REDIRECT,),
        ),
        by="test",
    )
    browser.sign_in("drwho")
    issued = _token(browser, client.client_id, "user/*.rs offline_access")
    http = browser.client
    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    assert http.get(f"/fhir/Observation/{obs}", headers=bearer).status_code == 404

    body = {"patient": stranger, "reason": "Collapsed in the waiting room.", "purpose": "ETREAT"}
    # A token is never proof of presence: an OAuth access token and an API token are both
    # refused (HRT-0721, audited).
    by_oauth = http.post("/api/access/break-glass", json=body, headers=bearer)
    assert by_oauth.status_code == 403
    assert by_oauth.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-0721"
    api_token = c.users.issue_api_token("drwho", ttl=timedelta(hours=1), by="test")
    by_token = http.post(
        "/api/access/break-glass", json=body, headers={"Authorization": f"Bearer {api_token}"}
    )
    assert by_token.status_code == 403
    assert _refused_code(by_token) == "HRT-0721"
    refusals = [e for e in audit_bodies(inst, doc.subject) if e["action"] == "break-glass.declare"]
    assert [(e["outcome"], e["code"]) for e in refusals] == [("denied", "HRT-0721")] * 2
    short = http.post(
        "/api/access/break-glass",
        json={**body, "reason": "now"},
        headers={"X-CSRF-Token": browser.csrf()},
    )
    assert short.status_code == 400
    assert _refused_code(short) == "HRT-1106"
    declared = http.post(
        "/api/access/break-glass", json=body, headers={"X-CSRF-Token": browser.csrf()}
    )
    assert declared.status_code == 201, declared.text
    grant = declared.json()
    assert grant["user_id"] == doc.subject
    assert grant["patient"] == f"Patient/{stranger}"
    assert grant["active"] is True
    assert any(a.kind is AlarmKind.ACCESS_BREAK_GLASS for a in inst.alarms.raised)

    carried = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": issued["refresh_token"],
            "client_id": client.client_id,
            "hearth_break_glass": grant["grant_id"],
        },
    )
    assert carried.status_code == 200, carried.text
    emergency = {"Authorization": f"Bearer {carried.json()['access_token']}"}
    assert http.get(f"/fhir/Observation/{obs}", headers=emergency).status_code == 200
