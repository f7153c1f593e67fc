"""SQLite's hot statements on its own cursor (``hearth.storage.sql.store._Hot``): the same
rows as SQLAlchemy's execution of the same statements, and the same errors."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError, OperationalError

from hearth.domain import HearthError, errors
from hearth.storage.sql import store
from hearth.storage.sql.store import VERSION_SEQ, AuditRow, SqlStore
from tests.support import Instance, admin

MARKER = "Drivertestmarker"


def through_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on ``_Hot`` statements take SQLAlchemy's path on SQLite too, as they do on
    PostgreSQL and MariaDB."""

    def first(hot: Any, conn: Connection, params: dict[str, Any]) -> Any:
        row = conn.execute(hot.statement, params).first()
        return None if row is None else row._mapping

    def execute(hot: Any, conn: Connection, params: dict[str, Any]) -> int:
        return int(conn.execute(hot.statement, params).rowcount)

    def executemany(hot: Any, conn: Connection, rows: Any) -> None:
        conn.execute(hot.statement, list(rows))

    monkeypatch.setattr(store._Hot, "first", first)
    monkeypatch.setattr(store._Hot, "execute", execute)
    monkeypatch.setattr(store._Hot, "executemany", executemany)


def reads(s: SqlStore, refs: list[tuple[str, str]]) -> list[object]:
    """Everything the hot reads return for ``refs``: current and numbered versions, the
    version counter and the audit head."""
    out: list[object] = []
    with s.read() as conn:
        for res_type, res_id in refs:
            out.append(s.current(conn, res_type, res_id))
            out.extend(s.version(conn, res_type, res_id, v) for v in (1, 2, 3))
        out.append(s.peek_seq(conn, VERSION_SEQ))
        out.append(s.audit_head(conn, for_update=False))
    with s.write() as conn:
        out.append(s.audit_head(conn, for_update=True))
    return out


def test_reads_and_the_audit_head_match_sqlalchemy(
    sqlite_instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = sqlite_instance.container
    records = c.records(admin())
    kept = records.create("Patient", {"resourceType": "Patient", "name": [{"family": MARKER}]})
    records.update(
        "Patient", kept.res_id, {"resourceType": "Patient", "id": kept.res_id, "active": True}
    )
    gone = records.create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    records.delete("Basic", gone.res_id)
    refs = [("Patient", kept.res_id), ("Basic", gone.res_id), ("Patient", "absent")]

    on_driver = reads(c.store, refs)
    through_sqlalchemy(monkeypatch)
    assert on_driver == reads(c.store, refs)

    live, tombstone = on_driver[0], on_driver[4]
    assert isinstance(live, store.VersionRow)
    assert live.version == 2
    assert live.deleted is False
    assert type(live.body) is bytes
    assert type(live.mac) is bytes
    assert isinstance(tombstone, store.VersionRow)
    assert tombstone.deleted is True
    assert tombstone.body is None
    assert on_driver[8] is None  # no such resource
    assert on_driver[12] == 4  # four versions written


def test_writes_through_either_path_store_the_same(
    sqlite_instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = sqlite_instance.container

    def write(family: str) -> None:
        records = c.records(admin())
        made = records.create("Patient", {"resourceType": "Patient", "name": [{"family": family}]})
        records.update(
            "Patient", made.res_id, {"resourceType": "Patient", "id": made.res_id, "active": True}
        )

    def stored(table: str, where: str = "1 = 1") -> list[tuple[tuple[str, type], ...]]:
        with c.db.read.connect() as conn:
            query = f"SELECT * FROM {table} WHERE {where} ORDER BY 1"
            rows = conn.execute(text(query)).all()
        return [tuple((k, type(v)) for k, v in r._mapping.items()) for r in rows]

    write("Driverpath")
    through_sqlalchemy(monkeypatch)
    write("Sqlalchemypath")
    for table, where in (
        ("resource_version", "1 = 1"),
        ("resource_current", "1 = 1"),
        ("audit_entry", "res_type = 'Patient'"),  # both paths' creates and updates
        ("audit_head", "1 = 1"),
    ):
        shapes = stored(table, where)
        assert len(set(shapes)) == 1, table  # every row's columns hold the same types
    assert len(stored("resource_version")) == 4


def test_a_duplicate_is_sqlalchemys_integrity_error(sqlite_instance: Instance) -> None:
    s = sqlite_instance.container.store
    with pytest.raises(HearthError) as raised, s.write() as conn:
        existing: Any = conn.execute(text("SELECT * FROM audit_entry LIMIT 1")).one()._mapping
        s.insert_audit(conn, [AuditRow(**{**dict(existing), "patients": ()})])
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
        c.store.current(conn, "Patient", created.res_id)
    assert "no such table" in str(failed.value)
    assert created.res_id not in str(failed.value)
