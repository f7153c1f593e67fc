"""SQLite's hot statements on its own cursor (``hearth.storage.sql.store._DriverStatement``):
the same rows as SQLAlchemy's execution of the same statements, and the same errors."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from hearth.domain import HearthError, errors
from hearth.storage.sql.store import _CURRENT_DRIVER, VERSION_SEQ, AuditRow, SqlStore
from tests.support import Instance, admin

MARKER = "Drivertestmarker"


def both(instance: Instance) -> tuple[SqlStore, SqlStore]:
    """The instance's store (driver statements on SQLite) and one that runs every statement
    through SQLAlchemy, over the same database."""
    driver = instance.container.store
    plain = SqlStore(instance.container.db)
    plain._driver = False
    assert driver._driver
    return driver, plain


def test_reads_and_the_audit_head_match_sqlalchemy(sqlite_instance: Instance) -> None:
    records = sqlite_instance.container.records(admin())
    kept = records.create("Patient", {"resourceType": "Patient", "name": [{"family": MARKER}]})
    records.update(
        "Patient",
        kept.res_id,
        {"resourceType": "Patient", "id": kept.res_id, "active": True},
    )
    gone = records.create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    records.delete("Basic", gone.res_id)
    driver, plain = both(sqlite_instance)
    with driver.read() as conn:
        for res_type, res_id in (("Patient", kept.res_id), ("Basic", gone.res_id), ("X", "y")):
            found = driver.current(conn, res_type, res_id)
            assert found == plain.current(conn, res_type, res_id)
            for version in (1, 2, 3):
                assert driver.version(conn, res_type, res_id, version) == plain.version(
                    conn, res_type, res_id, version
                )
        tombstone = driver.current(conn, "Basic", gone.res_id)
        assert tombstone is not None
        assert tombstone.deleted is True
        assert tombstone.body is None
        live = driver.current(conn, "Patient", kept.res_id)
        assert live is not None
        assert live.deleted is False
        assert live.version == 2
        assert type(live.body) is bytes
        assert type(live.mac) is bytes
        assert driver.peek_seq(conn, VERSION_SEQ) == plain.peek_seq(conn, VERSION_SEQ) == 4
        head = driver.audit_head(conn, for_update=False)
        assert head is not None
        assert head == plain.audit_head(conn, for_update=False)


def test_audit_rows_written_both_ways_are_the_same(sqlite_instance: Instance) -> None:
    driver, plain = both(sqlite_instance)

    def row(seq: int) -> AuditRow:
        return AuditRow(
            seq=seq,
            ts_us=1_700_000_000_000_000 + seq,
            actor="user-1",
            action="read",
            outcome="success",
            res_type="Patient",
            res_id=f"p{seq}",
            version=None,
            patient=None,
            detail_key_id=None,
            body=b"{}",
            prev_hash=bytes(32),
            hash=bytes([seq % 256]) * 32,
            patients=(),
        )

    with driver.write() as conn:
        driver.insert_audit(conn, [row(1_000_001), row(1_000_002)])
        plain.insert_audit(conn, [row(1_000_003)])
        stored = conn.execute(
            text("SELECT * FROM audit_entry WHERE seq > 1000000 ORDER BY seq")
        ).all()
        conn.execute(text("DELETE FROM audit_entry WHERE seq > 1000000"))
    shapes = [tuple((k, type(v)) for k, v in r._mapping.items() if k != "seq") for r in stored]
    assert len(stored) == 3
    assert shapes[0] == shapes[1] == shapes[2]


def test_a_duplicate_is_sqlalchemys_integrity_error(sqlite_instance: Instance) -> None:
    driver, _ = both(sqlite_instance)
    with driver.read() as conn:
        head = driver.audit_head(conn, for_update=False)
    assert head is not None
    with pytest.raises(HearthError) as raised, driver.write() as conn:
        existing: Any = conn.execute(text("SELECT * FROM audit_entry LIMIT 1")).one()._mapping
        driver.insert_audit(conn, [AuditRow(**{**dict(existing), "patients": ()})])
    assert raised.value.code == errors.CONFLICT
    assert isinstance(raised.value.__cause__, IntegrityError)


def test_a_driver_error_is_storage_unavailable_and_quotes_no_value(
    sqlite_instance: Instance,
) -> None:
    c = sqlite_instance.container
    created = c.records(admin()).create(
        "Patient", {"resourceType": "Patient", "name": [{"family": MARKER}]}
    )
    with c.db.write.begin() as conn:
        conn.execute(text("ALTER TABLE resource_current RENAME TO resource_current_gone"))
    with pytest.raises(HearthError) as raised:
        c.records(admin()).read("Patient", created.res_id)
    assert raised.value.code == errors.STORAGE_UNAVAILABLE
    with c.store.read() as conn, pytest.raises(OperationalError) as failed:
        _CURRENT_DRIVER.first(conn, {"t": "Patient", "i": created.res_id})
    assert created.res_id not in str(failed.value)
    assert "no such table" in str(failed.value)
