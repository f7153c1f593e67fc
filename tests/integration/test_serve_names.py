"""The names a server answers to: a real TLS server on 127.0.0.1 reached under another name."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from click.testing import CliRunner

from hearth.cli import main
from hearth.cli.serve import allowed_host_names
from hearth.domain import HearthError
from tests.integration.conftest import free_port
from tests.support import self_signed

HEARTH = [sys.executable, "-m", "hearth"]
NAME = "ehr.hearth.test"


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
    cert, key = self_signed(tmp_path, (NAME, "127.0.0.1"), ca=True)
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
            assert status(f"{NAME.upper()}:{port}") == 200
            assert status(f"portal.hearth.test:{port}") == 200  # public_base_url's host
            assert status(f"127.0.0.1:{port}") == 200
            assert status(f"evil.example:{port}") == 400
            # The port counts too: only the one the server listens on, or public_base_url's
            # (443 here, as a load balancer forwarding 443 to this port would send).
            other = port + 1 if port < 65535 else port - 1
            for forged in (f"127.0.0.1:{other}", f"{NAME}:1", NAME, "127.0.0.1"):
                assert status(forged) == 400, forged
            assert status("portal.hearth.test") == 200
            assert status("portal.hearth.test:443") == 200
            assert status(f"portal.hearth.test:{other}") == 400
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_a_wildcard_bind_without_names_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert CliRunner().invoke(main, ["--home", str(home), "init", "--quiet"]).exit_code == 0
    cert, key = self_signed(tmp_path, (NAME, "127.0.0.1"), ca=True)
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


@pytest.mark.parametrize("port", ["99999", "0", "http", "-1"])
def test_a_bad_public_base_url_port_stops_serve_before_it_prints_anything(
    tmp_path: Path, port: str
) -> None:
    """It was found only when the app was built: serve had printed its URL and issued an
    administrator token, then failed."""
    home = tmp_path / "home"
    assert CliRunner().invoke(main, ["--home", str(home), "init", "--quiet"]).exit_code == 0
    config = home / "hearth.toml"
    url = f"https://ehr.example.org:{port}/fhir"
    config.write_text(
        config.read_text().replace("[server]\n", f'[server]\npublic_base_url = "{url}"\n')
    )
    result = CliRunner().invoke(
        main,
        ["--home", str(home), "serve", "--port", str(free_port()), "--issue-admin-credential"],
    )
    assert result.exit_code != 0
    assert "public_base_url has a bad port" in result.output
    assert "serving" not in result.output
    assert "token" not in result.output.lower()
