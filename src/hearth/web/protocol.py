"""The HTTP/1.1 protocol ``hearth serve`` runs: uvicorn's httptools protocol, with limits on
the request head that uvicorn does not set.

uvicorn's httptools protocol (the fast one, chosen by ``http="auto"``) accepts a request head
of any size: a request with 50 MiB of header fields, or 2,000 of them, was parsed, held in
memory and answered. ``HeadLimitedProtocol`` refuses, with ``431 Request Header Fields Too
Large`` (RFC 6585 sec. 5) and an OperationOutcome (``HRT-0117``), and closes the connection:

- a head (request line and header fields) of ``MAX_HEAD_BYTES`` (64 KiB) or more. The parser
  is fed at most the room left under the limit at a time and the bytes that are not body are
  counted, so an endless head is never buffered. The parser does not say where in a piece a
  request ended, so the bytes after that end, which begin the next head of a pipelined
  connection, are not counted: such a head may reach twice the limit (128 KiB), never more;
- chunk lines and trailer fields of a chunked body (RFC 9112 sec. 7.1) reaching the same
  limit, counted from the piece in which the last chunk ended (at most 4 KiB over it): the
  parser holds a trailer field as it holds a header field, and 50 MiB of trailer were held and
  answered. Trailer fields are discarded, not added to the request's headers;
- more than ``MAX_HEADER_FIELDS`` (100) header fields, Apache httpd's default; trailer fields
  count with them.

Hearth's own requests are far below both: a browser sends about twenty fields and two
cookies, an app a bearer token of a few kilobytes; a search too long for a URL goes in a
``POST [type]/_search`` body (R4 http.html#search), which these limits do not touch.
"""

from __future__ import annotations

import logging

import orjson
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from hearth.domain import HearthError, errors
from hearth.fhir.outcome import operation_outcome
from hearth.web.headers import security_headers

__all__ = ["MAX_HEADER_FIELDS", "MAX_HEAD_BYTES", "HeadLimitedProtocol"]

#: The longest request head (request line and header fields, with their line ends) accepted.
MAX_HEAD_BYTES = 64 * 1024
#: The most header fields one request may carry (trailer fields count with them).
MAX_HEADER_FIELDS = 100
#: The smallest piece of a body fed to the parser at once (see ``data_received``).
_MIN_BODY_PIECE = 4096

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
        #: Bytes fed since the last boundary (a message's or a chunk's end) that were not body:
        #: the head, then a chunked body's chunk lines and trailer fields, which the parser
        #: holds until they end as it holds a head.
        self._head_bytes = 0
        self._fields = 0
        self._refused = False
        self._refusal_due = False  # a 431 waits for the answers to the requests before it
        self._body_fed = 0  # body bytes the parser handed on during the current feed
        self._message_ended = False  # a message ended during the current feed
        self._chunk_ended = False  # a chunk of a chunked body ended during the current feed

    def data_received(self, data: bytes) -> None:
        """Feed the parser in pieces, counting the bytes that are not body, so that no more
        than the limit is ever fed of a head or of what a chunked body carries besides its
        data; past the limit the request is refused without reading the rest."""
        while data and not self._refused and not self.transport.is_closing():
            room = MAX_HEAD_BYTES - self._head_bytes
            if not self._in_head:
                # In a body the count grows only by its chunk lines and trailers: a floor on the
                # piece keeps a count near the limit from feeding a large body byte by byte.
                room = max(room, _MIN_BODY_PIECE)
            self._feed(data[:room])
            data = data[room:]

    def _feed(self, chunk: bytes) -> None:
        """Feed one piece and count the bytes of it that were not body."""
        self._body_fed, self._message_ended, self._chunk_ended = 0, False, False
        super().data_received(chunk)
        not_body = len(chunk) - self._body_fed
        if self._message_ended:
            # The parser does not say where in the piece the message ended, so the bytes after
            # it, which begin the next head, are not counted: a head arriving in the same piece
            # as the end of the request before it may reach twice the limit.
            self._head_bytes = 0
        elif self._chunk_ended:
            # Counted from the start of the piece, not from the chunk's end: never less than
            # what follows the boundary. A piece of valid chunks is never all chunk lines.
            self._head_bytes = not_body
        else:
            self._head_bytes += not_body
        closing = self._refused or self.transport.is_closing()
        if self._head_bytes >= MAX_HEAD_BYTES and not closing:
            if self._in_head:
                self._refuse(f"longer than {MAX_HEAD_BYTES // 1024} KiB")
            else:
                self._refuse(f"and chunk lines or trailers of {MAX_HEAD_BYTES // 1024} KiB or more")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > MAX_HEADER_FIELDS:
            self._refused = True
            raise _TooManyFields
        if not self._in_head:
            # A trailer field (RFC 9112 sec. 7.1.2). uvicorn would append it to the headers of
            # a request the application is already handling, after the Host check; Hearth has
            # no use for trailers, and a recipient may discard them (RFC 9110 sec. 6.5.1).
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_fed += len(body)
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self._chunk_ended = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._fields, self._message_ended = True, 0, True

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._refuse(f"with more than {MAX_HEADER_FIELDS} header fields")
        else:
            super().send_400_response(msg)

    def on_response_complete(self) -> None:
        if self._refusal_due and not self.pipeline and not self.transport.is_closing():
            # The requests before the refused one are answered: the 431 follows them.
            self.server_state.total_requests += 1
            self._answer_431()
            return
        super().on_response_complete()

    def _refuse(self, why: str) -> None:
        """Answer 431 with an OperationOutcome and close the connection. A refused head waits
        for the answers to the requests before it on the connection, which the 431 would
        otherwise overtake; a request whose body is refused while the application answers it
        has its connection closed (the answer would be cut short)."""
        self._refused = True
        log.warning("Refused a request head %s (431).", why)
        # uvicorn types ``cycle`` as always set; it is None until a first head is complete.
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_head:
                self._refusal_due = True
                return
            if cycle.response_started:
                self.transport.close()
                return
        self._answer_431()

    def _answer_431(self) -> None:
        self._refusal_due = False
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
