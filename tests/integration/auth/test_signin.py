"""Sign-in through the pages, and every refusal on the way (issue 4 items 1-4, 6, 7, 10, 11)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from hearth.auth import totp
from hearth.domain import errors
from hearth.settings import load_settings
from hearth.storage.sql import tables as t
from hearth.wiring import Container
from tests.integration.auth.conftest import CHEAP, PASSWORD, Instance, SeededRandom, build

COOKIE = "__Host-hearth-session"


def audit_actions(site: Instance) -> list[tuple[str, str, str | None]]:
    site.container.audit.close()  # flush group-committed entries
    with site.container.store.read() as conn:
        rows = conn.execute(
            t.audit_entry.select().with_only_columns(
                t.audit_entry.c.action, t.audit_entry.c.outcome, t.audit_entry.c.actor
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def test_enrolment_signs_in_and_shows_ten_recovery_codes(site: Instance) -> None:
    browser = site.browser()
    codes = browser.enrol_password(site.add_user("alice"))
    assert len(codes) == 10
    assert len(set(codes)) == 10
    page = browser.get("/")
    assert page.status_code == 200
    assert "Welcome, Alice" in page.text
    assert ("mfa.enrol", "success") in [(a, o) for a, o, _ in audit_actions(site)]


def test_session_cookie_is_host_prefixed_secure_httponly_strict(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    browser.get("/login")
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for flag in ("Path=/", "Secure", "HttpOnly", "SameSite=Strict"):
        assert flag in cookie
    assert "Domain" not in cookie
    assert "Expires" not in cookie
    assert "Max-Age" not in cookie
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert len(session_id) == 22  # 128 bits, URL-safe base64


def test_sign_in_rotates_the_session_id_and_ignores_a_planted_one(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    planted = "AAAAAAAAAAAAAAAAAAAAAA"
    browser.client.cookies.set(COOKIE, planted, domain="localhost.local")
    browser.get("/login")
    pending = browser.post("/login", {"username": "alice", "password": PASSWORD})
    pending_id = browser.session_cookie()
    assert pending.status_code == 303
    assert pending_id not in (None, planted)
    browser.get("/login/second-factor")
    site.clock.advance(seconds=30)
    done = browser.post("/login/totp", {"code": browser.code()})
    assert done.status_code == 303
    final = browser.session_cookie()
    assert final not in (None, planted, pending_id)
    # The attacker's planted id and the pending id name nothing.
    for stale in (planted, pending_id):
        other = site.browser()
        other.client.cookies.set(COOKIE, stale, domain="localhost.local")
        assert other.get("/").status_code == 303


def test_unknown_user_and_wrong_password_get_the_same_answer(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    answers = []
    for name, password in (("alice", "wrong password here"), ("mallory", "wrong password here")):
        browser.get("/login")
        response = browser.post("/login", {"username": name, "password": password})
        body = re.sub(r'value="[^"]*"', "", response.text)
        answers.append((response.status_code, body))
    assert answers[0][0] == answers[1][0] == 401
    assert answers[0][1] == answers[1][1]
    assert errors.AUTHENTICATION_FAILED.title in answers[0][1]
    denied = [(a, actor) for a, o, actor in audit_actions(site) if o == "denied"]
    assert ("auth.sign-in", "unknown") in denied
    assert any(a == "auth.sign-in" and actor.startswith("usr_") for a, actor in denied)


def test_audit_never_holds_a_secret(site: Instance) -> None:
    browser = site.browser()
    codes = browser.enrol_password(site.add_user("alice"))
    browser.logout()
    browser.get("/login")
    browser.post("/login", {"username": "alice", "password": "a typo'd password 123"})
    browser.sign_in("alice")
    site.container.audit.close()
    with site.container.store.read() as conn:
        bodies = b"".join(
            r[0]
            for r in conn.execute(t.audit_entry.select().with_only_columns(t.audit_entry.c.body))
        )
    for secret in (PASSWORD, "a typo'd password 123", codes[0], browser.totp_secret or "x"):
        assert secret.encode() not in bodies
    assert b"alice" not in bodies  # users are named by id, never by what was typed


def test_a_totp_code_works_once(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    site.clock.advance(seconds=30)
    code = browser.code()
    browser.get("/login")
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    browser.get("/login/second-factor")
    assert browser.post("/login/totp", {"code": code}).status_code == 303
    browser.logout()
    browser.get("/login")
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    browser.get("/login/second-factor")
    replay = browser.post("/login/totp", {"code": code})
    assert replay.status_code == 401
    assert errors.TOTP_REPLAYED.title in replay.text
    wrong = browser.post("/login/totp", {"code": totp.code_at(browser.totp_secret or "", 1)})
    assert errors.TOTP_INVALID.title in wrong.text


def test_a_recovery_code_works_once(site: Instance) -> None:
    browser = site.browser()
    codes = browser.enrol_password(site.add_user("alice"))
    for attempt, expected in ((codes[3], 303), (codes[3], 401)):
        browser.logout()
        browser.get("/login")
        browser.post("/login", {"username": "alice", "password": PASSWORD})
        browser.get("/login/second-factor")
        response = browser.post("/login/recovery", {"recovery": attempt.lower()})
        assert response.status_code == expected
    assert site.container.users.get("alice").recovery_codes == 9


def test_second_factor_without_password_step_is_refused(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    browser.get("/login")
    response = browser.post("/login/totp", {"code": browser.code()})
    assert response.status_code == 401
    assert errors.SESSION_ENDED.title in response.text


def test_state_changes_need_the_csrf_token(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    for url, data in (("/lock", {}), ("/logout", {}), ("/account/pin", {"pin": "480917"})):
        missing = browser.post(url, data, csrf="")
        assert missing.status_code == 403, url
        forged = browser.post(url, data, csrf="x" * 22)
        assert forged.status_code == 403, url
    # Still signed in: nothing above took effect.
    assert browser.get("/").status_code == 200
    other_origin = browser.post("/logout", {}, headers={"Origin": "https://evil.example"})
    assert other_origin.status_code == 403
    assert browser.get("/").status_code == 200


def test_behind_a_tls_proxy_the_public_origin_may_change_state(tmp_path: Path) -> None:
    """A proxy serves https://ehr.example.org and forwards plain HTTP: the browser's Origin
    is public_base_url's, not the connection's; another origin stays refused."""
    home = tmp_path / "proxied"
    inst = build(home)
    try:
        config = inst.home / "hearth.toml"
        config.write_text(
            config.read_text("utf-8").replace(
                "[server]\n", '[server]\npublic_base_url = "https://ehr.example.org/fhir"\n'
            ),
            "utf-8",
        )
        proxied = Instance(
            inst.home,
            inst.clock,
            inst.alarms,
            Container(
                load_settings(inst.home, {}),
                clock=inst.clock,
                random=SeededRandom(),
                password_parameters=CHEAP,
            ),
        )
        browser = proxied.browser()
        browser.enrol_password(proxied.add_user("alice"))
        token = browser.csrf()
        evil = browser.post("/lock", {}, csrf=token, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403
        public = browser.post(
            "/lock", {}, csrf=token, headers={"Origin": "https://ehr.example.org"}
        )
        assert public.status_code != 403, public.text
        proxied.container.close()
    finally:
        inst.container.close()


def test_the_sign_in_form_needs_its_pre_session_token(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    response = browser.client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403  # login CSRF: no token, no sign-in


def test_idle_session_locks_and_absolute_lifetime_ends_it(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    site.clock.advance(minutes=14, seconds=59)
    assert browser.get("/").status_code == 200  # activity resets the idle timer
    site.clock.advance(minutes=14, seconds=59)
    assert browser.get("/").status_code == 200
    site.clock.advance(minutes=15)
    locked = browser.get("/account")
    assert locked.status_code == 303
    assert locked.headers["location"].startswith("/unlock?next=/account")
    assert "is locked" in browser.get("/unlock").text
    site.clock.advance(hours=12)
    assert browser.get("/").headers["location"].startswith("/login")
    actions = [(a, o) for a, o, _ in audit_actions(site)]
    assert ("session.lock", "success") in actions
    assert ("session.end", "success") in actions


def test_logout_ends_the_session_server_side(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    session_id = browser.session_cookie()
    browser.logout()
    replay = site.browser()
    replay.client.cookies.set(COOKIE, session_id or "", domain="localhost.local")
    assert replay.get("/").status_code == 303


def test_a_set_up_link_works_once_and_expires(site: Instance) -> None:
    token = site.add_user("alice")
    site.browser().enrol_password(token)
    again = site.browser().get(f"/enrol?token={token}")
    assert again.status_code == 404
    assert errors.ENROLMENT_INVALID.title.split(".")[0] in again.text
    late = site.add_user("bob")
    site.clock.advance(hours=24, seconds=1)
    assert site.browser().get(f"/enrol?token={late}").status_code == 404
    assert site.browser().get("/enrol?token=hrt_x_y").status_code == 404


def test_set_up_refuses_a_blocklisted_password_and_says_why(site: Instance) -> None:
    browser = site.browser()
    token = site.add_user("alice")
    browser.get(f"/enrol?token={token}")
    response = browser.post(
        "/enrol/password", {"token": token, "password": "password1", "confirm": "password1"}
    )
    assert response.status_code == 422
    assert "common and breached" in response.text
    short = browser.post("/enrol/password", {"token": token, "password": "abc", "confirm": "abc"})
    assert "longer password" in short.text


def test_disabling_a_user_ends_sessions_and_api_tokens_at_once(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    user_id = site.container.users.get("alice").user_id
    token = site.container.authenticator.issue_token(
        subject=user_id,
        roles=frozenset({"bootstrap-admin"}),
        label="t",
        ttl=timedelta(days=7),
        by="test",
    )
    api = site.browser().client
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/fhir/Patient/x", headers=headers).status_code == 404
    ended, revoked = site.container.users.disable("alice", by="test")
    assert (ended, revoked) == (1, 1)
    assert browser.get("/").status_code == 303
    assert api.get("/fhir/Patient/x", headers=headers).status_code == 401
    browser.get("/login")
    assert browser.post("/login", {"username": "alice", "password": PASSWORD}).status_code == 401


def test_open_redirects_are_refused(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        response = browser.sign_in("alice", next_url=target)
        assert response.headers["location"] == "/", target
        browser.logout()
    response = browser.sign_in("alice", next_url="/account")
    assert response.headers["location"] == "/account"


def assert_strict_page(response: Any, *, names_other_sites: bool = False) -> None:
    """A strict CSP, no inline script or style, no caching, and a label for every field."""
    assert response.status_code == 200, (response.status_code, response.text[:300])
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", response.text, re.S)
    assert scripts == [""]  # one external script, nothing inline
    assert " style=" not in response.text
    assert "<style" not in response.text
    assert re.search(r" on[a-z]+=", response.text) is None  # no inline event handlers
    if not names_other_sites:
        assert "http://" not in response.text
        assert "https://" not in response.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for name in re.findall(r'<(?:input|textarea|select) id="([^"]+)"', response.text):
        assert f'<label for="{name}">' in response.text, name


def test_pages_have_a_strict_csp_and_no_inline_script(site: Instance) -> None:
    browser = site.browser()
    for url in ("/login", f"/enrol?token={site.add_user('alice')}"):
        assert_strict_page(browser.get(url))


def test_signed_in_pages_have_a_strict_csp_and_labels_too(site: Instance) -> None:
    """The second-factor, account, step-up, unlock, consent and break-the-glass pages."""
    from urllib.parse import urlencode

    from hearth.services.oauth import ClientSpec
    from tests.oauth_support import pkce_pair

    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    browser.get("/login")
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert_strict_page(browser.get("/login/second-factor"))
    site.clock.advance(seconds=30)
    assert browser.post("/login/totp", {"code": browser.code()}).status_code == 303
    assert_strict_page(browser.get("/"))
    assert_strict_page(browser.get("/account"))
    assert_strict_page(browser.get("/step-up?next=/account"))
    assert_strict_page(browser.get("/access/break-glass"))
    client, _ = site.container.clients.register(
        ClientSpec(
            name="Growth Charts",
            kind="app",
            auth_method="none",
            scope="launch/patient patient/*.rs",
            redirect_uris=("https://app.example/callback",),
        ),
        by="test",
    )
    _, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": "https://app.example/callback",
            "scope": "launch/patient patient/*.rs",
            "state": "s" * 20,
            "aud": "https://localhost/fhir",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    consent = browser.get(f"/oauth/authorize?{query}")
    assert "Allow access?" in consent.text
    # The form may go to the app (its redirect), so the page names the app's address.
    assert_strict_page(consent, names_other_sites=True)
    assert "form-action 'self' https://app.example" in consent.headers["content-security-policy"]
    browser.get("/")
    assert browser.post("/lock", {}).headers["location"] == "/unlock"
    assert_strict_page(browser.get("/unlock"))


def test_an_unfinished_sign_in_expires(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    browser.get("/login")
    browser.post("/login", {"username": "alice", "password": PASSWORD})
    browser.get("/login/second-factor")
    site.clock.advance(minutes=5, seconds=1)
    late = browser.post("/login/totp", {"code": browser.code()})
    assert late.status_code in (401, 403)  # the pending session (and its CSRF token) is gone
    assert browser.get("/login/second-factor").headers["location"] == "/login"


def test_expired_sessions_are_purged_from_the_database(site: Instance) -> None:
    if site.container.settings.redis_url is not None:
        return  # Redis expires keys by itself
    for _ in range(3):
        browser = site.browser()
        browser.get("/login")
        browser.options("/webauthn/options")  # each opens a pending session
    with site.container.store.read() as conn:
        assert conn.execute(t.web_session.select()).all() != []
    site.clock.advance(minutes=10)
    site.browser().get("/login")
    other = site.browser()
    other.get("/login")
    other.options("/webauthn/options")  # beginning a session purges the expired ones
    with site.container.store.read() as conn:
        assert len(conn.execute(t.web_session.select()).all()) == 1


def test_password_hashes_are_upgraded_at_the_next_sign_in(site: Instance) -> None:
    from hearth.auth import Argon2Parameters, PasswordHasher, StoredHash

    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    old = site.container.accounts.user_by_name("alice")
    assert old is not None
    assert old.password_hash is not None
    # The operator raises the cost; existing hashes keep working and are re-made on sign-in.
    stronger = Argon2Parameters(time_cost=2, memory_kib=128, parallelism=1)
    site.container.signin._passwords = PasswordHasher(stronger, site.container.passwords.peppers)
    assert browser.sign_in("alice").status_code == 303
    new = site.container.accounts.user_by_name("alice")
    assert new is not None
    assert new.password_hash is not None
    assert StoredHash.parse(old.password_hash).parameters != stronger
    assert StoredHash.parse(new.password_hash).parameters == stronger
    assert StoredHash.parse(new.password_hash).pepper_key_id is not None  # peppered (init made it)


def test_a_locked_account_stays_locked_after_its_counter_is_forgotten(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    user = site.container.accounts.user_by_name("alice")
    assert user is not None
    site.container.accounts.update_user(user.user_id, 1, [], locked_us=1)
    browser.get("/login")
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert "Ask an administrator to unlock it" in response.text


def test_a_password_without_a_second_factor_does_not_sign_in(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    browser.logout()
    user = site.container.accounts.user_by_name("alice")
    assert user is not None
    site.container.accounts.set_totp(
        user.user_id, None, used_step=None, now_us=1, recovery_hashes=[], records=[]
    )
    browser.get("/login")
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert "no second factor" in response.text


def test_the_account_page_shows_and_ends_other_sessions(site: Instance) -> None:
    here = site.browser()
    here.enrol_password(site.add_user("alice"))
    there = site.browser()
    there.totp_secret = here.totp_secret
    assert there.sign_in("alice").status_code == 303
    page = here.get("/account").text
    assert "signed in on 1 other browser." in page
    done = here.post("/account/sessions/end-others", {})
    assert "Signed out 1 other sessions." in done.text
    assert there.get("/").headers["location"].startswith("/login")
    assert here.get("/").status_code == 200
    assert "signed in on 0 other browsers." in here.get("/account").text


def test_changing_the_password_needs_the_current_one_and_follows_the_policy(site: Instance) -> None:
    browser = site.browser()
    browser.enrol_password(site.add_user("alice"))
    new = "a quiet river at dawn"
    browser.get("/account")
    wrong = browser.post(
        "/account/password",
        {"current-password": "not it at all", "new-password": new, "new-password-again": new},
    )
    assert wrong.status_code == 401
    weak = browser.post(
        "/account/password",
        {
            "current-password": PASSWORD,
            "new-password": "password1",
            "new-password-again": "password1",
        },
    )
    assert weak.status_code == 422
    assert "common and breached" in weak.text
    done = browser.post(
        "/account/password",
        {"current-password": PASSWORD, "new-password": new, "new-password-again": new},
    )
    assert done.status_code == 200
    assert "Your password is changed." in done.text
    browser.logout()
    assert browser.sign_in("alice", PASSWORD).status_code == 401
    assert browser.sign_in("alice", new).status_code == 303
    site.clock.advance(minutes=6)
    browser.get("/account")
    late = browser.post(
        "/account/password",
        {"current-password": new, "new-password": PASSWORD, "new-password-again": PASSWORD},
    )
    assert late.headers["location"] == "/step-up?next=/account"
    actions = [(a, o) for a, o, _ in audit_actions(site)]
    assert ("mfa.password", "success") in actions
    assert ("mfa.password", "denied") in actions
