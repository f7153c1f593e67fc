"""Each sink delivers to a real receiver on loopback; failures are recorded and retried; and
raising an alarm never waits for a sink."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from hearth.crypto.webhook import verify_webhook
from hearth.domain import DeliveryState, HearthError, IntegrityError, Secret, Severity, errors
from hearth.notify import EmailSink, SyslogSink, WebhookSink
from hearth.services.alarms import DeliveryPolicy
from tests.alarm_support import (
    SyslogReceiver,
    WebhookReceiver,
    alarm,
    loopback_tls,
    service_for,
)
from tests.servers.smtp import SmtpServer
from tests.support import FixedClock, Instance

SECRET = "whsec-0123456789abcdef"


def webhook(receiver: WebhookReceiver, **options: object) -> WebhookSink:
    return WebhookSink(name="oncall", url=receiver.url, secret=Secret(SECRET), **options)  # type: ignore[arg-type]


# -- webhook -----------------------------------------------------------------------------------


def test_webhook_body_is_signed_and_verifiable_by_the_receiver(
    inst: Instance, clock: FixedClock, receiver: WebhookReceiver
) -> None:
    service = service_for(inst, [webhook(receiver)], clock)
    service.raise_alarm(alarm("Patient/p9", seq="12"))
    assert service.process().delivered == 1
    [request] = receiver.requests
    [stored] = service.list_alarms()
    now = int(clock.now().timestamp())
    verify_webhook(
        SECRET.encode(),
        signature=request.headers["X-Hearth-Signature"],
        timestamp=request.headers["X-Hearth-Timestamp"],
        body=request.body,
        now=now,
    )
    assert request.path == "/hooks/hearth"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Hearth-Alarm"] == stored.alarm_id
    assert re.fullmatch(r"[0-9a-f]+-\d+", request.headers["X-Hearth-Delivery"])
    body = orjson.loads(request.body)
    assert body["alarm"]["subject"] == "Patient/p9"
    assert body["alarm"]["details"] == {"seq": "12"}
    # A receiver refuses the same request replayed later, or with a changed body.
    with pytest.raises(IntegrityError):
        verify_webhook(
            SECRET.encode(),
            signature=request.headers["X-Hearth-Signature"],
            timestamp=request.headers["X-Hearth-Timestamp"],
            body=request.body,
            now=now + 3600,
        )
    with pytest.raises(IntegrityError):
        verify_webhook(
            SECRET.encode(),
            signature=request.headers["X-Hearth-Signature"],
            timestamp=request.headers["X-Hearth-Timestamp"],
            body=request.body.replace(b"Patient/p9", b"Patient/p8"),
            now=now,
        )


def test_webhook_server_errors_are_retried_and_the_retry_is_signed_afresh(
    inst: Instance, clock: FixedClock, receiver: WebhookReceiver
) -> None:
    receiver.statuses = [500, 503]
    policy = DeliveryPolicy(retry_base=timedelta(seconds=30))
    service = service_for(inst, [webhook(receiver)], clock, policy)
    service.raise_alarm(alarm())
    assert service.process().failed == 1
    [stored] = service.list_alarms()
    [d] = service.get(stored.alarm_id).deliveries
    assert (d.state, d.attempts, d.last_error) == (DeliveryState.PENDING, 1, "HTTP 500")
    clock.advance(seconds=30)
    assert service.process().failed == 1
    clock.advance(seconds=60)
    assert service.process().delivered == 1
    [d] = service.get(stored.alarm_id).deliveries
    assert (d.state, d.attempts) == (DeliveryState.DELIVERED, 3)
    first, _, last = receiver.requests
    # One notice: the same delivery id on every attempt, a new timestamp and signature.
    assert first.headers["X-Hearth-Delivery"] == last.headers["X-Hearth-Delivery"]
    assert int(last.headers["X-Hearth-Timestamp"]) - int(first.headers["X-Hearth-Timestamp"]) == 90
    verify_webhook(
        SECRET.encode(),
        signature=last.headers["X-Hearth-Signature"],
        timestamp=last.headers["X-Hearth-Timestamp"],
        body=last.body,
        now=int(clock.now().timestamp()),
    )


def test_webhook_redirects_are_not_followed(
    inst: Instance, clock: FixedClock, receiver: WebhookReceiver
) -> None:
    receiver.statuses = [302]
    sink = webhook(receiver)
    service = service_for(inst, [sink], clock)
    service.raise_alarm(alarm())
    service.process()
    [stored] = service.list_alarms()
    [d] = service.get(stored.alarm_id).deliveries
    assert d.last_error == "HTTP 302"
    assert len(receiver.requests) == 1


def test_a_hanging_receiver_times_out(inst: Instance, clock: FixedClock) -> None:
    receiver = WebhookReceiver(hold=threading.Event())
    try:
        service = service_for(inst, [webhook(receiver, timeout=0.5)], clock)
        service.raise_alarm(alarm())
        assert service.process().failed == 1
        [stored] = service.list_alarms()
        [d] = service.get(stored.alarm_id).deliveries
        assert d.last_error == "timed out"
    finally:
        receiver.stop()


def test_raising_never_waits_for_a_sink(inst: Instance, clock: FixedClock) -> None:
    """The caller returns while the worker is still stuck talking to the receiver."""
    hold = threading.Event()
    receiver = WebhookReceiver(hold=hold)
    c = inst.container
    from hearth.services.alarms import AlarmService
    from hearth.storage.alarms import AlarmStore

    service = AlarmService(
        AlarmStore(c.store, c.audit, c.keyring, c.random),
        [webhook(receiver, timeout=20)],
        clock=clock,
        instance_id="i",
        background=True,
    )
    try:
        service.raise_alarm(alarm("Patient/a"))
        receiver.wait_for(1)  # the worker is now blocked inside the sink...
        service.raise_alarm(alarm("Patient/b"))  # ...and raising still returns at once
        assert not hold.is_set()
        hold.set()
        receiver.wait_for(2)
    finally:
        hold.set()
        service.close()
        receiver.stop()
    assert {a.subject for a in service.list_alarms()} == {"Patient/a", "Patient/b"}


def test_a_broken_sink_does_not_stop_the_others(
    inst: Instance, clock: FixedClock, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    broken = SyslogSink(name="syslog", transport="unix", socket_path=tmp_path / "missing.sock")
    service = service_for(inst, [broken, webhook(receiver)], clock)
    service.raise_alarm(alarm())
    run = service.process()
    assert (run.delivered, run.failed) == (1, 1)
    [stored] = service.list_alarms()
    states = {d.sink: d.state for d in service.get(stored.alarm_id).deliveries}
    assert states == {"syslog": DeliveryState.PENDING, "oncall": DeliveryState.DELIVERED}


def test_sinks_only_get_alarms_at_or_above_their_severity(
    inst: Instance, clock: FixedClock, receiver: WebhookReceiver
) -> None:
    service = service_for(inst, [webhook(receiver, min_severity=Severity.CRITICAL)], clock)
    service.raise_alarm(alarm("user:u1", severity=Severity.WARNING))
    service.raise_alarm(alarm("user:u2", severity=Severity.CRITICAL))
    service.process()
    assert len(receiver.requests) == 1
    assert orjson.loads(receiver.requests[0].body)["alarm"]["subject"] == "user:u2"


# -- e-mail ------------------------------------------------------------------------------------


def test_email_is_sent_over_smtp(
    inst: Instance, clock: FixedClock, smtp_server: SmtpServer
) -> None:
    sink = EmailSink(
        name="mail",
        host=smtp_server.host,
        port=smtp_server.port,
        sender="hearth@clinic.example",
        recipients=("oncall@clinic.example", "privacy@clinic.example"),
        security="none",
    )
    service = service_for(inst, [sink], clock)
    service.raise_alarm(alarm("Patient/p1", seq="3"))
    assert service.process().delivered == 1
    [received] = smtp_server.wait_for(1)
    [stored] = service.list_alarms()
    assert received.mail_from == "hearth@clinic.example"
    assert received.rcpt_tos == ("oncall@clinic.example", "privacy@clinic.example")
    message = received.message
    assert message["Subject"] == "[Hearth CRITICAL] integrity.mismatch Patient/p1"
    assert message["X-Hearth-Alarm"] == stored.alarm_id
    text = message.get_content()
    assert f"hearth alarm ack {stored.alarm_id}" in text
    assert "seq: 3" in text


def test_email_with_starttls_and_login(inst: Instance, clock: FixedClock, tmp_path: Path) -> None:
    cert, context = loopback_tls(tmp_path)
    server = SmtpServer(tls_context=context, credentials=("hearth", "mail-pass"))
    server.start()
    try:
        sink = EmailSink(
            name="mail",
            host=server.host,
            port=server.port,
            sender="hearth@clinic.example",
            recipients=("oncall@clinic.example",),
            security="starttls",
            username="hearth",
            password=Secret("mail-pass"),
            cafile=cert,
        )
        service = service_for(inst, [sink], clock)
        service.raise_alarm(alarm())
        assert service.process().delivered == 1
        assert len(server.wait_for(1)) == 1
        # A wrong password is a failed delivery, recorded and retried later.
        wrong = EmailSink(
            name="mail",
            host=server.host,
            port=server.port,
            sender="hearth@clinic.example",
            recipients=("oncall@clinic.example",),
            username="hearth",
            password=Secret("not-it"),
            cafile=cert,
        )
        service = service_for(inst, [wrong], clock)
        service.raise_alarm(alarm("Patient/other"))
        assert service.process().failed == 1
        other = next(a for a in service.list_alarms() if a.subject == "Patient/other")
        [d] = service.get(other.alarm_id).deliveries
        assert d.state is DeliveryState.PENDING
        assert d.last_error is not None
        assert d.last_error.startswith("SMTP")
        assert "not-it" not in d.last_error
    finally:
        server.stop()


def test_starttls_is_required_when_configured(smtp_server: SmtpServer, clock: FixedClock) -> None:
    """A server (or a man in the middle) that does not offer STARTTLS gets nothing."""
    from hearth.notify import Notice
    from tests.unit.notify.test_formats import stored

    sink = EmailSink(
        name="mail",
        host=smtp_server.host,
        port=smtp_server.port,
        sender="hearth@clinic.example",
        recipients=("oncall@clinic.example",),
        security="starttls",
    )
    with pytest.raises(HearthError) as failed:
        sink.send(Notice(stored(), 1, 1, "i", clock.now()))
    assert failed.value.code is errors.ALARM_DELIVERY_FAILED
    assert "does not offer STARTTLS" in failed.value.detail
    assert smtp_server.messages == []


# -- syslog ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp", "unix"])
def test_syslog_rfc5424_over_each_transport(
    inst: Instance, clock: FixedClock, tmp_path: Path, transport: str
) -> None:
    socket_path = tmp_path / "log.sock"
    collector = SyslogReceiver(transport, socket_path)
    try:
        sink = SyslogSink(
            name="syslog",
            transport=transport,
            port=collector.port,
            socket_path=socket_path,
            facility=10,
            hostname="hearth-test",
        )
        service = service_for(inst, [sink], clock)
        service.raise_alarm(alarm("Patient/p1"))
        assert service.process().delivered == 1
        [message] = collector.wait_for(1)
    finally:
        collector.stop()
    [stored] = service.list_alarms()
    # authpriv (10) * 8 + crit (2) = 82
    header, body = message.decode("ascii").split(' [origin software="hearth"] ', 1)
    assert re.fullmatch(
        r"<82>1 2026-01-15T09:30:00\.000000Z hearth-test hearth \d+ integrity\.mismatch", header
    )
    assert orjson.loads(body)["alarm"]["id"] == stored.alarm_id
