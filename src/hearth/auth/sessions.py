"""Console session secrets and timeouts (NIST SP 800-63B-4 sec. 5.1, 5.2; ASVS v5.0.0 V7).

A session id is 128 random bits (ASVS v5.0.0-7.2.3; NIST-SE-01 asks for 64), sent only in the
session cookie and stored only as its SHA-256 digest, so a copy of the session table or of
Redis holds nothing that resumes a session. Ids are made afresh at every sign-in, unlock and
step-up, never taken from the browser (no session fixation, ASVS v5.0.0-7.2.4).

Timeouts (:func:`evaluate`): a session that has seen no request for ``idle`` locks; a locked
session can be unlocked by the same user (PIN or security key) until ``absolute`` after sign-in,
when every session ends whatever its state (NIST-RA-01). A sign-in still in progress (password
given, second factor not yet) ends after ``sign_in``. Unlocking resets only the idle timer: the
absolute lifetime is counted from the full sign-in (issue 4 item 6).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from hearth.domain import Random

__all__ = [
    "SESSION_ID_BYTES",
    "SessionState",
    "SessionTimeouts",
    "Verdict",
    "csrf_matches",
    "evaluate",
    "new_secret",
    "session_digest",
    "session_handle",
]

SESSION_ID_BYTES = 16


class SessionState(enum.StrEnum):
    PENDING = "pending"  # a sign-in in progress: no user is signed in yet
    ACTIVE = "active"
    LOCKED = "locked"  # idle too long, or locked by hand: only unlocking is allowed


class Verdict(enum.StrEnum):
    OK = "ok"
    LOCK = "lock"  # lock it now (idle timeout)
    LOCKED = "locked"  # it is locked
    END = "end"  # it is over: absolute lifetime, or an unfinished sign-in timed out


@dataclass(frozen=True, slots=True)
class SessionTimeouts:
    idle: timedelta = timedelta(minutes=15)
    absolute: timedelta = timedelta(hours=12)
    step_up: timedelta = timedelta(minutes=5)
    sign_in: timedelta = timedelta(minutes=5)


def new_secret(random: Random, nbytes: int = SESSION_ID_BYTES) -> str:
    """A fresh random secret, URL-safe base64 without padding (a session id, a CSRF token)."""
    return base64.urlsafe_b64encode(random.token_bytes(nbytes)).decode("ascii").rstrip("=")


def session_digest(session_id: str) -> bytes:
    """What the store keeps instead of the id: SHA-256 under a label (128-bit ids need no
    slow hash)."""
    return hashlib.sha256(b"hearth/session/v1\x00" + session_id.encode("ascii", "replace")).digest()


def session_handle(digest: bytes) -> str:
    """A short name for a session in audit entries and logs: 16 hex digits of its digest,
    which say nothing about the id."""
    return digest[:8].hex()


def csrf_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of a CSRF token (NIST-SE-04)."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(expected.encode("ascii"), presented.encode("ascii", "replace"))


def evaluate(
    state: SessionState,
    *,
    last_seen: datetime,
    expires: datetime,
    now: datetime,
    idle: timedelta,
) -> Verdict:
    """What to do with a session at ``now`` (module docstring). ``expires`` is the absolute
    end (sign-in + lifetime, or the deadline of a sign-in in progress)."""
    if now >= expires:
        return Verdict.END
    if state is SessionState.LOCKED:
        return Verdict.LOCKED
    if state is SessionState.ACTIVE and now - last_seen >= idle:
        return Verdict.LOCK
    return Verdict.OK  # active and recent, or a sign-in in progress (it has only its deadline)
