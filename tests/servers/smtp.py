"""aiosmtpd as a real SMTP server on loopback that keeps every message it receives."""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers.common import free_port

__all__ = ["ReceivedMessage", "SmtpServer"]


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes


@dataclass
class _Collector:
    messages: list[ReceivedMessage] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        with self.arrived:
            self.messages.append(
                ReceivedMessage(
                    str(envelope.mail_from),
                    tuple(envelope.rcpt_tos),
                    parsed,  # type: ignore[arg-type]
                    raw,
                )
            )
            self.arrived.notify_all()
        return "250 Message accepted for delivery"


class SmtpServer:
    """``host``/``port`` to send to; ``messages`` received so far; ``wait_for(n)``.

    With ``tls_context`` the server offers STARTTLS and refuses mail without it; with
    ``credentials`` (user, password) it also requires AUTH, only after STARTTLS.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self._collector = _Collector()
        options: dict[str, object] = {}
        if tls_context is not None:
            options.update(tls_context=tls_context, require_starttls=True)
        if credentials is not None:
            user, password = credentials

            def check(
                server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
            ) -> AuthResult:
                ok = (
                    isinstance(data, LoginPassword)
                    and data.login == user.encode()
                    and data.password == password.encode()
                )
                return AuthResult(success=ok)

            options.update(authenticator=check, auth_required=True, auth_require_tls=True)
        self._controller = Controller(
            self._collector, hostname=self.host, port=self.port, **options
        )

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._collector.arrived:
            return list(self._collector.messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout
        with self._collector.arrived:
            while len(self._collector.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} message(s), got {len(self._collector.messages)}"
                    )
                self._collector.arrived.wait(left)
            return list(self._collector.messages)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
