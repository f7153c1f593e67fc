"""Alarm sink tests run against real receivers on loopback: an HTTP server, aiosmtpd and
syslog collectors over UDP, TCP and a Unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alarm_support import WebhookReceiver
from tests.servers.fixtures import smtp_server
from tests.support import FixedClock, Instance, make_instance

__all__ = ["smtp_server"]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def inst(tmp_path: Path, clock: FixedClock) -> Iterator[Instance]:
    instance = make_instance(tmp_path / "home", None, clock=clock)
    try:
        yield instance
    finally:
        instance.container.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    try:
        yield r
    finally:
        r.stop()
