"""pytest fixtures for the real servers. Servers that are slow to start (SeaweedFS, sshd) are
started once per test session (per xdist worker) and shared; SMTP and fault proxies are cheap
and per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.faults import FaultProxy
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.smtp import SmtpServer
from tests.servers.sshd import SshServer

__all__ = ["fault_proxy", "s3_bucket", "s3_plain_bucket", "seaweedfs", "smtp_server", "sshd"]


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS) -> str:
    """A fresh bucket with Object Lock enabled (and so versioning)."""
    return seaweedfs.make_bucket(f"hearth-{secrets.token_hex(6)}", object_lock=True)


@pytest.fixture
def s3_plain_bucket(seaweedfs: SeaweedFS) -> str:
    """A fresh bucket without Object Lock."""
    return seaweedfs.make_bucket(f"hearth-{secrets.token_hex(6)}", object_lock=False)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = SshServer(Path(tmp_path_factory.mktemp("sshd")))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_proxy() -> Iterator[type[FaultProxy]]:
    """A factory: ``fault_proxy(upstream_port)`` returns a started proxy, stopped afterwards."""
    made: list[FaultProxy] = []

    class _Factory(FaultProxy):
        def __init__(self, upstream_port: int) -> None:
            super().__init__(upstream_port)
            made.append(self)
            self.start()

    try:
        yield _Factory
    finally:
        for proxy in made:
            proxy.stop()
