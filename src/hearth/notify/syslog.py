"""The syslog sink: RFC 5424 messages over UDP (RFC 5426), TCP (RFC 6587) or the local socket.

A message (docs/design.md, "Sink formats")::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [origin software="hearth"] MSG

``PRI`` = facility x 8 + severity (critical 2, warning 4, info 6; RFC 5424 sec. 6.2.1);
``MSGID`` is the alarm kind; ``MSG`` is the notice's JSON document in ASCII (non-ASCII escaped,
so no BOM is needed, sec. 6.4). Over TCP each message is framed by octet counting (RFC 6587
sec. 3.4.1); over UDP one message is one datagram, kept within 2048 octets (RFC 5426 sec. 3.2)
by dropping the details first. ``origin`` is an IANA-registered SD-ID (RFC 5424 sec. 7.2).
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from hearth.domain import HearthError, Severity, errors
from hearth.notify.notice import Notice, notice_document

__all__ = ["SyslogSink", "format_rfc5424"]

_SEVERITY = {Severity.CRITICAL: 2, Severity.WARNING: 4, Severity.INFO: 6}
_MAX_DATAGRAM = 2048


def _failed(reason: str) -> NoReturn:
    raise HearthError(errors.ALARM_DELIVERY_FAILED, reason)


def _header_field(value: str, limit: int) -> str:
    """PRINTUSASCII (33..126), at most ``limit`` characters, or the NILVALUE ``-``."""
    clean = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return clean or "-"


def format_rfc5424(
    document: dict[str, Any],
    *,
    severity: Severity,
    msgid: str,
    facility: int,
    timestamp: datetime,
    hostname: str,
    app_name: str,
    procid: str,
    limit: int | None = None,
) -> bytes:
    """One RFC 5424 message (sec. 6). Pure: everything it needs is passed in."""
    pri = facility * 8 + _SEVERITY[severity]
    header = " ".join(
        (
            f"<{pri}>1",
            timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            _header_field(hostname, 255),
            _header_field(app_name, 48),
            _header_field(procid, 128),
            _header_field(msgid, 32),
            '[origin software="hearth"]',
        )
    )

    def render(doc: dict[str, Any]) -> bytes:
        body = json.dumps(doc, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
        return f"{header} {body}".encode("ascii")

    message = render(document)
    if limit is not None and len(message) > limit:
        alarm = dict(document.get("alarm", {}))
        alarm["details"] = {}
        message = render({**document, "alarm": alarm})
        if len(message) > limit:
            alarm["summary"] = str(alarm.get("summary", ""))[:80]
            message = render({**document, "alarm": alarm})
    return message


class SyslogSink:
    def __init__(
        self,
        *,
        name: str,
        transport: str = "udp",
        host: str = "127.0.0.1",
        port: int = 514,
        socket_path: Path = Path("/dev/log"),
        facility: int = 16,
        app_name: str = "hearth",
        min_severity: Severity = Severity.WARNING,
        timeout: float = 5.0,
        hostname: str | None = None,
    ) -> None:
        if transport not in ("udp", "tcp", "unix"):
            raise ValueError("transport is udp, tcp or unix")
        self.name = name
        self.min_severity = min_severity
        self._transport = transport
        self._host = host
        self._port = port
        self._socket_path = socket_path
        self._facility = facility
        self._app_name = app_name
        self._timeout = timeout
        self._hostname = hostname or socket.gethostname()

    def message(self, notice: Notice) -> bytes:
        return format_rfc5424(
            notice_document(notice),
            severity=notice.alarm.severity,
            msgid=str(notice.alarm.kind),
            facility=self._facility,
            timestamp=notice.sent,
            hostname=self._hostname,
            app_name=self._app_name,
            procid=str(os.getpid()),
            limit=_MAX_DATAGRAM if self._transport != "tcp" else None,
        )

    def send(self, notice: Notice) -> None:
        message = self.message(notice)
        try:
            if self._transport == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(self._timeout)
                    sock.sendto(message, (self._host, self._port))
            elif self._transport == "tcp":
                with socket.create_connection(
                    (self._host, self._port), timeout=self._timeout
                ) as sock:
                    sock.sendall(b"%d " % len(message) + message)
            else:
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(self._timeout)
                    sock.sendto(message, str(self._socket_path))
        except (TimeoutError, OSError) as exc:
            _failed(f"syslog {self._transport} failed ({type(exc).__name__})")
