"""Ports, waiting, and the fail-or-skip rule for missing server binaries."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable

import pytest

__all__ = ["free_port", "free_port_pair", "require", "wait_until"]


def require(available: bool, what: str, install: str) -> None:
    """Skip, or under ``HEARTH_TEST_REQUIRE_SERVERS=1`` fail, when a server is missing."""
    if available:
        return
    message = f"{what} is not available; install it with: {install}"
    if os.environ.get("HEARTH_TEST_REQUIRE_SERVERS") == "1":
        pytest.fail(message + " (HEARTH_TEST_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_pair(offset: int = 10000) -> int:
    """A port P with P and P+offset both free (SeaweedFS opens gRPC on P+10000). Candidates
    come from below the kernel's ephemeral range so that P+offset stays under 65536."""
    chooser = random.Random()
    for _ in range(500):
        port = chooser.randint(15000, 30000)
        if _is_free(port) and _is_free(port + offset):
            return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` until true; return the seconds it took, or fail the test."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"{what} did not come up within {timeout:.0f} s", pytrace=False)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
