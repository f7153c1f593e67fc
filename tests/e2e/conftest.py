"""Fixtures for the browser tests: Hearth on loopback, headless Chromium through Playwright.

Chromium is Debian's (``/usr/bin/chromium``; `.ci/run` installs it): Playwright never downloads
a browser here. WebAuthn uses Chromium's virtual authenticators over the DevTools protocol
(``WebAuthn.addVirtualAuthenticator``): a USB security key with a PIN, or the device's own
platform authenticator with user verification.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, sync_playwright

from hearth.domain import Alarm
from hearth.settings import load_settings
from hearth.web.app import create_app
from hearth.wiring import Container, init_instance

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Alarms:
    def __init__(self) -> None:
        self.raised: list[Alarm] = []

    def raise_alarm(self, alarm: Alarm) -> None:
        self.raised.append(alarm)


@dataclass
class Served:
    base: str  # http://localhost:PORT
    port: int
    container: Container
    alarms: Alarms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """An instance served by uvicorn on 127.0.0.1, with production argon2 costs."""
    home = tmp_path / "home"
    init_instance(home)
    alarms = Alarms()
    container = Container(load_settings(home, {}), alarms=alarms)
    port = free_port()
    config = uvicorn.Config(
        create_app(container, allowed_hosts=["127.0.0.1"]),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    try:
        yield Served(f"http://localhost:{port}", port, container, alarms)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        container.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    context: BrowserContext
    page: Page
    console: list[str]

    def cdp(self) -> CDPSession:
        return self.context.new_cdp_session(self.page)


@pytest.fixture
def tab(chromium: Browser) -> Iterator[Tab]:
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        yield Tab(context, page, console)
    finally:
        context.close()


def add_authenticator(tab: Tab, *, transport: str, **options: Any) -> tuple[CDPSession, str]:
    """A virtual authenticator on this page: ``usb`` (a security key with a PIN: user
    verification by PIN) or ``internal`` (the device's own, with biometric verification)."""
    cdp = tab.cdp()
    cdp.send("WebAuthn.enable", {"enableUI": False})
    found = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": transport,
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
                **options,
            }
        },
    )
    return cdp, str(found["authenticatorId"])
