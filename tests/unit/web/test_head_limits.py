"""``HeadLimitedProtocol`` fed as the event loop would feed it, read by read, without a socket:
where a head begins inside a read is what the limits depend on."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from hearth.web.protocol import MAX_HEAD_BYTES, HeadLimitedProtocol


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _serve(*reads: bytes) -> bytes:
    config = Config(_ok, log_level="warning", lifespan="off")
    protocol = HeadLimitedProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    for read in reads:
        if transport.closed:
            break
        protocol.data_received(read)
        await asyncio.sleep(0.01)  # let the application answer between reads
    protocol.connection_lost(None)
    return transport.written


def _statuses(written: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", written)]


def test_a_head_arriving_with_the_end_of_a_body_is_held_to_twice_the_limit() -> None:
    """The head of a pipelined request that arrives in the same read as the end of the body
    before it was not counted: a read of 256 KiB could carry 250 KiB of header fields."""
    first = b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 3\r\n\r\n"
    second = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nx-long: " + b"p" * (200 * 1024)
    second += b"\r\nConnection: close\r\n\r\n"
    written = asyncio.run(_serve(first, b"abc" + second))
    assert _statuses(written) == [200, 431]
    # Within twice the limit, such a head is still served.
    within = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nx-long: " + b"p" * (MAX_HEAD_BYTES + 1024)
    within += b"\r\nConnection: close\r\n\r\n"
    assert _statuses(asyncio.run(_serve(first, b"abc" + within))) == [200, 200]
