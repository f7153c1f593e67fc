"""The hot statements on the driver's own cursor (``hearth.storage.sql.store._Hot``), on every
engine: the same rows as SQLAlchemy's execution of the same statements, and the same errors."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table, event, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from hearth.domain import HearthError, errors
from hearth.storage.sql import store, tables
from hearth.storage.sql.store import VERSION_SEQ, AuditRow, SqlStore, VersionRow
from tests.support import Instance, admin

MARKER = "Drivertestmarker"


def through_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on ``_Hot`` statements go through SQLAlchemy's execution, as every other
    statement does."""

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
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = instance.container
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


def test_driver_writes_store_every_value_in_its_column(instance: Instance) -> None:
    """Each column gets a value of its own, so two values bound in each other's place would
    show; what was written is read back through SQLAlchemy."""
    s = instance.container.store
    first = VersionRow(
        seq=900_001,
        res_type="Basic",
        res_id="driver-written",
        version=1,
        ts_us=1_700_000_000_000_001,
        deleted=False,
        key_id=7,
        body=b"sealed-body",
        mac_key_id=8,
        mac=b"m" * 32,
    )
    second = replace(
        first,
        seq=900_002,
        version=2,
        ts_us=1_700_000_000_000_002,
        deleted=True,
        key_id=None,
        body=None,
    )
    audit = AuditRow(
        seq=900_003,
        ts_us=1_700_000_000_000_003,
        actor="user-1",
        action="read",
        outcome="success",
        res_type="Basic",
        res_id="driver-written",
        version=2,
        patient="p-1",
        detail_key_id=9,
        body=b"{}",
        prev_hash=b"p" * 32,
        hash=b"h" * 32,
    )
    with s.write() as conn:
        s.insert_version(conn, first, new=True)
        s.insert_version(conn, second)
        s.insert_audit(conn, [audit])
        versions = conn.execute(
            select(tables.resource_version).where(tables.resource_version.c.seq > 900_000)
        ).all()
        current = conn.execute(
            select(tables.resource_current).where(
                tables.resource_current.c.res_id == "driver-written"
            )
        ).one()
        entry = conn.execute(
            select(tables.audit_entry).where(tables.audit_entry.c.seq == 900_003)
        ).one()
        conn.rollback()
    assert [store._version(v._mapping) for v in versions] == [first, second]
    assert dict(current._mapping) == {
        "res_type": "Basic",
        "res_id": "driver-written",
        "version": 2,
        "seq": 900_002,
        "deleted": True,
        "ts_us": 1_700_000_000_000_002,
    }
    assert dict(entry._mapping) == {k: v for k, v in asdict(audit).items() if k != "patients"}


@pytest.mark.parametrize("count", [2, 3, store.SQLITE_MANY_ROWS, store.SQLITE_MANY_ROWS + 7])
def test_many_first_versions_store_each_row_once(instance: Instance, count: int) -> None:
    """Several first versions at once (on SQLite, multi-row statements of up to
    ``SQLITE_MANY_ROWS`` rows and then of powers of two): each version and current row is
    stored once, with its own values, in sequence order."""
    s = instance.container.store
    rows = [
        VersionRow(
            seq=910_000 + n,
            res_type="Basic",
            res_id=f"many-{n}",
            version=1,
            ts_us=1_700_000_000_000_000 + n,
            deleted=False,
            key_id=7,
            body=f"sealed-{n}".encode(),
            mac_key_id=8,
            mac=bytes([n % 256]) * 32,
        )
        for n in range(count)
    ]
    with s.write() as conn:
        s.insert_first_versions(conn, rows)
        versions = conn.execute(
            select(tables.resource_version)
            .where(tables.resource_version.c.seq >= 910_000)
            .order_by(tables.resource_version.c.seq)
        ).all()
        current = conn.execute(
            select(tables.resource_current.c.res_id, tables.resource_current.c.seq).where(
                tables.resource_current.c.res_id.like("many-%")
            )
        ).all()
        conn.rollback()
    assert [store._version(v._mapping) for v in versions] == rows
    assert sorted(current) == sorted((r.res_id, r.seq) for r in rows)


def test_a_duplicate_among_many_stores_none_of_them(instance: Instance) -> None:
    """A conflict inside a multi-row statement fails the write as one row's would, and the
    transaction stores nothing of it. On SQLite it has ended the transaction (``OR
    ROLLBACK``), and the connection is invalidated."""
    s = instance.container.store
    with s.read() as conn:
        before = conn.execute(select(func.count()).select_from(tables.audit_entry)).scalar()
        existing: Any = conn.execute(text("SELECT * FROM audit_entry LIMIT 1")).one()._mapping
    fresh = [AuditRow(**{**dict(existing), "seq": 920_000 + n, "patients": ()}) for n in range(5)]
    invalidated: list[bool] = []
    with pytest.raises(HearthError) as raised, s.write() as conn:
        try:
            s.insert_audit(conn, [*fresh, AuditRow(**{**dict(existing), "patients": ()})])
        finally:
            invalidated.append(conn.invalidated)
    assert raised.value.code == errors.CONFLICT
    # On SQLite, OR ROLLBACK ended the transaction: nothing may run after it.
    assert invalidated == [s.db.dialect == "sqlite"]
    with s.read() as conn:
        assert conn.execute(select(func.count()).select_from(tables.audit_entry)).scalar() == before


def test_a_missing_parameter_is_an_error_not_a_null(instance: Instance) -> None:
    with instance.container.store.read() as conn, pytest.raises(KeyError):
        store._CURRENT.first(conn, {"t": "Patient"})


def test_an_error_while_fetching_is_sqlalchemys(sqlite_instance: Instance) -> None:
    """sqlite3 steps to the next row inside ``fetchone``: a failure there is translated too."""

    def fails_on_two(x: int) -> int:
        if x == 2:
            raise ValueError
        return x

    rows = Table("hx_rows", MetaData(), Column("x", Integer))
    hot = store._Hot(select(func.hx_fails_on_two(rows.c.x)))  # in insertion order
    with sqlite_instance.container.store.read() as conn:
        conn.connection.driver_connection.create_function("hx_fails_on_two", 1, fails_on_two)
        conn.exec_driver_sql("CREATE TEMP TABLE hx_rows (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO hx_rows VALUES (1), (2)")
        with pytest.raises(OperationalError):
            hot.first(conn, {})


def test_a_duplicate_is_sqlalchemys_integrity_error(instance: Instance) -> None:
    s = instance.container.store
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


def test_a_lost_connection_is_invalidated_and_the_next_read_works(
    instance: Instance, engine: str
) -> None:
    """As SQLAlchemy does for its own statements: the pool must not hand the dead connection
    out again."""
    if engine != "postgresql":
        pytest.skip("terminates a PostgreSQL server process")
    c = instance.container
    made = c.records(admin()).create("Patient", {"resourceType": "Patient", "active": True})
    with c.db.read.connect() as conn:
        pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        with c.db.write.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(OperationalError) as failed:
            c.store.current(conn, "Patient", made.res_id)
        assert failed.value.connection_invalidated
        assert conn.invalidated
        assert made.res_id not in str(failed.value)
    assert c.records(admin()).read("Patient", made.res_id).version == 1


def test_a_read_on_a_server_database_ends_with_commit(instance: Instance, engine: str) -> None:
    """The driver began the read's transaction; SQLAlchemy must know, so that the read ends
    with COMMIT, not with the pool's ROLLBACK, which drops psycopg's prepared statements
    (docs/design.md, "Read transactions")."""
    if engine == "sqlite":
        pytest.skip("SQLite reads run in autocommit")
    c = instance.container
    made = c.records(admin()).create("Patient", {"resourceType": "Patient", "active": True})
    commits: list[object] = []

    def committed(conn: object) -> None:
        commits.append(conn)

    event.listen(c.db.read, "commit", committed)
    try:
        with c.store.read() as conn:
            assert c.store.current(conn, "Patient", made.res_id) is not None
    finally:
        event.remove(c.db.read, "commit", committed)
    assert len(commits) == 1
