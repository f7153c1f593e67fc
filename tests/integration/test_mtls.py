"""Mutual TLS against a real server on loopback (RFC 8705; ASVS 12.1.3): client certificates
mapped to clients and users, certificate-bound tokens, and refusal of expired, revoked,
unmapped and foreign certificates."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hearth.services.oauth import ClientSpec
from hearth.settings import load_settings
from hearth.web.app import create_app
from hearth.web.tls import TlsScopeProtocol
from hearth.wiring import Container
from tests.integration.conftest import free_port
from tests.oauth_support import ASSERTION_TYPE, ClientKey, Pki, assertion, decode_unverified
from tests.support import FixedClock, admin, make_instance


@dataclass
class MtlsServer:
    origin: str
    container: Container
    clock: FixedClock
    pki: Pki
    server_ca: Path
    admin_token: str
    crl: Path

    def http(self, cert: tuple[Path, Path] | None = None) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        return httpx.Client(verify=context, base_url=self.origin, timeout=10)

    def map(self, cert: Path, kind: str, subject: str) -> str:
        return self.container.certificates.add(
            cert.read_bytes(), subject_kind=kind, subject=subject, label="test", by="test"
        ).thumbprint

    @property
    def token_url(self) -> str:
        return f"{self.origin}/oauth/token"


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[MtlsServer]:
    clock = FixedClock(datetime.now(UTC))
    home = tmp_path / "home"
    instance = make_instance(home, None, clock=clock)
    instance.container.close()
    server_pki = Pki(tmp_path / "server-pki", "Server CA")
    server_cert, server_key, _ = server_pki.issue("localhost", server=True)
    clients = Pki(tmp_path / "client-pki", "Client CA")
    crl = clients.crl([])
    settings = replace(load_settings(home), tls_client_ca=clients.ca_file, tls_client_crl=crl)
    container = Container(settings, clock=clock)
    port = free_port()
    config = uvicorn.Config(
        create_app(container),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(server_cert),
        ssl_keyfile=str(server_key),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_ca_certs=str(clients.ca_file),
        http=TlsScopeProtocol,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield MtlsServer(
            f"https://127.0.0.1:{port}",
            container,
            clock,
            clients,
            server_pki.ca_file,
            instance.admin_token,
            crl,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        container.close()


def _backend(mtls: MtlsServer, **kw: Any) -> str:
    client, _ = mtls.container.clients.register(
        ClientSpec(name="svc", kind="backend", scope="system/Patient.rs", **kw), by="test"
    )
    return client.client_id


def _patient(mtls: MtlsServer) -> str:
    return mtls.container.records(admin()).create("Patient", {"resourceType": "Patient"}).res_id


def test_tls_client_auth_binds_the_token_to_the_certificate(mtls: MtlsServer) -> None:
    patient = _patient(mtls)
    cert, key, _ = mtls.pki.issue("service")
    client_id = _backend(mtls, auth_method="tls_client_auth")
    thumbprint = mtls.map(cert, "client", client_id)
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        "client_id": client_id,
    }
    with mtls.http((cert, key)) as http:
        response = http.post("/oauth/token", data=form)
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert decode_unverified(token)[1]["cnf"] == {"x5t#S256": thumbprint}
        read = http.get(f"/fhir/Patient/{patient}", headers={"Authorization": f"Bearer {token}"})
        assert read.status_code == 200
    # The same token without the certificate: refused (RFC 8705 sec. 3).
    with mtls.http() as bare:
        refused = bare.get(f"/fhir/Patient/{patient}", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401
        assert "invalid_token" in refused.headers["www-authenticate"]
        # ...and without any certificate the client cannot authenticate at all.
        assert bare.post("/oauth/token", data=form).json()["error"] == "invalid_client"
    # ...or with another valid, mapped certificate.
    other, other_key, _ = mtls.pki.issue("someone else")
    mtls.map(other, "user", "bob")
    with mtls.http((other, other_key)) as http:
        wrong = http.get(f"/fhir/Patient/{patient}", headers={"Authorization": f"Bearer {token}"})
        assert wrong.status_code == 401
        assert http.post("/oauth/token", data=form).json()["error"] == "invalid_client"


def test_private_key_jwt_over_mtls_is_bound_too(mtls: MtlsServer) -> None:
    patient = _patient(mtls)
    cert, key, _ = mtls.pki.issue("jwt service")
    signing = ClientKey.generate("ES384")
    client_id = _backend(mtls, auth_method="private_key_jwt", jwks=signing.jwks())
    mtls.map(cert, "client", client_id)
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(signing, client_id=client_id, token_url=mtls.token_url),
    }
    with mtls.http((cert, key)) as http:
        token = http.post("/oauth/token", data=form).json()["access_token"]
        assert "cnf" in decode_unverified(token)[1]
        assert (
            http.get(
                f"/fhir/Patient/{patient}", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 200
        )
    with mtls.http() as bare:
        assert (
            bare.get(
                f"/fhir/Patient/{patient}", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 401
        )


def test_no_certificate_is_fine_with_a_bearer_token(mtls: MtlsServer) -> None:
    patient = _patient(mtls)
    with mtls.http() as http:
        response = http.get(
            f"/fhir/Patient/{patient}", headers={"Authorization": f"Bearer {mtls.admin_token}"}
        )
        assert response.status_code == 200


def _refused_with(mtls: MtlsServer, cert: tuple[Path, Path]) -> httpx.Response:
    with mtls.http(cert) as http:
        response = http.get(
            "/fhir/Patient/x", headers={"Authorization": f"Bearer {mtls.admin_token}"}
        )
    assert response.status_code == 401, response.text
    assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-0429"
    return response


def test_unmapped_certificate_is_refused(mtls: MtlsServer) -> None:
    cert, key, _ = mtls.pki.issue("nobody")
    _refused_with(mtls, (cert, key))


def test_certificate_revoked_by_the_crl_is_refused(mtls: MtlsServer) -> None:
    cert, key, issued = mtls.pki.issue("lost card")
    mtls.map(cert, "user", "carol")
    with mtls.http((cert, key)) as http:
        assert (
            http.get(
                "/fhir/metadata", headers={"Authorization": f"Bearer {mtls.admin_token}"}
            ).status_code
            == 200
        )
    mtls.pki.crl([issued], mtls.crl)  # the CA revokes it; Hearth re-reads the CRL file
    os.utime(mtls.crl, (time.time() + 5, time.time() + 5))
    _refused_with(mtls, (cert, key))


def test_certificate_mapping_revoked_is_refused(mtls: MtlsServer) -> None:
    cert, key, _ = mtls.pki.issue("former staff")
    thumbprint = mtls.map(cert, "user", "dave")
    mtls.container.certificates.revoke(thumbprint, by="test")
    _refused_with(mtls, (cert, key))


def test_expired_certificate_is_refused(mtls: MtlsServer) -> None:
    # Expired by the calendar: the TLS handshake itself refuses it.
    now = datetime.now(UTC)
    cert, key, _ = mtls.pki.issue(
        "old card", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    mtls.map(cert, "user", "erin")
    with pytest.raises(httpx.TransportError), mtls.http((cert, key)) as http:
        http.get("/fhir/metadata")
    # Expired by Hearth's clock, though TLS still accepts it: the application refuses it.
    soon, soon_key, _ = mtls.pki.issue("expiring card", not_after=now + timedelta(hours=2))
    mtls.map(soon, "user", "frank")
    mtls.clock.advance(hours=3)
    _refused_with(mtls, (soon, soon_key))


def test_certificate_from_another_ca_is_refused_in_the_handshake(
    mtls: MtlsServer, tmp_path: Path
) -> None:
    stranger = Pki(tmp_path / "stranger", "Stranger CA")
    cert, key, _ = stranger.issue("intruder")
    with pytest.raises(httpx.TransportError), mtls.http((cert, key)) as http:
        http.get("/fhir/metadata")


def test_hearth_serve_with_tls_client_ca(tmp_path: Path) -> None:
    """The command line wires mutual TLS: an unmapped certificate is refused end to end."""
    home = tmp_path / "home"
    instance = make_instance(home, None)
    instance.container.close()
    server_pki = Pki(tmp_path / "server-pki", "Server CA")
    server_cert, server_key, _ = server_pki.issue("localhost", server=True)
    clients = Pki(tmp_path / "client-pki", "Client CA")
    mapped, mapped_key, _ = clients.issue("mapped")
    unmapped, unmapped_key, _ = clients.issue("unmapped")
    hearth = [sys.executable, "-m", "hearth", "--home", str(home)]
    subprocess.run(
        [*hearth, "user", "add", "alice", "--role", "nurse"], check=True, capture_output=True
    )
    added = subprocess.run(
        [*hearth, "cert", "add", str(mapped), "--user", "alice"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stderr
    port = free_port()
    process = subprocess.Popen(
        [
            *hearth,
            "serve",
            "--port",
            str(port),
            "--tls-cert",
            str(server_cert),
            "--tls-key",
            str(server_key),
            "--tls-client-ca",
            str(clients.ca_file),
            "--tls-client-crl",
            str(clients.crl([])),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        headers = {"Authorization": f"Bearer {instance.admin_token}"}

        def get(cert: Path, key: Path, extra: dict[str, str] | None = None) -> httpx.Response:
            context = ssl.create_default_context(cafile=str(server_pki.ca_file))
            context.load_cert_chain(str(cert), str(key))
            deadline = time.monotonic() + 20
            while True:
                try:
                    with httpx.Client(verify=context, timeout=5) as http:
                        return http.get(
                            f"https://127.0.0.1:{port}/fhir/Patient/x",
                            headers={**headers, **(extra or {})},
                        )
                except httpx.ConnectError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)

        assert get(mapped, mapped_key).status_code == 404  # authenticated; no such patient
        assert get(unmapped, unmapped_key).status_code == 401
        # The mutual-TLS protocol has the request-head limits too (hearth.web.protocol).
        many = {f"x-{i}": "1" for i in range(150)}
        assert get(mapped, mapped_key, many).status_code == 431
    finally:
        process.terminate()
        process.communicate(timeout=20)
