"""Signing in, unlocking and stepping up: each step a method, each failure counted and audited.

Paths to a signed-in session (issue 4 items 2-6):

- password, then a second factor: a TOTP code (RFC 6238), a recovery code, or a WebAuthn key;
- a passkey alone (WebAuthn with user verification: something you have plus something you know
  or are, checked on the device);
- a locked session: its PIN (five tries, then full sign-out) or a WebAuthn key of the same user.

Rules every path follows: throttling is checked before any secret (``SignInThrottle``); an
unknown name costs the same argon2id work as a wrong password and gets the same answer
(``PasswordHasher.dummy_verify``); every failure counts against the name and the address and is
audited with its code; a success forgets the name's failures and establishes a *new* session id.
Administrators must use user verification with every key (NIST-SY-02), which the server checks.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hearth.auth import PasswordHasher, PinAttempts, PinHasher, RecoveryCodeHasher, totp
from hearth.auth.sessions import SessionState
from hearth.auth.throttle import Guessable
from hearth.auth.usernames import canonical_username
from hearth.auth.webauthn_rp import (
    CHALLENGE_BYTES,
    RelyingParty,
    StoredKey,
    assertion_credential_id,
    authentication_options,
    verify_authentication,
)
from hearth.domain import Clock, HearthError, Outcome, Random, errors
from hearth.services.authevents import AuthEvent, auth_record
from hearth.services.sessions import Session, SessionService, Signed
from hearth.services.throttle import SignInThrottle
from hearth.settings import AuthSettings
from hearth.storage import to_us
from hearth.storage.accounts import AccountStore, CredentialRow, UserRow

__all__ = ["SignInResult", "SignInService", "relying_party", "safe_next"]


def safe_next(url: str | None, default: str = "/") -> str:
    """Where to go after signing in: a path on this site only, never another host (ASVS
    v5.0.0-3.7.2: no open redirect). ``//evil``, ``/\\evil`` and absolute URLs become
    ``default``."""
    if not url or len(url) > 2048 or not url.startswith("/") or url.startswith(("//", "/\\")):
        return default
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or any(c in url for c in "\r\n\t\\"):
        return default
    return url


def relying_party(auth: AuthSettings, public_base_url: str | None, origin: str) -> RelyingParty:
    """The WebAuthn relying party for a request from ``origin`` (scheme://host[:port]).

    Configured ``[auth] rp_id`` and ``origins`` win; else the public base URL names both; else
    (loopback development) the request's own origin, which the app's trusted-host check has
    already limited to this server's names.
    """
    if auth.rp_id:
        origins = auth.origins or ((_origin_of(public_base_url),) if public_base_url else ())
        return RelyingParty(auth.rp_id, auth.rp_name, tuple(origins))
    if public_base_url:
        base = _origin_of(public_base_url)
        return RelyingParty(urlsplit(base).hostname or "", auth.rp_name, auth.origins or (base,))
    return RelyingParty(urlsplit(origin).hostname or "", auth.rp_name, (origin,))


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SignInResult:
    """What happened: ``signed`` is the session to put in the cookie (a pending one while a
    second factor is still due, the new active one when ``done``)."""

    signed: Signed
    done: bool
    redirect: str
    methods: tuple[str, ...] = ()  # second factors the user may use: totp, recovery, key


def _first_factor(pending: Session) -> str:
    """The ``amr`` value (RFC 8176) of the first factor a sign-in in progress passed: ``pwd``
    after a password; ``swk`` after a client certificate (proof of possession of a key; Hearth
    cannot see whether the key sits on a smart card, so it claims no more than that)."""
    return "swk" if pending.data.get("first") == "certificate" else "pwd"


class SignInService:
    def __init__(
        self,
        accounts: AccountStore,
        sessions: SessionService,
        throttle: SignInThrottle,
        *,
        passwords: PasswordHasher,
        recovery_codes: RecoveryCodeHasher,
        pins: PinHasher,
        admin_roles: frozenset[str],
        clock: Clock,
        random: Random,
    ) -> None:
        self._accounts = accounts
        self.sessions = sessions
        self._throttle = throttle
        self._passwords = passwords
        self._recovery = recovery_codes
        self._pins = pins
        self._admin_roles = admin_roles
        self._clock = clock
        self._random = random

    # -- helpers ---------------------------------------------------------
    def is_admin(self, user: UserRow) -> bool:
        return bool(self._admin_roles & frozenset(user.roles.split()))

    def _audit(
        self,
        event: AuthEvent,
        outcome: Outcome,
        *,
        actor: str | None,
        source: str | None,
        session: Session | None = None,
        code: str | None = None,
    ) -> None:
        self._accounts.record(
            auth_record(
                event,
                outcome,
                now=self._clock.now(),
                actor=actor,
                source=source,
                session=session.handle if session is not None else None,
                code=code,
            )
        )

    def _check(
        self,
        account: str | None,
        source: str | None,
        actor: str | None,
        secret: Guessable = Guessable.PASSWORD,
    ) -> None:
        """Throttle first; a refusal is audited too (it is evidence of an attack). With no
        ``account`` (a WebAuthn assertion, which cannot be guessed) only the address counts."""
        try:
            if account is None:
                self._throttle.check_address(source)
            else:
                self._throttle.check(account, source, secret)
        except HearthError as error:
            self._audit(
                AuthEvent.THROTTLED,
                Outcome.DENIED,
                actor=actor,
                source=source,
                code=error.code.code,
            )
            raise

    def _fail(
        self,
        event: AuthEvent,
        error: HearthError,
        *,
        account: str | None,
        user: UserRow | None,
        source: str | None,
        session: Session | None = None,
        secret: Guessable = Guessable.PASSWORD,
    ) -> HearthError:
        """Count, audit, lock if it is time; return the error for the caller to raise. With
        no ``account`` (a WebAuthn failure) only the address counts."""
        user_id = user.user_id if user is not None else None
        outcome = (
            self._throttle.failed(account, source, user_id=user_id, secret=secret)
            if account is not None
            else self._throttle.failed_address(source)
        )
        self._audit(
            event,
            Outcome.DENIED,
            actor=user_id,
            source=source,
            session=session,
            code=error.code.code,
        )
        if outcome.locks and user is not None:
            now = self._clock.now()
            self._accounts.update_user(
                user.user_id,
                to_us(now),
                [
                    auth_record(
                        AuthEvent.ACCOUNT_LOCK,
                        Outcome.SUCCESS,
                        now=now,
                        actor=user.user_id,
                        source=source,
                        code=errors.ACCOUNT_LOCKED.code,
                    )
                ],
                locked_us=to_us(now),
            )
        return error

    def _active_user(self, user_id: str | None) -> UserRow:
        user = self._accounts.user(user_id) if user_id else None
        if user is None or user.status != "active":
            raise HearthError(errors.SESSION_ENDED)
        return user

    def _pending(self, session: Session | None) -> tuple[Session, UserRow]:
        """The sign-in in progress and its user (password already verified)."""
        if (
            session is None
            or session.state is not SessionState.PENDING
            or session.data.get("flow") != "sign-in"
        ):
            raise HearthError(errors.SESSION_ENDED)
        return session, self._active_user(session.data.get("user"))

    def _establish(
        self, session: Session, user: UserRow, amr: tuple[str, ...], source: str | None
    ) -> SignInResult:
        self._throttle.succeeded(self._throttle.account_key(user.username), source)
        signed = self.sessions.establish(
            session, user_id=user.user_id, amr=amr, source=source, second_factor=True
        )
        return SignInResult(signed, True, safe_next(session.data.get("next")))

    def methods(self, user: UserRow) -> tuple[str, ...]:
        found = []
        if user.totp_secret is not None:
            found.append("totp")
        if self._accounts.credentials(user.user_id):
            found.append("key")
        if self._accounts.recovery_codes(user.user_id):
            found.append("recovery")
        return tuple(found)

    def pending_methods(self, session: Session | None) -> tuple[str, ...]:
        """The second factors a sign-in in progress may use."""
        _, user = self._pending(session)
        return self.methods(user)

    # -- first factor: password ---------------------------------------------------------
    def password(
        self,
        previous: Session | None,
        username: str,
        password: str,
        *,
        source: str | None,
        next_url: str | None,
    ) -> SignInResult:
        """Check a name and password (NIST SP 800-63B-4 sec. 3.1.1.2); on success open a
        pending session that waits for the second factor."""
        name = canonical_username(username)
        account = self._throttle.account_key(name)
        user = self._accounts.user_by_name(name) if name else None
        self._check(account, source, user.user_id if user is not None else None)
        if user is not None and user.locked_us is not None:
            self._audit(
                AuthEvent.SIGN_IN,
                Outcome.DENIED,
                actor=user.user_id,
                source=source,
                code=errors.ACCOUNT_LOCKED.code,
            )
            raise HearthError(errors.ACCOUNT_LOCKED)
        try:
            if user is None or user.password_hash is None:
                self._passwords.dummy_verify(password)
            self._passwords.verify(user.password_hash, password)
            if user.status != "active":
                raise HearthError(errors.AUTHENTICATION_FAILED)
        except HearthError as error:
            if error.code is not errors.AUTHENTICATION_FAILED:
                raise
            raise self._fail(
                AuthEvent.SIGN_IN, error, account=account, user=user, source=source
            ) from None
        now = self._clock.now()
        if self._passwords.needs_rehash(user.password_hash):
            # Upgrade-on-login: a new cost or pepper takes effect at the next good password.
            fresh = self._passwords.hash(password, random=self._random)
            self._accounts.update_user(user.user_id, to_us(now), [], password_hash=fresh)
        methods = self.methods(user)
        if not methods:
            # Every account has a second factor (ASVS v5.0.0-6.3.3); one without is not set up.
            self._audit(
                AuthEvent.SIGN_IN,
                Outcome.DENIED,
                actor=user.user_id,
                source=source,
                code=errors.FORBIDDEN.code,
            )
            raise HearthError(
                errors.FORBIDDEN,
                "This account has no second factor. Ask an administrator for a set-up link.",
            )
        if previous is not None:
            self.sessions.end(previous, reason="new-sign-in")
        signed = self.sessions.begin(
            source=source,
            data={"flow": "sign-in", "user": user.user_id, "next": safe_next(next_url)},
        )
        return SignInResult(signed, False, safe_next(next_url), methods)

    # -- second factors ---------------------------------------------------------
    def totp(self, session: Session | None, code: str, *, source: str | None) -> SignInResult:
        """The TOTP code after a password (RFC 6238; each code once, NIST-OTP-02)."""
        pending, user = self._pending(session)
        self._verify_totp(pending, user, code, source=source, event=AuthEvent.SECOND_FACTOR)
        self._audit(
            AuthEvent.SECOND_FACTOR,
            Outcome.SUCCESS,
            actor=user.user_id,
            source=source,
            session=pending,
            code="totp",
        )
        return self._establish(pending, user, (_first_factor(pending), "otp", "mfa"), source)

    def _verify_totp(
        self,
        session: Session,
        user: UserRow,
        code: str,
        *,
        source: str | None,
        event: AuthEvent,
    ) -> None:
        account = self._throttle.account_key(user.username)
        self._check(account, source, user.user_id, Guessable.CODE)
        secret = self._accounts.totp_secret(user)
        try:
            if secret is None:
                raise HearthError(errors.TOTP_INVALID)
            step = totp.verify(
                secret, code, now=self._clock.now(), last_used_step=user.totp_last_step
            )
            if not self._accounts.accept_totp_step(user.user_id, step):
                raise HearthError(errors.TOTP_REPLAYED)  # another request used it first
        except HearthError as error:
            if error.code not in (errors.TOTP_INVALID, errors.TOTP_REPLAYED):
                raise
            raise self._fail(
                event,
                error,
                account=account,
                user=user,
                source=source,
                session=session,
                secret=Guessable.CODE,
            ) from None

    def recovery(self, session: Session | None, code: str, *, source: str | None) -> SignInResult:
        """A recovery code after a password: each works once (NIST SP 800-63B-4 sec. 3.1.2)."""
        pending, user = self._pending(session)
        account = self._throttle.account_key(user.username)
        self._check(account, source, user.user_id, Guessable.CODE)
        stored = self._accounts.recovery_codes(user.user_id)
        try:
            index = self._recovery.find([h for _, h in stored], code)
            if not self._accounts.use_recovery_code(user.user_id, stored[index][0]):
                raise HearthError(errors.RECOVERY_CODE_INVALID)
        except HearthError as error:
            if error.code is not errors.RECOVERY_CODE_INVALID:
                raise
            raise self._fail(
                AuthEvent.SECOND_FACTOR,
                error,
                account=account,
                user=user,
                source=source,
                session=pending,
                secret=Guessable.CODE,
            ) from None
        self._audit(
            AuthEvent.SECOND_FACTOR,
            Outcome.SUCCESS,
            actor=user.user_id,
            source=source,
            session=pending,
            code="recovery-code",
        )
        return self._establish(pending, user, (_first_factor(pending), "rec", "mfa"), source)

    # -- WebAuthn: second factor, passkey, unlock, step-up -----------------------------------------
    def _keys(self, user: UserRow) -> list[StoredKey]:
        return [
            StoredKey(c.credential_id, tuple(c.transports.split()))
            for c in self._accounts.credentials(user.user_id)
        ]

    def key_options(
        self,
        session: Session | None,
        rp: RelyingParty,
        *,
        source: str | None,
        next_url: str | None = None,
    ) -> tuple[Signed | None, str]:
        """Request options for a WebAuthn assertion, for whatever this session is doing:

        - a sign-in waiting for its second factor: the user's own keys;
        - no session, or nothing in progress: a passkey (discoverable, UV required);
        - a locked session: the locked user's keys (unlock);
        - an active session: the user's keys (step-up).

        Returns a new session when one had to be opened (the passkey case), and the options.
        """
        challenge = self._random.token_bytes(CHALLENGE_BYTES)
        signed: Signed | None = None
        data: dict[str, Any]
        if (
            session is not None
            and session.state is SessionState.PENDING
            and (session.data.get("flow") == "sign-in")
        ):
            _, user = self._pending(session)
            purpose, allow, uv = "second-factor", self._keys(user), self.is_admin(user)
            data = {**session.data}
        elif session is not None and session.state is not SessionState.PENDING:
            user = self._active_user(session.user_id)
            purpose = "unlock" if session.state is SessionState.LOCKED else "step-up"
            allow, uv, data = self._keys(user), self.is_admin(user), {}
        else:
            purpose, allow, uv = "passkey", [], True
            data = {"flow": "passkey"}
            if session is None or session.data.get("flow") != "passkey":
                self._throttle.started(source)
                if session is not None:
                    self.sessions.end(session, reason="new-sign-in")
                signed = self.sessions.begin(source=source, data=data)
                session = signed.session
        data.update({"challenge": _b64(challenge), "purpose": purpose, "uv": uv})
        if next_url:
            data["next"] = safe_next(next_url)
        assert session is not None  # noqa: S101 - every branch above has one
        updated = self.sessions.update_data(session, data)
        if signed is not None:
            signed = Signed(signed.session_id, updated)
        options = authentication_options(rp, challenge=challenge, allow=allow, require_uv=uv)
        return signed, options

    def key_verify(
        self,
        session: Session | None,
        rp: RelyingParty,
        response: Mapping[str, Any] | str,
        *,
        source: str | None,
    ) -> SignInResult:
        """Verify the assertion for the challenge :meth:`key_options` stored."""
        if session is None or "challenge" not in session.data:
            raise HearthError(errors.SESSION_ENDED)
        purpose = str(session.data["purpose"])
        challenge = _unb64(str(session.data["challenge"]))
        # The challenge is used up whatever happens next (W3C WebAuthn sec. 13.4.3).
        session = self.sessions.update_data(
            session, {k: v for k, v in session.data.items() if k not in ("challenge", "purpose")}
        )
        expected_user: UserRow | None = None
        if purpose == "second-factor":
            _, expected_user = self._pending(session)
        elif purpose in ("unlock", "step-up"):
            expected_user = self._active_user(session.user_id)
        event = {
            "second-factor": AuthEvent.SECOND_FACTOR,
            "passkey": AuthEvent.PASSKEY,
            "unlock": AuthEvent.SESSION_UNLOCK,
            "step-up": AuthEvent.STEP_UP,
        }[purpose]
        credential_id, handle = assertion_credential_id(response)
        stored = self._accounts.credential(credential_id)
        owner = self._accounts.user(stored.user_id) if stored is not None else None
        if (
            expected_user is not None
            and owner is not None
            and (owner.user_id != expected_user.user_id)
        ):
            self._audit(
                event,
                Outcome.DENIED,
                actor=expected_user.user_id,
                source=source,
                session=session,
                code=errors.WRONG_USER.code,
            )
            raise HearthError(errors.WRONG_USER)
        subject = owner or expected_user
        # An assertion cannot be guessed: its failures count against the address only, and
        # no count of wrong passwords or codes refuses it (a passkey still signs in a person
        # whose password an attacker has locked, ASVS v5.0.0-6.1.1).
        self._check(None, source, subject.user_id if subject else None)
        try:
            if stored is None or owner is None or owner.status != "active":
                raise HearthError(errors.WEBAUTHN_FAILED)
            if handle is not None and handle != owner.webauthn_handle:
                raise HearthError(errors.WEBAUTHN_FAILED)
            uv = purpose == "passkey" or self.is_admin(owner)
            assertion = verify_authentication(
                rp,
                response,
                challenge=challenge,
                public_key=stored.public_key,
                sign_count=stored.sign_count,
                require_uv=uv,
            )
            now_us = to_us(self._clock.now())
            if not self._accounts.advance_sign_count(stored, assertion.new_sign_count, now_us):
                raise HearthError(errors.WEBAUTHN_FAILED)  # a concurrent use moved the counter
        except HearthError as error:
            if error.code not in (errors.WEBAUTHN_FAILED, errors.WEBAUTHN_UV_REQUIRED):
                raise
            raise self._fail(
                event, error, account=None, user=subject, source=source, session=session
            ) from None
        assert owner is not None  # noqa: S101 - checked in the try block
        self._audit(
            event,
            Outcome.SUCCESS,
            actor=owner.user_id,
            source=source,
            session=session,
            code="webauthn",
        )
        match purpose:
            case "second-factor":
                first = (_first_factor(session), "hwk", "mfa")
                return self._establish(session, owner, first, source)
            case "passkey":
                amr = ("hwk", "user", "mfa") if assertion.user_verified else ("hwk",)
                return self._establish(session, owner, amr, source)
            case "unlock":
                self._throttle.succeeded(self._throttle.account_key(owner.username), source)
                signed = self.sessions.unlock(session, method="key")
                return SignInResult(signed, True, safe_next(session.data.get("next")))
            case _:
                signed = self.sessions.stepped_up(session, method="webauthn")
                return SignInResult(signed, True, safe_next(session.data.get("next")))

    # -- unlocking a locked session with a PIN -----------------------------------------------------
    def unlock_pin(self, session: Session | None, pin: str, *, source: str | None) -> Signed:
        """Unlock with the user's PIN (issue 4 item 6; NIST-RA-02): five wrong PINs in this
        session end it, and a full sign-in is needed."""
        if session is None or session.state is not SessionState.LOCKED:
            raise HearthError(errors.SESSION_ENDED)
        user = self._active_user(session.user_id)
        if user.pin_hash is None:
            raise HearthError(errors.PIN_NOT_SET)
        # Count the attempt before checking it, atomically, so parallel guesses cannot get
        # past the limit.
        count = self.sessions.pin_failure(session)
        if count is None:
            raise HearthError(errors.SESSION_ENDED)
        already = PinAttempts(failures=count - 1)
        if already.must_logout:
            self.sessions.end(session, reason="pin-failures")
            raise HearthError(errors.PIN_LOCKOUT)
        try:
            self._pins.verify(user.pin_hash, pin)
        except HearthError as error:
            if error.code is not errors.PIN_INVALID:
                raise
            attempts = PinAttempts(failures=count)
            self._audit(
                AuthEvent.SESSION_UNLOCK,
                Outcome.DENIED,
                actor=user.user_id,
                source=source,
                session=session,
                code=error.code.code,
            )
            if attempts.must_logout:
                self.sessions.end(session, reason="pin-failures")
                raise HearthError(errors.PIN_LOCKOUT) from None
            raise HearthError(
                errors.PIN_INVALID,
                f"The PIN is not correct. {attempts.remaining} tries left before you are "
                "signed out.",
            ) from None
        return self.sessions.unlock(session, method="pin")

    # -- stepping up with TOTP ---------------------------------------------------------
    def step_up_totp(self, session: Session | None, code: str, *, source: str | None) -> Signed:
        """Confirm it is still you, with a TOTP code, before a sensitive action."""
        if session is None or session.state is not SessionState.ACTIVE:
            raise HearthError(errors.SIGN_IN_REQUIRED)
        user = self._active_user(session.user_id)
        self._verify_totp(session, user, code, source=source, event=AuthEvent.STEP_UP)
        return self.sessions.stepped_up(session, method="totp")

    def step_up_methods(self, session: Session) -> Sequence[str]:
        user = self._active_user(session.user_id)
        return [m for m in self.methods(user) if m in ("totp", "key")]

    def user_of(self, session: Session) -> UserRow:
        return self._active_user(session.user_id)

    def credentials_of(self, user: UserRow) -> list[CredentialRow]:
        return self._accounts.credentials(user.user_id)
