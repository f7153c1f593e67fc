"""Brute force against one account and credential stuffing from one address are slowed, locked
and alarmed (issue 4 items 3 and 12; NIST SP 800-63B-4 sec. 3.2.2), with counters in this
process and in Redis."""

from __future__ import annotations

import re
from pathlib import Path

from hearth.domain import AlarmKind, errors
from tests.integration.auth.conftest import (
    PASSWORD,
    REDIS_URL,
    Browser,
    Instance,
    build,
    drop_redis_keys,
)


def attempt(browser: Browser, name: str, password: str = "not the password 123") -> tuple[int, int]:
    """One sign-in attempt; (status, Retry-After or 0)."""
    browser.get("/login")
    response = browser.post("/login", {"username": name, "password": password})
    return response.status_code, int(response.headers.get("retry-after", "0"))


def test_one_account_is_slowed_alarmed_and_locked(site: Instance) -> None:
    victim = site.browser()
    victim.enrol_password(site.add_user("alice"))
    victim.logout()
    attacker = site.browser()
    waits = []
    for _ in range(100):
        status, wait = attempt(attacker, "alice")
        while status == 429:  # too early: wait as told, then the attempt is considered
            waits.append(wait)
            site.clock.advance(seconds=wait)
            status, wait = attempt(attacker, "alice")
        assert status == 401
    # Growing delays: none for the first five failures, then doubling up to 15 minutes.
    assert waits[:6] == [1, 2, 4, 8, 16, 32]
    assert max(waits) == 900
    assert waits == sorted(waits)
    kinds = [a.kind for a in site.alarms.raised]
    assert kinds.count(AlarmKind.AUTH_BRUTE_FORCE) == 10  # at 10, 20, ..., 100 failures
    assert kinds.count(AlarmKind.AUTH_LOCKOUT) == 1
    user_id = site.container.users.get("alice").user_id
    assert {a.subject for a in site.alarms.raised} == {f"user:{user_id}"}
    # Locked: even the right password is refused, without being checked.
    site.clock.advance(hours=1)
    status, _ = attempt(victim, "alice", PASSWORD)
    assert status == 429
    assert errors.ACCOUNT_LOCKED.title.split(".")[0] in victim.page
    assert site.container.users.get("alice").locked
    site.container.users.unlock("alice", by="test")
    assert victim.sign_in("alice").status_code == 303


def test_unknown_names_are_throttled_exactly_like_real_ones(site: Instance) -> None:
    site.browser().enrol_password(site.add_user("alice"))
    traces = []
    for name in ("alice", "nobody-here"):
        browser = site.browser()
        trace = []
        for _ in range(8):
            trace.append(attempt(browser, name))
        traces.append(trace)
        site.clock.advance(hours=2)  # let the address allowance recover between the two
    assert traces[0] == traces[1]
    assert traces[0][:5] == [(401, 0)] * 5
    assert traces[0][5] == (429, 1)


def test_credential_stuffing_from_one_address_is_slowed_and_alarmed(
    site: Instance,
) -> None:
    site.browser().enrol_password(site.add_user("alice"))
    attacker = site.browser()
    statuses = []
    for i in range(20):
        statuses.append(attempt(attacker, f"user{i}")[0])
    assert statuses == [401] * 20  # one failure per name: no name is slowed
    alarms = [a for a in site.alarms.raised if a.kind is AlarmKind.AUTH_CREDENTIAL_STUFFING]
    assert len(alarms) == 2  # at 10 and 20 distinct names
    assert alarms[0].subject.startswith("address:")
    assert alarms[0].details["accounts"] == "10"
    # The address has used its allowance: a fresh name from it must now wait, growing.
    status, wait = attempt(attacker, "user-fresh")
    assert (status, wait) == (429, 1)
    site.clock.advance(seconds=1)
    assert attempt(attacker, "user-fresh")[0] == 401
    assert attempt(attacker, "user-fresher") == (429, 2)
    # Audited as throttled, without the names typed.
    site.container.audit.close()
    with site.container.store.read() as conn:
        from hearth.storage.sql import tables as t

        bodies = b"".join(
            r[0]
            for r in conn.execute(t.audit_entry.select().with_only_columns(t.audit_entry.c.body))
        )
    assert b"auth.throttled" in bodies
    assert re.search(rb"user-fresh|user1", bodies) is None


def test_a_success_forgets_the_names_failures(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    for _ in range(5):
        assert attempt(browser, "alice")[0] == 401
    assert attempt(browser, "alice")[0] == 429
    site.clock.advance(seconds=1)
    assert browser.sign_in("alice").status_code == 303
    browser.logout()
    assert attempt(browser, "alice") == (401, 0)  # the count started again


def test_redis_counters_are_shared_by_processes(tmp_path: Path) -> None:
    first = build(tmp_path / "a", redis_url=REDIS_URL)
    try:
        first.browser().enrol_password(first.add_user("alice"))
        # A second process of the same instance: its own container, the same Redis.
        from hearth.settings import load_settings
        from hearth.wiring import Container
        from tests.integration.auth.conftest import CHEAP, CapturedAlarms, SeededRandom

        second = Container(
            load_settings(first.home, {}),
            clock=first.clock,
            random=SeededRandom(b"second"),
            password_parameters=CHEAP,
            alarms=CapturedAlarms(),
        )
        try:
            one = first.browser()
            for _ in range(5):
                assert attempt(one, "alice")[0] == 401
            two = Instance(first.home, first.clock, first.alarms, second).browser()
            assert attempt(two, "alice") == (429, 1)
        finally:
            second.close()
    finally:
        first.container.close()
        drop_redis_keys(first.container.settings.instance_id)


def test_anonymous_passkey_starts_are_bounded_per_address(site: Instance) -> None:
    statuses = []
    for _ in range(31):
        browser = site.browser()  # a new client each time: no session to reuse
        browser.get("/login")
        statuses.append(browser.options("/webauthn/options").status_code)
    assert statuses == [200] * 30 + [429]
    site.clock.advance(minutes=5, seconds=1)
    fresh = site.browser()
    fresh.get("/login")
    assert fresh.options("/webauthn/options").status_code == 200


# -- malicious lockout (ASVS v5.0.0-6.1.1) -------------------------------------------------------
def wait_and_attempt(browser: Browser, site: Instance, name: str) -> None:
    """One counted failure: wait as told first."""
    status, wait = attempt(browser, name)
    while status == 429:
        site.clock.advance(seconds=wait)
        status, wait = attempt(browser, name)
    assert status == 401


def test_an_attacker_elsewhere_does_not_slow_the_person_at_their_desk(site: Instance) -> None:
    victim = site.browser("192.0.2.10")
    victim.enrol_password(site.add_user("alice"))
    victim.logout()
    attacker = site.browser("203.0.113.66")
    for _ in range(30):
        wait_and_attempt(attacker, site, "alice")
    assert attempt(attacker, "alice")[0] == 429  # the attacker waits, longer and longer
    assert attempt(site.browser("192.0.2.11"), "alice") == (401, 0)  # a colleague's desk
    assert victim.sign_in("alice").status_code == 303  # and alice signs in at once
    assert attempt(attacker, "alice")[0] == 429  # her success does not free the attacker


def test_a_distributed_attack_slows_new_addresses_but_not_known_ones(site: Instance) -> None:
    victim = site.browser("192.0.2.10")
    victim.enrol_password(site.add_user("alice"))
    victim.logout()
    assert victim.sign_in("alice").status_code == 303  # 192.0.2.10 is now known for alice
    victim.logout()
    for bot in range(10):  # five free tries each from ten addresses
        browser = site.browser(f"203.0.113.{bot + 1}")
        assert [attempt(browser, "alice") for _ in range(5)] == [(401, 0)] * 5
    # Past 50 failures from anywhere, an address alice never signed in from waits...
    assert attempt(site.browser("203.0.113.200"), "alice") == (429, 1)
    # ...but her own desk does not, and the alarms went off.
    assert victim.sign_in("alice").status_code == 303
    kinds = [a.kind for a in site.alarms.raised]
    assert kinds.count(AlarmKind.AUTH_BRUTE_FORCE) == 5
    assert AlarmKind.AUTH_LOCKOUT not in kinds


def test_a_locked_password_does_not_stop_a_passkey(site: Instance) -> None:
    from tests.integration.auth.softkey import SoftKey
    from tests.integration.auth.test_webauthn import enrol_key

    key = SoftKey()
    browser = enrol_key(site, "alice", key)
    browser.logout()
    assert site.lock_by_failures("alice") == 100  # NIST-RL-01: never more than 100
    assert site.container.users.get("alice").locked
    assert [a.kind for a in site.alarms.raised].count(AlarmKind.AUTH_LOCKOUT) == 1
    browser.get("/login")
    signed = browser.ceremony(key)
    assert signed.status_code == 200, signed.text
    assert "Welcome, Alice" in browser.get("/").text
    # The password path stays locked until an administrator looks (the alarm asks them to).
    assert attempt(site.browser(), "alice", PASSWORD)[0] == 429


def test_failed_assertions_never_move_an_account_towards_its_lock(site: Instance) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.integration.auth.softkey import Credential, SoftKey
    from tests.integration.auth.test_webauthn import enrol_key

    key = SoftKey()
    enrol_key(site, "alice", key).logout()
    # What an attacker without alice's key can send: her credential id, signed by another key.
    real = key.credentials[0]
    forger = SoftKey()
    forger.credentials.append(
        Credential(
            real.credential_id,
            ec.generate_private_key(ec.SECP256R1()),
            real.user_handle,
            real.rp_id,
            real.counter,
        )
    )
    thief = site.browser("203.0.113.9")
    for _ in range(15):
        thief.get("/login")
        assert thief.ceremony(forger).status_code == 401
    assert not [a for a in site.alarms.raised if a.kind is AlarmKind.AUTH_BRUTE_FORCE]
    assert attempt(site.browser(), "alice") == (401, 0)  # no wait on alice's name
