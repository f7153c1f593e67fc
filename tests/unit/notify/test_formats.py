"""Sink formats: the notice document, the e-mail text and RFC 5424 syslog lines."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from hearth.domain import AlarmKind, AlarmState, Severity, StoredAlarm
from hearth.notify import Notice, format_rfc5424, notice_document, notice_json, notice_text
from hearth.notify.notice import notice_subject

NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def stored(**changes: object) -> StoredAlarm:
    fields: dict[str, object] = {
        "alarm_id": "ab" * 16,
        "kind": AlarmKind.INTEGRITY_MISMATCH,
        "severity": Severity.CRITICAL,
        "subject": "Patient/7d1c",
        "summary": "MAC does not match",
        "details": {"seq": "3", "version": "1"},
        "state": AlarmState.OPEN,
        "count": 2,
        "first_seen": NOW,
        "last_seen": NOW,
        "notices": 1,
        "last_notified": NOW,
    }
    fields.update(changes)
    return StoredAlarm(**fields)  # type: ignore[arg-type]


def notice(**changes: object) -> Notice:
    return Notice(stored(**changes), 1, 42, "inst01", NOW)


def test_notice_document_is_versioned_and_names_the_alarm_only() -> None:
    doc = notice_document(notice())
    assert doc == {
        "format": "hearth-alarm",
        "version": 1,
        "instance": "inst01",
        "delivery": "inst01-42",
        "notice": 1,
        "sent": "2026-01-15T09:30:00.000000Z",
        "alarm": {
            "id": "ab" * 16,
            "kind": "integrity.mismatch",
            "severity": "critical",
            "subject": "Patient/7d1c",
            "summary": "MAC does not match",
            "details": {"seq": "3", "version": "1"},
            "state": "open",
            "count": 2,
            "first_seen": "2026-01-15T09:30:00.000000Z",
            "last_seen": "2026-01-15T09:30:00.000000Z",
        },
    }
    # Canonical: sorted keys, no whitespace (what the webhook signs).
    raw = notice_json(notice())
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()


def test_operators_notes_are_never_sent() -> None:
    n = notice(acknowledge_note="Jane Roe's chart", resolve_note="called Jane Roe")
    assert b"Jane Roe" not in notice_json(n)
    assert "Jane Roe" not in notice_text(n)


def test_email_subject_and_text() -> None:
    assert notice_subject(notice()) == "[Hearth CRITICAL] integrity.mismatch Patient/7d1c (x2)"
    text = notice_text(notice())
    assert "hearth alarm ack " + "ab" * 16 in text
    assert "  seq: 3" in text


def test_rfc5424_header_fields() -> None:
    line = format_rfc5424(
        notice_document(notice()),
        severity=Severity.CRITICAL,
        msgid="integrity.mismatch",
        facility=16,
        timestamp=NOW,
        hostname="db1.example.org",
        app_name="hearth",
        procid="4242",
    ).decode("ascii")
    # PRI = local0 (16) * 8 + crit (2) = 130; VERSION 1 (RFC 5424 sec. 6.2).
    assert line.startswith(
        "<130>1 2026-01-15T09:30:00.000000Z db1.example.org hearth 4242 integrity.mismatch "
        '[origin software="hearth"] {'
    )
    body = json.loads(line.split("] ", 1)[1])
    assert body["alarm"]["subject"] == "Patient/7d1c"


def test_rfc5424_severities_and_nil_values() -> None:
    for severity, pri in ((Severity.WARNING, 4 * 8 + 4), (Severity.INFO, 1 * 8 + 6)):
        facility = 4 if severity is Severity.WARNING else 1
        line = format_rfc5424(
            {},
            severity=severity,
            msgid="",
            facility=facility,
            timestamp=NOW,
            hostname="bad host",
            app_name="hearth",
            procid="1",
        ).decode()
        assert line.startswith(f"<{pri}>1 ")
        # Spaces are not PRINTUSASCII: removed; an empty field is the NILVALUE.
        assert re.match(rf"<{pri}>1 \S+ badhost hearth 1 - \[", line)


def test_rfc5424_non_ascii_is_escaped_and_long_messages_shrink_to_the_limit() -> None:
    doc = notice_document(notice(summary="Prüfsumme " + "x" * 3000, details={"k": "v" * 200}))
    line = format_rfc5424(
        doc,
        severity=Severity.CRITICAL,
        msgid="integrity.mismatch",
        facility=16,
        timestamp=NOW,
        hostname="h",
        app_name="hearth",
        procid="1",
        limit=2048,
    )
    assert len(line) <= 2048
    line.decode("ascii")
    body = json.loads(line.split(b"] ", 1)[1])
    assert body["alarm"]["details"] == {}
    assert body["alarm"]["summary"].startswith("Pr\u00fcfsumme")
