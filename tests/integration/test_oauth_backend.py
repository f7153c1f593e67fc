"""SMART backend services end to end through the ASGI app: ``client_credentials`` with
``private_key_jwt`` (RFC 7523; SMART-BS-01..09), discovery, introspection, revocation, JWKS
rotation, and every refusal."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from starlette.testclient import TestClient

from hearth.domain import HearthError, errors
from hearth.services.oauth import ClientSpec
from hearth.web.app import create_app
from tests.oauth_support import ASSERTION_TYPE, ClientKey, assertion, decode_unverified
from tests.support import FixedClock, Instance, admin, make_instance

ORIGIN = "http://127.0.0.1"
TOKEN_URL = f"{ORIGIN}/oauth/token"
FHIR = f"{ORIGIN}/fhir"


class Smart:
    """A Hearth instance with a fixed clock, its ASGI app, and helpers for the backend flow."""

    def __init__(self, instance: Instance, clock: FixedClock, http: TestClient) -> None:
        self.instance = instance
        self.c = instance.container
        self.clock = clock
        self.http = http

    @property
    def now(self) -> int:
        return int(self.clock.now().timestamp())

    def register(
        self, key: ClientKey | None = None, *, scope: str = "system/Patient.rs", **kw: Any
    ) -> str:
        spec = ClientSpec(
            name="Nightly job",
            kind="backend",
            auth_method=kw.pop("auth_method", "private_key_jwt"),
            scope=scope,
            jwks=key.jwks() if key is not None and "jwks_uri" not in kw else None,
            **kw,
        )
        client, _ = self.c.clients.register(spec, by="test")
        return client.client_id

    def token_request(
        self, key: ClientKey, client_id: str, *, scope: str = "system/Patient.rs", **kw: Any
    ) -> Any:
        form = {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(
                key,
                client_id=client_id,
                token_url=kw.pop("token_url", TOKEN_URL),
                now=self.now,
                **kw,
            ),
        }
        return self.http.post("/oauth/token", data=form)

    def token(self, key: ClientKey, client_id: str, **kw: Any) -> str:
        response = self.token_request(key, client_id, **kw)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def read(self, token: str, path: str) -> Any:
        return self.http.get(f"/fhir/{path}", headers={"Authorization": f"Bearer {token}"})

    def audit_actions(self) -> list[tuple[str, str, str | None]]:
        with self.c.store.read() as conn:
            return [(r.action, r.outcome, r.actor) for r in self.c.store.iter_audit(conn)]


@pytest.fixture
def smart(tmp_path: Path) -> Iterator[Smart]:
    clock = FixedClock()
    instance = make_instance(tmp_path / "home", None, clock=clock)
    try:
        with TestClient(create_app(instance.container), base_url=ORIGIN) as http:
            yield Smart(instance, clock, http)
    finally:
        instance.container.close()


@pytest.fixture
def patient_id(smart: Smart) -> str:
    return smart.c.records(admin()).create("Patient", {"resourceType": "Patient"}).res_id


def error_of(response: Any) -> str:
    return str(response.json()["error"])


# -- discovery --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"]
)
def test_smart_configuration(smart: Smart, path: str) -> None:
    response = smart.http.get(path, headers={"Accept": "text/html"})  # JSON whatever Accept says
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert body["token_endpoint"] == TOKEN_URL
    assert body["jwks_uri"] == f"{ORIGIN}/oauth/jwks"
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert set(body["token_endpoint_auth_signing_alg_values_supported"]) == {"ES384", "RS384"}
    assert "client_credentials" in body["grant_types_supported"]
    assert "client-confidential-asymmetric" in body["capabilities"]
    for key in ("token_endpoint", "jwks_uri", "introspection_endpoint", "revocation_endpoint"):
        assert body[key].startswith("http://127.0.0.1/")  # absolute (SMART-WK-01)


def test_metadata_names_the_oauth_endpoints(smart: Smart) -> None:
    statement = smart.http.get("/fhir/metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == TOKEN_URL


def test_jwks_publishes_public_keys_only(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    smart.token(key, smart.register(key))  # the first token creates the signing key
    jwks = smart.http.get("/oauth/jwks").json()
    assert len(jwks["keys"]) == 1
    (jwk,) = jwks["keys"]
    assert (jwk["kty"], jwk["alg"]) == ("EC", "ES256")
    assert "d" not in jwk


# -- the flow -----------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_backend_service_gets_a_token_and_reads_with_it(
    smart: Smart, patient_id: str, alg: str
) -> None:
    key = ClientKey.generate(alg)
    client_id = smart.register(key, scope="system/Patient.rs system/Observation.rs")
    response = smart.token_request(key, client_id, scope="system/Patient.rs")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300  # SMART-BS-08
    assert body["scope"] == "system/Patient.rs"
    assert "refresh_token" not in body
    header, claims = decode_unverified(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["aud"] == FHIR
    assert claims["exp"] - claims["iat"] == 300

    read = smart.read(body["access_token"], f"Patient/{patient_id}")
    assert read.status_code == 200
    assert read.json()["id"] == patient_id
    # Scopes limit the service: no Observation scope granted, no writes.
    assert smart.read(body["access_token"], "Observation/x").status_code == 403
    created = smart.http.post(
        "/fhir/Patient",
        json={"resourceType": "Patient"},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert created.status_code == 403
    actions = smart.audit_actions()
    assert ("oauth.token.issue", "success", client_id) in actions
    assert ("read", "success", client_id) in actions


def test_token_expires_after_five_minutes(smart: Smart, patient_id: str) -> None:
    key = ClientKey.generate("ES384")
    token = smart.token(key, smart.register(key))
    smart.clock.advance(seconds=299)
    assert smart.read(token, f"Patient/{patient_id}").status_code == 200
    smart.clock.advance(seconds=1)
    expired = smart.read(token, f"Patient/{patient_id}")
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]


# -- refusals -----------------------------------------------------------------------------------
def test_replayed_assertion_is_refused(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    assert smart.token_request(key, client_id, jti="same").status_code == 200
    replay = smart.token_request(key, client_id, jti="same")
    assert replay.status_code == 401
    assert error_of(replay) == "invalid_client"
    assert ("oauth.client.auth", "denied", client_id) in smart.audit_actions()


def test_wrong_key_is_refused(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    impostor = ClientKey.generate("ES384")
    impostor.kid = key.kid
    response = smart.token_request(impostor, client_id)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"


def test_wrong_audience_is_refused(smart: Smart) -> None:
    key = ClientKey.generate("RS384")
    client_id = smart.register(key)
    response = smart.token_request(key, client_id, token_url=f"{FHIR}")
    assert error_of(response) == "invalid_client"


def test_expired_assertion_is_refused(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    assert error_of(smart.token_request(key, client_id, lifetime=-1)) == "invalid_client"
    assert error_of(smart.token_request(key, client_id, lifetime=900)) == "invalid_client"


def test_unknown_and_revoked_clients_are_refused(smart: Smart, patient_id: str) -> None:
    key = ClientKey.generate("ES384")
    assert error_of(smart.token_request(key, "nosuchclient")) == "invalid_client"
    client_id = smart.register(key)
    token = smart.token(key, client_id)
    assert smart.read(token, f"Patient/{patient_id}").status_code == 200
    smart.c.clients.revoke(client_id, by="test")
    assert smart.read(token, f"Patient/{patient_id}").status_code == 401  # at once
    assert error_of(smart.token_request(key, client_id)) == "invalid_client"
    with pytest.raises(HearthError) as unknown:
        smart.c.clients.revoke("nosuchclient", by="test")
    assert unknown.value.code is errors.UNKNOWN_CLIENT


def test_scope_beyond_the_registration_fails_up_front(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key, scope="system/Patient.rs")
    for scope in ("system/Observation.rs", "system/Patient.cruds", "system/*.rs", "user/*.rs"):
        response = smart.token_request(key, client_id, scope=scope)
        assert response.status_code == 400, scope
        assert error_of(response) == "invalid_scope"
    assert error_of(smart.token_request(key, client_id, scope="banana")) == "invalid_scope"


def test_malformed_token_requests(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    good = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(key, client_id=client_id, token_url=TOKEN_URL, now=smart.now),
    }
    password = smart.http.post("/oauth/token", data={**good, "grant_type": "password"})
    assert error_of(password) == "unsupported_grant_type"
    as_json = smart.http.post("/oauth/token", json=good)
    assert error_of(as_json) == "invalid_request"
    repeated = smart.http.post(
        "/oauth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert error_of(repeated) == "invalid_request"
    wrong_type = smart.http.post("/oauth/token", data={**good, "client_assertion_type": "x"})
    assert error_of(wrong_type) == "invalid_request"
    both = smart.http.post(
        "/oauth/token",
        data=good,
        headers={"Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
    )
    assert error_of(both) == "invalid_request"  # one authentication method only


def test_token_for_another_audience_is_refused(smart: Smart, patient_id: str) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    # Issued through another host name: its audience is that base URL, not ours.
    with TestClient(create_app(smart.c), base_url="http://localhost") as other:
        form = {
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(
                key, client_id=client_id, token_url="http://localhost/oauth/token", now=smart.now
            ),
        }
        token = other.post("/oauth/token", data=form).json()["access_token"]
        assert (
            other.get(
                f"/fhir/Patient/{patient_id}", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )
    assert smart.read(token, f"Patient/{patient_id}").status_code == 401


def test_client_secret_basic(smart: Smart, patient_id: str) -> None:
    client, secret = smart.c.clients.register(
        ClientSpec(
            name="Secret job",
            kind="backend",
            auth_method="client_secret_basic",
            scope="system/*.rs",
        ),
        by="test",
    )
    assert secret is not None
    basic = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
    form = {"grant_type": "client_credentials", "scope": "system/Patient.r"}
    ok = smart.http.post("/oauth/token", data=form, headers={"Authorization": f"Basic {basic}"})
    assert ok.status_code == 200, ok.text
    assert smart.read(ok.json()["access_token"], f"Patient/{patient_id}").status_code == 200
    wrong = base64.b64encode(f"{client.client_id}:{secret[:-2]}xx".encode()).decode()
    refused = smart.http.post(
        "/oauth/token", data=form, headers={"Authorization": f"Basic {wrong}"}
    )
    assert refused.status_code == 401
    assert error_of(refused) == "invalid_client"
    posted = smart.http.post(
        "/oauth/token", data={**form, "client_id": client.client_id, "client_secret": secret}
    )
    assert posted.status_code == 200


def test_bootstrap_tokens_still_work(smart: Smart, patient_id: str) -> None:
    assert smart.read(smart.instance.admin_token, f"Patient/{patient_id}").status_code == 200


# -- introspection and revocation ---------------------------------------------------------------
def _client_auth(smart: Smart, key: ClientKey, client_id: str) -> dict[str, str]:
    return {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(key, client_id=client_id, token_url=TOKEN_URL, now=smart.now),
    }


def test_introspection(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    token = smart.token(key, client_id)
    own = smart.http.post(
        "/oauth/introspect", data={"token": token, **_client_auth(smart, key, client_id)}
    ).json()
    assert own["active"] is True
    assert own["client_id"] == client_id
    assert own["scope"] == "system/Patient.rs"
    assert own["exp"] == smart.now + 300
    by_admin = smart.http.post(
        "/oauth/introspect",
        data={"token": token},
        headers={"Authorization": f"Bearer {smart.instance.admin_token}"},
    ).json()
    assert by_admin["active"] is True
    other_key = ClientKey.generate("ES384")
    other = smart.register(other_key)
    theirs = smart.http.post(
        "/oauth/introspect", data={"token": token, **_client_auth(smart, other_key, other)}
    ).json()
    assert theirs == {"active": False}  # a client sees only its own tokens
    garbage = smart.http.post(
        "/oauth/introspect", data={"token": "nonsense", **_client_auth(smart, key, client_id)}
    ).json()
    assert garbage == {"active": False}
    anonymous = smart.http.post("/oauth/introspect", data={"token": token})
    assert anonymous.status_code == 401


def test_revocation_ends_the_token_at_once(smart: Smart, patient_id: str) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    token = smart.token(key, client_id)
    assert smart.read(token, f"Patient/{patient_id}").status_code == 200
    revoked = smart.http.post(
        "/oauth/revoke", data={"token": token, **_client_auth(smart, key, client_id)}
    )
    assert revoked.status_code == 200
    assert smart.read(token, f"Patient/{patient_id}").status_code == 401
    assert smart.http.post(
        "/oauth/introspect", data={"token": token, **_client_auth(smart, key, client_id)}
    ).json() == {"active": False}
    assert ("oauth.token.revoke", "success", client_id) in smart.audit_actions()
    # Unknown tokens are ignored (RFC 7009 sec. 2.2).
    again = smart.http.post(
        "/oauth/revoke", data={"token": "whatever", **_client_auth(smart, key, client_id)}
    )
    assert again.status_code == 200


def test_another_client_cannot_revoke_my_token(smart: Smart, patient_id: str) -> None:
    key = ClientKey.generate("ES384")
    mine = smart.register(key)
    token = smart.token(key, mine)
    other_key = ClientKey.generate("ES384")
    other = smart.register(other_key)
    smart.http.post("/oauth/revoke", data={"token": token, **_client_auth(smart, other_key, other)})
    assert smart.read(token, f"Patient/{patient_id}").status_code == 200


def test_no_token_or_secret_in_the_audit_trail(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    token = smart.token(key, client_id)
    with smart.c.store.read() as conn:
        bodies = b"".join(r.body for r in smart.c.store.iter_audit(conn))
    assert token.encode() not in bodies
    assert token.split(".")[2].encode() not in bodies


# -- signing key rotation -------------------------------------------------------------------
def test_manual_rotation_keeps_old_tokens_valid_until_they_expire(
    smart: Smart, patient_id: str
) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    old = smart.token(key, client_id)
    smart.c.rotate_keys(("token-sign",), operator="test")
    new = smart.token(key, client_id)
    old_kid, new_kid = decode_unverified(old)[0]["kid"], decode_unverified(new)[0]["kid"]
    assert old_kid != new_kid
    kids = {k["kid"] for k in smart.http.get("/oauth/jwks").json()["keys"]}
    assert kids == {old_kid, new_kid}
    assert smart.read(old, f"Patient/{patient_id}").status_code == 200
    assert smart.read(new, f"Patient/{patient_id}").status_code == 200
    smart.clock.advance(seconds=300)
    assert smart.read(old, f"Patient/{patient_id}").status_code == 401


def test_automatic_rotation_and_retirement(tmp_path: Path) -> None:
    clock = FixedClock()
    home = tmp_path / "home"
    instance = make_instance(home, None, clock=clock)
    instance.container.close()
    with (home / "hearth.toml").open("a") as config:
        config.write("\n[oauth]\nsigning_key_seconds = 86400\n")  # the least allowed
    from hearth.settings import load_settings
    from hearth.wiring import Container

    container = Container(load_settings(home), clock=clock)
    try:
        with TestClient(create_app(container), base_url=ORIGIN) as http:
            smart = Smart(instance, clock, http)
            smart.c = container
            patient = container.records(admin()).create("Patient", {"resourceType": "Patient"})
            key = ClientKey.generate("ES384")
            client_id = smart.register(key)
            smart.token(key, client_id)  # the first signing key is made
            clock.advance(days=1, seconds=-100)
            first = smart.token(key, client_id)  # signed shortly before the key is due
            clock.advance(seconds=150)  # the signing key is now older than a day
            second = smart.token(key, client_id)
            assert decode_unverified(first)[0]["kid"] != decode_unverified(second)[0]["kid"]
            assert smart.read(first, f"Patient/{patient.res_id}").status_code == 200
            assert len(http.get("/oauth/jwks").json()["keys"]) == 2
            # Long after every token the old key signed has expired, it is retired.
            clock.advance(seconds=3600 + 301)
            smart.token(key, client_id)
            # A retirement alone reaches a process's key ring within LiveKeys' 30 s (no token
            # can need the key by then); do not wait for it here.
            container.refresh_keys(force=True)
            kids = {k["kid"] for k in http.get("/oauth/jwks").json()["keys"]}
            assert decode_unverified(first)[0]["kid"] not in kids
            states = {k.state for k in container.key_admin().list_keys()}
            assert "retired" in states
    finally:
        container.close()


def test_retiring_a_token_key_too_early_is_refused(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    smart.token(key, smart.register(key))
    (old,) = smart.c.rotate_keys(("token-sign",), operator="test")
    rotated = [
        k.key_id
        for k in smart.c.key_admin().list_keys()
        if k.purpose == "token-sign" and k.state == "decrypt-only"
    ]
    assert rotated
    assert old not in rotated
    with pytest.raises(HearthError) as early:
        smart.c.key_admin().retire(rotated[0])
    assert "unexpired access tokens" in early.value.detail
    # The longest token lifetime (an hour) and five minutes' margin for clock skew.
    smart.clock.advance(seconds=3600 + 301)
    smart.c.key_admin().retire(rotated[0])


# -- JWKS by URL ----------------------------------------------------------------------------
class _JwksHandler(http.server.BaseHTTPRequestHandler):
    jwks: ClassVar[dict[str, Any]] = {}
    cache_control = "max-age=60"
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = json.dumps(self.jwks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", self.cache_control)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_jwks_by_url_with_cache_control_and_key_rotation(smart: Smart, patient_id: str) -> None:
    key = ClientKey.generate("RS384")
    handler = type("Handler", (_JwksHandler,), {"jwks": key.jwks(), "hits": 0})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        client_id = smart.register(key, jwks_uri=url)
        token = smart.token(key, client_id, header={"jku": url})
        assert smart.read(token, f"Patient/{patient_id}").status_code == 200
        smart.token(key, client_id)
        assert handler.hits == 1  # cached for its max-age
        # The service rotates its key: a kid miss fetches the set again.
        rotated = ClientKey.generate("ES384")
        handler.jwks = rotated.jwks()
        assert smart.token_request(rotated, client_id).status_code == 200
        assert handler.hits == 2
        evil = smart.token_request(rotated, client_id, header={"jku": "http://127.0.0.1:1/x"})
        assert error_of(evil) == "invalid_client"
    finally:
        server.shutdown()
        server.server_close()


def test_a_service_token_introspects_only_its_own_tokens(smart: Smart) -> None:
    key = ClientKey.generate("ES384")
    client_id = smart.register(key)
    mine = smart.token(key, client_id)
    other_key = ClientKey.generate("ES384")
    theirs = smart.token(other_key, smart.register(other_key))
    asked = {"Authorization": f"Bearer {mine}"}
    own = smart.http.post("/oauth/introspect", data={"token": mine}, headers=asked).json()
    assert own["active"] is True
    other = smart.http.post("/oauth/introspect", data={"token": theirs}, headers=asked).json()
    assert other == {"active": False}


def test_an_access_token_is_refused_by_the_access_api_for_what_it_is(smart: Smart) -> None:
    """An OAuth access token on ``/api/access/*`` is recognised (not a 401 for an unknown
    token) and refused by what it may not do: capabilities are never delegated, and changes
    need a console session (HRT-0721, audited)."""
    key = ClientKey.generate("ES384")
    token = smart.token(key, smart.register(key))
    bearer = {"Authorization": f"Bearer {token}"}
    listed = smart.http.get("/api/access/roles", headers=bearer)
    assert listed.status_code == 403
    changed = smart.http.put("/api/access/roles/scribe", json={"patients": "none"}, headers=bearer)
    assert changed.status_code == 403
    assert changed.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-0721"
    denied = {a[0] for a in smart.audit_actions() if a[1] == "denied"}
    assert denied == {"access.roles", "access.role-set"}
