"""A failure inside the segment worker thread (compression, encryption, the spool write) fails
the backup cleanly: the error reaches the caller as a HearthError, no manifest is written, no
worker thread is left running, and the next backup works (issue 6 item 10)."""

from __future__ import annotations

import errno
import threading
from typing import Any

import pytest

from hearth.backupfmt import SegmentEncryptor, manifest_object_name
from hearth.domain import Alarm, AlarmKind, HearthError
from hearth.domain.errors import BACKUP_ARGUMENT
from tests.integration.backup.conftest import Backups, seed


class _Alarms:
    def __init__(self) -> None:
        self.alarms: list[Alarm] = []

    def raise_alarm(self, alarm: Alarm) -> None:
        self.alarms.append(alarm)


class _FullDisk:
    """The spool file on a disk that fills after ``room`` bytes (ENOSPC, as the kernel says)."""

    def __init__(self, sink: Any, room: int) -> None:
        self._sink = sink
        self._room = room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return int(self._sink.write(data))


class _SpoolOnFullDisk:
    """The instance's real age encryptor, writing into a spool whose disk fills up."""

    def __init__(self, real: SegmentEncryptor, room: int) -> None:
        self._real = real
        self._room = room
        self.calls = 0

    @property
    def recipients(self) -> tuple[str, ...]:
        return self._real.recipients

    def encrypt_stream(self, source: Any, sink: Any) -> None:
        self.calls += 1
        self._real.encrypt_stream(source, _FullDisk(sink, self._room))


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hearth-segment"]


@pytest.mark.parametrize("room", [0, 100])
def test_a_failed_write_in_the_worker_leaves_no_manifest(backups: Backups, room: int) -> None:
    seed(backups.instance, 4)
    first = backups.service.create()
    seed(backups.instance, 3, tag="B")
    service = backups.service
    alarms = _Alarms()
    real = service._encryptor
    assert real is not None
    service._alarms = alarms
    failing = _SpoolOnFullDisk(real, room)
    service._encryptor = failing
    before = set(backups.target.list_names())
    with pytest.raises(HearthError) as caught:
        service.create(full=True)
    assert caught.value.code is BACKUP_ARGUMENT
    assert "OSError" in caught.value.detail
    assert failing.calls == 1  # the first segment failed; nothing after it was attempted
    assert _workers() == []
    after = set(backups.target.list_names())
    assert not [n for n in after - before if n.startswith("manifests/")]
    assert [b.backup_id for b in service.list_backups()] == [first.backup_id]
    assert not list((backups.settings.home / ".backup" / "spool").glob("segment-*"))
    assert AlarmKind.BACKUP_FAILED in {a.kind for a in alarms.alarms}
    assert service.verify().ok
    # The disk has room again: the next backup is taken and restores the chain's head.
    service._encryptor = real
    second = service.create(full=True)
    assert backups.target.exists(manifest_object_name(second.backup_id))
    assert [b.backup_id for b in service.list_backups()] == [first.backup_id, second.backup_id]
    assert service.verify().ok
