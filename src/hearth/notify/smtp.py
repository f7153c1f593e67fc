"""The e-mail sink: a plain-text message over SMTP (RFC 5321) with ``smtplib``.

``security``: ``starttls`` (RFC 3207; the default, port 587) upgrades the connection before
authenticating or sending and fails if the server does not offer it; ``tls`` connects with TLS
from the start (RFC 8314, port 465); ``none`` only to a relay on loopback (settings enforce it).
Certificates are verified (``cafile`` adds a CA). The message names the alarm, never PHI.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import NoReturn

from hearth.domain import HearthError, Secret, Severity, errors
from hearth.notify.notice import Notice, notice_subject, notice_text

__all__ = ["EmailSink"]


def _failed(reason: str) -> NoReturn:
    raise HearthError(errors.ALARM_DELIVERY_FAILED, reason)


class EmailSink:
    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        sender: str,
        recipients: tuple[str, ...],
        security: str = "starttls",
        username: str | None = None,
        password: Secret | None = None,
        timeout: float = 10.0,
        min_severity: Severity = Severity.WARNING,
        cafile: Path | None = None,
    ) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValueError("security is starttls, tls or none")
        self.name = name
        self.min_severity = min_severity
        self._host = host
        self._port = port
        self._sender = sender
        self._recipients = recipients
        self._security = security
        self._username = username
        self._password = password
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=str(cafile) if cafile else None)

    def message(self, notice: Notice) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = ", ".join(self._recipients)
        message["Subject"] = notice_subject(notice)
        message["Date"] = format_datetime(notice.sent)
        # Stable per notice and sink, so a retried notice threads with (and is recognisably
        # the same as) an earlier copy that did arrive.
        message["Message-ID"] = f"<alarm-{notice.alarm.alarm_id}.{notice.delivery_ref}@hearth>"
        message["X-Hearth-Alarm"] = notice.alarm.alarm_id
        message["X-Hearth-Severity"] = notice.alarm.severity.value
        message.set_content(notice_text(notice))
        return message

    def send(self, notice: Notice) -> None:
        message = self.message(notice)
        try:
            smtp: smtplib.SMTP
            if self._security == "tls":
                smtp = smtplib.SMTP_SSL(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
            with smtp:
                smtp.ehlo()
                if self._security == "starttls":
                    if not smtp.has_extn("starttls"):
                        _failed("the SMTP server does not offer STARTTLS")
                    smtp.starttls(context=self._context)
                    smtp.ehlo()
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password.reveal())
                refused = smtp.send_message(message)
                if refused:
                    _failed(f"{len(refused)} recipient(s) refused")
        except smtplib.SMTPResponseException as exc:
            _failed(f"SMTP {exc.smtp_code}")
        except smtplib.SMTPRecipientsRefused:
            _failed("every recipient was refused")
        except smtplib.SMTPException as exc:
            _failed(f"SMTP error ({type(exc).__name__})")
        except ssl.SSLError as exc:
            _failed(f"TLS failed ({exc.reason or type(exc).__name__})")
        except (TimeoutError, OSError) as exc:
            _failed(f"connection failed ({type(exc).__name__})")
