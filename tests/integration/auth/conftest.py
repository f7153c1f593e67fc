"""Fixtures for the sign-in tests: an instance with a fixed clock, cheap argon2, and a client
that behaves like a browser (cookies, forms with their CSRF token, following the flow)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from hearth.auth import Argon2Parameters, totp
from hearth.auth.throttle import ThrottlePolicy
from hearth.domain import Alarm, HearthError, errors
from hearth.settings import load_settings
from hearth.web.app import create_app
from hearth.wiring import ADMIN_ROLE, Container, init_instance

CHEAP = Argon2Parameters(time_cost=1, memory_kib=64, parallelism=1)
PASSWORD = "correct horse battery staple"
COOKIE = "__Host-hearth-session"


class FixedClock:
    """Starts at the real time (Redis expires keys by its own clock, so a test clock in the past
    would see sessions vanish) and then moves only when a test moves it."""

    def __init__(self) -> None:
        self.current = datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class SeededRandom:
    def __init__(self, seed: bytes = b"auth-tests") -> None:
        self._seed, self._n = seed, 0

    def token_bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._n += 1
            out += hashlib.sha256(self._seed + self._n.to_bytes(8, "big")).digest()
        return out[:n]


class CapturedAlarms:
    def __init__(self) -> None:
        self.raised: list[Alarm] = []

    def raise_alarm(self, alarm: Alarm) -> None:
        self.raised.append(alarm)

    def kinds(self) -> list[str]:
        return [a.kind.value for a in self.raised]


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """A TestClient that keeps cookies and reads CSRF tokens out of the pages it gets."""

    def __init__(self, client: TestClient, clock: FixedClock) -> None:
        self.client = client
        self.clock = clock
        self.page = ""
        self.totp_secret: str | None = None

    def get(self, url: str, **kw: Any) -> Any:
        response = self.client.get(url, follow_redirects=False, **kw)
        if response.headers.get("content-type", "").startswith("text/html"):
            self.page = response.text
        return response

    def csrf(self) -> str:
        found = _CSRF.search(self.page)
        assert found, "no CSRF token on the current page"
        return unescape(found.group(1))

    def post(self, url: str, data: dict[str, str], *, csrf: str | None = None, **kw: Any) -> Any:
        body = {"csrf": self.csrf() if csrf is None else csrf, **data}
        response = self.client.post(url, data=body, follow_redirects=False, **kw)
        if response.headers.get("content-type", "").startswith("text/html"):
            self.page = response.text
        return response

    def session_cookie(self) -> str | None:
        return self.client.cookies.get("__Host-hearth-session")

    def code(self, offset_steps: int = 0) -> str:
        assert self.totp_secret is not None
        step = totp.time_step(self.clock.now()) + offset_steps
        return totp.code_at(self.totp_secret, step)

    def enrol_password(self, link_token: str, password: str = PASSWORD) -> list[str]:
        """Set up password + TOTP through a set-up link; returns the recovery codes."""
        assert self.get(f"/enrol?token={link_token}").status_code == 200
        r = self.post(
            "/enrol/password", {"token": link_token, "password": password, "confirm": password}
        )
        assert r.status_code == 303, r.text
        assert self.get("/enrol/app").status_code == 200
        key = re.search(r'id="manual-key">([^<]+)<', self.page)
        assert key
        self.totp_secret = key.group(1).replace(" ", "")
        r = self.post("/enrol/app", {"code": self.code()})
        assert r.status_code == 200, r.text
        return re.findall(r"<code>([0-9A-Z]{5}-[0-9A-Z]{5})</code>", r.text)

    def sign_in(self, username: str, password: str = PASSWORD, *, next_url: str = "/") -> Any:
        self.get(f"/login?next={next_url}")
        r = self.post("/login", {"username": username, "password": password, "next": next_url})
        if r.status_code != 303:
            return r
        assert r.headers["location"] == "/login/second-factor"
        self.get("/login/second-factor")
        self.clock.advance(seconds=30)  # a fresh TOTP step: each code works once
        response = self.post("/login/totp", {"code": self.code()})
        if response.status_code == 303:
            self.get(response.headers["location"])
        return response

    def options(self, url: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(url, json=body or {}, headers={"X-CSRF-Token": self.csrf()})

    def ceremony(
        self,
        key: Any,
        *,
        action: str = "get",
        options_url: str = "/webauthn/options",
        verify_url: str = "/webauthn/verify",
        body: dict[str, Any] | None = None,
        credential: Any = None,
    ) -> Any:
        """Both halves of a WebAuthn ceremony, as /static/hearth.js runs them, with ``key``
        (a ``SoftKey``) in the browser's place."""
        first = self.options(options_url, body)
        if first.status_code != 200:
            return first
        data = first.json()
        made = (
            key.create(data["options"])
            if action == "create"
            else key.get(data["options"], credential)
        )
        self.last_credential = made
        return self.client.post(
            verify_url,
            json={"credential": made, **(body or {})},
            headers={"X-CSRF-Token": data["csrf"]},
        )

    def logout(self) -> Any:
        self.get("/")
        return self.post("/logout", {})


class Instance:
    def __init__(
        self, home: Path, clock: FixedClock, alarms: CapturedAlarms, container: Container
    ) -> None:
        self.home, self.clock, self.alarms, self.container = home, clock, alarms, container

    def add_user(self, username: str, roles: frozenset[str] = frozenset({ADMIN_ROLE})) -> str:
        _, link = self.container.users.add(
            username, roles=roles, display_name=username.title(), by="test"
        )
        assert link is not None
        return link.token

    def browser(self, address: str = "testclient") -> Browser:
        """A browser whose requests come from ``address``."""
        app = create_app(self.container)
        client = TestClient(app, base_url="https://localhost", client=(address, 50000))
        return Browser(client, self.clock)

    def lock_by_failures(self, username: str, *, addresses: int = 25) -> int:
        """Wrong passwords for ``username`` from ``addresses`` addresses in turn, waiting as
        told, until the name is locked; returns how many were needed."""
        failures = 0
        while True:
            source = f"198.51.100.{failures % addresses + 1}"
            try:
                self.container.signin.password(
                    None, username, "not the password 123", source=source, next_url=None
                )
            except HearthError as error:
                if error.code is errors.ACCOUNT_LOCKED:
                    return failures
                if error.code is errors.SIGN_IN_THROTTLED:
                    self.clock.advance(seconds=int(error.headers["Retry-After"]))
                    continue
                if error.code is not errors.AUTHENTICATION_FAILED:
                    raise
                failures += 1


def build(
    tmp_path: Path,
    *,
    redis_url: str | None = None,
    throttle: ThrottlePolicy | None = None,
    sessions: str = "",
) -> Instance:
    """An instance; ``sessions`` replaces the body of its ``[sessions]`` table."""
    clock = FixedClock()
    home = tmp_path / "home"
    init_instance(home, clock=clock)
    config = home / "hearth.toml"
    if sessions:
        text = config.read_text("utf-8")
        text = text.replace("idle_minutes = 15\nabsolute_hours = 12\n", sessions)
        config.write_text(text, "utf-8")
    if redis_url:
        with config.open("a", encoding="utf-8") as f:
            f.write(f'\n[redis]\nurl = "{redis_url}"\n')
    alarms = CapturedAlarms()
    container = Container(
        load_settings(home, {}),
        clock=clock,
        random=SeededRandom(),
        password_parameters=CHEAP,
        throttle=throttle,
        alarms=alarms,
    )
    return Instance(home, clock, alarms, container)


REDIS_URL = "redis://127.0.0.1:6379/0"


def drop_redis_keys(instance_id: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"hearth:{instance_id}:*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["database", "redis"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    """An instance whose sessions and counters live in the database and this process, or in
    Redis: every sign-in test runs against both."""
    inst = build(tmp_path, redis_url=REDIS_URL if request.param == "redis" else None)
    try:
        yield inst
    finally:
        inst.container.close()
        if request.param == "redis":
            drop_redis_keys(inst.container.settings.instance_id)
