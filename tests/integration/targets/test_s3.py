"""S3 specifics against real SeaweedFS: COMPLIANCE retention refuses deletes at the server,
multipart uploads stay write-once, and a cut connection mid-upload is retried."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hearth.domain import HearthError
from hearth.domain.errors import (
    TARGET_IMMUTABILITY_UNSUPPORTED,
    TARGET_OBJECT_EXISTS,
    TARGET_OBJECT_LOCKED,
    TARGET_UNAVAILABLE,
)
from hearth.targets import RetryPolicy
from tests.integration.targets.conftest import Sleeps, s3_target
from tests.servers.faults import FaultProxy
from tests.servers.seaweedfs import SeaweedFS


def test_compliance_retention_refuses_delete_at_the_server(
    seaweedfs: SeaweedFS, s3_bucket: str, retry: RetryPolicy
) -> None:
    target = s3_target(seaweedfs, s3_bucket, retry)
    assert target.supports_immutability
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    target.put_bytes("manifests/kept.json", b"{}", retain_until=until)
    assert target.immutable_until("manifests/kept.json") == until
    with pytest.raises(HearthError) as info:
        target.delete("manifests/kept.json")
    assert info.value.code is TARGET_OBJECT_LOCKED
    assert target.get_bytes("manifests/kept.json") == b"{}"
    # The refusal is the server's, not ours: a direct versioned delete is denied too.
    client = seaweedfs.client()
    head = client.head_object(Bucket=s3_bucket, Key="backups/manifests/kept.json")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(Exception, match="AccessDenied"):
        client.delete_object(
            Bucket=s3_bucket, Key="backups/manifests/kept.json", VersionId=head["VersionId"]
        )
    assert target.exists("manifests/kept.json")


def test_a_bucket_without_object_lock_says_so(
    seaweedfs: SeaweedFS, s3_plain_bucket: str, retry: RetryPolicy
) -> None:
    target = s3_target(seaweedfs, s3_plain_bucket, retry)
    assert not target.supports_immutability
    with pytest.raises(HearthError) as info:
        target.put_bytes("x", b"x", retain_until=datetime.now(UTC) + timedelta(days=1))
    assert info.value.code is TARGET_IMMUTABILITY_UNSUPPORTED
    target.put_bytes("x", b"x")
    target.delete("x")
    assert not target.exists("x")


def test_multipart_upload_is_whole_and_write_once(
    seaweedfs: SeaweedFS, s3_bucket: str, retry: RetryPolicy, tmp_path: Path
) -> None:
    target = s3_target(
        seaweedfs, s3_bucket, retry, multipart_threshold=6 * 1024 * 1024, part_size=5 * 1024 * 1024
    )
    data = os.urandom(12 * 1024 * 1024 + 3)
    source = tmp_path / "segment"
    source.write_bytes(data)
    result = target.put_file("segments/multi", source)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert target.get_bytes("segments/multi") == data
    assert target.put_file("segments/multi", source).existed
    other = tmp_path / "other"
    other.write_bytes(os.urandom(12 * 1024 * 1024))
    with pytest.raises(HearthError) as info:
        target.put_file("segments/multi", other)
    assert info.value.code is TARGET_OBJECT_EXISTS
    assert target.get_bytes("segments/multi") == data


def test_a_connection_cut_mid_upload_is_retried(
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    fault_proxy: type[FaultProxy],
    tmp_path: Path,
) -> None:
    sleeps = Sleeps()
    retries: list[tuple[int, float, str]] = []
    policy = RetryPolicy(
        attempts=4, base_delay=0.5, sleep=sleeps, on_retry=lambda a, d, r: retries.append((a, d, r))
    )
    proxy = fault_proxy(seaweedfs.s3_port)
    target = s3_target(seaweedfs, s3_bucket, policy, endpoint_url=f"http://127.0.0.1:{proxy.port}")
    data = os.urandom(2 * 1024 * 1024)
    source = tmp_path / "seg"
    source.write_bytes(data)
    proxy.cut_next(connections=2, after_bytes=256 * 1024)
    result = target.put_file("segments/retried", source)
    assert proxy.cuts == 2
    # Each failed attempt is reported (for the alarm) and waited out with backoff. botocore
    # may itself reopen a dropped keep-alive connection once inside one attempt, so two cuts
    # cost one or two of our retries.
    assert 1 <= len(retries) <= 2
    assert sleeps.calls == [0.5, 1.0][: len(retries)]
    assert all(r[2] == "ConnectionClosedError" for r in retries)
    assert not result.existed
    assert target.get_bytes("segments/retried") == data


def test_a_target_that_stays_down_is_reported_unavailable(
    seaweedfs: SeaweedFS, s3_bucket: str, fault_proxy: type[FaultProxy]
) -> None:
    sleeps = Sleeps()
    proxy = fault_proxy(seaweedfs.s3_port)
    target = s3_target(
        seaweedfs,
        s3_bucket,
        RetryPolicy(attempts=3, base_delay=1, sleep=sleeps),
        endpoint_url=f"http://127.0.0.1:{proxy.port}",
    )
    proxy.cut_next(connections=100, after_bytes=0)
    with pytest.raises(HearthError) as info:
        target.put_bytes("segments/never", b"x" * 1000)
    assert info.value.code is TARGET_UNAVAILABLE
    assert sleeps.calls == [1, 2]
