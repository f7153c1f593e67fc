"""User administration: add, list, disable, enable, roles, unlock, reset credentials, set-up links.

Each user is one person (no shared accounts, HIP-AC-02) with a random immutable id. A new user
has no credentials: the administrator gives them a one-time set-up link (ASVS v5.0.0-6.4.1:
random, short-lived, single use) on which they choose a security key or passkey, or a password
plus an authenticator app. Disabling a user ends every session and revokes every API token at
once (ASVS v5.0.0-7.4.2); so do a credential reset and a change of roles (privilege change).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from hearth.audit import AuditRecord
from hearth.auth.usernames import canonical_username, check_username
from hearth.crypto import tokens
from hearth.domain import Clock, HearthError, Outcome, Random, errors
from hearth.services.authevents import AuthEvent, auth_record
from hearth.services.identity import Authenticator
from hearth.services.sessions import SessionService
from hearth.services.throttle import SignInThrottle
from hearth.storage import from_us, to_us
from hearth.storage.accounts import AccountStore, EnrolmentRow, UserRow

__all__ = ["SetUpLink", "UserInfo", "UserService", "new_user_id"]


def new_user_id(random: Random) -> str:
    """``usr_`` and 20 base32 characters (100 random bits): unique, immutable, says nothing
    about the person."""
    return "usr_" + base64.b32encode(random.token_bytes(15)).decode("ascii").lower()[:20]


@dataclass(frozen=True, slots=True)
class UserInfo:
    """What an administrator may see of a user: never a hash, seed or key."""

    user_id: str
    username: str
    display_name: str
    roles: frozenset[str]
    status: str
    locked: bool
    has_password: bool
    has_totp: bool
    keys: int
    has_pin: bool
    recovery_codes: int
    created: datetime


@dataclass(frozen=True, slots=True)
class SetUpLink:
    """A one-time set-up secret; the adapter turns it into ``<base>/enrol?token=<token>``."""

    token: str
    expires: datetime
    username: str


class UserService:
    def __init__(
        self,
        accounts: AccountStore,
        sessions: SessionService,
        authenticator: Authenticator,
        throttle: SignInThrottle,
        *,
        known_roles: frozenset[str] | Callable[[], frozenset[str]],
        clock: Clock,
        random: Random,
    ) -> None:
        self._accounts = accounts
        self._sessions = sessions
        self._authenticator = authenticator
        self._throttle = throttle
        # Roles are data that administrators edit (issue 5): a callable is asked each time.
        self._known_roles = known_roles
        self._clock = clock
        self._random = random

    def _info(self, user: UserRow) -> UserInfo:
        return UserInfo(
            user_id=user.user_id,
            username=user.username,
            display_name=user.display_name,
            roles=frozenset(user.roles.split()),
            status=user.status,
            locked=user.locked_us is not None,
            has_password=user.password_hash is not None,
            has_totp=user.totp_secret is not None,
            keys=len(self._accounts.credentials(user.user_id)),
            has_pin=user.pin_hash is not None,
            recovery_codes=len(self._accounts.recovery_codes(user.user_id)),
            created=from_us(user.created_us),
        )

    @property
    def known_roles(self) -> frozenset[str]:
        known = self._known_roles
        return known() if callable(known) else known

    def _user(self, username: str) -> UserRow:
        user = self._accounts.user_by_name(canonical_username(username))
        if user is None:
            raise HearthError(errors.USER_NOT_FOUND)
        return user

    def _roles(self, roles: frozenset[str]) -> str:
        known = self.known_roles
        unknown = sorted(roles - known)
        if unknown:
            raise HearthError(
                errors.UNKNOWN_ROLE,
                f"Unknown role {unknown[0]!r}; known roles: {', '.join(sorted(known))}.",
            )
        return " ".join(sorted(roles))

    def _record(
        self, event: AuthEvent, by: str, user_id: str, code: str | None = None
    ) -> AuditRecord:
        return auth_record(
            event,
            Outcome.SUCCESS,
            now=self._clock.now(),
            actor=by,
            subject_user=user_id,
            code=code,
            actor_kind="user" if by.startswith("usr_") else "system",
        )

    # -- queries ------------------------------------------------------------------------------
    def list(self) -> list[UserInfo]:
        return [self._info(u) for u in self._accounts.users()]

    def get(self, username: str) -> UserInfo:
        return self._info(self._user(username))

    def by_id(self, user_id: str) -> UserInfo | None:
        user = self._accounts.user(user_id)
        return self._info(user) if user is not None else None

    # -- changes ------------------------------------------------------------------------------
    def add(
        self,
        username: str,
        *,
        roles: frozenset[str],
        display_name: str = "",
        by: str,
        link_ttl: timedelta | None = timedelta(hours=24),
        user_id: str | None = None,
    ) -> tuple[UserInfo, SetUpLink | None]:
        """Create a user with no credentials and (unless ``link_ttl`` is None) a one-time
        set-up link for them."""
        name = check_username(username)
        now = self._clock.now()
        row = UserRow(
            user_id=user_id or new_user_id(self._random),
            username=name,
            display_name=display_name.strip()[:128],
            roles=self._roles(roles),
            status="active",
            created_us=to_us(now),
            updated_us=to_us(now),
            locked_us=None,
            password_hash=None,
            totp_secret=None,
            totp_last_step=None,
            pin_hash=None,
            webauthn_handle=self._random.token_bytes(32),
        )
        self._accounts.create_user(row, [self._record(AuthEvent.USER_ADD, by, row.user_id)])
        link = self.set_up_link(name, by=by, ttl=link_ttl) if link_ttl is not None else None
        return self._info(row), link

    def set_up_link(self, username: str, *, by: str, ttl: timedelta) -> SetUpLink:
        """A new one-time set-up link for a user; any earlier unused link stops working."""
        user = self._user(username)
        if user.status != "active":
            raise HearthError(errors.FORBIDDEN, "The user is disabled: enable them first.")
        now = self._clock.now()
        issued = tokens.issue(self._random)
        self._accounts.create_enrolment(
            EnrolmentRow(
                token_id=issued.token_id,
                user_id=user.user_id,
                digest=issued.digest,
                created_us=to_us(now),
                expires_us=to_us(now + ttl),
                used_us=None,
            ),
            [self._record(AuthEvent.SET_UP_LINK, by, user.user_id)],
        )
        return SetUpLink(issued.token, now + ttl, user.username)

    def disable(self, username: str, *, by: str) -> tuple[int, int]:
        """Disable a user; returns (sessions ended, API tokens revoked)."""
        user = self._user(username)
        now = self._clock.now()
        self._accounts.update_user(
            user.user_id,
            to_us(now),
            [self._record(AuthEvent.USER_DISABLE, by, user.user_id)],
            status="disabled",
        )
        ended = self._sessions.end_user(user.user_id, reason="user-disabled")
        revoked = self._authenticator.revoke_all(user.user_id, by=by)
        return ended, revoked

    def enable(self, username: str, *, by: str) -> None:
        user = self._user(username)
        self._accounts.update_user(
            user.user_id,
            to_us(self._clock.now()),
            [self._record(AuthEvent.USER_ENABLE, by, user.user_id)],
            status="active",
        )

    def set_roles(self, username: str, roles: frozenset[str], *, by: str) -> int:
        """Replace a user's roles; their sessions end, so new rights start with a new sign-in
        (rotation on privilege change). Their API tokens and OAuth grants stay and act with
        the new roles (each reads the user's current roles: at once in this process, within
        the token caches' 5 s in others). Returns the number of sessions ended."""
        user = self._user(username)
        self._accounts.update_user(
            user.user_id,
            to_us(self._clock.now()),
            [self._record(AuthEvent.USER_ROLES, by, user.user_id)],
            roles=self._roles(roles),
        )
        self._authenticator.forget_subject(user.user_id)
        return self._sessions.end_user(user.user_id, reason="roles-changed")

    def unlock(self, username: str, *, by: str) -> None:
        """Unlock an account locked by failed sign-ins (NIST-RL-03: by an administrator)."""
        user = self._user(username)
        self._accounts.update_user(
            user.user_id,
            to_us(self._clock.now()),
            [self._record(AuthEvent.ACCOUNT_UNLOCK, by, user.user_id)],
            locked_us=None,
        )
        self._throttle.unlocked(user.username)

    def issue_api_token(self, username: str, *, ttl: timedelta, by: str) -> str:
        """A bearer API token that acts as this user with their roles (shown once, audited as
        ``token.issue``); disabling the user revokes it."""
        user = self._user(username)
        if user.status != "active":
            raise HearthError(errors.FORBIDDEN, "The user is disabled: enable them first.")
        return self._authenticator.issue_token(
            subject=user.user_id,
            roles=frozenset(user.roles.split()),
            label="hearth token issue",
            ttl=ttl,
            by=by,
        )

    def revoke_api_tokens(self, username: str, *, by: str) -> int:
        """Revoke every API token of a user at once (audited as ``token.revoke``)."""
        return self._authenticator.revoke_all(self._user(username).user_id, by=by)

    def reset_mfa(
        self, username: str, *, by: str, link_ttl: timedelta = timedelta(hours=24)
    ) -> tuple[SetUpLink, int, int]:
        """Remove every credential of a user (password, TOTP, recovery codes, keys, PIN), end
        their sessions, revoke their API tokens and OAuth grants, and give a new set-up link
        (ASVS v5.0.0-6.4.4: replacing a lost factor goes through the administrator, who proves
        who the user is). Returns (link, sessions ended, tokens and grants revoked).

        A reset is what an administrator does after a compromise, so it ends everything
        ``disable`` ends: a refresh-token family issued to an app (up to ``offline_seconds``
        long) would otherwise outlive the credentials that let it be granted (ASVS
        v5.0.0-7.4.2)."""
        user = self._user(username)
        self._accounts.reset_credentials(
            user.user_id,
            to_us(self._clock.now()),
            [self._record(AuthEvent.MFA_RESET, by, user.user_id)],
        )
        ended = self._sessions.end_user(user.user_id, reason="credentials-reset")
        revoked = self._authenticator.revoke_all(user.user_id, by=by)
        self._throttle.unlocked(user.username)
        return self.set_up_link(user.username, by=by, ttl=link_ttl), ended, revoked
