"""Damaged, missing, swapped and replayed backup objects are caught by verify and restore, and
a restore that finds one commits nothing (issue 6 item 9). Format-level, so SQLite only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hearth.backupfmt import manifest_object_name
from hearth.domain import Alarm, AlarmKind, HearthError
from hearth.storage.backup import RestoreDatabase
from tests.integration.backup.conftest import Backups, seed

pytestmark = pytest.mark.parametrize("engine", ["sqlite"])


class Captured:
    def __init__(self) -> None:
        self.alarms: list[Alarm] = []

    def raise_alarm(self, alarm: Alarm) -> None:
        self.alarms.append(alarm)

    def kinds(self) -> set[AlarmKind]:
        return {a.kind for a in self.alarms}


@pytest.fixture
def chain(backups: Backups) -> tuple[Backups, list[str], Captured]:
    seed(backups.instance, 3)
    first = backups.service.create()
    seed(backups.instance, 2, tag="B")
    second = backups.service.create()
    captured = Captured()
    backups.service._alarms = captured
    return backups, [first.backup_id, second.backup_id], captured


def path_of(backups: Backups, name: str) -> Path:
    return backups.target.root / name


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x10
    path.chmod(0o600)
    path.write_bytes(bytes(data))


def segments_by_kind(backups: Backups, backup_id: str) -> dict[str, str]:
    """One segment name per table kind: versions, audit, and a whole table."""
    manifest = backups.service._manifest(backups.target, backup_id)
    wanted = {"resource_version": None, "audit_entry": None, "user_account": None}
    out: dict[str, str] = {}
    for seg in manifest.segments:
        if seg.table in wanted and seg.table not in out:
            out[seg.table] = seg.name
    return out


def restore_fails_cleanly(backups: Backups, backup_id: str, url: str) -> HearthError:
    with pytest.raises(HearthError) as caught:
        backups.service.restore(backup_id, into=url, decryptor=backups.decryptor)
    db = RestoreDatabase(url)
    try:
        assert db.is_empty()
    finally:
        db.close()
    return caught.value


def test_every_object_kind_with_one_flipped_bit_is_caught(
    chain: tuple[Backups, list[str], Captured], tmp_path: Path
) -> None:
    backups, ids, captured = chain
    older = segments_by_kind(backups, ids[0])
    names = [manifest_object_name(ids[1]), *segments_by_kind(backups, ids[1]).values()]
    names += list(older.values())
    # A restore of the head reads the older backup's versions and audit rows, but takes the
    # small whole tables from the head alone (verify still reads and checks them).
    unread = {older["user_account"]}
    for i, name in enumerate(names):
        path = path_of(backups, name)
        original = path.read_bytes()
        for offset in (0, len(original) // 2, len(original) - 1):
            flip(path, offset)
            result = backups.service.verify(decryptor=backups.decryptor)
            assert not result.ok, (name, offset)
            path.write_bytes(original)
        if name in unread:
            continue
        # Restore of the head reads every object above: each fault stops it, nothing lands.
        flip(path, len(original) // 2)
        restore_fails_cleanly(backups, ids[1], f"sqlite:///{tmp_path / f'r{i}.db'}")
        path.write_bytes(original)
    assert AlarmKind.BACKUP_VERIFY_FAILED in captured.kinds()
    assert backups.service.verify(decryptor=backups.decryptor).ok


def test_every_segment_with_a_flipped_bit_fails_hash_only_verify(
    chain: tuple[Backups, list[str], Captured],
) -> None:
    """Without the identity, every stored segment's SHA-256 still catches a flipped bit."""
    backups, ids, _ = chain
    for backup_id in ids:
        manifest = backups.service._manifest(backups.target, backup_id)
        for seg in manifest.segments:
            path = path_of(backups, seg.name)
            original = path.read_bytes()
            flip(path, len(original) // 3)
            report = backups.service.verify(backup_id)
            assert not report.ok
            failed = {c["check"] for c in report.targets["t1"]["failures"]}
            assert "segment.hash" in failed
            path.write_bytes(original)


def test_truncated_and_missing_segments_are_caught(
    chain: tuple[Backups, list[str], Captured], tmp_path: Path
) -> None:
    backups, ids, _ = chain
    name = segments_by_kind(backups, ids[0])["resource_version"]
    path = path_of(backups, name)
    original = path.read_bytes()
    path.chmod(0o600)
    path.write_bytes(original[:-1])
    assert not backups.service.verify(decryptor=backups.decryptor).ok
    error = restore_fails_cleanly(backups, ids[1], f"sqlite:///{tmp_path / 'cut.db'}")
    assert "length" in error.detail
    path.unlink()
    result = backups.service.verify(ids[1])
    failed = {c["check"] for c in result.targets["t1"]["failures"]}
    assert "segment.present" in failed
    restore_fails_cleanly(backups, ids[1], f"sqlite:///{tmp_path / 'missing.db'}")


def test_swapped_manifests_are_caught(
    chain: tuple[Backups, list[str], Captured], tmp_path: Path
) -> None:
    backups, ids, _ = chain
    a, b = (path_of(backups, manifest_object_name(i)) for i in ids)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    for p in (a, b):
        p.chmod(0o600)
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    result = backups.service.verify()
    assert not result.ok
    failed = {c["check"] for c in result.targets["t1"]["failures"]}
    assert "manifest.name" in failed
    restore_fails_cleanly(backups, ids[1], f"sqlite:///{tmp_path / 'swapped.db'}")


def test_replayed_old_manifest_is_caught(chain: tuple[Backups, list[str], Captured]) -> None:
    """Rolling the target back to an older, genuine chain (the newest manifest removed) is
    found by verify (the head this instance recorded) and refused by the next create."""
    backups, ids, captured = chain
    newest = path_of(backups, manifest_object_name(ids[1]))
    newest.unlink()
    result = backups.service.verify()
    assert not result.ok
    failed = {c["check"] for c in result.targets["t1"]["failures"]}
    assert "chain.head" in failed
    with pytest.raises(HearthError) as caught:
        backups.service.create()
    assert "not the one this instance recorded" in caught.value.detail
    assert {AlarmKind.BACKUP_VERIFY_FAILED, AlarmKind.BACKUP_FAILED} <= captured.kinds()
    # An old manifest copied under a new backup's name is caught by its name binding.
    replay = path_of(backups, manifest_object_name(ids[0]).replace(ids[0][:8], "20991231"))
    replay.write_bytes(path_of(backups, manifest_object_name(ids[0])).read_bytes())
    failed = {c["check"] for c in backups.service.verify().targets["t1"]["failures"]}
    assert "manifest.name" in failed
    # --full starts a new chain; it verifies and restores.
    replay.unlink()
    made = backups.service.create(full=True)
    assert made.kind == "full"


def test_wrong_identity_and_foreign_signature_are_caught(
    chain: tuple[Backups, list[str], Captured], tmp_path: Path, restore_url: Callable[[], str]
) -> None:
    from hearth.wiring import backup_decryptor, backup_service, create_backup_recipient

    backups, ids, _ = chain
    other = tmp_path / "other"
    other.mkdir()
    # Another instance's identity cannot open the segments.
    settings = backups.settings
    made = create_backup_recipient(settings, add=True)
    wrong = tmp_path / "wrong.key"
    wrong.write_text(made.identity_file.reveal())
    with pytest.raises(HearthError):
        backups.service.restore(ids[1], into=restore_url(), decryptor=backup_decryptor(wrong))
    # A verifier that does not trust the signing key refuses the manifests.
    (settings.home / "backup-signing.pub").write_text("00" * 32 + "\n")
    key_file = settings.keys.file.parent / "backup-signing.key"  # type: ignore[union-attr]
    key_file.rename(key_file.with_suffix(".moved"))
    service = backup_service(settings, backups.instance.container, targets=[backups.target])
    assert not service.verify().ok
