"""fhirclient's SMART flow against a real Hearth server on 127.0.0.1 over TLS: a standalone
launch and an EHR launch, each from discovery to reading the launch patient, with a person
signing in (password + TOTP) and approving in between."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from fhirclient import client as smart_client
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

from hearth.domain import Principal
from hearth.services.oauth import ClientSpec
from hearth.web.app import create_app
from hearth.wiring import ADMIN_ROLE
from tests.integration.auth.conftest import Browser, Instance, build
from tests.integration.auth.test_oauth_authorize import _HIDDEN
from tests.integration.conftest import free_port
from tests.oauth_support import Pki

REDIRECT = "https://growth.example/callback"
LAUNCH_URI = "https://growth.example/launch"


@dataclass
class Live:
    instance: Instance
    origin: str
    server_ca: Path
    app: str
    patient: str
    other_patient: str
    observation: str
    opened: list[Any]

    @property
    def fhir(self) -> str:
        return f"{self.origin}/fhir"

    def browser(self) -> Browser:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        http = httpx.Client(base_url=self.origin, verify=context, timeout=10)
        self.opened.append(http)
        return Browser(http, self.instance.clock)  # type: ignore[arg-type]

    def fhirclient(self, **settings: Any) -> smart_client.FHIRClient:
        smart = smart_client.FHIRClient(
            settings={
                "app_id": self.app,
                "api_base": self.fhir,
                "redirect_uri": REDIRECT,
                **settings,
            }
        )
        # requests prefers REQUESTS_CA_BUNDLE from the environment over session.verify.
        smart.server.session.trust_env = False
        smart.server.session.verify = str(self.server_ca)
        self.opened.append(smart.server.session)
        return smart


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    instance = build(tmp_path)
    pki = Pki(tmp_path / "pki", "Server CA")
    cert, key, _ = pki.issue("localhost", server=True)
    port = free_port()
    config = uvicorn.Config(
        create_app(instance.container),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    opened: list[Any] = []
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        client, _ = instance.container.clients.register(
            ClientSpec(
                name="Growth Charts",
                kind="app",
                auth_method="none",
                scope="launch launch/patient patient/*.rs openid offline_access",
                redirect_uris=(REDIRECT,),
                launch_uri=LAUNCH_URI,
            ),
            by="test",
        )
        records = instance.container.records(Principal("setup", roles=frozenset({ADMIN_ROLE})))
        patient = records.create(
            "Patient", {"resourceType": "Patient", "name": [{"family": "Launched"}]}
        ).res_id
        other = records.create("Patient", {"resourceType": "Patient"}).res_id
        observation = records.create(
            "Observation",
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "height"},
                "subject": {"reference": f"Patient/{patient}"},
            },
        ).res_id
        yield Live(
            instance,
            f"https://127.0.0.1:{port}",
            pki.ca_file,
            client.client_id,
            patient,
            other,
            observation,
            opened,
        )
    finally:
        for closeable in opened:
            closeable.close()
        server.should_exit = True
        thread.join(timeout=10)
        instance.container.close()


def _approve(browser: Browser, authorize_url: str, *, patient: str | None) -> str:
    """What the person does in the browser: sign in if asked, allow, and land on the app's
    redirect URI (which the test then hands to fhirclient)."""
    relative = authorize_url.split("://", 1)[1].split("/", 1)[1]
    response = browser.get("/" + relative)
    assert response.status_code == 200, response.text[:300]
    assert "Allow access?" in browser.page
    hidden = {k: unescape(v) for k, v in _HIDDEN.findall(browser.page) if k != "csrf"}
    data = {**hidden, "decision": "approve"}
    if patient is not None:
        data["patient"] = patient
    decision = browser.post("/oauth/authorize/decision", data)
    assert decision.status_code == 303, decision.text[:300]
    location: str = decision.headers["location"]
    assert location.startswith(REDIRECT)
    return location


def _signed_in_browser(live: Live) -> Browser:
    browser = live.browser()
    browser.enrol_password(live.instance.add_user("nurse"))
    browser.logout()
    browser.sign_in("nurse")
    return browser


def test_fhirclient_standalone_launch(live: Live) -> None:
    browser = _signed_in_browser(live)
    smart = live.fhirclient(scope="patient/*.rs openid offline_access", launch_token=None)
    smart.wants_patient = True  # adds launch/patient to the scope
    url = smart.authorize_url
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["aud"] == [live.fhir]
    assert "launch/patient" in query["scope"][0]

    smart.handle_callback(_approve(browser, url, patient=live.patient))
    assert smart.ready
    assert smart.patient_id == live.patient
    patient = Patient.read(live.patient, smart.server)
    assert patient.name[0].family == "Launched"
    observation = Observation.read(live.observation, smart.server)
    assert observation.subject.reference == f"Patient/{live.patient}"
    with pytest.raises(Exception, match="404"):
        Patient.read(live.other_patient, smart.server)
    # Refresh (offline_access): fhirclient's reauthorize uses the rotated refresh token.
    assert smart.reauthorize()
    assert Patient.read(live.patient, smart.server).id == live.patient


def test_fhirclient_ehr_launch(live: Live) -> None:
    browser = _signed_in_browser(live)
    # The clinician opens the app from Hearth for their patient.
    browser.get(f"/oauth/launch?client_id={live.app}&patient={live.patient}")
    started = browser.post("/oauth/launch", {"client_id": live.app, "patient": live.patient})
    assert started.status_code == 303
    launch_url = started.headers["location"]
    assert launch_url.startswith(LAUNCH_URI)
    launch = parse_qs(urlsplit(launch_url).query)
    assert launch["iss"] == [live.fhir]

    # The app, at its launch URL, reads iss and launch and starts the authorization.
    smart = live.fhirclient(scope="patient/*.rs", launch_token=launch["launch"][0])
    url = smart.authorize_url
    assert parse_qs(urlsplit(url).query)["launch"] == launch["launch"]
    smart.handle_callback(_approve(browser, url, patient=None))
    assert smart.patient_id == live.patient
    assert smart.patient is not None
    assert smart.patient.id == live.patient
    with pytest.raises(Exception, match="404"):
        Patient.read(live.other_patient, smart.server)
