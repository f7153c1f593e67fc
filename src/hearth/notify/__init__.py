"""Alarm sinks: the structured log, signed webhooks, e-mail over SMTP and syslog (RFC 5424).

Each sink sends one ``Notice`` and raises ``HearthError(ALARM_DELIVERY_FAILED)`` with a short,
PHI-free reason when it cannot; retrying, backing off and recording the outcome belong to the
alarm service's delivery worker (``hearth.services.alarms``), never to the request that raised
the alarm. ``build_sinks`` makes the sinks ``[alarms]`` in hearth.toml describes.
"""

from hearth.notify.build import build_sinks
from hearth.notify.log import LogSink
from hearth.notify.notice import (
    Notice,
    Sink,
    notice_document,
    notice_json,
    notice_subject,
    notice_text,
)
from hearth.notify.smtp import EmailSink
from hearth.notify.syslog import SyslogSink, format_rfc5424
from hearth.notify.webhook import WebhookSink

__all__ = [
    "EmailSink",
    "LogSink",
    "Notice",
    "Sink",
    "SyslogSink",
    "WebhookSink",
    "build_sinks",
    "format_rfc5424",
    "notice_document",
    "notice_json",
    "notice_subject",
    "notice_text",
]
