"""The integrity scanner on every engine: each kind of damage is found, named, and alarmed once;
the incremental scan reads only new versions; the background scanner runs in a served app."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from hearth.domain import Alarm, AlarmKind, HearthError, errors
from hearth.services.scanner import IntegrityScanner, ScanKind
from hearth.settings import IntegritySettings
from hearth.storage.sql import scan as scan_sql
from hearth.web.app import create_app
from hearth.wiring import Container
from tests.support import Instance, admin

pytestmark = pytest.mark.engines


class Alarms:
    def __init__(self) -> None:
        self.raised: list[Alarm] = []

    def raise_alarm(self, alarm: Alarm) -> None:
        self.raised.append(alarm)


def scanner(
    instance: Instance, alarms: Alarms, paced: _Paced | None = None, **settings: Any
) -> IntegrityScanner:
    """A scanner of ``instance`` in batches of 4; with ``paced``, its fake timer and pause."""
    c = instance.container
    hooks: dict[str, Any] = {} if paced is None else {"timer": paced.timer, "pause": paced.pause}
    return IntegrityScanner(
        lambda: c.system_repository("integrity-scan"),
        clock=c.clock,
        settings=IntegritySettings(**settings),
        alarms=alarms,
        batch=4,  # several batches even on a small database
        **hooks,
    )


def sql(instance: Instance, statement: str, **params: object) -> None:
    with instance.container.db.write.begin() as conn:
        conn.execute(text(statement), params)


def scalar(instance: Instance, statement: str, **params: object) -> Any:
    with instance.container.db.write.begin() as conn:
        return conn.execute(text(statement), params).scalar_one()


def seed(instance: Instance, n: int = 6) -> list[str]:
    records = instance.container.records(admin())
    ids = []
    for i in range(n):
        stored = records.create(
            "Patient", {"resourceType": "Patient", "name": [{"family": f"T{i}"}], "gender": "other"}
        )
        ids.append(stored.res_id)
    records.update("Patient", ids[0], {"resourceType": "Patient", "id": ids[0], "active": True})
    records.create(
        "Observation",
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{ids[1]}"},
        },
    )
    return ids


@pytest.fixture
def clean(instance: Instance) -> Iterator[tuple[Instance, list[str], IntegrityScanner, Alarms]]:
    """A seeded instance whose first full scan found nothing."""
    ids = seed(instance)
    alarms = Alarms()
    scan = scanner(instance, alarms)
    report = scan.scan(full=True)
    assert report.ok, [str(f) for f in report.findings]
    assert report.versions_read == 8
    return instance, ids, scan, alarms


def named(report: Any) -> list[str]:
    return [str(f) for f in report.findings]


def assert_alarmed_once(scan: IntegrityScanner, alarms: Alarms, subject: str) -> None:
    """The damage alarms at the first run that finds it, and not again at later runs."""
    matching = [a for a in alarms.raised if a.subject == subject]
    assert len(matching) == 1, alarms.raised
    for _ in range(2):
        again = scan.tick()
        assert again is not None
        assert again.findings
        assert not again.new
    assert len([a for a in alarms.raised if a.subject == subject]) == 1


def test_flipped_byte_in_a_body(clean: Any) -> None:
    instance, ids, scan, alarms = clean
    body = bytes(scalar(instance, "SELECT body FROM resource_version WHERE seq = 3"))
    flipped = body[:40] + bytes([body[40] ^ 0x01]) + body[41:]
    sql(instance, "UPDATE resource_version SET body = :b WHERE seq = 3", b=flipped)
    report = scan.tick()
    assert report is not None
    assert named(report) == [
        f"version seq 3 Patient/{ids[2]}/_history/1: sealed body does not open "
        "(edited body, id or version number)"
    ]
    assert [a.kind for a in alarms.raised] == [AlarmKind.INTEGRITY_MISMATCH]
    assert alarms.raised[0].details["seq"] == "3"
    assert "T2" not in repr(alarms.raised)  # names the record, never its content
    assert_alarmed_once(scan, alarms, f"Patient/{ids[2]}")


def test_edited_mac(clean: Any) -> None:
    instance, ids, scan, alarms = clean
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 2", m=b"\x00" * 32)
    report = scan.tick()
    assert report is not None
    assert named(report) == [
        f"version seq 2 Patient/{ids[1]}/_history/1: MAC does not match "
        "(edited MAC, time, deletion flag or sequence)"
    ]
    assert_alarmed_once(scan, alarms, f"Patient/{ids[1]}")


def test_deleted_version(clean: Any) -> None:
    instance, ids, scan, alarms = clean
    sql(instance, "DELETE FROM resource_version WHERE seq = 4")
    report = scan.tick()
    assert report is not None
    found = named(report)
    assert "missing seq 4 (unknown resource): row is missing" in found
    assert (
        f"pointer seq 4 Patient/{ids[3]}/_history/1: current pointer names no stored version"
        in found
    )
    assert_alarmed_once(scan, alarms, "seq:4")
    assert len([a for a in alarms.raised if a.subject == f"Patient/{ids[3]}"]) == 1


def test_wrong_current_pointer(clean: Any) -> None:
    instance, ids, scan, alarms = clean
    # Patient 0 has versions 1 (seq 1) and 2 (seq 7): point it back at version 1.
    sql(instance, "UPDATE resource_current SET seq = 1, version = 1 WHERE seq = 7")
    report = scan.tick()
    assert report is not None
    assert named(report) == [
        f"pointer seq 1 Patient/{ids[0]}/_history/1: current pointer is not the newest version (2)"
    ]
    assert_alarmed_once(scan, alarms, f"Patient/{ids[0]}")


def test_tampered_index_row(clean: Any) -> None:
    instance, ids, scan, alarms = clean
    first = bytes(scalar(instance, "SELECT hash FROM search_hash WHERE seq = 5 LIMIT 1"))
    sql(
        instance,
        "UPDATE search_hash SET hash = :h WHERE seq = 5 AND hash = :old",
        h=b"\xff" * 16,
        old=first,
    )
    report = scan.tick()
    assert report is not None
    assert named(report) == [
        f"index seq 5 Patient/{ids[4]}/_history/1: blind index rows (search_hash) disagree "
        "with the current version"
    ]
    assert_alarmed_once(scan, alarms, f"Patient/{ids[4]}")


def test_index_row_of_no_current_version(clean: Any) -> None:
    """A stale row for version 1 of a resource whose current version is 2 is found."""
    instance, _ids, scan, _alarms = clean
    sql(instance, "INSERT INTO search_hash (hash, seq) VALUES (:h, 1)", h=b"\xee" * 16)
    report = scan.tick()
    assert report is not None
    assert named(report) == [
        "index seq 1 (unknown resource): index rows belong to no current version"
    ]


def test_broken_audit_entry(clean: Any) -> None:
    instance, _ids, scan, alarms = clean
    sql(instance, "UPDATE audit_entry SET actor = 'someone-else' WHERE seq = 3")
    report = scan.tick()
    assert report is not None
    assert [(f.kind, f.seq) for f in report.findings] == [(ScanKind.AUDIT, 3)]
    assert "column 'actor' disagrees" in named(report)[0]
    assert [a.kind for a in alarms.raised] == [AlarmKind.AUDIT_CHAIN_BROKEN]
    assert_alarmed_once(scan, alarms, "audit-chain")


def test_a_healthy_again_record_is_cleared(clean: Any) -> None:
    instance, _ids, scan, _alarms = clean
    good = bytes(scalar(instance, "SELECT mac FROM resource_version WHERE seq = 2"))
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 2", m=b"\x00" * 32)
    report = scan.tick()
    assert report is not None
    assert report.open
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 2", m=good)
    report = scan.tick()
    assert report is not None
    assert report.ok


def test_incremental_scan_reads_only_new_versions(
    clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance, ids, scan, _alarms = clean
    records = instance.container.records(admin())
    for i in range(3):
        records.update(
            "Patient", ids[i + 1], {"resourceType": "Patient", "id": ids[i + 1], "active": False}
        )
    read: list[int] = []
    original = scan_sql.version_tuples

    def counting(conn: Any, **kw: int) -> list[tuple[Any, ...]]:
        rows = original(conn, **kw)
        read.extend(int(r[0]) for r in rows)
        return rows

    monkeypatch.setattr(scan_sql, "version_tuples", counting)
    report = scan.scan()
    assert report.ok
    assert sorted(read) == [9, 10, 11]
    assert report.versions_read == 3
    read.clear()
    assert scan.scan().versions_read == 0
    assert read == []


def test_background_tick_is_bounded(clean: Any) -> None:
    """``max_versions_per_tick`` bounds the incremental part; the cursor carries the rest."""
    instance, _ids, _scan, alarms = clean
    _more_patients(instance, 5)
    bounded = scanner(instance, alarms, max_versions_per_tick=2)
    first = bounded.tick()
    assert first is not None
    assert first.versions_read == 2
    assert first.cursors["inc.seq"] == 10
    second = bounded.tick()
    assert second is not None
    assert second.cursors["inc.seq"] == 12


def test_background_scanner_runs_in_a_served_app(instance: Instance) -> None:
    ids = seed(instance)
    alarms = Alarms()
    settings = replace(
        instance.container.settings, integrity=IntegritySettings(scan_interval_seconds=1)
    )
    container = Container(settings, alarms=alarms, alarm_worker=False)
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 2", m=b"\x00" * 32)
    with TestClient(create_app(container), base_url="http://127.0.0.1") as client:
        scanner_thread = client.app.state.scanner  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while scanner_thread.ticks < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert scanner_thread.ticks >= 2
        assert [a.subject for a in alarms.raised] == [f"Patient/{ids[1]}"]
    assert scanner_thread._thread is None  # stopped with the app
    findings = instance.container.system_repository("test").scanning().findings()
    assert [str(f.finding) for f in findings] == [
        f"version seq 2 Patient/{ids[1]}/_history/1: MAC does not match "
        "(edited MAC, time, deletion flag or sequence)"
    ]


def test_tampered_care_relationship_row(clean: Any) -> None:
    """A care link removed from the index (which would hide a patient from their clinician,
    or, added, show one to someone else) is found."""
    instance, _ids, scan, alarms = clean
    records = instance.container.records(admin())
    doctor = records.create("Practitioner", {"resourceType": "Practitioner"}).res_id
    patient = records.create(
        "Patient",
        {
            "resourceType": "Patient",
            "generalPractitioner": [{"reference": f"Practitioner/{doctor}"}],
        },
    )
    assert scan.tick() is not None
    assert scalar(instance, "SELECT COUNT(*) FROM search_care_link WHERE seq = 10") == 1
    sql(instance, "DELETE FROM search_care_link WHERE seq = 10")
    report = scan.tick()
    assert report is not None
    assert named(report) == [
        f"index seq 10 Patient/{patient.res_id}/_history/1: care relationship rows "
        "(search_care_link) disagree with the current version"
    ]
    assert_alarmed_once(scan, alarms, f"Patient/{patient.res_id}")


def test_runs_are_audited_and_one_process_scans_at_a_time(clean: Any) -> None:
    instance, _ids, scan, alarms = clean
    assert scan.tick() is not None
    with instance.container.db.write.begin() as conn:
        actors = conn.execute(
            text("SELECT actor, outcome FROM audit_entry WHERE action = 'integrity.scan'")
        ).all()
    assert len(actors) == 2  # the fixture's full scan and this run
    assert {(a, o) for a, o in actors} == {("system:integrity-scan", "success")}
    other = IntegrityScanner(
        lambda: instance.container.system_repository("integrity-scan"),
        clock=instance.container.clock,
        settings=IntegritySettings(),
        alarms=alarms,
        holder=7,
    )
    held = instance.container.system_repository("x").scanning()
    now_us = 2**62
    assert held.take_lease(now_us=1, until_us=now_us, holder=99)
    assert other.tick() is None
    with pytest.raises(HearthError) as busy:
        other.scan(wait_seconds=0)
    assert busy.value.code is errors.SCAN_BUSY
    held.release_lease(holder=99)
    assert other.tick() is not None


def test_a_row_past_the_version_counter(clean: Any) -> None:
    """A row numbered past the counter was not written by Hearth (and would make the next
    write fail on its key): it is named, and cleared once it is gone."""
    instance, ids, scan, alarms = clean
    sql(
        instance,
        "INSERT INTO resource_version (seq, res_type, res_id, version, ts_us, deleted, key_id, "
        "body, mac_key_id, mac) SELECT 12, res_type, res_id, 9, ts_us, deleted, key_id, body, "
        "mac_key_id, mac FROM resource_version WHERE seq = 2",
    )
    report = scan.tick()
    assert report is not None
    found = named(report)
    assert (
        f"version seq 12 Patient/{ids[1]}/_history/9: row numbered past the version counter "
        "(8): not written by Hearth"
    ) in found
    # Its pointer does not name it and no audited write accounts for it: said too.
    assert (
        f"pointer seq 2 Patient/{ids[1]}/_history/1: current pointer is not the newest "
        "version (9)" in found
    )
    assert_alarmed_once(scan, alarms, f"Patient/{ids[1]}")
    sql(instance, "DELETE FROM resource_version WHERE seq = 12")
    report = scan.tick()
    assert report is not None
    assert report.ok


def test_missing_and_misdirected_pointers(clean: Any) -> None:
    instance, ids, scan, _alarms = clean
    sql(instance, "DELETE FROM resource_current WHERE seq = 3")
    # Patient 4's pointer names Patient 5's version (whose own pointer is gone).
    sql(instance, "DELETE FROM resource_current WHERE res_id = :i", i=ids[5])
    sql(instance, "UPDATE resource_current SET seq = 6 WHERE seq = 5")
    report = scan.tick()
    assert report is not None
    found = named(report)
    assert f"pointer seq 3 Patient/{ids[2]}/_history/1: resource has no current pointer" in found
    assert (
        f"pointer seq 6 Patient/{ids[4]}/_history/1: current pointer disagrees with the version "
        "it names"
    ) in found
    assert f"pointer seq 6 Patient/{ids[5]}/_history/1: resource has no current pointer" in found


_VERSION_TUPLES = scan_sql.version_tuples


class _Paced:
    """A fake timer and pause for the scanner: every batch of versions read takes ``batch``
    seconds; ``pause`` records each wait and lets that time pass."""

    def __init__(self, batch: float) -> None:
        self.now = 0.0
        self.batch = batch
        self.waits: list[float] = []
        self.batches = 0
        self.stop: Callable[[], None] | None = None  # the server shutting down during a pause

    def timer(self) -> float:
        return self.now

    def pause(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        if self.stop is not None:
            self.stop()
            return True
        return False

    def read(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def slow(conn: Any, **kw: int) -> list[tuple[Any, ...]]:
            self.batches += 1
            self.now += self.batch
            return _VERSION_TUPLES(conn, **kw)

        monkeypatch.setattr(scan_sql, "version_tuples", slow)


def _more_patients(instance: Instance, n: int = 10) -> None:
    records = instance.container.records(admin())
    for _ in range(n):
        records.create("Patient", {"resourceType": "Patient", "gender": "other"})


def test_a_background_run_spends_at_most_its_busy_share_checking(
    clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After each batch a background run waits three times as long as the batch took
    (``busy_share`` 0.25), and still checks everything it would have."""
    instance, _ids, _scan, _alarms = clean
    _more_patients(instance)
    paced = _Paced(batch=2.0)
    paced.read(monkeypatch)
    report = scanner(instance, Alarms(), paced, busy_share=0.25).tick()
    assert report is not None
    assert report.ok
    assert report.cursors["inc.seq"] == 18
    # 10 new versions 4 a batch, then the rolling pass; a batch that read nothing ends a loop
    # without a pause.
    assert len(paced.waits) >= 3
    assert set(paced.waits) == {6.0}


def test_a_background_run_at_full_share_never_waits(
    clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance, _ids, _scan, _alarms = clean
    _more_patients(instance, 1)
    paced = _Paced(batch=2.0)
    paced.read(monkeypatch)
    report = scanner(instance, Alarms(), paced, busy_share=1.0).tick()
    assert report is not None
    assert report.versions_read >= 1
    assert paced.waits == []


def test_a_pause_ends_when_the_scanner_stops_and_never_outlasts_half_the_lease(
    clean: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance, _ids, _scan, _alarms = clean
    _more_patients(instance)
    # Stopping during a pause ends the run after that batch; its cursor keeps what it checked.
    stopping = _Paced(batch=1.0)
    stopping.read(monkeypatch)
    scan = scanner(instance, Alarms(), stopping)
    stopping.stop = scan.stop_soon
    report = scan.tick()
    assert report is not None
    assert stopping.waits == [3.0]
    assert report.cursors["inc.seq"] == 12
    state = instance.container.system_repository("integrity-scan").scanning().state()
    assert state["inc.seq"] == 12
    # Batches of 100 s under a 300 s lease: the first pause is cut to the 50 s left of half
    # the lease, and the run goes on without pausing after that.
    slow = _Paced(batch=100.0)
    slow.read(monkeypatch)
    report = scanner(instance, Alarms(), slow).tick()
    assert report is not None
    assert report.cursors["inc.seq"] == 18
    assert slow.waits == [50.0]


def test_hearth_integrity_scan_never_pauses(clean: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    instance, _ids, _scan, _alarms = clean
    _more_patients(instance)
    paced = _Paced(batch=2.0)
    paced.read(monkeypatch)
    report = scanner(instance, Alarms(), paced).scan(full=True)
    assert report.ok
    assert paced.batches >= 3
    assert paced.waits == []
