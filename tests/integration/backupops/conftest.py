"""Backup operations (policy, copy, prune, scheduled verification) on real targets: temporary
directories, SeaweedFS (S3 with Object Lock) and OpenSSH's sftp server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.targets.conftest import make_target, retry, sleeps
from tests.servers.fixtures import s3_bucket, s3_plain_bucket, seaweedfs, sshd
from tests.support import FixedClock, Instance, make_instance

__all__ = [
    "make_target",
    "retry",
    "s3_bucket",
    "s3_plain_bucket",
    "seaweedfs",
    "sleeps",
    "sshd",
]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def inst(tmp_path: Path, clock: FixedClock) -> Iterator[Instance]:
    instance = make_instance(tmp_path / "home", None, clock=clock)
    try:
        yield instance
    finally:
        instance.container.close()
