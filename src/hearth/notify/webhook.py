"""The webhook sink: the notice's canonical JSON, POSTed and signed (docs/design.md).

Headers: ``X-Hearth-Timestamp`` (unix seconds of this attempt), ``X-Hearth-Signature``
(``v1=`` HMAC-SHA-256 over the timestamp and the body, ``hearth.crypto.webhook``),
``X-Hearth-Delivery`` (the same on every retry of one notice to one sink) and
``X-Hearth-Alarm``. Any 2xx answer is delivery; anything else, a redirect, a timeout or a
refused connection is a failure the worker retries. Redirects are not followed: a notice goes
only to the configured URL. HTTPS verifies the server's certificate (``cafile`` adds a CA).
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

from hearth.crypto.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook
from hearth.domain import HearthError, Secret, Severity, errors
from hearth.notify.notice import Notice, notice_json

__all__ = ["DELIVERY_HEADER", "WebhookSink"]

DELIVERY_HEADER = "X-Hearth-Delivery"
ALARM_HEADER = "X-Hearth-Alarm"


def _failed(reason: str) -> NoReturn:
    raise HearthError(errors.ALARM_DELIVERY_FAILED, reason)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class WebhookSink:
    def __init__(
        self,
        *,
        name: str,
        url: str,
        secret: Secret,
        timeout: float = 5.0,
        min_severity: Severity = Severity.WARNING,
        cafile: Path | None = None,
    ) -> None:
        self.name = name
        self.min_severity = min_severity
        self._url = url
        self._secret = secret
        self._timeout = timeout
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        self._opener = urllib.request.build_opener(
            _RefuseRedirects(), urllib.request.HTTPSHandler(context=context)
        )

    def send(self, notice: Notice) -> None:
        body = notice_json(notice)
        timestamp = int(notice.sent.timestamp())
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in settings
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "hearth-alarms/1",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign_webhook(
                    self._secret.reveal().encode("utf-8"), timestamp, body
                ),
                DELIVERY_HEADER: notice.delivery_ref,
                ALARM_HEADER: notice.alarm.alarm_id,
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read(4096)
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            _failed(f"HTTP {exc.code}")
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                _failed("timed out")
            _failed(f"connection failed ({type(reason).__name__})")
        except TimeoutError:
            _failed("timed out")
        except OSError as exc:
            _failed(f"connection failed ({type(exc).__name__})")
        if not 200 <= status < 300:
            _failed(f"HTTP {status}")
