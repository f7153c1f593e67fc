"""Offline media: absent means a clear error, never a write into the bare mount point."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hearth.domain import HearthError
from hearth.domain.errors import TARGET_READBACK_MISMATCH, TARGET_UNAVAILABLE
from hearth.targets import OfflineMediaTarget, RetryPolicy


def _media(path: Path, retry: RetryPolicy, media_id: str = "disk-1") -> OfflineMediaTarget:
    return OfflineMediaTarget(path, media_id=media_id, retry=retry)


def test_absent_medium_is_a_clear_error(tmp_path: Path, retry: RetryPolicy) -> None:
    media = _media(tmp_path / "not-there", retry)
    with pytest.raises(HearthError) as info:
        media.put_bytes("x", b"x")
    assert info.value.code is TARGET_UNAVAILABLE
    assert "disk-1" in info.value.detail
    assert "Mount it" in info.value.detail
    assert not (tmp_path / "not-there").exists()


def test_an_empty_mount_point_is_not_written_to(tmp_path: Path, retry: RetryPolicy) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    media = _media(mount, retry)
    with pytest.raises(HearthError) as info:
        media.put_bytes("segments/x", b"x")
    assert info.value.code is TARGET_UNAVAILABLE
    assert list(mount.iterdir()) == []


def test_another_medium_is_refused(tmp_path: Path, retry: RetryPolicy) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    _media(mount, retry, "disk-2").initialise()
    with pytest.raises(HearthError):
        _media(mount, retry).initialise()
    with pytest.raises(HearthError) as info:
        _media(mount, retry).get_bytes("x")
    assert info.value.code is TARGET_UNAVAILABLE


def test_unplug_and_plug_back(tmp_path: Path, retry: RetryPolicy) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    media = _media(mount, retry)
    media.initialise()
    media.put_bytes("segments/a", b"data")
    shutil.move(mount, tmp_path / "drawer")  # unplugged
    with pytest.raises(HearthError) as info:
        media.list_names()
    assert info.value.code is TARGET_UNAVAILABLE
    shutil.move(tmp_path / "drawer", mount)  # plugged back in
    assert media.list_names() == ["segments/a"]
    media.verify_object("segments/a", __import__("hashlib").sha256(b"data").hexdigest())


def test_later_verification_catches_rot(tmp_path: Path, retry: RetryPolicy) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    media = _media(mount, retry)
    media.initialise()
    result = media.put_bytes("segments/a", b"data")
    (mount / "segments" / "a").write_bytes(b"dat4")
    with pytest.raises(HearthError) as info:
        media.verify_object("segments/a", result.sha256)
    assert info.value.code is TARGET_READBACK_MISMATCH


def test_require_mount_point(tmp_path: Path, retry: RetryPolicy) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    media = OfflineMediaTarget(mount, media_id="disk-1", require_mount_point=True, retry=retry)
    with pytest.raises(HearthError) as info:
        media.initialise()
    assert "nothing is mounted" in info.value.detail
