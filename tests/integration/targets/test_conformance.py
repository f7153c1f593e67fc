"""The one conformance suite every backup target passes (restic's backend tests, in spirit)."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hearth.domain import HearthError
from hearth.domain.errors import (
    TARGET_BAD_NAME,
    TARGET_IMMUTABILITY_UNSUPPORTED,
    TARGET_OBJECT_EXISTS,
    TARGET_OBJECT_NOT_FOUND,
)
from hearth.targets import BackupTarget


def _code(exc: pytest.ExceptionInfo[HearthError]) -> object:
    return exc.value.code


def test_it_is_a_backup_target(target: BackupTarget) -> None:
    assert isinstance(target, BackupTarget)
    assert target.region
    assert target.label


def test_put_get_round_trip(target: BackupTarget) -> None:
    result = target.put_bytes("manifests/a.json", b"hello")
    assert (result.sha256, result.size, result.existed) == (
        hashlib.sha256(b"hello").hexdigest(),
        5,
        False,
    )
    assert target.get_bytes("manifests/a.json") == b"hello"
    assert target.exists("manifests/a.json")
    assert target.stat("manifests/a.json").size == 5


def test_empty_objects(target: BackupTarget) -> None:
    target.put_bytes("empty", b"")
    assert target.get_bytes("empty") == b""
    assert target.stat("empty").size == 0


def test_write_once(target: BackupTarget) -> None:
    target.put_bytes("segments/x", b"one")
    again = target.put_bytes("segments/x", b"one")
    assert again.existed
    with pytest.raises(HearthError) as info:
        target.put_bytes("segments/x", b"two")
    assert _code(info) is TARGET_OBJECT_EXISTS
    assert target.get_bytes("segments/x") == b"one"


def test_missing_objects(target: BackupTarget) -> None:
    assert not target.exists("nothing")
    for call in (
        lambda: target.get_bytes("nothing"),
        lambda: target.stat("nothing"),
        lambda: target.delete("nothing"),
        lambda: target.immutable_until("nothing"),
    ):
        with pytest.raises(HearthError) as info:
            call()
        assert _code(info) is TARGET_OBJECT_NOT_FOUND
    with pytest.raises(HearthError) as info, target.open_read("nothing"):
        pass
    assert _code(info) is TARGET_OBJECT_NOT_FOUND


def test_list_is_sorted_and_filtered(target: BackupTarget) -> None:
    for name in ("segments/bb", "manifests/2.json", "segments/aa", "manifests/1.json"):
        target.put_bytes(name, name.encode())
    assert target.list_names("segments/") == ["segments/aa", "segments/bb"]
    assert target.list_names() == [
        "manifests/1.json",
        "manifests/2.json",
        "segments/aa",
        "segments/bb",
    ]
    assert target.list_names("nope/") == []


def test_delete(target: BackupTarget) -> None:
    target.put_bytes("segments/gone", b"x")
    target.delete("segments/gone")
    assert not target.exists("segments/gone")
    assert "segments/gone" not in target.list_names()


def test_streaming_file_round_trip(target: BackupTarget, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(data)
    result = target.put_file("segments/big", source)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    out = tmp_path / "out.bin"
    info = target.get_file("segments/big", out)
    assert info.size == len(data)
    assert out.read_bytes() == data
    digest = hashlib.sha256()
    with target.open_read("segments/big") as stream:
        while chunk := stream.read(65536):
            digest.update(chunk)
    assert digest.hexdigest() == result.sha256


def test_a_failed_put_leaves_nothing_visible(target: BackupTarget, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        target.put_file("segments/never", tmp_path / "does-not-exist")
    assert not target.exists("segments/never")
    assert target.list_names() == []


@pytest.mark.parametrize("name", ["../escape", "/abs", "sp ace", "a/../b", ".hidden"])
def test_bad_names_are_refused_before_io(target: BackupTarget, name: str) -> None:
    with pytest.raises(HearthError) as info:
        target.put_bytes(name, b"x")
    assert _code(info) is TARGET_BAD_NAME


def test_retention_where_supported(target: BackupTarget) -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    if not target.supports_immutability:
        with pytest.raises(HearthError) as info:
            target.put_bytes("locked", b"x", retain_until=until)
        assert _code(info) is TARGET_IMMUTABILITY_UNSUPPORTED
        target.put_bytes("plain", b"x")
        assert target.immutable_until("plain") is None
        return
    target.put_bytes("locked", b"x", retain_until=until)
    assert target.immutable_until("locked") == until
