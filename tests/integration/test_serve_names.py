"""The names a server answers to: a real TLS server on 127.0.0.1 reached under another name."""

from __future__ import annotations

import ipaddress
import os
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2 as httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hearth.cli import main
from hearth.cli.serve import allowed_host_names
from hearth.domain import HearthError
from tests.integration.conftest import free_port

HEARTH = [sys.executable, "-m", "hearth"]
NAME = "ehr.hearth.test"


def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for NAME and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.now(UTC)
    names = [x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["--home", str(home), "init", "--quiet"])
    assert result.exit_code == 0, result.output
    config = home / "hearth.toml"
    config.write_text(
        config.read_text().replace(
            "[server]\n", '[server]\npublic_base_url = "https://portal.hearth.test/fhir"\n'
        )
    )
    return home


def test_a_tls_server_answers_to_its_configured_names_only(home: Path, tmp_path: Path) -> None:
    cert, key = certificate(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            *HEARTH,
            "--home",
            str(home),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--allowed-host",
            NAME,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        # The connection goes to 127.0.0.1; the request names the server as a client that
        # resolved NAME would.
        with httpx.Client(verify=context, base_url=f"https://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 20

            def status(host: str) -> int:
                while True:
                    try:
                        return http.get("/fhir/metadata", headers={"Host": host}).status_code
                    except httpx.TransportError:
                        assert time.monotonic() < deadline, "the server did not start"
                        time.sleep(0.1)

            assert status(f"{NAME}:{port}") == 200
            assert status(NAME.upper()) == 200
            assert status(f"portal.hearth.test:{port}") == 200  # public_base_url's host
            assert status(f"127.0.0.1:{port}") == 200
            assert status(f"evil.example:{port}") == 400
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_a_wildcard_bind_without_names_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert CliRunner().invoke(main, ["--home", str(home), "init", "--quiet"]).exit_code == 0
    cert, key = certificate(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "--home",
            str(home),
            "serve",
            "--host",
            "0.0.0.0",  # noqa: S104 - refused before anything is bound
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ],
    )
    assert result.exit_code == 2
    assert "--allowed-host" in result.output
    assert "allowed_hosts" in result.output


def test_allowed_host_names() -> None:
    assert allowed_host_names("127.0.0.1", (), None) == ["127.0.0.1"]
    assert allowed_host_names("0.0.0.0", (" EHR.example.org ",), None) == ["ehr.example.org"]  # noqa: S104
    assert allowed_host_names("::", (), "https://[2001:db8::1]:8443/fhir") == ["[2001:db8::1]"]
    assert allowed_host_names("10.0.0.5", ("a.test",), "https://a.test/fhir") == [
        "a.test",
        "10.0.0.5",
    ]
    assert allowed_host_names("::1", (), None) == ["[::1]"]
    with pytest.raises(HearthError):
        allowed_host_names("0.0.0.0", (), None)  # noqa: S104
