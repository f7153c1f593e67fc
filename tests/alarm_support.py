"""Helpers for alarm tests: receivers for webhooks and syslog on loopback, and a deterministic
alarm service over a real instance's database."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from hearth.domain import Alarm, AlarmKind, Severity
from hearth.notify import Sink
from hearth.services.alarms import AlarmService, DeliveryPolicy
from hearth.storage.alarms import AlarmStore
from tests.support import FixedClock, Instance, self_signed

__all__ = [
    "ReceivedRequest",
    "SyslogReceiver",
    "WebhookReceiver",
    "alarm",
    "closed_port",
    "loopback_tls",
    "read_jsonl",
    "service_for",
]


def alarm(
    subject: str = "Patient/p1",
    kind: AlarmKind = AlarmKind.INTEGRITY_MISMATCH,
    severity: Severity = Severity.CRITICAL,
    summary: str = "A stored version failed its integrity check.",
    **details: str,
) -> Alarm:
    return Alarm(kind, severity, subject, summary, dict(details))


def service_for(
    instance: Instance,
    sinks: Sequence[Sink],
    clock: FixedClock,
    policy: DeliveryPolicy | None = None,
) -> AlarmService:
    """An alarm service over ``instance``'s database, driven by ``process()`` and ``clock``."""
    c = instance.container
    return AlarmService(
        AlarmStore(c.store, c.audit, c.keyring, c.random),
        sinks,
        clock=clock,
        instance_id=c.settings.instance_id,
        policy=policy or DeliveryPolicy(),
        admin_roles=frozenset({"bootstrap-admin"}),
        background=False,
    )


def read_jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that keeps every POST and answers with the statuses
    queued in ``statuses`` (200 once they run out). ``hold`` makes it wait before answering."""

    statuses: list[int] = field(default_factory=list)
    requests: list[ReceivedRequest] = field(default_factory=list)
    hold: threading.Event | None = None
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.arrived:
                    receiver.requests.append(
                        ReceivedRequest(self.path, dict(self.headers.items()), body)
                    )
                    receiver.arrived.notify_all()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks/hearth"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} request(s), got {len(self.requests)}")
                self.arrived.wait(left)
            return list(self.requests)

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


class SyslogReceiver:
    """A syslog collector on loopback: UDP datagrams, TCP with RFC 6587 octet counting, or a
    Unix datagram socket. ``messages`` holds each message's bytes."""

    def __init__(self, transport: str, socket_path: Path | None = None) -> None:
        self.transport = transport
        self.messages: list[bytes] = []
        self._arrived = threading.Condition()
        receiver = self
        if transport == "udp":

            class Udp(socketserver.BaseRequestHandler):
                def handle(self) -> None:
                    receiver._add(self.request[0])

            self.server: socketserver.BaseServer = socketserver.ThreadingUDPServer(
                ("127.0.0.1", 0), Udp
            )
        elif transport == "tcp":

            class Tcp(socketserver.StreamRequestHandler):
                def handle(self) -> None:
                    while True:
                        length = b""
                        while not length.endswith(b" "):
                            char = self.rfile.read(1)
                            if not char:
                                return
                            length += char
                        receiver._add(self.rfile.read(int(length)))

            self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tcp)
        else:
            assert socket_path is not None

            class Unix(socketserver.BaseRequestHandler):
                def handle(self) -> None:
                    receiver._add(self.request[0])

            self.server = socketserver.ThreadingUnixDatagramServer(str(socket_path), Unix)
        self.server.daemon_threads = True  # type: ignore[attr-defined]
        address = self.server.server_address  # type: ignore[attr-defined]
        self.port = int(address[1]) if isinstance(address, tuple) else 0
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _add(self, message: bytes) -> None:
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} message(s), got {len(self.messages)}")
                self._arrived.wait(left)
            return list(self.messages)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 and localhost: the file a client trusts
    (``cafile``) and a server context that presents it."""
    cert_path, key_path = self_signed(
        directory, ("localhost", "127.0.0.1"), stem="loopback-", ca=True
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context
