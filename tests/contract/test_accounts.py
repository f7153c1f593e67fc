"""Accounts, credentials, set-up links and sessions on every engine (issue 4): the one-time
compare-and-set updates and the "did it change a row" answers must mean the same on SQLite,
PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from hearth.audit import AuditRecord
from hearth.auth.oauth.authorization import ApprovedRequest
from hearth.auth.oauth.discovery import Endpoints
from hearth.auth.sessions import session_digest
from hearth.domain import HearthError, Outcome
from hearth.services.authevents import AuthEvent, auth_record
from hearth.services.oauth import ClientSpec
from hearth.storage.accounts import CredentialRow, credential_digest
from hearth.storage.sessions import SessionRow, SessionSealer, SqlSessionStore
from hearth.wiring import ADMIN_ROLE
from tests.oauth_support import pkce_pair
from tests.support import Instance, SeededRandom

pytestmark = pytest.mark.engines


def record(instance: Instance, event: AuthEvent = AuthEvent.USER_ADD) -> list[AuditRecord]:
    return [auth_record(event, Outcome.SUCCESS, now=instance.container.clock.now(), actor="t")]


def test_users_and_idempotent_updates(instance: Instance) -> None:
    users = instance.container.users
    info, link = users.add("Alice", roles=frozenset({"bootstrap-admin"}), by="test")
    assert info.username == "alice"
    assert link is not None
    with pytest.raises(HearthError) as duplicate:
        users.add("ALICE", roles=frozenset(), by="test")
    assert duplicate.value.code.code == "HRT-0711"
    # Writing the values a row already holds still "finds" the row on every engine.
    users.enable("alice", by="test")
    users.enable("alice", by="test")
    assert users.set_roles("alice", frozenset({"bootstrap-admin"}), by="test") == 0
    users.disable("alice", by="test")
    assert users.get("alice").status == "disabled"


def test_totp_steps_recovery_codes_and_links_are_one_time(instance: Instance) -> None:
    c = instance.container
    info, link = c.users.add("bob", roles=frozenset(), by="test")
    assert link is not None
    accounts = c.accounts
    accounts.set_totp(
        info.user_id,
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        used_step=100,
        now_us=1,
        recovery_hashes=["h0", "h1", "h2"],
        records=record(instance, AuthEvent.TOTP_SET),
    )
    user = accounts.user(info.user_id)
    assert user is not None
    assert accounts.totp_secret(user) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    assert b"JBSWY3DP" not in (user.totp_secret or b"")
    assert not accounts.accept_totp_step(info.user_id, 100)
    assert not accounts.accept_totp_step(info.user_id, 99)
    assert accounts.accept_totp_step(info.user_id, 101)
    assert not accounts.accept_totp_step(info.user_id, 101)
    assert [p for p, _ in accounts.recovery_codes(info.user_id)] == [0, 1, 2]
    assert accounts.use_recovery_code(info.user_id, 1)
    assert not accounts.use_recovery_code(info.user_id, 1)
    token_id = link.token.split("_")[1]
    accounts.complete_enrolment(token_id, info.user_id, 2, record(instance, AuthEvent.ENROL))
    with pytest.raises(HearthError) as used:
        accounts.complete_enrolment(token_id, info.user_id, 3, record(instance, AuthEvent.ENROL))
    assert used.value.code.code == "HRT-0708"


def test_sign_counters_move_once_even_when_they_stay_at_zero(instance: Instance) -> None:
    c = instance.container
    info, _ = c.users.add("carol", roles=frozenset(), by="test")
    row = CredentialRow(
        cred_digest=credential_digest(b"cred-1"),
        credential_id=b"cred-1",
        user_id=info.user_id,
        name="Key",
        public_key=b"\x01" * 77,
        sign_count=0,
        transports="usb",
        aaguid="0" * 36,
        user_verified=True,
        backup_eligible=False,
        created_us=1,
        last_used_us=None,
    )
    c.accounts.add_credential(row, record(instance, AuthEvent.KEY_ADD))
    # Authenticators without a counter always report 0: the update changes only last_used.
    assert c.accounts.advance_sign_count(row, 0, 5)
    stored = c.accounts.credential(b"cred-1")
    assert stored is not None
    assert c.accounts.advance_sign_count(stored, 7, 6)
    assert not c.accounts.advance_sign_count(stored, 8, 7)  # it moved since `stored` was read
    assert c.accounts.credential(b"cred-1").sign_count == 7  # type: ignore[union-attr]


def test_session_rows_on_every_engine(instance: Instance) -> None:
    c = instance.container
    store = SqlSessionStore(c.store, SessionSealer(c.keyring, SeededRandom(b"s")))
    digest = session_digest("an id")
    row = SessionRow(
        id_digest=digest,
        user_id="usr_x",
        state="active",
        created_us=1,
        last_seen_us=1,
        expires_us=10**17,
        auth_us=1,
        step_up_us=None,
        amr="pwd otp mfa",
        csrf="c" * 22,
        pin_failures=0,
        data=b'{"a":1}',
        source="127.0.0.1",
    )
    store.create(row)
    assert store.get(digest) == row
    assert store.save(row)  # unchanged values: still saved, not "gone"
    assert [store.add_pin_failure(digest) for _ in range(2)] == [1, 2]
    assert store.delete_user("usr_x") == 1
    assert store.get(digest) is None


def _offline_grant(instance: Instance, user_id: str) -> dict[str, object]:
    """An ``offline_access`` grant for ``user_id`` through a real code exchange: an access
    token and the first refresh token of a family meant to last ``offline_seconds``."""
    c = instance.container
    redirect = "https://app.example/callback"
    scope = "patient/*.rs offline_access"
    client, _ = c.clients.register(
        ClientSpec(
            name="Charts",
            kind="app",
            auth_method="none",
            scope=scope,
            redirect_uris=(redirect,),
        ),
        by="test",
    )
    verifier, challenge = pkce_pair()
    code = c.tokens.issue_code(
        ApprovedRequest(
            client_id=client.client_id,
            redirect_uri=redirect,
            code_challenge=challenge,
            subject=user_id,
            roles=(ADMIN_ROLE,),
            scope=scope,
        ),
        source=None,
    )
    body = c.tokens.exchange_code(
        client,
        {"code": code, "code_verifier": verifier, "redirect_uri": redirect},
        endpoints=Endpoints("https://localhost/fhir"),
        certificate=None,
        source=None,
    )
    return {"client": client, **body}


def test_reset_mfa_ends_everything_disable_ends(instance: Instance) -> None:
    """After a compromise the administrator resets the user's credentials: their sessions,
    API tokens and OAuth grants (an offline_access refresh family included) all end, audited,
    while the account stays enabled for the new set-up link."""
    c = instance.container
    info, _ = c.users.add("dave", roles=frozenset({ADMIN_ROLE}), by="test")
    api_token = c.users.issue_api_token("dave", ttl=timedelta(hours=1), by="test")
    assert c.authenticator.authenticate_bearer(api_token, source=None).subject == info.user_id
    grant = _offline_grant(instance, info.user_id)
    endpoints = Endpoints("https://localhost/fhir")
    access = str(grant["access_token"])
    principal = c.authenticator.authenticate_bearer(access, source=None, endpoints=endpoints)
    assert principal.subject == info.user_id
    session = c.sessions.establish(
        None, user_id=info.user_id, amr=("pwd", "otp", "mfa"), source=None, second_factor=True
    )

    link, ended, revoked = c.users.reset_mfa("dave", by="usr_admin")

    assert link.username == "dave"
    assert (ended, revoked) == (1, 2)  # one session; one API token and one grant
    assert c.sessions.load(session.session_id) is None
    assert c.users.get("dave").status == "active"
    for token in (api_token, access):
        with pytest.raises(HearthError) as refused:
            c.authenticator.authenticate_bearer(token, source=None, endpoints=endpoints)
        assert refused.value.status == 401
    with pytest.raises(HearthError) as ended_family:
        c.tokens.refresh(
            grant["client"],  # type: ignore[arg-type]
            {"refresh_token": str(grant["refresh_token"])},
            endpoints=endpoints,
            certificate=None,
            source=None,
        )
    assert ended_family.value.code.code == "HRT-0422"  # invalid_grant
    with c.store.read() as conn:
        actions = [(r.action, r.actor) for r in c.store.iter_audit(conn)]
    assert ("mfa.reset", "usr_admin") in actions
    assert ("token.revoke", "usr_admin") in actions
    assert ("oauth.token.revoke", "usr_admin") in actions


def test_api_tokens_are_short_lived_and_audited_by_id(instance: Instance) -> None:
    """An operator's API token lives at most a week; its issue, every use, its revocation and
    any later presentation are audited under ``session = token:<id>``."""
    from starlette.testclient import TestClient

    from hearth.web.app import create_app

    c = instance.container
    info, _ = c.users.add("erin", roles=frozenset({ADMIN_ROLE}), by="test", link_ttl=None)
    with pytest.raises(HearthError) as too_long:
        c.users.issue_api_token("erin", ttl=timedelta(days=7, seconds=1), by="cli")
    assert too_long.value.code.code == "HRT-0113"
    assert "backend service" in too_long.value.detail
    token = c.users.issue_api_token("erin", ttl=timedelta(days=7), by="cli")
    session = "token:" + token.split("_")[1]
    patient = c.records(c.system_principal("test")).create("Patient", {"resourceType": "Patient"})
    http = TestClient(create_app(c), base_url="http://127.0.0.1")
    bearer = {"Authorization": f"Bearer {token}"}
    assert http.get(f"/fhir/Patient/{patient.res_id}", headers=bearer).status_code == 200
    c.users.revoke_api_tokens("erin", by="cli")
    assert http.get(f"/fhir/Patient/{patient.res_id}", headers=bearer).status_code == 401
    garbage = {"Authorization": "Bearer hrt_NOSUCHTOKEN_x"}
    assert http.get(f"/fhir/Patient/{patient.res_id}", headers=garbage).status_code == 401
    c.audit.close()
    with c.store.read() as conn:
        entries = [orjson.loads(r.body) for r in c.store.iter_audit(conn)]

    def find(action: str, outcome: str = "success") -> list[dict[str, object]]:
        return [e for e in entries if e["action"] == action and e["outcome"] == outcome]

    (issued,) = [e for e in find("token.issue") if e.get("id") == info.user_id]
    assert (issued["session"], issued["actor"], issued["type"]) == (session, "cli", "User")
    (read,) = find("read")
    assert (read["session"], read["actor"]) == (session, info.user_id)
    (revoked,) = [e for e in find("token.revoke") if e.get("id") == info.user_id]
    assert revoked["actor"] == "cli"
    refused = find("authenticate", "denied")
    assert [e.get("session") for e in refused] == [session, None]  # garbage names nothing
    assert token.split("_")[2] not in str(entries)  # never the secret half
