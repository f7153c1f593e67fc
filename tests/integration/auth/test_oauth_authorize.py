"""The authorization code flow with PKCE on the console's sign-in session: standalone and EHR
launch, consent, code and refresh-token rules, and every refusal (SMART App Launch 2.2;
RFC 6749 sec. 4.1, 6, 10; RFC 7636; RFC 9207; RFC 9700 sec. 4.14)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest

from hearth.domain import Principal
from hearth.services.oauth import ClientSpec
from hearth.wiring import ADMIN_ROLE
from tests.integration.auth.conftest import Browser, Instance, build
from tests.oauth_support import decode_unverified, pkce_pair

FHIR = "https://localhost/fhir"
REDIRECT = "https://app.example/callback"
LAUNCH_URI = "https://app.example/launch"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@dataclass
class Site:
    instance: Instance
    browser: Browser
    app: str  # a public SMART app
    patient: str
    other_patient: str
    observation: str
    other_observation: str

    @property
    def c(self) -> Any:
        return self.instance.container

    def authorize_url(self, **changes: str | None) -> tuple[str, str, str]:
        """An authorization URL; returns it, its PKCE verifier and its state."""
        verifier, challenge = pkce_pair()
        state = "st-" + verifier[:24]
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.app,
            "redirect_uri": REDIRECT,
            "scope": "launch/patient patient/*.rs openid offline_access",
            "state": state,
            "aud": FHIR,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            **changes,
        }
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"/oauth/authorize?{query}", verifier, state

    def consent(self, url: str) -> Any:
        response = self.browser.get(url)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        assert "Allow access?" in response.text
        return response

    def decide(self, *, approve: bool = True, patient: str | None = None) -> Any:
        hidden = {k: unescape(v) for k, v in _HIDDEN.findall(self.browser.page) if k != "csrf"}
        data = {**hidden, "decision": "approve" if approve else "deny"}
        if patient is not None:
            data["patient"] = patient
        return self.browser.post("/oauth/authorize/decision", data)

    def code_for(self, url: str, *, patient: str | None = None) -> tuple[str, dict[str, list[str]]]:
        self.consent(url)
        response = self.decide(patient=patient)
        assert response.status_code == 303, response.text[:500]
        location = response.headers["location"]
        assert location.startswith(REDIRECT + "?")
        answer = parse_qs(urlsplit(location).query)
        return answer["code"][0], answer

    def exchange(self, code: str, verifier: str | None, **extra: str) -> Any:
        form = {"grant_type": "authorization_code", "code": code, "client_id": self.app}
        if verifier is not None:
            form["code_verifier"] = verifier
        form.update({"redirect_uri": REDIRECT, **extra})
        return self.browser.client.post("/oauth/token", data=form)

    def tokens(self, **changes: str | None) -> dict[str, Any]:
        url, verifier, _ = self.authorize_url(**changes)
        code, _ = self.code_for(url, patient=self.patient)
        response = self.exchange(code, verifier)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def read(self, token: str, path: str) -> Any:
        return self.browser.client.get(
            f"/fhir/{path}", headers={"Authorization": f"Bearer {token}"}
        )

    def refresh(self, refresh_token: str) -> Any:
        return self.browser.client.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.app,
            },
        )

    def audit(self) -> list[tuple[str, str]]:
        with self.c.store.read() as conn:
            return [(r.action, r.outcome) for r in self.c.store.iter_audit(conn)]


def _register_app(instance: Instance, scope: str, **kw: Any) -> str:
    client, _ = instance.container.clients.register(
        ClientSpec(
            name="Growth Charts",
            kind="app",
            auth_method="none",
            scope=scope,
            redirect_uris=(REDIRECT,),
            launch_uri=LAUNCH_URI,
            **kw,
        ),
        by="test",
    )
    return client.client_id


def _obs(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "height"},
        "subject": {"reference": f"Patient/{patient}"},
    }


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    instance = build(tmp_path)
    try:
        browser = instance.browser()
        browser.enrol_password(instance.add_user("carol"))
        browser.logout()
        app = _register_app(
            instance,
            "launch launch/patient patient/*.rs user/Observation.rs openid offline_access "
            "online_access",
        )
        admin = Principal(subject="setup", roles=frozenset({ADMIN_ROLE}))
        records = instance.container.records(admin)
        patient = records.create("Patient", {"resourceType": "Patient"}).res_id
        other = records.create("Patient", {"resourceType": "Patient"}).res_id
        obs = records.create("Observation", _obs(patient)).res_id
        other_obs = records.create("Observation", _obs(other)).res_id
        yield Site(instance, browser, app, patient, other, obs, other_obs)
    finally:
        instance.container.close()


@pytest.fixture
def signed_in(site: Site) -> Site:
    site.browser.sign_in("carol")
    return site


# -- discovery ---------------------------------------------------------------------------------
def test_discovery_lists_the_interactive_flows(site: Site) -> None:
    body = site.browser.client.get("/.well-known/smart-configuration").json()
    assert body["authorization_endpoint"] == "https://localhost/oauth/authorize"
    assert {"launch-ehr", "launch-standalone", "authorize-post", "client-public"} <= set(
        body["capabilities"]
    )
    assert "authorization_code" in body["grant_types_supported"]


# -- standalone launch -------------------------------------------------------------------------
def test_standalone_launch_end_to_end(signed_in: Site) -> None:
    site = signed_in
    url, verifier, state = site.authorize_url()
    page = site.consent(url).text
    assert "Growth Charts" in page
    assert "including kinds Hearth adds in future" in page  # the wildcard, spelled out
    assert 'name="patient"' in page  # launch/patient: the user picks one
    code, answer = site.code_for(url, patient=site.patient)
    assert answer["state"] == [state]
    assert answer["iss"] == [FHIR]  # RFC 9207
    response = site.exchange(code, verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["patient"] == site.patient
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600  # SMART-TK-02
    assert set(body["scope"].split()) == {
        "launch/patient",
        "patient/*.rs",
        "openid",
        "offline_access",
    }
    assert body["refresh_token"].startswith("hrr_")
    header, claims = decode_unverified(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["patient"] == site.patient
    id_header, id_claims = decode_unverified(body["id_token"])
    assert id_header["typ"] == "JWT"
    assert id_claims["aud"] == site.app
    assert id_claims["iss"] == FHIR

    token = body["access_token"]
    assert site.read(token, f"Patient/{site.patient}").status_code == 200
    assert site.read(token, f"Observation/{site.observation}").status_code == 200
    # Only the launch patient: the other patient's records do not exist for this token.
    assert site.read(token, f"Patient/{site.other_patient}").status_code == 404
    assert site.read(token, f"Observation/{site.other_observation}").status_code == 404
    # .rs grants no writes.
    created = site.browser.client.post(
        "/fhir/Observation", json=_obs(site.patient), headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 403
    actions = site.audit()
    assert ("oauth.code.issue", "success") in actions
    assert ("oauth.token.issue", "success") in actions


def test_sign_in_first_then_back_to_the_request(site: Site) -> None:
    url, _, _ = site.authorize_url()
    response = site.browser.get(url)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    next_url = unquote(response.headers["location"].split("next=", 1)[1])
    back = site.browser.sign_in("carol", next_url=next_url)
    assert back.status_code == 303
    assert "Allow access?" in site.browser.page


def test_authorize_by_post(signed_in: Site) -> None:
    url, _, _ = signed_in.authorize_url()
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    response = signed_in.browser.client.post("/oauth/authorize", data=params)
    assert response.status_code == 200
    assert "Allow access?" in response.text


def test_scopes_are_narrowed_to_the_registration(signed_in: Site) -> None:
    body = signed_in.tokens(scope="launch/patient user/*.cruds patient/*.rs")
    assert set(body["scope"].split()) == {"launch/patient", "user/Observation.rs", "patient/*.rs"}


def test_patient_the_user_cannot_open_is_refused(signed_in: Site) -> None:
    url, _, _ = signed_in.authorize_url()
    signed_in.consent(url)
    response = signed_in.decide(patient="no-such-patient")
    assert response.status_code == 200
    assert "No patient with that id that you may open" in response.text


def test_deny(signed_in: Site) -> None:
    url, _, state = signed_in.authorize_url()
    signed_in.consent(url)
    response = signed_in.decide(approve=False)
    answer = parse_qs(urlsplit(response.headers["location"]).query)
    assert answer["error"] == ["access_denied"]
    assert answer["state"] == [state]
    assert ("oauth.authorize", "denied") in signed_in.audit()


# -- EHR launch --------------------------------------------------------------------------------
def _launch(site: Site, patient: str) -> str:
    page = site.browser.get(f"/oauth/launch?client_id={site.app}&patient={patient}")
    assert page.status_code == 200
    response = site.browser.post("/oauth/launch", {"client_id": site.app, "patient": patient})
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(LAUNCH_URI + "?")
    answer = parse_qs(urlsplit(location).query)
    assert answer["iss"] == [FHIR]
    return answer["launch"][0]


def test_ehr_launch_end_to_end(signed_in: Site) -> None:
    site = signed_in
    launch = _launch(site, site.patient)
    url, verifier, _ = site.authorize_url(launch=launch, scope="launch patient/*.rs")
    page = site.consent(url).text
    assert 'name="patient"' not in page  # the EHR gave the context
    assert site.patient in page
    code, _ = site.code_for(url)
    body = site.exchange(code, verifier).json()
    assert body["patient"] == site.patient
    assert body["need_patient_banner"] is True
    assert site.read(body["access_token"], f"Observation/{site.observation}").status_code == 200
    assert site.read(body["access_token"], f"Patient/{site.other_patient}").status_code == 404
    # The launch is single use.
    again, _, _ = site.authorize_url(launch=launch, scope="launch patient/*.rs")
    response = site.browser.get(again)
    assert response.status_code == 303
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["invalid_request"]


def test_launch_is_bound_to_the_user_and_expires(signed_in: Site) -> None:
    site = signed_in
    launch = _launch(site, site.patient)
    carol = site.browser
    carol.logout()
    dave = site.instance.browser()
    dave.enrol_password(site.instance.add_user("dave"))
    site.browser = dave
    url, _, _ = site.authorize_url(launch=launch, scope="launch patient/*.rs")
    response = dave.get(url)
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["invalid_request"]
    dave.logout()
    site.browser = carol
    carol.sign_in("carol")
    fresh = _launch(site, site.patient)
    site.instance.clock.advance(seconds=301)
    url, _, _ = site.authorize_url(launch=fresh, scope="launch patient/*.rs")
    assert "error=invalid_request" in site.browser.get(url).headers["location"]


def test_launch_for_a_patient_the_user_cannot_open(signed_in: Site) -> None:
    site = signed_in
    site.browser.get(f"/oauth/launch?client_id={site.app}&patient=nobody")
    response = site.browser.post("/oauth/launch", {"client_id": site.app, "patient": "nobody"})
    assert response.status_code == 400


# -- refusals at the authorization endpoint ------------------------------------------------------
def test_unregistered_redirect_uri_is_never_redirected_to(signed_in: Site) -> None:
    url, _, _ = signed_in.authorize_url(redirect_uri="https://evil.example/callback")
    response = signed_in.browser.get(url)
    assert response.status_code == 400
    assert "location" not in response.headers
    url, _, _ = signed_in.authorize_url(client_id="nosuchclient")
    assert signed_in.browser.get(url).status_code == 400


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"aud": "https://other.example/fhir"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"state": None}, "invalid_request"),
        ({"scope": "system/*.rs"}, "invalid_scope"),
        ({"scope": "launch patient/*.rs"}, "invalid_request"),  # launch scope, no launch value
    ],
)
def test_bad_requests_are_answered_to_the_app(
    signed_in: Site, changes: dict[str, str | None], error: str
) -> None:
    url, _, _ = signed_in.authorize_url(**changes)
    response = signed_in.browser.get(url)
    assert response.status_code == 303
    answer = parse_qs(urlsplit(response.headers["location"]).query)
    assert answer["error"] == [error]


def test_decision_needs_the_csrf_token(signed_in: Site) -> None:
    url, _, _ = signed_in.authorize_url()
    signed_in.consent(url)
    hidden = dict(_HIDDEN.findall(signed_in.browser.page))
    hidden.pop("csrf")
    response = signed_in.browser.post(
        "/oauth/authorize/decision", {**hidden, "decision": "approve"}, csrf="forged"
    )
    assert response.status_code == 403


# -- the token endpoint: codes -------------------------------------------------------------------
@pytest.mark.parametrize(
    "failure", ["wrong verifier", "no verifier", "other redirect_uri", "other client"]
)
def test_a_failed_redemption_uses_the_code_up(signed_in: Site, failure: str) -> None:
    """One attempt per code: after a wrong or missing PKCE verifier, a wrong redirect_uri or
    another client, the right request gets invalid_grant too, so a stolen code cannot be
    tried against guessed verifiers (it used to be redeemable after any number of failures).
    No grant came of the code, so nothing is revoked and no reuse alarm is raised."""
    site = signed_in
    url, verifier, _ = site.authorize_url()
    code, _ = site.code_for(url, patient=site.patient)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": site.app,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    match failure:
        case "wrong verifier":
            form["code_verifier"] = verifier[:-1] + ("A" if verifier[-1] != "A" else "B")
        case "no verifier":
            del form["code_verifier"]
        case "other redirect_uri":
            form["redirect_uri"] = "https://app.example/other"
        case _:
            form["client_id"] = _register_app(site.instance, "patient/*.rs")
    failed = site.browser.client.post("/oauth/token", data=form)
    assert (failed.status_code, failed.json()["error"]) == (400, "invalid_grant")
    again = site.exchange(code, verifier)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert "auth.token_reuse" not in site.instance.alarms.kinds()
    assert ("oauth.token.issue", "success") not in site.audit()
    assert site.audit().count(("oauth.token.issue", "denied")) == 2


def test_code_reuse_revokes_the_grant(signed_in: Site) -> None:
    site = signed_in
    url, verifier, _ = site.authorize_url()
    code, _ = site.code_for(url, patient=site.patient)
    first = site.exchange(code, verifier).json()
    assert site.read(first["access_token"], f"Patient/{site.patient}").status_code == 200
    replay = site.exchange(code, verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert site.read(first["access_token"], f"Patient/{site.patient}").status_code == 401
    assert site.refresh(first["refresh_token"]).json()["error"] == "invalid_grant"
    assert "auth.token_reuse" in site.instance.alarms.kinds()


def test_expired_code(signed_in: Site) -> None:
    url, verifier, _ = signed_in.authorize_url()
    code, _ = signed_in.code_for(url, patient=signed_in.patient)
    signed_in.instance.clock.advance(seconds=301)
    assert signed_in.exchange(code, verifier).json()["error"] == "invalid_grant"


def test_code_for_another_client_or_redirect(signed_in: Site) -> None:
    url, verifier, _ = signed_in.authorize_url()
    code, _ = signed_in.code_for(url, patient=signed_in.patient)
    assert (
        signed_in.exchange(code, verifier, redirect_uri="https://app.example/other").json()["error"]
        == "invalid_grant"
    )
    other = _register_app(signed_in.instance, "patient/*.rs")
    response = signed_in.browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": other,
            "code_verifier": verifier,
            "redirect_uri": REDIRECT,
        },
    )
    assert response.json()["error"] == "invalid_grant"
    assert signed_in.exchange("hrc_forged_secret", verifier).json()["error"] == "invalid_grant"


# -- refresh tokens --------------------------------------------------------------------------
def test_refresh_rotates_and_reuse_revokes_the_family(signed_in: Site) -> None:
    site = signed_in
    first = site.tokens()
    second = site.refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    second_body = second.json()
    assert second_body["refresh_token"] != first["refresh_token"]
    assert second_body["patient"] == site.patient
    assert site.read(second_body["access_token"], f"Patient/{site.patient}").status_code == 200
    # The first refresh token again: a replay. The whole family dies.
    replay = site.refresh(first["refresh_token"])
    assert replay.json()["error"] == "invalid_grant"
    assert site.read(second_body["access_token"], f"Patient/{site.patient}").status_code == 401
    assert site.read(first["access_token"], f"Patient/{site.patient}").status_code == 401
    assert site.refresh(second_body["refresh_token"]).json()["error"] == "invalid_grant"
    assert "auth.token_reuse" in site.instance.alarms.kinds()
    assert ("oauth.token.refresh", "success") in site.audit()
    assert ("oauth.token.revoke", "success") in site.audit()


@pytest.mark.parametrize(
    "extra",
    [
        {"scope": "user/*.cruds"},  # wider than the grant
        {"scope": "patient/*.rs no-such-scope"},  # malformed
        {"hearth_break_glass": "no-such-grant"},  # a break-the-glass grant not the user's
    ],
)
def test_a_replay_revokes_the_family_whatever_else_it_asks_for(
    signed_in: Site, extra: dict[str, str]
) -> None:
    """A used refresh token is a replay before anything else: asking for a wider scope or a
    break-the-glass grant must not turn it into a refused request that leaves the family
    alive and raises no alarm (the checks that refuse before rotating skip used tokens)."""
    site = signed_in
    first = site.tokens()
    second = site.refresh(first["refresh_token"]).json()
    replay = site.browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": site.app,
            **extra,
        },
    )
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    assert site.read(second["access_token"], f"Patient/{site.patient}").status_code == 401
    assert site.refresh(second["refresh_token"]).json()["error"] == "invalid_grant"
    assert "auth.token_reuse" in site.instance.alarms.kinds()
    assert ("oauth.token.revoke", "success") in site.audit()


def test_refresh_may_narrow_but_not_widen(signed_in: Site) -> None:
    first = signed_in.tokens()
    narrowed = signed_in.browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": signed_in.app,
            "scope": "patient/Patient.r",
        },
    ).json()
    assert narrowed["scope"] == "patient/Patient.r"
    assert (
        signed_in.read(narrowed["access_token"], f"Observation/{signed_in.observation}").status_code
        == 403
    )
    widened = signed_in.browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": narrowed["refresh_token"],
            "client_id": signed_in.app,
            "scope": "user/*.cruds",
        },
    )
    assert widened.json()["error"] == "invalid_scope"


def test_a_refused_refresh_leaves_the_refresh_token_usable(signed_in: Site) -> None:
    """A refresh asking for a wider or malformed scope is refused (invalid_scope) before the
    refresh token rotates: the app's retry with the same token succeeds, and the grant is not
    revoked as a replay (no auth.token_reuse alarm)."""
    site = signed_in
    first = site.tokens()
    for scope in ("patient/*.cruds", "user/*.rs", "patient/*.rs no-such-scope"):
        refused = site.browser.client.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first["refresh_token"],
                "client_id": site.app,
                "scope": scope,
            },
        )
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope"), scope
    retried = site.refresh(first["refresh_token"])
    assert retried.status_code == 200, retried.text
    assert site.read(retried.json()["access_token"], f"Patient/{site.patient}").status_code == 200
    assert site.read(first["access_token"], f"Patient/{site.patient}").status_code == 200
    assert "auth.token_reuse" not in site.instance.alarms.kinds()
    assert site.audit().count(("oauth.token.refresh", "denied")) == 3


def test_refresh_token_belongs_to_its_client(signed_in: Site) -> None:
    first = signed_in.tokens()
    other = _register_app(signed_in.instance, "patient/*.rs offline_access")
    response = signed_in.browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": other,
        },
    )
    assert response.json()["error"] == "invalid_grant"


def test_no_refresh_token_without_offline_or_online_access(signed_in: Site) -> None:
    body = signed_in.tokens(scope="launch/patient patient/*.rs")
    assert "refresh_token" not in body


def test_refresh_family_has_an_absolute_end(signed_in: Site) -> None:
    body = signed_in.tokens(scope="launch/patient patient/*.rs online_access")
    signed_in.instance.clock.advance(hours=12, seconds=1)
    assert signed_in.refresh(body["refresh_token"]).json()["error"] == "invalid_grant"


# -- the user behind the token -------------------------------------------------------------------
def test_disabling_the_user_ends_their_tokens(signed_in: Site) -> None:
    body = signed_in.tokens()
    assert signed_in.read(body["access_token"], f"Patient/{signed_in.patient}").status_code == 200
    signed_in.c.users.disable("carol", by="test")
    assert signed_in.read(body["access_token"], f"Patient/{signed_in.patient}").status_code == 401
    assert signed_in.refresh(body["refresh_token"]).json()["error"] == "invalid_grant"


def test_tokens_act_with_the_users_current_roles(signed_in: Site) -> None:
    body = signed_in.tokens()
    signed_in.c.users.set_roles("carol", frozenset(), by="test")
    signed_in.instance.clock.advance(seconds=6)  # past the grant cache
    assert signed_in.read(body["access_token"], f"Patient/{signed_in.patient}").status_code == 403


def test_revocation_by_the_app(signed_in: Site) -> None:
    body = signed_in.tokens()
    revoked = signed_in.browser.client.post(
        "/oauth/revoke", data={"token": body["refresh_token"], "client_id": signed_in.app}
    )
    assert revoked.status_code == 200
    assert signed_in.read(body["access_token"], f"Patient/{signed_in.patient}").status_code == 401
    assert signed_in.refresh(body["refresh_token"]).json()["error"] == "invalid_grant"


def test_no_code_or_token_in_the_audit_trail(signed_in: Site) -> None:
    body = signed_in.tokens()
    with signed_in.c.store.read() as conn:
        chain = b"".join(r.body for r in signed_in.c.store.iter_audit(conn))
    for secret in (body["refresh_token"], body["access_token"], body["id_token"]):
        assert secret.encode() not in chain
