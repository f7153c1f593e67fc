"""`make run`'s first sign-in: `hearth serve --issue-admin-credential` prints a one-time set-up
link; the administrator opens it in Chromium, registers this device, and is signed in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Tab, add_authenticator, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_first_administrator_sign_in_from_serve_output(tmp_path: Path, tab: Tab) -> None:
    home = tmp_path / "home"
    hearth = [sys.executable, "-m", "hearth", "--home", str(home)]
    subprocess.run([*hearth, "init", "--quiet"], check=True, capture_output=True)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [*hearth, "serve", "--port", str(port), "--issue-admin-credential"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            link = None
            deadline = time.monotonic() + 20
            while link is None:
                assert time.monotonic() < deadline, log.read_text()
                found = re.search(r"(http://localhost:\d+/enrol\?token=\S+)", log.read_text())
                link = found.group(1) if found else None
                time.sleep(0.1)
            add_authenticator(tab, transport="internal")
            page = tab.page
            for _ in range(50):  # the server prints before it listens
                try:
                    page.goto(link)
                    break
                except Exception:  # noqa: BLE001 - connection refused while uvicorn starts
                    time.sleep(0.1)
            expect(page.get_by_role("heading", name="Set up sign-in")).to_be_visible()
            page.locator("#enrol-platform").click()
            expect(page.locator("#welcome")).to_have_text("Welcome, Administrator.")
            # The link worked once.
            page.goto(link)
            expect(page.get_by_role("heading", name="Set-up link not valid")).to_be_visible()
        finally:
            server.terminate()
            server.wait(timeout=15)
    output = log.read_text()
    assert "Administrator API token (valid 12 hours; shown once): hrt_" in output
    assert f"Console sign-in: http://localhost:{port}/login" in output
