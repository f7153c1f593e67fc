"""Locking and unlocking a shared workstation's session (issue 4 item 6; NIST-RA-02, -03)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from hearth.domain import HearthError, errors
from tests.integration.auth.conftest import COOKIE, Browser, Instance, build
from tests.integration.auth.softkey import SoftKey
from tests.integration.auth.test_signin import audit_actions

PIN = "480917"


def with_pin(site: Instance, name: str = "alice") -> Browser:
    browser = site.browser()
    browser.enrol_password(site.add_user(name))
    browser.get("/account")
    response = browser.post("/account/pin", {"pin": PIN, "pin-confirm": PIN})
    assert response.status_code == 200
    assert "Your PIN is set." in response.text
    return browser


def lock(browser: Browser) -> None:
    browser.get("/")
    assert browser.post("/lock", {}).headers["location"] == "/unlock"
    browser.get("/unlock")


def test_setting_a_pin_needs_step_up_and_refuses_guessable_ones(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.get("/account")
    weak = browser.post("/account/pin", {"pin": "123456", "pin-confirm": "123456"})
    assert weak.status_code == 422
    assert errors.PIN_GUESSABLE.title.split(" such")[0] in weak.text
    site.clock.advance(minutes=6)
    browser.get("/account")
    late = browser.post("/account/pin", {"pin": PIN, "pin-confirm": PIN})
    assert late.status_code == 303
    assert late.headers["location"] == "/step-up?next=/account"
    assert not site.container.users.get("alice").has_pin


def test_lock_then_unlock_with_the_pin(site: Instance) -> None:
    browser = with_pin(site)
    before = browser.session_cookie()
    lock(browser)
    assert "is locked" in browser.page
    assert browser.get("/account").headers["location"].startswith("/unlock")
    unlocked = browser.post("/unlock/pin", {"pin": PIN, "next": "/account"})
    assert unlocked.status_code == 303
    assert unlocked.headers["location"] == "/account"
    assert browser.session_cookie() not in (None, before)  # a new id after unlocking
    assert browser.get("/account").status_code == 200
    actions = [(a, o) for a, o, _ in audit_actions(site)]
    assert ("session.lock", "success") in actions
    assert ("session.unlock", "success") in actions


def test_idle_lock_unlocks_with_pin_but_not_past_the_absolute_lifetime(site: Instance) -> None:
    browser = with_pin(site)
    site.clock.advance(minutes=16)
    assert browser.get("/").headers["location"].startswith("/unlock")
    browser.get("/unlock")
    assert browser.post("/unlock/pin", {"pin": PIN}).status_code == 303
    site.clock.advance(hours=11, minutes=30)  # 11 h 46 min after sign-in, idle again
    assert browser.get("/").headers["location"].startswith("/unlock")
    browser.get("/unlock")
    site.clock.advance(minutes=20)  # past 12 hours since sign-in
    response = browser.post("/unlock/pin", {"pin": PIN})
    assert response.status_code == 403  # the session (and its CSRF token) is gone
    assert browser.get("/").headers["location"].startswith("/login")


def test_five_wrong_pins_sign_out(site: Instance) -> None:
    browser = with_pin(site)
    lock(browser)
    session_id = browser.session_cookie()
    for tries_left in (4, 3, 2, 1):
        wrong = browser.post("/unlock/pin", {"pin": "135792"})
        assert wrong.status_code == 401
        assert f"{tries_left} tries left" in wrong.text
    fifth = browser.post("/unlock/pin", {"pin": "135792"})
    assert fifth.status_code == 401
    assert "you have been signed out" in fifth.text
    assert "Max-Age=0" in fifth.headers["set-cookie"]
    stale = site.browser()
    stale.client.cookies.set(COOKIE, session_id or "", domain="localhost.local")
    assert stale.get("/unlock").headers["location"].startswith("/login")
    assert ("session.end", "success") in [(a, o) for a, o, _ in audit_actions(site)]


def test_the_right_pin_after_the_fifth_wrong_one_is_too_late(site: Instance) -> None:
    browser = with_pin(site)
    lock(browser)
    csrf = browser.csrf()
    for _ in range(5):
        browser.post("/unlock/pin", {"pin": "135792"}, csrf=csrf)
    late = browser.post("/unlock/pin", {"pin": PIN}, csrf=csrf)
    assert late.status_code == 403  # the session is gone; so is its CSRF token
    assert browser.get("/").headers["location"].startswith("/login")


def test_another_users_key_cannot_unlock(site: Instance) -> None:
    alice_key, bob_key = SoftKey(), SoftKey()
    alice = site.browser()
    token = site.add_user("alice")
    alice.get(f"/enrol?token={token}")
    alice.ceremony(
        alice_key,
        action="create",
        options_url="/enrol/key/options",
        verify_url="/enrol/key/verify",
        body={"token": token},
    )
    bob = site.browser()
    token = site.add_user("bob")
    bob.get(f"/enrol?token={token}")
    bob.ceremony(
        bob_key,
        action="create",
        options_url="/enrol/key/options",
        verify_url="/enrol/key/verify",
        body={"token": token},
    )
    lock(alice)
    assert "Unlock with your security key" in alice.page
    # Bob walks up to Alice's locked workstation and offers his own key.
    refused = alice.ceremony(bob_key)
    assert refused.status_code == 403
    assert refused.json()["code"] == errors.WRONG_USER.code
    assert alice.get("/").headers["location"].startswith("/unlock")
    alice.get("/unlock")
    unlocked = alice.ceremony(alice_key, body={"next": "/account"})
    assert unlocked.status_code == 200
    assert unlocked.json()["redirect"] == "/account"
    assert alice.get("/account").status_code == 200
    denied = [(a, o) for a, o, _ in audit_actions(site) if o == "denied"]
    assert ("session.unlock", "denied") in denied


def test_a_different_user_signs_in_fully_and_the_locked_session_ends(site: Instance) -> None:
    alice = with_pin(site, "alice")
    site.browser().enrol_password(site.add_user("bob"))
    lock(alice)
    locked_id = alice.session_cookie()
    alice.post("/logout", {})  # "Sign out, or sign in as someone else"
    alice.totp_secret = None
    bob_browser = alice  # the same workstation
    bob_browser.get("/login")
    response = bob_browser.post(
        "/login", {"username": "bob", "password": "correct horse battery staple"}
    )
    assert response.status_code == 303
    stale = site.browser()
    stale.client.cookies.set(COOKIE, locked_id or "", domain="localhost.local")
    assert stale.get("/").headers["location"].startswith("/login")


def test_non_default_timeouts_take_effect_at_their_own_times(tmp_path: Path) -> None:
    """``[sessions]`` values other than the defaults are what the sessions obey: a 5-minute idle
    lock, a 1-hour absolute end and a 2-minute step-up window, by the injected clock."""
    site = build(
        tmp_path,
        sessions="idle_minutes = 5\nabsolute_hours = 1\nstep_up_minutes = 2\n",
    )
    try:
        browser = site.browser()
        browser.enrol_password(site.add_user("alice"))
        assert browser.get("/").status_code == 200
        site.clock.advance(minutes=4, seconds=50)  # inside the 5 minutes: still active
        assert browser.get("/").status_code == 200
        session = site.container.sessions.load(browser.session_cookie())
        assert session is not None
        with pytest.raises(HearthError) as stale:  # 4 min 50 s > 2 min since the sign-in
            site.container.sessions.require_step_up(session)
        assert stale.value.code is errors.STEP_UP_REQUIRED
        site.clock.advance(minutes=5, seconds=1)  # 5 min 1 s idle: locked, not the default 15
        assert browser.get("/").headers["location"] == "/unlock?next=/"
        # Kept busy, it still ends one hour after the sign-in, not after the default twelve.
        browser.sign_in("alice")
        signed_in_at = site.clock.now()
        while site.clock.now() - signed_in_at < timedelta(minutes=56):
            site.clock.advance(minutes=4)
            assert browser.get("/").status_code == 200
        site.clock.advance(minutes=4)
        assert browser.get("/").headers["location"].startswith("/login")
        actions = [(a, o) for a, o, _ in audit_actions(site)]
        assert ("session.lock", "success") in actions
        assert ("session.end", "success") in actions
    finally:
        site.container.close()
