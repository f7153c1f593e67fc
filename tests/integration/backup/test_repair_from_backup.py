"""``hearth integrity repair --from-backup``: damaged records restored to their exact bytes from
a real, verified backup on every engine; the scan then passes; what the backup cannot repair is
named; a backup that does not verify is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from hearth.domain import HearthError, errors
from hearth.services.repair import ServiceBackup
from hearth.storage.sql import scan as scan_sql
from tests.contract.test_scanner import seed
from tests.integration.backup.conftest import Backups
from tests.support import Instance, admin, cli

pytestmark = pytest.mark.engines


def stored(instance: Instance) -> dict[int, tuple[Any, ...]]:
    with instance.container.store.snapshot() as conn:
        rows = scan_sql.version_tuples(conn, after_seq=0, upto_seq=10**9, limit=10**6)
    return {int(r[0]): r for r in rows}


def sql(instance: Instance, statement: str, **params: object) -> None:
    with instance.container.db.write.begin() as conn:
        conn.execute(text(statement), params)


def test_repair_from_a_real_backup(backups: Backups) -> None:
    instance = backups.instance
    c = instance.container
    ids = seed(instance)
    made = backups.service.create(full=True)
    assert made.sequence_to == 8
    # Written after the backup: not in it.
    c.records(admin()).update("Patient", ids[5], {"resourceType": "Patient", "id": ids[5]})
    scanner = c.integrity_scanner()
    assert scanner.scan(full=True).ok
    before = stored(instance)
    body = bytes(before[3][7])
    sql(
        instance,
        "UPDATE resource_version SET body = :b WHERE seq = 3",
        b=body[:30] + bytes([body[30] ^ 0x80]) + body[31:],
    )
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 2", m=b"\x00" * 32)
    sql(instance, "DELETE FROM resource_version WHERE seq = 4")
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 9", m=b"\x00" * 32)
    assert not scanner.scan(full=True).ok

    backup = ServiceBackup(backups.service, made.backup_id, backups.decryptor)
    plan = c.integrity_repair(backup, dry_run=True)
    assert [(i.seq, i.outcome) for i in plan.items] == [
        (2, "would-restore"),
        (3, "would-restore"),
        (4, "would-restore"),
        (9, "after-backup"),
    ]
    report = c.integrity_repair(backup, dry_run=False)
    assert [(i.seq, i.outcome) for i in report.items] == [
        (2, "restored"),
        (3, "restored"),
        (4, "restored"),
        (9, "after-backup"),
    ]
    assert not report.ok  # seq 9 could not be repaired from this backup
    assert report.remaining == []
    after = stored(instance)
    for seq in (2, 3, 4):
        assert after[seq] == before[seq]  # the exact bytes
    assert after[9][9] == b"\x00" * 32  # not in the backup, left alone
    rescan = scanner.scan(full=True)
    assert [(f.kind.value, f.seq) for f in rescan.findings] == [("version", 9)]
    with c.db.write.begin() as conn:
        audited = conn.execute(
            text(
                "SELECT res_id, version FROM audit_entry "
                "WHERE action = 'integrity.repair' ORDER BY seq"
            )
        ).all()
    assert {(r[0], r[1]) for r in audited} >= {(ids[1], 1), (ids[2], 1), (ids[3], 1)}


def test_a_backup_that_does_not_verify_is_refused(backups: Backups) -> None:
    instance = backups.instance
    c = instance.container
    seed(instance)
    made = backups.service.create(full=True)
    before = stored(instance)
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 2", m=b"\x00" * 32)
    c.integrity_scanner().scan(full=True)
    root = backups.target.root
    segment = next(
        p
        for p in sorted(root.rglob("*"))
        if p.is_file() and "segments" in p.relative_to(root).parts
    )
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    backup = ServiceBackup(backups.service, made.backup_id, backups.decryptor)
    with pytest.raises(HearthError) as refused:
        c.integrity_repair(backup, dry_run=False)
    assert refused.value.code is errors.REPAIR_REFUSED
    assert stored(instance)[2][9] == b"\x00" * 32
    assert stored(instance)[3] == before[3]


run = cli


def test_repair_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    identity = tmp_path / "offline" / "id.key"
    assert run(home, "init")[0] == 0
    assert run(home, "demo", "load", "--patients", "2")[0] == 0
    assert run(home, "keys", "backup-recipient", "--identity-out", str(identity))[0] == 0
    code, out = run(home, "backup", "create", "--json")
    assert code == 0, out
    backup_id = json.loads(out)["backup_id"]
    db = create_engine(f"sqlite:///{home / 'data' / 'hearth.db'}")
    with db.begin() as conn:
        good = conn.execute(text("SELECT mac FROM resource_version WHERE seq = 4")).scalar_one()
        conn.execute(text("UPDATE resource_version SET mac = :m WHERE seq = 4"), {"m": b"x" * 32})
    code, out = run(home, "integrity", "scan", "--full")
    assert code == 1
    args = ["integrity", "repair", "--from-backup", backup_id]
    code, out = run(home, *args)
    assert code == 1
    assert "--identity" in out
    code, out = run(home, *args, "--identity", str(identity), "--dry-run")
    assert code == 0, out
    assert "would-restore" in out
    code, out = run(home, *args, "--identity", str(identity), "--json")
    assert code == 0, out
    report = json.loads(out)
    assert [(i["seq"], i["outcome"]) for i in report["items"]] == [(4, "restored")]
    with db.begin() as conn:
        assert (
            conn.execute(text("SELECT mac FROM resource_version WHERE seq = 4")).scalar_one()
            == good
        )
    db.dispose()
    code, out = run(home, "integrity", "scan", "--full")
    assert code == 0, out
