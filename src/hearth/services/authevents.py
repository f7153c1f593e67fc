"""The audit vocabulary of authentication (issue 4 item 11; HIPAA 164.312(b)).

Every sign-in, failure, lock, unlock, MFA change, token issue and revocation becomes an audit
entry built here. An entry names the user by id (or ``unknown`` when the name typed matches no
user: the name itself is never recorded, since people type passwords into name fields), the
network address, the session by its handle (never its id), and a stable error code on failure.
No password, code, PIN, key or token ever goes into one.
"""

from __future__ import annotations

import enum
from datetime import datetime

from hearth.audit import AuditRecord
from hearth.domain import Outcome

__all__ = ["AuthEvent", "UNKNOWN_USER", "auth_record"]

UNKNOWN_USER = "unknown"


class AuthEvent(enum.StrEnum):
    SIGN_IN = "auth.sign-in"  # a session was established (success) or a first factor failed
    SECOND_FACTOR = "auth.second-factor"  # TOTP, recovery code or key after a password
    PASSKEY = "auth.passkey"  # WebAuthn as the only factor
    STEP_UP = "auth.step-up"
    THROTTLED = "auth.throttled"
    ACCOUNT_LOCK = "auth.account-lock"
    ACCOUNT_UNLOCK = "auth.account-unlock"
    SESSION_LOCK = "session.lock"
    SESSION_UNLOCK = "session.unlock"
    SESSION_END = "session.end"
    ENROL = "mfa.enrol"  # first credentials through a set-up link
    TOTP_SET = "mfa.totp"
    RECOVERY_CODES = "mfa.recovery-codes"
    KEY_ADD = "mfa.key-add"
    KEY_RENAME = "mfa.key-rename"
    KEY_REMOVE = "mfa.key-remove"
    PIN_SET = "mfa.pin"
    MFA_RESET = "mfa.reset"
    PASSWORD_SET = "mfa.password"  # noqa: S105 - an event name, not a password
    SET_UP_LINK = "user.set-up-link"
    USER_ADD = "user.add"
    USER_DISABLE = "user.disable"
    USER_ENABLE = "user.enable"
    USER_ROLES = "user.roles"
    TOKEN_ISSUE = "token.issue"  # noqa: S105 - an event name
    TOKEN_REVOKE = "token.revoke"  # noqa: S105 - an event name


def auth_record(
    event: AuthEvent,
    outcome: Outcome,
    *,
    now: datetime,
    actor: str | None,
    source: str | None = None,
    session: str | None = None,
    code: str | None = None,
    subject_user: str | None = None,
    actor_kind: str = "user",
) -> AuditRecord:
    """One entry. ``actor`` is who acted (the user signing in, or the administrator);
    ``subject_user`` the user acted upon when that is someone else (kept in ``id``, with the
    type ``User``)."""
    return AuditRecord(
        ts=now,
        actor=actor or UNKNOWN_USER,
        actor_kind=actor_kind,
        action=event.value,
        outcome=outcome,
        res_type="User" if subject_user is not None else None,
        res_id=subject_user,
        source=source,
        session=session,
        code=code,
    )
