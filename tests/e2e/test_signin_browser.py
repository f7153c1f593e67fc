"""Sign-in in headless Chromium (issue 4 item 12): password + TOTP, a USB security key with a
PIN, the device's platform authenticator with user verification, and PIN lock and unlock."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from hearth.auth import totp
from tests.e2e.conftest import Served, Tab, add_authenticator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "maple syrup on a tuesday"
PIN = "480917"
SESSION = "__Host-hearth-session"


def set_up_link(served: Served, name: str, *, admin: bool = True) -> str:
    roles = frozenset({"bootstrap-admin"}) if admin else frozenset()
    _, link = served.container.users.add(name, roles=roles, display_name=name.title(), by="test")
    assert link is not None
    return f"{served.base}/enrol?token={link.token}"


def welcome(page: Page, name: str) -> None:
    expect(page.locator("#welcome")).to_have_text(f"Welcome, {name}.")


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def no_csp_violations(tab: Tab) -> None:
    assert not [m for m in tab.console if "Content Security Policy" in m], tab.console


def test_password_and_authenticator_app(served: Served, tab: Tab) -> None:
    page = tab.page
    page.goto(set_up_link(served, "alice"))
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(f"{served.base}/enrol/app")
    secret = page.locator("#manual-key").inner_text().replace(" ", "")
    expect(page.locator("svg.hearth-totp-qr")).to_be_visible()
    step = totp.time_step(datetime.now(UTC))
    page.get_by_label("6-digit code from the app").fill(totp.code_at(secret, step))
    page.get_by_role("button", name="Finish set-up").click()
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
    expect(page.locator("ol.codes li")).to_have_count(10)
    page.get_by_role("link", name="Continue").click()
    welcome(page, "Alice")
    cookie = next(c for c in tab.context.cookies() if c["name"] == SESSION)
    assert cookie["secure"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["expires"] == -1
    sign_out(page)
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    # The enrolment used this step's code; the next step's code is new and within the window.
    page.get_by_label("6-digit code from your authenticator app").fill(
        totp.code_at(secret, step + 1)
    )
    page.get_by_role("button", name="Continue").click()
    welcome(page, "Alice")
    no_csp_violations(tab)


def test_wrong_password_is_announced_and_focused(served: Served, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{served.base}/login")
    expect(page.get_by_label("User name")).to_be_focused()
    page.get_by_label("User name").fill("nobody")
    page.get_by_label("Password", exact=True).fill("not a real password at all")
    page.get_by_role("button", name="Sign in", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Sign-in failed")
    expect(alert).to_be_focused()
    no_csp_violations(tab)


def test_usb_security_key_with_pin(served: Served, tab: Tab) -> None:
    page = tab.page
    cdp, authenticator = add_authenticator(tab, transport="usb")
    page.goto(set_up_link(served, "bob"))  # an administrator: user verification required
    page.get_by_label("Name for the key (optional)").fill("Bob's blue key")
    page.locator("#enrol-roaming").click()
    welcome(page, "Bob")
    assert served.container.users.get("bob").keys == 1
    sign_out(page)
    page.locator("#passkey").click()  # no user name: the key names the user (a passkey)
    welcome(page, "Bob")
    # Without the PIN (user verification fails), the key does not sign in.
    sign_out(page)
    cdp.send(
        "WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": False}
    )
    page.locator("#passkey").click()
    expect(page.locator("#passkey")).to_have_attribute("data-state", "error")
    expect(page.get_by_role("alert")).to_contain_text("did not respond")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    no_csp_violations(tab)


def test_platform_authenticator_with_user_verification(served: Served, tab: Tab) -> None:
    page = tab.page
    add_authenticator(tab, transport="internal")
    page.goto(set_up_link(served, "carol"))
    page.locator("#enrol-platform").click()
    welcome(page, "Carol")
    page.get_by_role("link", name="Account").click()
    expect(page.locator("ul.keys")).to_contain_text("this device")
    sign_out(page)
    page.locator("#passkey").click()
    welcome(page, "Carol")
    no_csp_violations(tab)


def test_pin_lock_and_unlock(served: Served, tab: Tab) -> None:
    page = tab.page
    add_authenticator(tab, transport="internal")
    page.goto(set_up_link(served, "dana"))
    page.locator("#enrol-platform").click()
    welcome(page, "Dana")
    page.get_by_role("link", name="Account").click()
    page.get_by_label("New PIN", exact=True).fill(PIN)
    page.get_by_label("New PIN again").fill(PIN)
    page.get_by_role("button", name="Set PIN").click()
    expect(page.get_by_role("status").filter(has_text="Your PIN is set.")).to_be_visible()
    before = next(c["value"] for c in tab.context.cookies() if c["name"] == SESSION)
    page.get_by_role("button", name="Lock", exact=True).click()
    expect(page.get_by_role("heading", name="Session locked")).to_be_visible()
    page.goto(f"{served.base}/account")  # a locked session shows nothing else
    expect(page).to_have_url(re.compile(r"/unlock\?next=/account$"))
    page.get_by_label("PIN").fill(PIN)
    page.get_by_role("button", name="Unlock", exact=True).click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    after = next(c["value"] for c in tab.context.cookies() if c["name"] == SESSION)
    assert after != before
    # Five wrong PINs sign out.
    page.get_by_role("button", name="Lock", exact=True).click()
    for tries_left in (4, 3, 2, 1):
        page.get_by_label("PIN").fill("135792")
        page.get_by_role("button", name="Unlock", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text(f"{tries_left} tries left")
    page.get_by_label("PIN").fill("135792")
    page.get_by_role("button", name="Unlock", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("signed out")
    assert SESSION not in {c["name"] for c in tab.context.cookies()}
    no_csp_violations(tab)


def test_someone_else_at_a_locked_workstation_signs_in_fully(served: Served, tab: Tab) -> None:
    page = tab.page
    add_authenticator(tab, transport="internal")
    page.goto(set_up_link(served, "erin"))
    page.locator("#enrol-platform").click()
    welcome(page, "Erin")
    page.get_by_role("button", name="Lock", exact=True).click()
    page.get_by_role("button", name="Sign out, or sign in as someone else").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert SESSION not in {c["name"] for c in tab.context.cookies()}


def test_secure_cookies_work_on_plain_http_loopback(served: Served, tab: Tab) -> None:
    """Chromium treats http://localhost and http://127.0.0.1 as secure contexts: it keeps
    ``Secure`` ``__Host-`` cookies there (design.md, "Loopback development over HTTP")."""
    for host in ("localhost", "127.0.0.1"):
        tab.page.goto(f"http://{host}:{served.port}/login")
        names = {c["name"] for c in tab.context.cookies(f"http://{host}:{served.port}/")}
        assert "__Host-hearth-pre" in names, host
