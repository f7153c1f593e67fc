"""Every backup target, built against a real backend: a temp dir, an "offline" medium, a real
SeaweedFS S3 server and a real OpenSSH sftp server on loopback."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hearth.domain import Secret
from hearth.targets import (
    BackupTarget,
    LocalDirectoryTarget,
    OfflineMediaTarget,
    RetryPolicy,
    S3Target,
    SftpTarget,
)
from tests.servers.fixtures import fault_proxy, s3_bucket, s3_plain_bucket, seaweedfs, sshd
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.sshd import SshServer

__all__ = ["fault_proxy", "s3_bucket", "s3_plain_bucket", "seaweedfs", "sshd"]

KINDS = ["local", "offline", "s3", "sftp"]


class Sleeps:
    """Injected sleep: records the backoff instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def retry(sleeps: Sleeps) -> RetryPolicy:
    return RetryPolicy(attempts=4, base_delay=0.5, sleep=sleeps)


def s3_target(server: SeaweedFS, bucket: str, retry: RetryPolicy, **kw: object) -> S3Target:
    return S3Target(
        bucket=bucket,
        endpoint_url=kw.pop("endpoint_url", server.endpoint),  # type: ignore[arg-type]
        access_key=server.access_key,
        secret_key=Secret(server.secret_key),
        prefix="backups",
        label="s3-test",
        region="us-west",
        retry=retry,
        timeout=10,
        **kw,  # type: ignore[arg-type]
    )


def sftp_target(server: SshServer, retry: RetryPolicy, **kw: object) -> SftpTarget:
    root = server.sftp_root / secrets.token_hex(6)
    return SftpTarget(
        host="127.0.0.1",
        port=int(kw.pop("port", server.port)),  # type: ignore[call-overload]
        username=server.username,
        private_key=server.client_key(),
        host_key=str(kw.pop("host_key", server.host_key_line)),
        root=str(root),
        label="sftp-test",
        region="us-east",
        retry=retry,
        timeout=10,
    )


@pytest.fixture
def make_target(
    request: pytest.FixtureRequest, tmp_path: Path, retry: RetryPolicy
) -> Iterator[Callable[[str], BackupTarget]]:
    opened: list[SftpTarget] = []

    def make(kind: str) -> BackupTarget:
        if kind == "local":
            return LocalDirectoryTarget(tmp_path / "local", region="primary", retry=retry)
        if kind == "offline":
            mount = tmp_path / "media"
            mount.mkdir(exist_ok=True)
            media = OfflineMediaTarget(mount, media_id="disk-1", retry=retry)
            media.initialise()
            return media
        if kind == "s3":
            server = request.getfixturevalue("seaweedfs")
            return s3_target(server, request.getfixturevalue("s3_bucket"), retry)
        if kind == "sftp":
            target = sftp_target(request.getfixturevalue("sshd"), retry)
            opened.append(target)
            return target
        raise AssertionError(kind)

    yield make
    for target in opened:
        target.close()


@pytest.fixture(params=KINDS)
def target(
    request: pytest.FixtureRequest, make_target: Callable[[str], BackupTarget]
) -> BackupTarget:
    return make_target(request.param)
