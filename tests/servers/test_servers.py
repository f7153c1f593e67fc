"""The server fixtures themselves: real servers answer, and missing ones fail under CI."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.servers.common import require
from tests.servers.fixtures import seaweedfs, smtp_server, sshd
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.smtp import SmtpServer
from tests.servers.sshd import SshServer

__all__ = ["seaweedfs", "smtp_server", "sshd"]


def test_smtp_server_collects_real_messages(smtp_server: SmtpServer) -> None:
    message = EmailMessage()
    message["From"] = "hearth@example.test"
    message["To"] = "oncall@example.test"
    message["Subject"] = "integrity.mismatch"
    message.set_content("A record failed its MAC check.")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.send_message(message)
    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == ("oncall@example.test",)
    assert received.message["Subject"] == "integrity.mismatch"
    assert "MAC check" in received.message.get_content()


def test_missing_server_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_TEST_REQUIRE_SERVERS", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y thing"):
        require(False, "thing", "apt-get install -y thing")
    monkeypatch.setenv("HEARTH_TEST_REQUIRE_SERVERS", "0")
    with pytest.raises(pytest.skip.Exception):
        require(False, "thing", "apt-get install -y thing")
    require(True, "thing", "-")


def _listeners() -> dict[int, set[str]]:
    """Listening TCP sockets from /proc/net/tcp{,6}: port -> local addresses (hex)."""
    found: dict[int, set[str]] = {}
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            address, port = fields[1].split(":")
            found.setdefault(int(port, 16), set()).add(address)
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1


def test_servers_listen_on_loopback_only(seaweedfs: SeaweedFS, sshd: SshServer) -> None:
    """Inspected locally from /proc: no packet leaves loopback to find out."""
    listeners = _listeners()
    ports = [*seaweedfs.ports, *(p + 10000 for p in seaweedfs.ports), sshd.port]
    for port in ports:
        if port in listeners:
            assert listeners[port] <= LOOPBACK, port
    assert seaweedfs.s3_port in listeners
    assert sshd.port in listeners


def test_startup_times_are_reported(
    seaweedfs: SeaweedFS, sshd: SshServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert seaweedfs.endpoint.startswith("http://127.0.0.1:")
    with capsys.disabled():
        print(
            f"\n[servers] SeaweedFS ready in {seaweedfs.startup_seconds:.1f} s, "
            f"sshd in {sshd.startup_seconds:.2f} s"
        )
