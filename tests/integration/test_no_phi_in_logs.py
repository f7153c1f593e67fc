"""No PHI in any log: a planted patient name is searched for in everything the server printed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import orjson
import pytest
from starlette.testclient import TestClient

from tests.integration.conftest import free_port

MARKER = "Plantedmarkername"
FHIR = {"Content-Type": "application/fhir+json"}


def exercise(http: httpx.Client | TestClient) -> None:
    """Successes and failures of every kind, each carrying the marker somewhere in the request."""
    body = {"resourceType": "Patient", "name": [{"family": MARKER}]}
    created = http.post("/fhir/Patient", content=orjson.dumps(body), headers=FHIR).json()
    pid = created["id"]
    http.get(f"/fhir/Patient/{pid}")
    http.put(
        f"/fhir/Patient/{pid}",
        content=orjson.dumps({**body, "id": pid, "active": True}),
        headers=FHIR,
    )
    http.put(
        f"/fhir/Patient/{pid}",
        content=orjson.dumps({**body, "id": pid}),
        headers={**FHIR, "If-Match": 'W/"1"'},
    )  # 412
    http.post(
        "/fhir/Patient", content=orjson.dumps({**body, "bogus" + MARKER: MARKER}), headers=FHIR
    )  # invalid
    http.post(
        "/fhir/Patient",
        content=b'{"resourceType":"Patient","name":"' + MARKER.encode(),
        headers=FHIR,
    )  # malformed JSON
    http.post("/fhir/Observation", content=orjson.dumps(body), headers=FHIR)  # type mismatch
    http.get(f"/fhir/Patient?name={MARKER}")
    http.get(f"/fhir/Patient/{MARKER}")
    http.get(f"/fhir/Patient/{pid}/_history?_since={MARKER}")
    http.patch(
        f"/fhir/Patient/{pid}",
        content=orjson.dumps([{"op": "test", "path": "/name/0/family", "value": MARKER + "x"}]),
        headers={"Content-Type": "application/json-patch+json"},
    )
    http.get(f"/fhir/Patient/{pid}", headers={"Authorization": f"Bearer hrt_{MARKER}_x"})
    # A name planted in the path itself, where no route expects it.
    http.get(f"/fhir/{MARKER}-Smith")
    http.get(f"/fhir/Patient/{pid}/{MARKER}")
    http.get(f"/fhir/Patient/{pid}/_history/{MARKER}")
    http.get(f"/fhir/Patient/${MARKER}")
    http.get(f"/{MARKER}")
    http.get(f"/login/{MARKER}")
    http.delete(f"/fhir/Patient/{pid}")


def test_in_process_logs_hold_no_phi(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        exercise(client)
    # The test's own HTTP client logs the URLs it requests; that is the caller, not Hearth.
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("hearth") for r in server), "nothing logged: proves nothing"
    for record in server:
        assert MARKER not in record.getMessage(), record.name
        assert MARKER not in str(record.args), record.name


def test_server_output_holds_no_phi(tmp_path: Path) -> None:
    home = tmp_path / "home"
    hearth = [sys.executable, "-m", "hearth", "--home", str(home)]
    subprocess.run([*hearth, "init", "--quiet"], check=True, capture_output=True)
    port = free_port()
    log_file = tmp_path / "server.log"
    with log_file.open("w") as out:
        process = subprocess.Popen(
            [
                *hearth,
                "serve",
                "--port",
                str(port),
                "--issue-admin-credential",
                "--log-level",
                "debug",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 15
            token = None
            while token is None:
                assert time.monotonic() < deadline, log_file.read_text()
                for line in log_file.read_text().splitlines():
                    if "Administrator API token" in line:
                        token = line.rsplit(" ", 1)[1]
                time.sleep(0.1)
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
            ) as http:
                while True:
                    try:
                        http.get("/fhir/metadata")
                        break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline
                        time.sleep(0.1)
                exercise(http)
        finally:
            process.terminate()
            process.wait(timeout=20)
    output = log_file.read_text()
    assert "GET /fhir/Patient/:id 200" in output  # the access log ran, without the query string
    assert "GET /fhir/:x " in output  # and printed the planted path, masked
    assert "GET /login/:x " in output
    assert MARKER not in output


class ExplodingPolicy:
    """A policy with a bug whose exception message quotes a patient's name."""

    def bind(self, *args: object, **kwargs: object) -> object:
        raise KeyError(MARKER)


def test_an_unexpected_error_is_answered_and_logged_without_its_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from hearth.settings import load_settings
    from hearth.web.app import create_app
    from hearth.wiring import Container, init_instance

    home = tmp_path / "home"
    token = init_instance(home).admin_token
    container = Container(load_settings(home), policy=ExplodingPolicy())  # type: ignore[arg-type]
    try:
        with (
            caplog.at_level(logging.DEBUG),
            TestClient(
                create_app(container),
                base_url="http://127.0.0.1",
                headers={"Authorization": f"Bearer {token}"},
            ) as client,
        ):
            response = client.get("/fhir/Patient/some-id")
    finally:
        container.close()
    assert response.status_code == 500
    outcome = response.json()
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "HRT-0501"
    assert "incident" in outcome["issue"][0]["diagnostics"]
    assert MARKER not in response.text
    assert any(
        "incident" in r.getMessage() and "KeyError" in r.getMessage() for r in caplog.records
    )
    for record in caplog.records:
        assert MARKER not in record.getMessage()
        assert not record.exc_info, record.name  # no traceback with the message in any log
