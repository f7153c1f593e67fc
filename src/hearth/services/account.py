"""A user's own credentials: first set-up through a one-time link, and later changes.

Set-up (``enrol_*``): the link's token proves the administrator sent it; the user then either
registers a security key or passkey (WebAuthn), or chooses a password (NIST SP 800-63B-4 sec.
3.1.1.2 rules, shown with their reasons) and enrols an authenticator app (RFC 6238, QR code and
manual key), confirming one code. Both end signed in, and the link is used up in the same
transaction that stores the credentials. Password set-up also yields ten recovery codes, shown
once.

Changes (add, rename or remove a key, set a PIN, new recovery codes) need a signed-in session
and, for everything that changes how one signs in, a recent step-up (ASVS v5.0.0-7.5.1).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hearth.audit import AuditRecord
from hearth.auth import (
    PasswordHasher,
    PasswordPolicy,
    PinHasher,
    PinPolicy,
    RecoveryCodeHasher,
    generate_recovery_codes,
    totp,
)
from hearth.auth.sessions import SessionState
from hearth.auth.webauthn_rp import (
    CHALLENGE_BYTES,
    RelyingParty,
    StoredKey,
    registration_options,
    verify_registration,
)
from hearth.crypto import tokens
from hearth.domain import Clock, HearthError, Outcome, Random, errors
from hearth.services.authevents import AuthEvent, auth_record
from hearth.services.sessions import Session, SessionService, Signed
from hearth.storage import from_us, to_us
from hearth.storage.accounts import AccountStore, CredentialRow, UserRow, credential_digest

__all__ = ["AccountService", "AccountView", "Enrolment", "KeyView", "TotpEnrolment"]

_ISSUER = "Hearth"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise HearthError(errors.CREDENTIAL_NOT_FOUND) from None


def _key_name(name: str | None, platform: bool) -> str:
    cleaned = " ".join((name or "").split())[:64]
    if cleaned and cleaned.isprintable():
        return cleaned
    return "This device's authenticator" if platform else "Security key"


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A valid, unused set-up link, as the set-up page shows it."""

    token_id: str
    user_id: str
    username: str
    display_name: str
    admin: bool
    expires: datetime


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """What the authenticator-app page shows: the QR code and the same key to type."""

    uri: str
    qr_svg: str
    manual_key: str


@dataclass(frozen=True, slots=True)
class KeyView:
    id: str  # base64url of the credential id, for rename and remove
    name: str
    platform: bool
    user_verified: bool
    created: datetime
    last_used: datetime | None


@dataclass(frozen=True, slots=True)
class AccountView:
    user_id: str
    username: str
    display_name: str
    roles: frozenset[str]
    has_password: bool
    has_totp: bool
    has_pin: bool
    recovery_codes: int
    keys: tuple[KeyView, ...]


class AccountService:
    def __init__(
        self,
        accounts: AccountStore,
        sessions: SessionService,
        *,
        passwords: PasswordHasher,
        password_policy: PasswordPolicy,
        recovery_codes: RecoveryCodeHasher,
        pins: PinHasher,
        pin_policy: PinPolicy,
        admin_roles: frozenset[str],
        clock: Clock,
        random: Random,
    ) -> None:
        self._accounts = accounts
        self._sessions = sessions
        self._passwords = passwords
        self._policy = password_policy
        self._recovery = recovery_codes
        self._pins = pins
        self._pin_policy = pin_policy
        self._admin_roles = admin_roles
        self._clock = clock
        self._random = random

    def _is_admin(self, user: UserRow) -> bool:
        return bool(self._admin_roles & frozenset(user.roles.split()))

    def _record(
        self, event: AuthEvent, user_id: str, session: Session | None, code: str | None = None
    ) -> AuditRecord:
        return auth_record(
            event,
            Outcome.SUCCESS,
            now=self._clock.now(),
            actor=user_id,
            source=session.source if session else None,
            session=session.handle if session else None,
            code=code,
        )

    # -- set-up links ---------------------------------------------------------
    def enrolment(self, token: str | None) -> Enrolment:
        """The set-up link ``token`` names, if it is valid and unused; else ENROLMENT_INVALID
        (one answer for unknown, wrong, used and expired: a probe learns nothing)."""
        parsed = tokens.parse(token or "")
        row = self._accounts.enrolment(parsed[0]) if parsed is not None else None
        now_us = to_us(self._clock.now())
        if (
            parsed is None
            or row is None
            or not tokens.secret_matches(parsed[1], row.digest)
            or row.used_us is not None
            or row.expires_us <= now_us
        ):
            raise HearthError(errors.ENROLMENT_INVALID)
        user = self._accounts.user(row.user_id)
        if user is None or user.status != "active":
            raise HearthError(errors.ENROLMENT_INVALID)
        return Enrolment(
            token_id=row.token_id,
            user_id=user.user_id,
            username=user.username,
            display_name=user.display_name,
            admin=self._is_admin(user),
            expires=from_us(row.expires_us),
        )

    def _enrolling(self, session: Session | None, flow: str) -> tuple[Session, Enrolment]:
        if session is None or session.data.get("flow") != flow:
            raise HearthError(errors.SESSION_ENDED)
        row = self._accounts.enrolment(str(session.data.get("token_id")))
        user = self._accounts.user(str(session.data.get("user")))
        if row is None or row.used_us is not None or user is None or user.status != "active":
            raise HearthError(errors.ENROLMENT_INVALID)
        return session, Enrolment(
            row.token_id,
            user.user_id,
            user.username,
            user.display_name,
            self._is_admin(user),
            from_us(row.expires_us),
        )

    def enrol_password(
        self,
        previous: Session | None,
        token: str,
        password: str,
        confirm: str,
        *,
        source: str | None,
    ) -> Signed:
        """Step 1 of password set-up: check the password against the policy (raising with the
        reason), then open a pending session holding its hash and a new TOTP seed."""
        enrolment = self.enrolment(token)
        if password != confirm:
            raise HearthError(errors.PASSWORD_MISMATCH)
        self._policy.check(
            password,
            context_words=[enrolment.username, enrolment.display_name],
            has_second_factor=True,
        )
        if previous is not None:
            self._sessions.end(previous, reason="set-up")
        return self._sessions.begin(
            source=source,
            data={
                "flow": "enrol-password",
                "token_id": enrolment.token_id,
                "user": enrolment.user_id,
                "password_hash": self._passwords.hash(password, random=self._random),
                "totp": totp.generate_secret(self._random),
            },
        )

    def enrol_totp_view(self, session: Session | None) -> tuple[Enrolment, TotpEnrolment]:
        session, enrolment = self._enrolling(session, "enrol-password")
        secret = str(session.data["totp"])
        uri = totp.provisioning_uri(secret, account_name=enrolment.username, issuer=_ISSUER)
        return enrolment, TotpEnrolment(uri, totp.qr_svg(uri), totp.manual_key(secret))

    def enrol_totp_finish(
        self, session: Session | None, code: str, *, source: str | None
    ) -> tuple[Signed, list[str]]:
        """Step 2: the first code proves the app is set up; store password, seed and recovery
        codes, use up the link, and sign the user in. Returns the codes to show once."""
        session, enrolment = self._enrolling(session, "enrol-password")
        secret = str(session.data["totp"])
        try:
            step = totp.verify(secret, code, now=self._clock.now(), last_used_step=None)
        except HearthError as error:
            self._accounts.record(
                auth_record(
                    AuthEvent.ENROL,
                    Outcome.DENIED,
                    now=self._clock.now(),
                    actor=enrolment.user_id,
                    source=source,
                    session=session.handle,
                    code=error.code.code,
                )
            )
            raise
        codes = generate_recovery_codes(self._random)
        hashes = [self._recovery.hash(c, random=self._random) for c in codes]
        now = self._clock.now()
        self._accounts.complete_enrolment(
            enrolment.token_id,
            enrolment.user_id,
            to_us(now),
            [self._record(AuthEvent.ENROL, enrolment.user_id, session, "password+totp")],
            recovery_hashes=hashes,
            password_hash=str(session.data["password_hash"]),
            totp_secret=self._accounts.seal_totp(enrolment.user_id, secret),
            totp_last_step=step,
            locked_us=None,
        )
        signed = self._sessions.establish(
            session,
            user_id=enrolment.user_id,
            amr=("pwd", "otp", "mfa"),
            source=source,
            second_factor=True,
        )
        return signed, codes

    # -- WebAuthn registration: at set-up and later ------------------------------------------------
    def _keys(self, user_id: str) -> list[StoredKey]:
        return [
            StoredKey(c.credential_id, tuple(c.transports.split()))
            for c in self._accounts.credentials(user_id)
        ]

    def enrol_key_options(
        self,
        previous: Session | None,
        token: str,
        rp: RelyingParty,
        *,
        platform: bool | None,
        source: str | None,
    ) -> tuple[Signed, str]:
        """Options to register the first key through a set-up link."""
        enrolment = self.enrolment(token)
        if previous is not None:
            self._sessions.end(previous, reason="set-up")
        challenge = self._random.token_bytes(CHALLENGE_BYTES)
        user = self._accounts.user(enrolment.user_id)
        assert user is not None  # noqa: S101 - enrolment() checked it
        signed = self._sessions.begin(
            source=source,
            data={
                "flow": "enrol-key",
                "token_id": enrolment.token_id,
                "user": enrolment.user_id,
                "challenge": _b64(challenge),
                "platform": platform,
            },
        )
        options = registration_options(
            rp,
            user_handle=user.webauthn_handle,
            user_name=user.username,
            display_name=user.display_name,
            challenge=challenge,
            exclude=self._keys(user.user_id),
            platform=platform,
        )
        return signed, options

    def enrol_key_finish(
        self,
        session: Session | None,
        rp: RelyingParty,
        response: Mapping[str, Any] | str,
        *,
        name: str | None,
        source: str | None,
    ) -> Signed:
        session, enrolment = self._enrolling(session, "enrol-key")
        challenge = str(session.data.get("challenge", ""))
        self._sessions.update_data(session, {**session.data, "challenge": ""})
        credential = self._register(
            session,
            enrolment.user_id,
            rp,
            response,
            challenge,
            enrolment.admin,
            name,
            enrolment=enrolment.token_id,
            source=source,
        )
        amr = ("hwk", "user", "mfa") if credential.user_verified else ("hwk",)
        return self._sessions.establish(
            session, user_id=enrolment.user_id, amr=amr, source=source, second_factor=True
        )

    def _register(
        self,
        session: Session,
        user_id: str,
        rp: RelyingParty,
        response: Mapping[str, Any] | str,
        challenge: str,
        admin: bool,
        name: str | None,
        *,
        enrolment: str | None,
        source: str | None,
    ) -> CredentialRow:
        if not challenge:
            raise HearthError(errors.SESSION_ENDED)
        try:
            new = verify_registration(rp, response, challenge=_unb64(challenge), require_uv=admin)
        except HearthError as error:
            self._accounts.record(
                auth_record(
                    AuthEvent.KEY_ADD,
                    Outcome.DENIED,
                    now=self._clock.now(),
                    actor=user_id,
                    source=source,
                    session=session.handle,
                    code=error.code.code,
                )
            )
            raise
        now_us = to_us(self._clock.now())
        row = CredentialRow(
            cred_digest=credential_digest(new.credential_id),
            credential_id=new.credential_id,
            user_id=user_id,
            name=_key_name(name, new.platform),
            public_key=new.public_key,
            sign_count=new.sign_count,
            transports=" ".join(new.transports),
            aaguid=new.aaguid,
            user_verified=new.user_verified,
            backup_eligible=new.backup_eligible,
            created_us=now_us,
            last_used_us=None,
        )
        kind = "platform" if new.platform else "roaming"
        self._accounts.add_credential(
            row, [self._record(AuthEvent.KEY_ADD, user_id, session, kind)], enrolment=enrolment
        )
        return row

    # -- the signed-in user's own account ---------------------------------------------------------
    def _signed_in(self, session: Session | None) -> tuple[Session, UserRow]:
        if session is None or session.state is not SessionState.ACTIVE or not session.user_id:
            raise HearthError(errors.SIGN_IN_REQUIRED)
        user = self._accounts.user(session.user_id)
        if user is None or user.status != "active":
            raise HearthError(errors.SESSION_ENDED)
        return session, user

    def view(self, session: Session | None) -> AccountView:
        session, user = self._signed_in(session)
        keys = tuple(
            KeyView(
                id=_b64(c.credential_id),
                name=c.name,
                platform="internal" in c.transports.split(),
                user_verified=c.user_verified,
                created=from_us(c.created_us),
                last_used=from_us(c.last_used_us) if c.last_used_us is not None else None,
            )
            for c in self._accounts.credentials(user.user_id)
        )
        return AccountView(
            user_id=user.user_id,
            username=user.username,
            display_name=user.display_name,
            roles=frozenset(user.roles.split()),
            has_password=user.password_hash is not None,
            has_totp=user.totp_secret is not None,
            has_pin=user.pin_hash is not None,
            recovery_codes=len(self._accounts.recovery_codes(user.user_id)),
            keys=keys,
        )

    def add_key_options(
        self, session: Session | None, rp: RelyingParty, *, platform: bool | None
    ) -> str:
        session, user = self._signed_in(session)
        self._sessions.require_step_up(session)
        challenge = self._random.token_bytes(CHALLENGE_BYTES)
        self._sessions.update_data(session, {"register": _b64(challenge)})
        return registration_options(
            rp,
            user_handle=user.webauthn_handle,
            user_name=user.username,
            display_name=user.display_name,
            challenge=challenge,
            exclude=self._keys(user.user_id),
            platform=platform,
        )

    def add_key_finish(
        self,
        session: Session | None,
        rp: RelyingParty,
        response: Mapping[str, Any] | str,
        *,
        name: str | None,
    ) -> KeyView:
        session, user = self._signed_in(session)
        self._sessions.require_step_up(session)
        challenge = str(session.data.get("register", ""))
        self._sessions.update_data(session, {})
        row = self._register(
            session,
            user.user_id,
            rp,
            response,
            challenge,
            self._is_admin(user),
            name,
            enrolment=None,
            source=session.source,
        )
        return KeyView(
            _b64(row.credential_id),
            row.name,
            "internal" in row.transports.split(),
            row.user_verified,
            from_us(row.created_us),
            None,
        )

    def rename_key(self, session: Session | None, key_id: str, name: str) -> None:
        session, user = self._signed_in(session)
        cleaned = " ".join(name.split())[:64]
        if not cleaned or not cleaned.isprintable():
            raise HearthError(errors.BAD_PARAMETER, "Give the key a name of 1 to 64 characters.")
        self._accounts.rename_credential(
            user.user_id,
            _unb64(key_id),
            cleaned,
            [self._record(AuthEvent.KEY_RENAME, user.user_id, session)],
        )

    def remove_key(self, session: Session | None, key_id: str) -> None:
        session, user = self._signed_in(session)
        self._sessions.require_step_up(session)
        keys = self._accounts.credentials(user.user_id)
        # After the removal the user must still be able to sign in: with another key, or with
        # a password and an authenticator app.
        still_signs_in = len(keys) > 1 or (
            user.password_hash is not None and user.totp_secret is not None
        )
        if not still_signs_in:
            raise HearthError(errors.LAST_CREDENTIAL)
        self._accounts.remove_credential(
            user.user_id,
            _unb64(key_id),
            [self._record(AuthEvent.KEY_REMOVE, user.user_id, session)],
        )

    def set_pin(self, session: Session | None, pin: str, confirm: str) -> None:
        """Set or replace the PIN that unlocks this user's locked sessions (6+ digits)."""
        session, user = self._signed_in(session)
        self._sessions.require_step_up(session)
        if pin != confirm:
            raise HearthError(errors.PIN_FORMAT, "The two PINs are not the same. Type them again.")
        self._pin_policy.check(pin)
        self._accounts.update_user(
            user.user_id,
            to_us(self._clock.now()),
            [self._record(AuthEvent.PIN_SET, user.user_id, session)],
            pin_hash=self._pins.hash(pin, random=self._random),
        )

    def change_password(
        self, session: Session | None, current: str, new: str, confirm: str
    ) -> None:
        """Change the password (ASVS v5.0.0-6.2.2, 6.2.3): the current password is checked
        first, the new one against the policy (reasons shown), after a recent step-up."""
        session, user = self._signed_in(session)
        self._sessions.require_step_up(session)
        if user.password_hash is None:
            raise HearthError(
                errors.BAD_PARAMETER, "This account signs in with keys only; it has no password."
            )
        try:
            self._passwords.verify(user.password_hash, current)
        except HearthError as error:
            self._accounts.record(
                auth_record(
                    AuthEvent.PASSWORD_SET,
                    Outcome.DENIED,
                    now=self._clock.now(),
                    actor=user.user_id,
                    source=session.source,
                    session=session.handle,
                    code=error.code.code,
                )
            )
            raise
        if new != confirm:
            raise HearthError(errors.PASSWORD_MISMATCH)
        self._policy.check(
            new, context_words=[user.username, user.display_name], has_second_factor=True
        )
        self._accounts.update_user(
            user.user_id,
            to_us(self._clock.now()),
            [self._record(AuthEvent.PASSWORD_SET, user.user_id, session)],
            password_hash=self._passwords.hash(new, random=self._random),
        )

    def new_recovery_codes(self, session: Session | None) -> list[str]:
        """Ten new recovery codes (the old ones stop working); shown once."""
        session, user = self._signed_in(session)
        self._sessions.require_step_up(session)
        if user.password_hash is None:
            raise HearthError(
                errors.BAD_PARAMETER, "Recovery codes go with a password; this account has none."
            )
        codes = generate_recovery_codes(self._random)
        self._accounts.replace_recovery_codes(
            user.user_id,
            [self._recovery.hash(c, random=self._random) for c in codes],
            [self._record(AuthEvent.RECOVERY_CODES, user.user_id, session)],
        )
        return codes
