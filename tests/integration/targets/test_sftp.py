"""SFTP specifics against real OpenSSH: the host key is pinned, and a dropped connection
mid-upload is retried over a new one."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
import pytest

from hearth.domain import HearthError
from hearth.domain.errors import TARGET_HOST_KEY_MISMATCH
from hearth.targets import RetryPolicy
from tests.integration.targets.conftest import Sleeps, sftp_target
from tests.servers.faults import FaultProxy
from tests.servers.sshd import SshServer, make_ed25519_key


def test_an_unexpected_host_key_is_refused_before_authenticating(
    sshd: SshServer, retry: RetryPolicy, tmp_path: Path
) -> None:
    impostor = make_ed25519_key(tmp_path / "other")
    target = sftp_target(sshd, retry, host_key=impostor)
    with pytest.raises(HearthError) as info:
        target.put_bytes("x", b"x")
    assert info.value.code is TARGET_HOST_KEY_MISMATCH
    # Not retried: a wrong key is an attack or a misconfiguration, not a glitch.
    assert retry.sleep.calls == []  # type: ignore[attr-defined]


def test_a_wrong_client_key_is_refused(sshd: SshServer, retry: RetryPolicy, tmp_path: Path) -> None:
    make_ed25519_key(tmp_path / "stranger")
    target = sftp_target(sshd, retry)
    target._pkey = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "stranger"))
    with pytest.raises(paramiko.AuthenticationException):
        target.list_names()


def test_a_connection_cut_mid_upload_is_retried(
    sshd: SshServer, fault_proxy: type[FaultProxy], tmp_path: Path
) -> None:
    sleeps = Sleeps()
    proxy = fault_proxy(sshd.port)
    target = sftp_target(
        sshd, RetryPolicy(attempts=4, base_delay=0.5, sleep=sleeps), port=proxy.port
    )
    data = os.urandom(3 * 1024 * 1024)
    source = tmp_path / "seg"
    source.write_bytes(data)
    proxy.cut_next(connections=1, after_bytes=1024 * 1024)
    try:
        result = target.put_file("segments/retried", source)
        assert proxy.cuts == 1
        assert sleeps.calls == [0.5]
        assert not result.existed
        assert target.get_bytes("segments/retried") == data
        assert target.list_names() == ["segments/retried"]
    finally:
        target.close()
