"""Backup and restore end to end on every engine: full, incremental, point in time, refusals."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hearth.domain import Alarm, AlarmKind, HearthError, Severity
from hearth.domain.errors import BACKUP_ARGUMENT
from hearth.services.integrity import verify_integrity
from hearth.storage.repository import from_us
from hearth.wiring import Container
from tests.integration.backup.conftest import Backups, container_on, resources, rows, seed
from tests.support import admin

pytestmark = pytest.mark.engines


def raise_alarm(container: Container, subject: str) -> None:
    container.alarms.raise_alarm(
        Alarm(AlarmKind.BACKUP_STALE, Severity.WARNING, f"test:{subject}", "A test alarm.")
    )
    container.alarm_service.process()


def versions(url: str) -> list[tuple[object, ...]]:
    return rows(url, "resource_version", "seq")


def assert_sound(backups: Backups, url: str, home: Path) -> dict[tuple[str, str, int], object]:
    """The restored database passes integrity verify (MACs, pointers, audit chain, every write
    audited) and its resources, opened through the gate, are returned."""
    copy = container_on(backups.settings, url, home)
    try:
        report = verify_integrity(copy.system_repository("test"))
        assert report.ok, (report.version_findings, report.audit.findings)
        return resources(copy)  # type: ignore[return-value]
    finally:
        copy.close()


def test_full_and_incremental_restore_equal(
    backups: Backups, restore_url: Callable[[], str], tmp_path: Path
) -> None:
    source = backups.instance
    seed(source, tag="A")
    raise_alarm(source.container, "before")
    full = backups.service.create()
    assert full.kind == "full"
    seed(source, 3, tag="B")
    incremental = backups.service.create()
    assert incremental.kind == "incremental"
    assert incremental.sequence_from == full.sequence_to + 1
    # Incremental holds only the new versions and audit entries.
    assert incremental.rows["resource_version"] == incremental.sequence_to - full.sequence_to
    url = restore_url()
    restored = backups.service.restore(incremental.backup_id, into=url, decryptor=backups.decryptor)
    assert restored.sequence == incremental.sequence_to
    listed = {b.backup_id: b for b in backups.service.list_backups()}
    assert set(listed) == {full.backup_id, incremental.backup_id}
    assert versions(url) == versions(source.settings_url)
    for table, order in (("user_account", "user_id"), ("crypto_key", "key_id")):
        assert rows(url, table, order) == rows(source.settings_url, table, order)
    assert assert_sound(backups, url, tmp_path / "copy") == resources(source.container)
    # Rows with database-generated ids (alarm deliveries) go on after the restored ones: on
    # PostgreSQL the serial sequences were moved past them.
    deliveries = len(rows(url, "alarm_delivery", "delivery_id"))
    assert deliveries > 0
    if url.startswith("postgresql"):
        # The load's statistics were gathered: the planner knows the tables are not empty.
        (analyzed,) = rows(
            url,
            "(SELECT count(*) n FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL "
            "AND relname IN ('search_hash', 'search_compartment', 'resource_version')) s",
            "1",
        )[0]
        assert analyzed == 3
        (following,) = rows(
            url, "(SELECT nextval(pg_get_serial_sequence('alarm_delivery', 'delivery_id'))) n", "1"
        )[0]
        assert following > deliveries
    copy = container_on(backups.settings, url, tmp_path / "after")
    try:
        raise_alarm(copy, "after")
    finally:
        copy.close()
    assert "test:after" in {r[3] for r in rows(url, "alarm", "alarm_id")}
    assert len(rows(url, "alarm_delivery", "delivery_id")) > deliveries


def test_merkle_root_of_restore_is_the_chain_root(
    backups: Backups, restore_url: Callable[[], str]
) -> None:
    seed(backups.instance)
    first = backups.service.create()
    seed(backups.instance, 2, tag="C")
    second = backups.service.create()
    restored = backups.service.restore(
        second.backup_id, into=restore_url(), decryptor=backups.decryptor
    )
    manifest = backups.service._manifest(backups.target, second.backup_id)
    assert restored.merkle_root == manifest.merkle.chain_root
    assert first.backup_id == manifest.previous.backup_id  # type: ignore[union-attr]


def test_point_in_time_by_sequence_and_by_time(
    backups: Backups, restore_url: Callable[[], str], tmp_path: Path
) -> None:
    source = backups.instance
    clock_ids = seed(source, 3, tag="A")
    full = backups.service.create()
    seed(source, 3, tag="B")
    backups.service.create()
    seed(source, 2, tag="D")
    last = backups.service.create()
    everything = versions(source.settings_url)
    # A point inside the second backup and one inside the full backup.
    for point in (full.sequence_to + 3, 4):
        url = restore_url()
        restored = backups.service.restore(
            last.backup_id, into=url, decryptor=backups.decryptor, at_seq=point
        )
        assert restored.sequence == point
        assert versions(url) == everything[:point]
        opened = assert_sound(backups, url, tmp_path / f"pit{point}")
        assert len(opened) == point
    # By time: just before the write of version full.to + 2.
    ts = int(everything[full.sequence_to + 1][4])  # type: ignore[call-overload]
    url = restore_url()
    restored = backups.service.restore(
        last.backup_id, into=url, decryptor=backups.decryptor, at_time=from_us(ts - 1)
    )
    assert restored.sequence <= full.sequence_to + 1
    assert versions(url) == everything[: restored.sequence]
    assert_sound(backups, url, tmp_path / "pit-time")
    assert clock_ids


def test_point_outside_the_chain_is_refused(
    backups: Backups, restore_url: Callable[[], str]
) -> None:
    seed(backups.instance, 2)
    made = backups.service.create()
    with pytest.raises(HearthError) as caught:
        backups.service.restore(
            made.backup_id,
            into=restore_url(),
            decryptor=backups.decryptor,
            at_seq=made.sequence_to + 1,
        )
    assert caught.value.code is BACKUP_ARGUMENT


def test_non_empty_target_is_refused_without_force(
    backups: Backups, restore_url: Callable[[], str], tmp_path: Path
) -> None:
    seed(backups.instance, 2)
    made = backups.service.create()
    url = restore_url()
    backups.service.restore(made.backup_id, into=url, decryptor=backups.decryptor)
    before = versions(url)
    with pytest.raises(HearthError) as caught:
        backups.service.restore(made.backup_id, into=url, decryptor=backups.decryptor)
    assert caught.value.code is BACKUP_ARGUMENT
    assert "not empty" in caught.value.detail
    assert versions(url) == before
    backups.service.restore(made.backup_id, into=url, decryptor=backups.decryptor, force=True)
    assert versions(url) == before
    assert_sound(backups, url, tmp_path / "forced")


def test_backup_while_writes_continue(
    backups: Backups, restore_url: Callable[[], str], tmp_path: Path
) -> None:
    """Writers never wait for the snapshot, and the backup is one consistent state: the
    restore's own checks (contiguous versions, counter, chain root, audit head) pass."""
    source = backups.instance
    seed(source, 3)
    records = source.container.records(admin())
    stop = threading.Event()
    written = [0]

    def write() -> None:
        while not stop.is_set():
            records.create("Patient", {"resourceType": "Patient", "active": True})
            written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        made = [backups.service.create() for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    assert written[0] > 0
    url = restore_url()
    restored = backups.service.restore(made[-1].backup_id, into=url, decryptor=backups.decryptor)
    assert restored.sequence == made[-1].sequence_to
    assert versions(url) == versions(source.settings_url)[: restored.sequence]
    assert_sound(backups, url, tmp_path / "online")


def test_verify_and_drill(backups: Backups) -> None:
    seed(backups.instance, 2)
    first = backups.service.create()
    seed(backups.instance, 1, tag="E")
    backups.service.create()
    plain = backups.service.verify()
    assert plain.ok, plain.to_json()
    assert "note" in plain.targets["t1"]
    full = backups.service.verify(decryptor=backups.decryptor, deep=True)
    assert full.ok, full.to_json()
    assert full.deep is not None
    assert full.deep["ok"]
    # Every version was opened and its MAC checked; the derived search index was not built.
    assert full.deep["versions"] == full.deep["sequence"] > 0
    assert full.deep["indexed"] == 0
    one = backups.service.verify(first.backup_id, decryptor=backups.decryptor)
    assert one.ok
    assert [b["backup_id"] for b in one.targets["t1"]["backups"]] == [first.backup_id]
    drill = backups.service.drill(decryptor=backups.decryptor)
    assert drill.rto_seconds > 0
    assert drill.rpo_seconds is not None
    assert drill.rpo_seconds >= 0
    recorded = backups.service.last_drill()
    assert recorded is not None
    assert recorded["backup_id"] == drill.backup_id


def test_iter_backup_rows(backups: Backups) -> None:
    seed(backups.instance, 2)
    first = backups.service.create()
    seed(backups.instance, 2, tag="F")
    second = backups.service.create()
    got = list(
        backups.service.iter_backup_rows(
            second.backup_id, decryptor=backups.decryptor, tables=["resource_version"]
        )
    )
    assert [r["seq"] for _t, r in got] == list(range(1, second.sequence_to + 1))
    assert versions(backups.instance.settings_url) == [tuple(r.values()) for _t, r in got]
    early = list(
        backups.service.iter_backup_rows(
            second.backup_id,
            decryptor=backups.decryptor,
            tables=["resource_version"],
            at=first.sequence_to,
        )
    )
    assert len(early) == first.sequence_to
    users = list(
        backups.service.iter_backup_rows(
            second.backup_id, decryptor=backups.decryptor, tables=["user_account"]
        )
    )
    assert users
    assert all(t == "user_account" for t, _r in users)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=False)
def test_sqlite_backup_restores_into_postgresql_and_mariadb(
    backups: Backups, tmp_path: Path
) -> None:
    """Back up SQLite, restore into each server engine that was asked for."""
    from tests.conftest import _server_database, requested_engines

    seed(backups.instance, 3)
    made = backups.service.create()
    source = versions(backups.instance.settings_url)
    for engine in [e for e in requested_engines() if e != "sqlite"]:
        gen = _server_database(engine)
        url = next(gen)
        try:
            restored = backups.service.restore(
                made.backup_id, into=url, decryptor=backups.decryptor
            )
            assert restored.engine == engine
            assert versions(url) == source
            assert_sound(backups, url, tmp_path / engine)
        finally:
            for _ in gen:
                pass


@pytest.mark.parametrize("engine", ["sqlite"])
def test_every_table_is_backed_up_or_rebuilt(backups: Backups) -> None:
    """A table the plan leaves out must be rebuilt on restore or be session state."""
    from hearth.storage.backup import EPHEMERAL_TABLES, backup_plan, is_derived
    from hearth.storage.sql.tables import metadata

    planned = {p.name for p in backup_plan()}
    for name in metadata.tables:
        assert (name in planned) != (is_derived(name) or name in EPHEMERAL_TABLES), name
    assert "search_care_link" not in planned
    assert {"user_account", "crypto_key", "audit_entry", "resource_version"} <= planned


@pytest.mark.parametrize("engine", ["sqlite"])
def test_ids_of_backups_in_one_second_sort_in_order(backups: Backups) -> None:
    from hearth.backupfmt.manifest import BackupKind

    seed(backups.instance, 1)
    made = backups.service.create()
    manifest = backups.service._manifest(backups.target, made.backup_id)
    stamp = made.backup_id.split("-")[0]
    for suffix in ("0" * 16, "7" * 16, "f" * 15 + "e"):
        prev = f"{stamp}-{suffix}"
        for _ in range(20):
            new = backups.service._next_id(manifest.created, prev)
            assert new > prev
            assert new.startswith(stamp)
    with pytest.raises(HearthError) as caught:
        backups.service._next_id(manifest.created, "20991231T000000Z-" + "0" * 16)
    assert "clock is behind" in caught.value.detail
    assert manifest.kind is BackupKind.FULL


@pytest.mark.parametrize("engine", ["sqlite"])
def test_runs_to_different_targets_keep_each_chain(backups: Backups, tmp_path: Path) -> None:
    """``--target`` may pick different targets from run to run: each keeps its own chain and
    the head this instance recorded for it."""
    from hearth.targets import LocalDirectoryTarget
    from hearth.wiring import backup_service

    other = LocalDirectoryTarget(tmp_path / "other", label="t2")
    to_other = backup_service(backups.settings, backups.instance.container, targets=[other])
    both = backup_service(
        backups.settings, backups.instance.container, targets=[backups.target, other]
    )
    seed(backups.instance, 2)
    first = backups.service.create()
    assert to_other.create().kind == "full"
    seed(backups.instance, 1, tag="G")
    again = backups.service.create()
    assert again.kind == "incremental"
    assert backups.service._manifest(backups.target, again.backup_id).previous.backup_id == (  # type: ignore[union-attr]
        first.backup_id
    )
    assert to_other.create().kind == "incremental"
    assert backups.service.verify().ok
    assert to_other.verify().ok
    # A run to both: the second target's chain is another one, so a new chain starts.
    assert both.create().kind == "full"
    report = both.verify(decryptor=backups.decryptor)
    assert report.ok, [(t, b["failures"]) for t, b in report.targets.items()]
    assert both.create().kind == "incremental"
    # One target goes on alone from the shared head; the next run to both must not fork it.
    seed(backups.instance, 1, tag="H")
    assert to_other.create().kind == "incremental"
    again_both = both.create()
    assert again_both.kind == "full"
    report = both.verify(decryptor=backups.decryptor)
    assert report.ok, report.to_json()


@pytest.mark.parametrize("engine", ["sqlite"])
def test_backup_from_an_older_schema_restores_in_two_phases(
    backups: Backups,
    restore_url: Callable[[], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backup made before a migration is loaded at its own schema, migrated, then proved;
    a failure after the first commit still leaves the target empty."""
    from hearth.storage.backup import Loader, RestoreDatabase

    seed(backups.instance, 2)
    made = backups.service.create()
    monkeypatch.setattr(RestoreDatabase, "at_head", staticmethod(lambda _revision: False))
    url = restore_url()
    restored = backups.service.restore(made.backup_id, into=url, decryptor=backups.decryptor)
    assert versions(url) == versions(backups.instance.settings_url)
    assert restored.indexed > 0
    assert_sound(backups, url, tmp_path / "two-phase")

    def broken(self: Loader, keyring: object, batch: int = 500) -> int:
        raise HearthError(BACKUP_ARGUMENT, "index rebuild failed")

    monkeypatch.setattr(Loader, "reindex", broken)
    second = restore_url()
    with pytest.raises(HearthError):
        backups.service.restore(made.backup_id, into=second, decryptor=backups.decryptor)
    db = RestoreDatabase(second)
    try:
        assert db.is_empty()
    finally:
        db.close()


def test_keyset_pages_return_every_row_once(backups: Backups) -> None:
    """Tiny pages (2 rows) over every table the plan reads, composite keys included, give the
    same rows, of the same types, as one plain query through SQLAlchemy, in key order."""
    from sqlalchemy import select

    from hearth.storage.backup import backup_plan, open_snapshot

    seed(backups.instance, 4)
    raise_alarm(backups.instance.container, "pages")
    store = backups.instance.container.store
    with open_snapshot(store, batch=2) as paged:
        for plan in backup_plan():
            got = list(paged.rows(plan))
            expected = [
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                for r in paged.conn.execute(select(plan.table).order_by(*plan.order())).all()
            ]
            assert got == expected, plan.name
            # The driver's own cursor gives what SQLAlchemy gave: booleans as bool (SQLite and
            # MariaDB store integers), binary as bytes; the backup encodes by type.
            assert [tuple(map(type, r)) for r in got] == [tuple(map(type, r)) for r in expected], (
                plan.name
            )
            marks = paged.marks()
            if plan.sequence == "audit" and marks.audit > 3:
                window = list(paged.rows(plan, after=2, upto=marks.audit - 1))
                assert window == [
                    r for r in expected if 2 < r[plan.columns.index("seq")] < marks.audit
                ]
