"""CORS for browser-based SMART apps (SMART-PK-06; ASVS 3.4.2): discovery open to any origin;
token, revocation, introspection and FHIR endpoints only to registered apps' origins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from hearth.services.oauth import ClientSpec
from hearth.web.app import create_app
from tests.support import Instance, make_instance

APP = "https://charts.example"
EVIL = "https://evil.example"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[TestClient, Instance]]:
    instance = make_instance(tmp_path / "home", None)
    try:
        instance.container.clients.register(
            ClientSpec(
                name="Charts",
                kind="app",
                auth_method="none",
                scope="patient/*.rs",
                redirect_uris=(f"{APP}/callback",),
            ),
            by="test",
        )
        with TestClient(create_app(instance.container), base_url="http://127.0.0.1") as client:
            yield client, instance
    finally:
        instance.container.close()


@pytest.mark.parametrize(
    "path", ["/.well-known/smart-configuration", "/fhir/metadata", "/oauth/jwks"]
)
def test_discovery_is_open_to_any_origin(http: tuple[TestClient, Instance], path: str) -> None:
    client, _ = http
    response = client.get(path, headers={"Origin": EVIL})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    if path == "/fhir/metadata":  # the CapabilityStatement tells the truth about CORS
        assert response.json()["rest"][0]["security"]["cors"] is True


@pytest.mark.parametrize("path", ["/oauth/token", "/fhir/Patient/x"])
def test_preflight_only_for_registered_origins(
    http: tuple[TestClient, Instance], path: str
) -> None:
    client, _ = http
    ok = client.options(
        path,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == APP
    assert "authorization" in ok.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in ok.headers
    refused = client.options(path, headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


def test_responses_carry_the_origin_only_when_registered(
    http: tuple[TestClient, Instance],
) -> None:
    client, instance = http
    auth = {"Authorization": f"Bearer {instance.admin_token}"}
    mine = client.get("/fhir/Patient/x", headers={"Origin": APP, **auth})
    assert mine.headers["access-control-allow-origin"] == APP
    assert mine.headers["vary"] == "Origin"
    theirs = client.get("/fhir/Patient/x", headers={"Origin": EVIL, **auth})
    assert "access-control-allow-origin" not in theirs.headers
    token = client.post("/oauth/token", data={"grant_type": "x"}, headers={"Origin": APP})
    assert token.headers["access-control-allow-origin"] == APP


def test_a_revoked_app_loses_its_origin(http: tuple[TestClient, Instance]) -> None:
    client, instance = http
    (app,) = instance.container.clients.all()
    instance.container.clients.revoke(app.client_id, by="test")
    response = client.options(
        "/oauth/token", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
    )
    assert response.status_code == 403
