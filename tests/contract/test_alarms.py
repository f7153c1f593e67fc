"""The durable alarm store on every engine: de-duplication, re-notification, the workflow,
the audit of every transition, sealed notes and the delivery outbox."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from hearth.domain import AlarmState, DeliveryState, HearthError, Secret, Severity, errors
from hearth.notify import LogSink, WebhookSink
from hearth.services.alarms import AlarmService, DeliveryPolicy
from hearth.services.integrity import verify_audit
from hearth.storage.alarms import AlarmStore, SinkRoute
from tests.alarm_support import WebhookReceiver, alarm, closed_port, read_jsonl, service_for
from tests.support import FixedClock, Instance, SeededRandom, make_instance

pytestmark = pytest.mark.engines


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def inst(tmp_path: Path, database_url: str | None, clock: FixedClock) -> Iterator[Instance]:
    instance = make_instance(tmp_path / "home", database_url, clock=clock)
    try:
        yield instance
    finally:
        instance.container.close()


def audit_rows(inst: Instance) -> list[tuple[str, str, str, str | None]]:
    with inst.container.db.read.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT actor, action, outcome, res_id FROM audit_entry "
                "WHERE action LIKE 'alarm.%' ORDER BY seq"
            )
        ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def test_a_raised_alarm_is_stored_notified_and_audited(
    inst: Instance, clock: FixedClock, tmp_path: Path
) -> None:
    log_path = tmp_path / "alarms.jsonl"
    service = service_for(inst, [LogSink(path=log_path)], clock)
    service.raise_alarm(alarm("Patient/p1", seq="3"))
    assert service.list_alarms() == []  # queued only: nothing happens in the caller
    run = service.process()
    assert run.delivered == 1
    [stored] = service.list_alarms()
    assert stored.state is AlarmState.OPEN
    assert stored.count == 1
    assert stored.details == {"seq": "3"}
    assert stored.first_seen == clock.now()
    [delivery] = service.get(stored.alarm_id).deliveries
    assert delivery.sink == "log"
    assert delivery.state is DeliveryState.DELIVERED
    [line] = read_jsonl(log_path)
    assert line["alarm"]["id"] == stored.alarm_id  # type: ignore[index]
    assert line["format"] == "hearth-alarm"
    assert audit_rows(inst) == [("system:alarms", "alarm.raise", "success", stored.alarm_id)]
    assert verify_audit(inst.container.system_repository("test")).ok


def test_repeats_count_against_the_open_alarm_and_renotify_after_the_interval(
    inst: Instance, clock: FixedClock, tmp_path: Path
) -> None:
    log_path = tmp_path / "alarms.jsonl"
    policy = DeliveryPolicy(renotify=timedelta(minutes=60))
    service = service_for(inst, [LogSink(path=log_path)], clock, policy)
    for _ in range(3):
        service.raise_alarm(alarm("Patient/p1"))
        service.process()
        clock.advance(minutes=10)
    [stored] = service.list_alarms()
    assert stored.count == 3
    assert stored.notices == 1
    assert stored.last_seen == clock.now() - timedelta(minutes=10)
    assert len(read_jsonl(log_path)) == 1
    clock.advance(minutes=60)
    service.raise_alarm(alarm("Patient/p1"))
    service.process()
    [stored] = service.list_alarms()
    assert (stored.count, stored.notices) == (4, 2)
    lines = read_jsonl(log_path)
    assert [line["notice"] for line in lines] == [1, 2]
    assert lines[1]["alarm"]["count"] == 4  # type: ignore[index]
    # Another subject is another alarm; only the first of each is audited.
    service.raise_alarm(alarm("Patient/p2"))
    service.process()
    assert len(service.list_alarms()) == 2
    assert [a for _, a, _, _ in audit_rows(inst)] == ["alarm.raise", "alarm.raise"]


def test_zero_renotify_never_resends(inst: Instance, clock: FixedClock, tmp_path: Path) -> None:
    log_path = tmp_path / "alarms.jsonl"
    service = service_for(inst, [LogSink(path=log_path)], clock, DeliveryPolicy(renotify=None))
    for _ in range(3):
        service.raise_alarm(alarm())
        service.process()
        clock.advance(days=1)
    assert len(read_jsonl(log_path)) == 1


def test_acknowledged_alarms_count_but_stay_quiet_and_escalation_always_notifies(
    inst: Instance, clock: FixedClock, tmp_path: Path
) -> None:
    log_path = tmp_path / "alarms.jsonl"
    service = service_for(inst, [LogSink(path=log_path)], clock)
    service.raise_alarm(alarm(severity=Severity.WARNING))
    service.process()
    [stored] = service.list_alarms()
    service.acknowledge(stored.alarm_id, by="user:alice", note="on it")
    clock.advance(hours=5)
    service.raise_alarm(alarm(severity=Severity.WARNING))
    service.process()
    assert len(read_jsonl(log_path)) == 1
    service.raise_alarm(alarm(severity=Severity.CRITICAL))
    service.process()
    lines = read_jsonl(log_path)
    assert len(lines) == 2
    assert lines[1]["alarm"]["severity"] == "critical"  # type: ignore[index]
    assert lines[1]["alarm"]["state"] == "acknowledged"  # type: ignore[index]
    stored = service.get(stored.alarm_id)
    assert (stored.count, stored.severity) == (3, Severity.CRITICAL)


def test_the_workflow_records_who_when_and_a_sealed_note(inst: Instance, clock: FixedClock) -> None:
    service = service_for(inst, [], clock)
    service.raise_alarm(alarm())
    service.process()
    [stored] = service.list_alarms()
    alarm_id = stored.alarm_id
    clock.advance(minutes=5)
    acked = service.acknowledge(alarm_id, by="user:alice", note="Checking Jane Roe's chart")
    assert acked.state is AlarmState.ACKNOWLEDGED
    assert (acked.acknowledged_by, acked.acknowledged_at) == ("user:alice", clock.now())
    assert acked.acknowledge_note == "Checking Jane Roe's chart"
    with pytest.raises(HearthError) as again:
        service.acknowledge(alarm_id, by="user:bob")
    assert again.value.code is errors.ALARM_TRANSITION
    clock.advance(minutes=5)
    resolved = service.resolve(alarm_id, by="user:bob", note="restored from backup")
    assert resolved.state is AlarmState.RESOLVED
    assert (resolved.resolved_by, resolved.resolved_at) == ("user:bob", clock.now())
    assert resolved.resolve_note == "restored from backup"
    assert resolved.acknowledge_note == "Checking Jane Roe's chart"
    with pytest.raises(HearthError) as closed:
        service.resolve(alarm_id, by="user:bob")
    assert closed.value.code is errors.ALARM_TRANSITION
    with pytest.raises(HearthError) as missing:
        service.resolve("0" * 32, by="user:bob")
    assert missing.value.code is errors.ALARM_NOT_FOUND
    assert audit_rows(inst) == [
        ("system:alarms", "alarm.raise", "success", alarm_id),
        ("user:alice", "alarm.acknowledge", "success", alarm_id),
        ("user:bob", "alarm.acknowledge", "invalid", alarm_id),
        ("user:bob", "alarm.resolve", "success", alarm_id),
        ("user:bob", "alarm.resolve", "invalid", alarm_id),
        ("user:bob", "alarm.resolve", "not-found", "0" * 32),
    ]
    # The notes are sealed: neither the alarm row nor the audit chain holds them in the clear.
    with inst.container.db.read.connect() as conn:
        for table, column in (("alarm", "ack_note"), ("audit_entry", "body")):
            for (value,) in conn.execute(text(f"SELECT {column} FROM {table}")):
                assert b"Jane Roe" not in bytes(value or b"")
    assert verify_audit(inst.container.system_repository("test")).ok


def test_an_open_alarm_may_be_resolved_directly_and_a_repeat_then_opens_a_new_one(
    inst: Instance, clock: FixedClock
) -> None:
    service = service_for(inst, [], clock)
    service.raise_alarm(alarm())
    service.process()
    [first] = service.list_alarms()
    service.resolve(first.alarm_id, by="user:alice")
    service.raise_alarm(alarm())
    service.process()
    [second] = service.list_alarms(states=[AlarmState.OPEN])
    assert second.alarm_id != first.alarm_id
    assert second.count == 1
    assert len(service.list_alarms(states=[AlarmState.RESOLVED])) == 1
    assert service.counts() == {"open": 1, "resolved": 1}


def test_concurrent_raisers_make_exactly_one_alarm(inst: Instance, clock: FixedClock) -> None:
    """Two processes' workers recording the same alarm at once: the unique active key lets
    exactly one open it; every other occurrence is counted."""
    stores = [service_for(inst, [], clock)._store for _ in range(2)]
    routes = [SinkRoute("log", Severity.INFO)]
    errors_seen: list[BaseException] = []

    def work(store: object) -> None:
        try:
            for _ in range(10):
                store.record(alarm(), now=clock.now(), routes=routes, renotify=None)  # type: ignore[attr-defined]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors_seen.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors_seen == []
    [stored] = stores[0].list_alarms()
    assert stored.count == 20


def test_failed_notices_are_retried_with_backoff_then_given_up(
    inst: Instance, clock: FixedClock
) -> None:
    sink = WebhookSink(
        name="oncall", url=f"http://127.0.0.1:{closed_port()}/x", secret=Secret("s3cret-value")
    )
    policy = DeliveryPolicy(
        max_attempts=3, retry_base=timedelta(seconds=10), retry_max=timedelta(seconds=15)
    )
    service = service_for(inst, [sink], clock, policy)
    service.raise_alarm(alarm())
    assert service.process().failed == 1
    [stored] = service.list_alarms()
    [d] = service.get(stored.alarm_id).deliveries
    assert (d.state, d.attempts) == (DeliveryState.PENDING, 1)
    assert d.last_error is not None
    assert "connection failed" in d.last_error
    assert service.process().failed == 0  # not due yet: 10 s back-off
    clock.advance(seconds=10)
    assert service.process().failed == 1
    clock.advance(seconds=14)
    assert service.process().failed == 0  # the second back-off is 15 s (20 s capped)
    clock.advance(seconds=1)
    assert service.process().failed == 1
    [d] = service.get(stored.alarm_id).deliveries
    assert (d.state, d.attempts) == (DeliveryState.FAILED, 3)
    clock.advance(days=1)
    assert service.process().failed == 0


def test_pending_notices_survive_a_restart_and_are_sent_by_the_next_worker(
    inst: Instance, clock: FixedClock
) -> None:
    dead = WebhookSink(
        name="oncall", url=f"http://127.0.0.1:{closed_port()}/x", secret=Secret("s3cret-value")
    )
    first = service_for(inst, [dead], clock)
    first.raise_alarm(alarm())
    first.process()
    receiver = WebhookReceiver()
    try:
        live = WebhookSink(name="oncall", url=receiver.url, secret=Secret("s3cret-value"))
        second = service_for(inst, [live], clock)
        clock.advance(minutes=1)
        assert second.process().delivered == 1
        [request] = receiver.wait_for(1)
        [stored] = second.list_alarms()
        assert request.headers["X-Hearth-Alarm"] == stored.alarm_id
        [d] = second.get(stored.alarm_id).deliveries
        assert (d.state, d.attempts) == (DeliveryState.DELIVERED, 2)
    finally:
        receiver.stop()


def test_a_claimed_notice_is_not_sent_twice_by_two_processes(
    inst: Instance, clock: FixedClock
) -> None:
    a = service_for(inst, [LogSink()], clock)
    b = service_for(inst, [LogSink()], clock)
    a.raise_alarm(alarm())
    a._record_pending()
    lease = timedelta(minutes=2)
    claimed = a._store.claim_due(now=clock.now(), lease=lease, limit=10)
    assert len(claimed) == 1
    assert b._store.claim_due(now=clock.now(), lease=lease, limit=10) == []
    # A worker that died holding the lease gives it up when the lease runs out.
    clock.advance(minutes=3)
    assert len(b._store.claim_due(now=clock.now(), lease=lease, limit=10)) == 1


class _SharedPrefixIds(SeededRandom):
    """Alarm ids (16 random bytes) that all begin ``abcdef``; other randomness as seeded."""

    def __init__(self) -> None:
        super().__init__()
        self.issued = 0

    def token_bytes(self, n: int) -> bytes:
        if n != 16:
            return super().token_bytes(n)
        self.issued += 1
        return bytes.fromhex("abcdef") + bytes([self.issued]) + bytes(12)


def test_an_alarm_is_named_by_a_unique_prefix_of_its_id(inst: Instance, clock: FixedClock) -> None:
    c = inst.container
    service = AlarmService(
        AlarmStore(c.store, c.audit, c.keyring, _SharedPrefixIds()),
        [],
        clock=clock,
        instance_id=c.settings.instance_id,
        policy=DeliveryPolicy(),
        admin_roles=frozenset({"bootstrap-admin"}),
        background=False,
    )
    service.raise_alarm(alarm("Patient/p1"))
    service.raise_alarm(alarm("Patient/p2"))
    service.process()
    first, second = sorted(a.alarm_id for a in service.list_alarms())
    assert first[:6] == second[:6] == "abcdef"
    assert service.get(first[:8]).alarm_id == first  # abcdef01...
    assert service.acknowledge(second[:8].upper(), by="operator:ann").alarm_id == second
    with pytest.raises(HearthError) as ambiguous:
        service.get("abcdef0")
    assert ambiguous.value.code is errors.ALARM_AMBIGUOUS
    for unknown in ("abcdee", "abcde", "abcdef%", "zzzzzzz"):
        with pytest.raises(HearthError) as missing:
            service.get(unknown)
        assert missing.value.code is errors.ALARM_NOT_FOUND
