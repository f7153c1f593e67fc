"""WebAuthn through the pages' JSON endpoints with a software authenticator, and every refusal
(issue 4 item 5): UV for administrators and passkeys, sign counters, one-use challenges,
another user's key, several keys per user, naming and removal."""

from __future__ import annotations

from typing import Any

from hearth.domain import errors
from tests.integration.auth.conftest import Browser, Instance
from tests.integration.auth.softkey import SoftKey, b64


def enrol_key(site: Instance, name: str, key: SoftKey, *, admin: bool = False) -> Browser:
    roles = frozenset({"bootstrap-admin"}) if admin else frozenset()
    browser = site.browser()
    token = site.add_user(name, roles=roles)
    browser.get(f"/enrol?token={token}")
    response = browser.ceremony(
        key,
        action="create",
        options_url="/enrol/key/options",
        verify_url="/enrol/key/verify",
        body={"token": token, "platform": "false", "name": f"{name}'s key"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"redirect": "/"}
    return browser


def audit(site: Instance) -> list[tuple[str, str, str | None]]:
    from tests.integration.auth.test_signin import audit_actions

    return audit_actions(site)


def test_enrol_a_security_key_and_sign_in_with_it_as_a_passkey(site: Instance) -> None:
    key = SoftKey()
    browser = enrol_key(site, "alice", key)
    assert "Welcome, Alice" in browser.get("/").text
    browser.logout()
    browser.get("/login")
    signed = browser.ceremony(key)
    assert signed.status_code == 200, signed.text
    assert "Welcome, Alice" in browser.get("/").text
    principal = site.container.sessions.current_user(browser.session_cookie(), source=None)
    assert principal is not None
    assert principal.attributes["amr"] == "hwk user mfa"
    actions = [(a, o) for a, o, _ in audit(site)]
    assert ("mfa.key-add", "success") in actions
    assert ("auth.passkey", "success") in actions


def test_a_passkey_without_user_verification_is_refused(site: Instance) -> None:
    key = SoftKey(uv=False)
    browser = enrol_key(site, "alice", key)  # a plain user may register a key without UV...
    browser.logout()
    browser.get("/login")
    refused = browser.ceremony(key)  # ...but a key alone must verify the user
    assert refused.status_code == 401
    assert refused.json()["code"] == errors.WEBAUTHN_UV_REQUIRED.code


def test_administrators_must_use_user_verification(site: Instance) -> None:
    browser = site.browser()
    token = site.add_user("root-like")
    browser.get(f"/enrol?token={token}")
    refused = browser.ceremony(
        SoftKey(uv=False),
        action="create",
        options_url="/enrol/key/options",
        verify_url="/enrol/key/verify",
        body={"token": token},
    )
    assert refused.status_code == 401
    assert refused.json()["code"] == errors.WEBAUTHN_UV_REQUIRED.code
    browser.get(f"/enrol?token={token}")  # the link was not used up by the refusal
    accepted = browser.ceremony(
        SoftKey(uv=True),
        action="create",
        options_url="/enrol/key/options",
        verify_url="/enrol/key/verify",
        body={"token": token},
    )
    assert accepted.status_code == 200


def test_an_assertion_cannot_be_replayed_and_counters_must_grow(site: Instance) -> None:
    key = SoftKey()
    browser = enrol_key(site, "alice", key)
    browser.logout()
    browser.get("/login")
    assert browser.ceremony(key).status_code == 200
    replayed: dict[str, Any] = browser.last_credential
    browser.logout()
    # The same signed response again: its challenge is spent.
    browser.get("/login")
    first = browser.options("/webauthn/options")
    again = browser.client.post(
        "/webauthn/verify",
        json={"credential": replayed},
        headers={"X-CSRF-Token": first.json()["csrf"]},
    )
    assert again.status_code == 401
    # A cloned authenticator signs with an old counter: refused.
    key.credentials[0].counter -= 2
    browser.get("/login")
    cloned = browser.ceremony(key)
    assert cloned.status_code == 401
    assert cloned.json()["code"] == errors.WEBAUTHN_FAILED.code


def test_a_challenge_works_once(site: Instance) -> None:
    key = SoftKey()
    browser = enrol_key(site, "alice", key)
    browser.logout()
    browser.get("/login")
    first = browser.options("/webauthn/options").json()
    assertion = key.get(first["options"])
    headers = {"X-CSRF-Token": first["csrf"]}
    ok = browser.client.post("/webauthn/verify", json={"credential": assertion}, headers=headers)
    assert ok.status_code == 200
    browser.logout()
    # The session that held the challenge is gone; a new one has no challenge to match.
    browser.get("/login")
    again = browser.client.post(
        "/webauthn/verify",
        json={"credential": assertion},
        headers={"X-CSRF-Token": browser.csrf()},
    )
    assert again.status_code == 401


def test_password_then_security_key_as_second_factor(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice", roles=frozenset()))  # not an administrator
    key = SoftKey(uv=False)
    browser.get("/account")
    added = browser.ceremony(
        key,
        action="create",
        options_url="/account/keys/options",
        verify_url="/account/keys/verify",
        body={"platform": "false", "name": "Blue key"},
    )
    assert added.status_code == 200, added.text
    assert "Blue key" in browser.get("/account").text
    browser.logout()
    browser.get("/login")
    browser.post("/login", {"username": "alice", "password": "correct horse battery staple"})
    page = browser.get("/login/second-factor").text
    assert "Use your security key" in page
    assert "Authenticator app" in page
    done = browser.ceremony(key)
    assert done.status_code == 200
    principal = site.container.sessions.current_user(browser.session_cookie(), source=None)
    assert principal is not None
    assert principal.attributes["amr"] == "pwd hwk mfa"


def test_adding_keys_needs_a_recent_step_up(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    site.clock.advance(minutes=6)
    browser.get("/account")
    refused = browser.options("/account/keys/options", {"platform": "true"})
    assert refused.status_code == 401
    assert refused.json()["redirect"] == "/step-up?next=/account"
    browser.get("/step-up?next=/account")
    site.clock.advance(seconds=30)
    stepped = browser.post("/step-up/totp", {"code": browser.code(), "next": "/account"})
    assert stepped.status_code == 303
    assert stepped.headers["location"] == "/account"
    browser.get("/account")
    assert browser.options("/account/keys/options", {"platform": "true"}).status_code == 200


def test_several_keys_rename_and_remove_but_never_the_last(site: Instance) -> None:
    first, second = SoftKey(), SoftKey(transport="internal")
    browser = enrol_key(site, "alice", first)
    browser.get("/account")
    added = browser.ceremony(
        second,
        action="create",
        options_url="/account/keys/options",
        verify_url="/account/keys/verify",
        body={"platform": "true"},
    )
    assert added.status_code == 200
    keys = site.container.users.get("alice").keys
    assert keys == 2
    page = browser.get("/account").text
    assert "this device" in page
    assert "security key" in page
    ids = [first.credentials[0].credential_id, second.credentials[0].credential_id]
    renamed = browser.post("/account/keys/rename", {"key": b64(ids[0]), "name": "Yellow key"})
    assert renamed.status_code == 200
    assert "Yellow key" in renamed.text
    removed = browser.post("/account/keys/remove", {"key": b64(ids[1])})
    assert removed.status_code == 200
    assert "The key was removed." in removed.text
    last = browser.post("/account/keys/remove", {"key": b64(ids[0])})
    assert last.status_code == 409
    assert "last way to sign in" in last.text
    # The removed key no longer signs in.
    browser.logout()
    browser.get("/login")
    gone = browser.ceremony(second)
    assert gone.status_code == 401
    actions = [a for a, o, _ in audit(site) if o == "success"]
    assert {"mfa.key-rename", "mfa.key-remove"} <= set(actions)


def test_a_key_registered_on_another_site_is_refused(site: Instance) -> None:
    key = SoftKey(origin="https://evil.example")
    browser = site.browser()
    token = site.add_user("alice")
    browser.get(f"/enrol?token={token}")
    response = browser.ceremony(
        key,
        action="create",
        options_url="/enrol/key/options",
        verify_url="/enrol/key/verify",
        body={"token": token},
    )
    assert response.status_code == 401
    assert response.json()["code"] == errors.WEBAUTHN_FAILED.code
