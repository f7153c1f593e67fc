"""What a console sign-in costs, and what argon2id contributes to it.

Run: ``python bench/auth.py`` (prints a table, writes ``bench/results/auth.json``).

Measured side by side in one process, on a fresh SQLite instance with the production argon2id
cost (``hearth.auth.DEFAULT_PARAMETERS``), through the real ASGI app (Starlette's test client,
no network):

- ``sign-in``: the two requests of a password + TOTP sign-in (``POST /login``, then
  ``POST /login/totp``), from name and password to an active session;
- ``argon2id verify``: one ``PasswordHasher.verify`` alone, the floor of any password sign-in;
- ``wrong password`` and ``unknown user``: a refused ``POST /login`` for a real user and for a
  name nobody has; similar figures are what "no user enumeration by timing" means;
- ``signed-in page``: ``GET /`` with an active session (resume, idle check, render).

Each figure is a median over the rounds; the clock is a test clock that moves 30 s per sign-in
(each TOTP code works once) and one hour between failures (no throttling delay interferes).
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from hearth.auth import DEFAULT_PARAMETERS, totp
from hearth.domain import Alarm
from hearth.settings import load_settings
from hearth.web.app import create_app
from hearth.wiring import Container, init_instance

RESULTS = Path(__file__).resolve().parent / "results" / "auth.json"
PASSWORD = "maple syrup on a tuesday"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class StepClock:
    def __init__(self) -> None:
        self.current = datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class QuietAlarms:
    """The wrong-password rounds raise brute-force alarms by design; keep them off stderr."""

    def raise_alarm(self, alarm: Alarm) -> None:
        pass


def csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None
    return found.group(1)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(rounds: int = 25) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        clock = StepClock()
        home = Path(tmp) / "home"
        init_instance(home, clock=clock)
        container = Container(load_settings(home, {}), clock=clock, alarms=QuietAlarms())
        try:
            return measure(container, clock, rounds)
        finally:
            container.close()


def measure(container: Container, clock: StepClock, rounds: int) -> dict[str, Any]:
    _, link = container.users.add("bench", roles=frozenset(), display_name="Bench", by="bench")
    assert link is not None
    client = TestClient(create_app(container), base_url="https://localhost")
    page = client.get(f"/enrol?token={link.token}").text
    client.post(
        "/enrol/password",
        data={"csrf": csrf(page), "token": link.token, "password": PASSWORD, "confirm": PASSWORD},
    )
    page = client.get("/enrol/app").text
    found = re.search(r'id="manual-key">([^<]+)<', page)
    assert found is not None
    secret = found.group(1).replace(" ", "")
    code = totp.code_at(secret, totp.time_step(clock.now()))
    client.post("/enrol/app", data={"csrf": csrf(page), "code": code})

    def sign_out() -> None:
        home_page = client.get("/").text
        client.post("/logout", data={"csrf": csrf(home_page)}, follow_redirects=False)

    sign_in, wrong, unknown, signed_in_page, verify = [], [], [], [], []
    stored = container.accounts.user_by_name("bench")
    assert stored is not None
    assert stored.password_hash is not None
    for _ in range(rounds):
        sign_out()
        clock.advance(30)
        form = csrf(client.get("/login").text)
        step = totp.time_step(clock.now())

        def full(form: str = form, step: int = step) -> None:
            r = client.post(
                "/login",
                data={"csrf": form, "username": "bench", "password": PASSWORD},
                follow_redirects=False,
            )
            assert r.status_code == 303, r.status_code
            second = csrf(client.get("/login/second-factor").text)
            r = client.post(
                "/login/totp",
                data={"csrf": second, "code": totp.code_at(secret, step)},
                follow_redirects=False,
            )
            assert r.status_code == 303, r.status_code

        sign_in.append(timed(full))
        signed_in_page.append(timed(lambda: client.get("/")))
        verify.append(timed(lambda: container.passwords.verify(stored.password_hash, PASSWORD)))
        sign_out()
        for name, bucket in (("bench", wrong), ("nobody-by-this-name", unknown)):
            clock.advance(3600)
            form = csrf(client.get("/login").text)
            bucket.append(
                timed(
                    lambda name=name, form=form: client.post(
                        "/login",
                        data={"csrf": form, "username": name, "password": "not it at all 42"},
                    )
                )
            )
        client.cookies.clear()
    figures = {
        "sign-in (password + TOTP, two requests)": median_ms(sign_in),
        "argon2id verify alone": median_ms(verify),
        "wrong password, real user": median_ms(wrong),
        "wrong password, unknown user": median_ms(unknown),
        "signed-in page (GET /)": median_ms(signed_in_page),
    }
    return {
        "benchmark": "auth",
        "rounds": rounds,
        "argon2id": {
            "time_cost": DEFAULT_PARAMETERS.time_cost,
            "memory_kib": DEFAULT_PARAMETERS.memory_kib,
            "parallelism": DEFAULT_PARAMETERS.parallelism,
        },
        "median_ms": figures,
        "ratios": {
            "sign-in / argon2id verify": round(
                figures["sign-in (password + TOTP, two requests)"]
                / figures["argon2id verify alone"],
                2,
            ),
            "unknown user / real user (wrong password)": round(
                figures["wrong password, unknown user"] / figures["wrong password, real user"], 3
            ),
        },
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
    }


def main() -> None:
    result = run()
    width = max(len(k) for k in result["median_ms"])
    print(f"{'measure':<{width}}  median ms")
    for name, value in result["median_ms"].items():
        print(f"{name:<{width}}  {value:>9.2f}")
    for name, value in result["ratios"].items():
        print(f"{name:<{width}}  {value:>9}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main()
