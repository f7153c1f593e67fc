"""Limits on the request head, against ``hearth serve`` over loopback (hearth.web.protocol):
a head over 64 KiB or with more than 100 header fields gets 431 and the connection closes;
heads within both are served, several on one connection."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import orjson
import pytest
from click.testing import CliRunner

from hearth.cli import main
from hearth.web.protocol import MAX_HEAD_BYTES, MAX_HEADER_FIELDS
from tests.integration.conftest import free_port

HEARTH = [sys.executable, "-m", "hearth"]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("limits") / "home"
    result = CliRunner().invoke(main, ["--home", str(home), "init", "--quiet"])
    assert result.exit_code == 0, result.output
    port = free_port()
    process = subprocess.Popen(
        [*HEARTH, "--home", str(home), "serve", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.communicate(timeout=20)


def head(port: int, fields: list[str], *, target: str = "/oauth/jwks") -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def exchange(port: int, *requests: bytes, chunk: int = 65536) -> bytes:
    """Send ``requests`` on one connection, as far as the server lets us, and read until it
    closes the connection (the last request asks it to)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        data = b"".join(requests)
        try:
            for start in range(0, len(data), chunk):
                conn.sendall(data[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything
        answer = b""
        try:
            while part := conn.recv(65536):
                answer += part
        except ConnectionResetError:
            pass
    return answer


def statuses(answer: bytes) -> list[int]:
    """The status of each response (a body is followed directly by the next status line)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def test_fifty_mebibytes_of_header_fields_get_431(port: int) -> None:
    fields = [f"x-filler-{i}: {'a' * 1000}" for i in range(50 * 1024)]  # about 50 MiB
    started = time.monotonic()
    answer = exchange(port, head(port, fields))
    assert statuses(answer) == [431]
    outcome = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "HRT-0117"
    assert b"x-filler" not in answer
    assert time.monotonic() - started < 15  # refused at the limit, not after reading it all


def test_one_endless_header_field_gets_431(port: int) -> None:
    assert statuses(exchange(port, head(port, ["x-long: " + "a" * (8 * MAX_HEAD_BYTES)]))) == [431]


def test_two_thousand_header_fields_get_431(port: int) -> None:
    fields = [f"x-{i}: 1" for i in range(2000)]
    assert statuses(exchange(port, head(port, fields))) == [431]
    just_over = [f"x-{i}: 1" for i in range(MAX_HEADER_FIELDS)]  # with Host, one too many
    assert statuses(exchange(port, head(port, just_over))) == [431]


def test_heads_within_the_limits_are_served_one_after_another(port: int) -> None:
    """The count starts again with each request on a kept-alive connection."""
    fields = [f"x-{i}: {'b' * 500}" for i in range(MAX_HEADER_FIELDS - 2)]  # about 50 KiB
    full = head(port, fields)
    assert len(full) > MAX_HEAD_BYTES * 3 // 4
    last = head(port, [*fields, "Connection: close"])
    assert statuses(exchange(port, full, full, last)) == [200, 200, 200]


def test_a_long_request_line_counts_too(port: int) -> None:
    target = "/oauth/jwks?x=" + "c" * MAX_HEAD_BYTES
    assert statuses(exchange(port, head(port, [], target=target))) == [431]


def test_two_host_fields_get_400(port: int) -> None:
    """RFC 9112 sec. 3.2, through the server: both fields reach the Host check."""
    answer = exchange(port, head(port, [f"Host: 127.0.0.1:{port}", "Connection: close"]))
    assert statuses(answer) == [400]
    outcome = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "HRT-0109"


def chunked(port: int, body: bytes, *, target: str = "/oauth/token") -> bytes:
    """A chunked POST whose body is ``body``, up to where its trailers would begin."""
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/x-www-form-urlencoded",
        "Transfer-Encoding: chunked",
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head + f"{len(body):x}\r\n".encode("ascii") + body + b"\r\n0\r\n"


def test_fifty_mebibytes_of_trailer_get_431(port: int) -> None:
    """A chunked body's trailer fields are held by the parser as a head is: they count against
    the same limit (they used to be fed unbounded, and 50 MiB were answered 200)."""
    trailer = b"X-Trailer: " + b"t" * (50 * 1024 * 1024) + b"\r\n\r\n"
    started = time.monotonic()
    answer = exchange(port, chunked(port, b"grant_type=x") + trailer)
    assert statuses(answer) == [431]
    outcome = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "HRT-0117"
    assert time.monotonic() - started < 15


def test_small_chunks_and_a_short_trailer_are_served(port: int) -> None:
    """Chunk lines are not body, but a body of many small chunks is far from the limit."""
    body = b"grant_type=x&" + b"&".join(b"p%d=v" % i for i in range(3000))
    pieces = [body[i : i + 1] for i in range(len(body))]  # one byte a chunk
    framed = b"".join(f"{len(p):x}\r\n".encode("ascii") + p + b"\r\n" for p in pieces)
    lines = [
        "POST /oauth/token HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/x-www-form-urlencoded",
        "Transfer-Encoding: chunked",
        "Connection: close",
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + framed
    assert len(framed) - len(body) > MAX_HEAD_BYTES  # more chunk lines than a head may hold
    answer = exchange(port, request + b"0\r\nX-Trailer: 1\r\n\r\n")
    assert statuses(answer) == [400]  # the token endpoint's answer to an unknown grant type
