"""The sinks that ``[alarms]`` in hearth.toml configures (docs/operations.md, "Alarms")."""

from __future__ import annotations

from hearth.notify.log import LogSink
from hearth.notify.notice import Sink
from hearth.notify.smtp import EmailSink
from hearth.notify.syslog import SyslogSink
from hearth.notify.webhook import WebhookSink
from hearth.settings import AlarmSettings

__all__ = ["build_sinks"]


def build_sinks(settings: AlarmSettings) -> list[Sink]:
    sinks: list[Sink] = []
    if settings.log.enabled:
        sinks.append(LogSink(path=settings.log.path, min_severity=settings.log.min_severity))
    sinks += [
        WebhookSink(
            name=w.name,
            url=w.url,
            secret=w.secret,
            timeout=w.timeout_seconds,
            min_severity=w.min_severity,
            cafile=w.cafile,
        )
        for w in settings.webhooks
    ]
    sinks += [
        EmailSink(
            name=e.name,
            host=e.host,
            port=e.port,
            sender=e.sender,
            recipients=e.recipients,
            security=e.security,
            username=e.username,
            password=e.password,
            timeout=e.timeout_seconds,
            min_severity=e.min_severity,
            cafile=e.cafile,
        )
        for e in settings.emails
    ]
    sinks += [
        SyslogSink(
            name=s.name,
            transport=s.transport,
            host=s.host,
            port=s.port,
            socket_path=s.socket,
            facility=s.facility,
            app_name=s.app_name,
            min_severity=s.min_severity,
            timeout=s.timeout_seconds,
        )
        for s in settings.syslogs
    ]
    return sinks
