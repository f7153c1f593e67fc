"""Repair from a backup on every engine, against a stand-in backup that holds the rows as they
were before the damage (the backup service's own reader is tested end to end elsewhere): only
damaged rows are rewritten, to their exact original bytes; rows written after the backup, copies
that fail their check and unverified backups are refused; the scan then passes."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

import pytest
from sqlalchemy import text

from hearth.domain import HearthError, ResourceRef, errors
from hearth.services.repair import repair_from_backup
from hearth.services.scanner import IntegrityScanner
from hearth.settings import IntegritySettings
from hearth.storage.scan import FindingState
from hearth.storage.sql import scan as scan_sql
from tests.contract.test_scanner import Alarms, seed, sql
from tests.support import Instance

pytestmark = pytest.mark.engines


class StandIn:
    """A backup holding ``rows`` (verified or not) up to ``last``."""

    def __init__(self, rows: dict[int, tuple[Any, ...]], last: int, *, verifies: bool = True):
        self.backup_id = "20260115T093000Z-0123456789abcdef"
        self.rows = rows
        self.last = last
        self.verifies = verifies
        self.asked: set[int] | None = None

    def verify(self) -> int:
        if not self.verifies:
            raise HearthError(errors.BAD_PARAMETER, "segment 3 fails its hash")
        return self.last

    def versions(self, seqs: AbstractSet[int]) -> dict[int, tuple[Any, ...]]:
        self.asked = set(seqs)
        return {s: self.rows[s] for s in seqs if s in self.rows and s <= self.last}


def stored(instance: Instance) -> dict[int, tuple[Any, ...]]:
    with instance.container.store.snapshot() as conn:
        rows = scan_sql.version_tuples(conn, after_seq=0, upto_seq=10**9, limit=10**6)
    return {int(r[0]): r for r in rows}


def index_rows(instance: Instance) -> list[tuple[Any, ...]]:
    with instance.container.db.write.begin() as conn:
        rows = conn.execute(text("SELECT seq, hash FROM search_hash"))
        return sorted((int(seq), bytes(h)) for seq, h in rows)


def scanner(instance: Instance) -> IntegrityScanner:
    c = instance.container
    return IntegrityScanner(
        lambda: c.system_repository("integrity-scan"),
        clock=c.clock,
        settings=IntegritySettings(),
        alarms=Alarms(),
    )


def damage(instance: Instance) -> None:
    """A flipped byte in a body (seq 3), a zeroed MAC (2), a deleted version (4), a current
    pointer moved back (Patient 0, seq 7 -> 1) and a changed blind-index row (seq 5)."""
    with instance.container.db.write.begin() as conn:
        body = conn.execute(text("SELECT body FROM resource_version WHERE seq = 3")).scalar_one()
        body = bytes(body)
        conn.execute(
            text("UPDATE resource_version SET body = :b WHERE seq = 3"),
            {"b": body[:40] + bytes([body[40] ^ 1]) + body[41:]},
        )
        conn.execute(text("UPDATE resource_version SET mac = :m WHERE seq = 2"), {"m": b"\0" * 32})
        conn.execute(text("DELETE FROM resource_version WHERE seq = 4"))
        conn.execute(text("UPDATE resource_current SET seq = 1, version = 1 WHERE seq = 7"))
        one = bytes(
            conn.execute(text("SELECT hash FROM search_hash WHERE seq = 5 LIMIT 1")).scalar_one()
        )
        conn.execute(
            text("UPDATE search_hash SET hash = :h WHERE seq = 5 AND hash = :o"),
            {"h": b"\xff" * 16, "o": one},
        )


def repair(instance: Instance, backup: StandIn, *, dry_run: bool = False) -> Any:
    c = instance.container
    return repair_from_backup(
        lambda: c.system_repository("integrity-repair"), backup, clock=c.clock, dry_run=dry_run
    )


def test_repair_restores_exactly_the_damaged_rows(instance: Instance) -> None:
    seed(instance)
    scan = scanner(instance)
    assert scan.scan(full=True).ok
    before, index_before = stored(instance), index_rows(instance)
    backup = StandIn(before, last=max(before))
    damage(instance)
    found = scan.scan(full=True)
    # The deleted version's write is still in the audit trail: the trail says so too.
    assert [f.kind.value for f in found.findings if f.kind.value == "trail"] == ["trail"]
    assert {(f.kind.value, f.seq) for f in found.findings if f.kind.value != "trail"} == {
        ("version", 2),
        ("version", 3),
        ("missing", 4),
        ("pointer", 4),  # its pointer names a version that is gone
        ("pointer", 1),
        ("index", 5),
    }

    plan = repair(instance, backup, dry_run=True)
    assert [(i.seq, i.outcome) for i in plan.items] == [
        (2, "would-restore"),
        (3, "would-restore"),
        (4, "would-restore"),
    ]
    assert plan.ok
    assert stored(instance) != before  # a dry run writes nothing
    assert not scan.scan(full=True).ok

    done = repair(instance, backup)
    assert backup.asked == {2, 3, 4}  # only damaged rows are read from the backup
    assert [(i.seq, i.outcome) for i in done.items] == [
        (2, "restored"),
        (3, "restored"),
        (4, "restored"),
    ]
    assert done.ok, [str(f) for f in done.remaining]
    assert stored(instance) == before  # the exact original bytes
    assert index_rows(instance) == index_before
    after = scan.scan(full=True)
    assert after.ok, [str(f) for f in after.findings]
    system = instance.container.system_repository("test").scanning()
    repaired = system.findings(states=(FindingState.REPAIRED,))
    assert {s.finding.key for s in repaired} >= {"version|2", "version|3", "missing|4"}


def test_undamaged_rows_are_never_rewritten(instance: Instance) -> None:
    """Even a valid copy that differs (the same version sealed again, a new nonce) does not
    replace an intact row."""
    seed(instance)
    before = stored(instance)
    c = instance.container
    row = before[5]
    plain = c.keyring.open_resource(row[7], aad=ResourceRef(row[1], row[2]).aad(row[3]))
    other = c.keyring.seal_resource(
        plain, aad=ResourceRef(row[1], row[2]).aad(row[3]), random=c.random
    )
    copy = (*row[:7], other, *row[8:])
    result = c.system_repository("test").restore_versions({5: copy}, dry_run=False)
    assert [(i.seq, i.outcome) for i in result.items] == [(5, "intact")]
    assert stored(instance) == before


def test_what_the_backup_cannot_repair_is_said(instance: Instance) -> None:
    seed(instance)
    scan = scanner(instance)
    before = stored(instance)
    # The backup ends at seq 3 and its copy of seq 2 was damaged too.
    broken = dict(before)
    broken[2] = (*before[2][:9], b"\x01" * 32)
    backup = StandIn(broken, last=3)
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 2", m=b"\0" * 32)
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 6", m=b"\0" * 32)
    scan.scan(full=True)
    report = repair(instance, backup)
    assert [(i.seq, i.outcome) for i in report.items] == [(2, "refused"), (6, "after-backup")]
    assert "written after backup" in str(report.items[1])
    assert not report.ok
    assert stored(instance)[2][9] == b"\0" * 32  # left as it was


def test_an_unverified_backup_is_refused(instance: Instance) -> None:
    seed(instance)
    scan = scanner(instance)
    before = stored(instance)
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 2", m=b"\0" * 32)
    scan.scan(full=True)
    backup = StandIn(before, last=max(before), verifies=False)
    with pytest.raises(HearthError) as refused:
        repair(instance, backup)
    assert refused.value.code is errors.REPAIR_REFUSED
    assert backup.asked is None  # nothing was read from it
    assert stored(instance)[2][9] == b"\0" * 32
