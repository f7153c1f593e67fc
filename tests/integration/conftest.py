"""Fixtures for end-to-end tests through the ASGI app and through a real server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2 as httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from hearth.web.app import create_app
from tests.support import Instance


@pytest.fixture
def client(sqlite_instance: Instance) -> Iterator[TestClient]:
    app = create_app(sqlite_instance.container)
    headers = {"Authorization": f"Bearer {sqlite_instance.admin_token}"}
    with TestClient(app, base_url="http://127.0.0.1", headers=headers) as test_client:
        yield test_client


@dataclass
class LiveServer:
    base_url: str
    token: str
    instance: Instance


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(sqlite_instance: Instance) -> Iterator[LiveServer]:
    """Hearth served by uvicorn on 127.0.0.1 in a thread, as `hearth serve` would."""
    yield from _serve(sqlite_instance)


@pytest.fixture
def engine_live_server(instance: Instance) -> Iterator[LiveServer]:
    """``live_server`` on each engine under test (HEARTH_TEST_ENGINES)."""
    yield from _serve(instance)


def _serve(instance: Instance) -> Iterator[LiveServer]:
    port = free_port()
    config = uvicorn.Config(
        create_app(instance.container),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    try:
        yield LiveServer(base, instance.admin_token, instance)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
