"""The HTTP/1.1 protocol ``hearth serve`` runs: uvicorn's httptools protocol, with limits on
the request head that uvicorn does not set.

uvicorn's httptools protocol (the fast one, chosen by ``http="auto"``) accepts a request head
of any size: a request with 50 MiB of header fields, or 2,000 of them, was parsed, held in
memory and answered. ``HeadLimitedProtocol`` refuses, with ``431 Request Header Fields Too
Large`` (RFC 6585 sec. 5) and an OperationOutcome (``HRT-0117``), and closes the connection:

- a head (request line and header fields) longer than ``MAX_HEAD_BYTES`` (64 KiB), counted as
  the bytes arrive, so that an endless head is never buffered. On a pipelined connection the
  bytes of a head that arrive in the same read as the end of the request before it are not
  counted, so such a head may reach at most twice the limit;
- more than ``MAX_HEADER_FIELDS`` (100) header fields, Apache httpd's default.

Hearth's own requests are far below both: a browser sends about twenty fields and two
cookies, an app a bearer token of a few kilobytes; a search too long for a URL goes in a
``POST [type]/_search`` body (R4 http.html#search), which these limits do not touch.
"""

from __future__ import annotations

import logging

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from hearth.domain import HearthError, errors
from hearth.fhir.outcome import operation_outcome
from hearth.web.headers import security_headers

__all__ = ["MAX_HEADER_FIELDS", "MAX_HEAD_BYTES", "HeadLimitedProtocol"]

#: The longest request head (request line and header fields, with their line ends) accepted.
MAX_HEAD_BYTES = 64 * 1024
#: The most header fields one request may carry.
MAX_HEADER_FIELDS = 100

log = logging.getLogger("hearth.web")


class _TooManyFields(Exception):
    """Raised in the parser's header callback to stop it; httptools reports it as a parser
    error, which uvicorn answers through ``send_400_response``."""


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``MAX_HEAD_BYTES`` and ``MAX_HEADER_FIELDS``."""

    # uvicorn's constructor takes its config and server state; the counters start with it.
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._in_head = True  # until the head of the request being received is complete
        self._head_bytes = 0
        self._fields = 0
        self._refused = False

    def data_received(self, data: bytes) -> None:
        """Feed the parser no more of a head than the limit allows; a head still incomplete
        at the limit is refused without reading the rest."""
        while data and not self._refused and not self.transport.is_closing():
            if not self._in_head:
                super().data_received(data)
                return
            data = self._feed_head(data)

    def _feed_head(self, data: bytes) -> bytes:
        """Feed what fits of a head; return the rest."""
        room = MAX_HEAD_BYTES - self._head_bytes
        chunk, rest = data[:room], data[room:]
        self._head_bytes += len(chunk)
        super().data_received(chunk)
        closing = self._refused or self.transport.is_closing()
        if self._in_head and self._head_bytes >= MAX_HEAD_BYTES and not closing:
            self._refuse(f"longer than {MAX_HEAD_BYTES // 1024} KiB")
        return rest

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > MAX_HEADER_FIELDS:
            self._refused = True
            raise _TooManyFields
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._fields = True, 0, 0

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._refuse(f"with more than {MAX_HEADER_FIELDS} header fields")
        else:
            super().send_400_response(msg)

    def _refuse(self, why: str) -> None:
        """Answer 431 with an OperationOutcome and close the connection."""
        self._refused = True
        log.warning("Refused a request head %s (431).", why)
        error = HearthError(errors.HEADERS_TOO_LARGE)
        body = orjson.dumps(operation_outcome(error))
        headers = security_headers(
            [
                (b"content-type", b"application/fhir+json; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ]
        )
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(STATUS_LINE[431] + head + b"\r\n" + body)
        self.transport.close()
