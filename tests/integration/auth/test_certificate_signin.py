"""Signing in to the console with a smart card (a client certificate over mutual TLS) on a real
server on 127.0.0.1: the certificate replaces the password, the second factor still follows."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from hearth.settings import load_settings
from hearth.web.app import create_app
from hearth.web.tls import TlsScopeProtocol
from hearth.wiring import Container, init_instance
from tests.integration.auth.conftest import (
    CHEAP,
    Browser,
    CapturedAlarms,
    FixedClock,
    Instance,
    SeededRandom,
)
from tests.integration.conftest import free_port
from tests.oauth_support import Pki


@dataclass
class Site:
    instance: Instance
    origin: str
    server_ca: Path
    clients: Pki
    opened: list[httpx.Client]

    def browser(self, cert: tuple[Path, Path] | None = None) -> Browser:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        http = httpx.Client(base_url=self.origin, verify=context, timeout=10)
        self.opened.append(http)
        return Browser(http, self.instance.clock)  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    clock = FixedClock()
    home = tmp_path / "home"
    init_instance(home, clock=clock)
    clients = Pki(tmp_path / "client-pki", "Smart Card CA")
    with (home / "hearth.toml").open("a", encoding="utf-8") as config:
        config.write(f'\n[server.tls]\nclient_ca = "{clients.ca_file}"\n')
    alarms = CapturedAlarms()
    container = Container(
        load_settings(home, {}),
        clock=clock,
        random=SeededRandom(),
        password_parameters=CHEAP,
        alarms=alarms,
    )
    server_pki = Pki(tmp_path / "server-pki", "Server CA")
    cert, key, _ = server_pki.issue("localhost", server=True)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(container),
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            ssl_cert_reqs=ssl.CERT_OPTIONAL,
            ssl_ca_certs=str(clients.ca_file),
            http=TlsScopeProtocol,
            access_log=False,
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    opened: list[httpx.Client] = []
    try:
        yield Site(
            Instance(home, clock, alarms, container),
            f"https://127.0.0.1:{port}",
            server_pki.ca_file,
            clients,
            opened,
        )
    finally:
        for http in opened:
            http.close()
        server.should_exit = True
        thread.join(timeout=10)
        container.close()


def _enrolled(site: Site, username: str) -> tuple[str, str | None]:
    """A user with password and TOTP; returns their id and TOTP secret."""
    setup = site.browser()
    setup.enrol_password(site.instance.add_user(username))
    setup.logout()
    user = site.instance.container.accounts.user_by_name(username)
    assert user is not None
    return user.user_id, setup.totp_secret


def test_smart_card_sign_in(site: Site) -> None:
    user_id, secret = _enrolled(site, "erin")
    card, card_key, _ = site.clients.issue("erin piv")
    site.instance.container.certificates.add(
        card.read_bytes(), subject_kind="user", subject=user_id, label="PIV", by="test"
    )
    browser = site.browser((card, card_key))
    browser.totp_secret = secret
    login = browser.get("/login")
    assert "Sign in with a smart card" in login.text
    assert browser.get("/login/certificate").status_code == 200
    assert "Continue with my certificate" in browser.page
    started = browser.post("/login/certificate", {"next": "/account"})
    assert started.status_code == 303
    assert started.headers["location"] == "/login/second-factor"
    browser.get("/login/second-factor")
    site.instance.clock.advance(seconds=30)
    finished = browser.post("/login/totp", {"code": browser.code()})
    assert finished.status_code == 303
    assert finished.headers["location"] == "/account"
    assert browser.get("/account").status_code == 200
    principal = site.instance.container.sessions.current_user(browser.session_cookie(), source=None)
    assert principal is not None
    assert principal.attributes["amr"] == "swk otp mfa"  # a key was proven, not a password
    with site.instance.container.store.read() as conn:
        actions = [r.action for r in site.instance.container.store.iter_audit(conn)]
    assert "auth.sign-in" in actions


@pytest.mark.parametrize("case", ["unmapped", "client", "revoked"])
def test_certificates_that_do_not_sign_in(site: Site, case: str) -> None:
    user_id, _ = _enrolled(site, "frank")
    cert, key, _ = site.clients.issue(f"frank {case}")
    certificates = site.instance.container.certificates
    if case == "client":
        certificates.add(cert.read_bytes(), subject_kind="client", subject="svc", label="", by="t")
    if case == "revoked":
        row = certificates.add(
            cert.read_bytes(), subject_kind="user", subject=user_id, label="", by="t"
        )
        certificates.revoke(row.thumbprint, by="test")
    browser = site.browser((cert, key))
    browser.get("/login/certificate")
    refused = browser.post("/login/certificate", {"next": "/"})
    assert refused.status_code == 401
    assert 'role="alert"' in refused.text
    assert browser.session_cookie() is None


def test_no_certificate(site: Site) -> None:
    browser = site.browser()
    page = browser.get("/login/certificate")
    assert page.status_code == 200
    assert "presented no client certificate" in page.text


def test_a_password_lock_does_not_stop_a_smart_card(site: Site) -> None:
    """Anyone can type erin's name with wrong passwords until the password locks (ASVS
    v5.0.0-6.1.1); her smart card, which cannot be guessed, still signs her in."""
    user_id, secret = _enrolled(site, "erin")
    card, card_key, _ = site.clients.issue("erin piv")
    site.instance.container.certificates.add(
        card.read_bytes(), subject_kind="user", subject=user_id, label="PIV", by="test"
    )
    assert site.instance.lock_by_failures("erin") == 100
    assert site.instance.container.users.get("erin").locked
    browser = site.browser((card, card_key))
    browser.totp_secret = secret
    browser.get("/login/certificate")
    assert browser.post("/login/certificate", {"next": "/"}).status_code == 303
    browser.get("/login/second-factor")
    site.instance.clock.advance(seconds=30)
    assert browser.post("/login/totp", {"code": browser.code()}).status_code == 303
    assert browser.get("/").status_code == 200
