"""Console sessions: who is signed in on this browser (NIST SP 800-63B-4 sec. 5; ASVS v5.0.0 V7).

The public surface other services and the web layer use:

- :meth:`SessionService.load` resumes the session named by a cookie value and applies the
  timeouts: an idle active session becomes locked, an expired one ends (both audited);
- :meth:`SessionService.current_user` gives the signed-in :class:`~hearth.domain.Principal`
  (``None`` when nobody is, or the session is locked or unfinished);
- :meth:`SessionService.establish` makes a new session for a user who has just signed in fully,
  under a new id, discarding whatever session the browser had (no fixation);
- :meth:`SessionService.require_step_up` raises ``STEP_UP_REQUIRED`` unless a second factor was
  shown recently: the reusable check before exports, break-the-glass and user administration.

State moves only forward through the methods here: pending -> active <-> locked -> ended.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from hearth.auth.sessions import (
    SessionState,
    SessionTimeouts,
    Verdict,
    csrf_matches,
    evaluate,
    new_secret,
    session_digest,
    session_handle,
)
from hearth.domain import Clock, HearthError, Outcome, Principal, PrincipalKind, Random, errors
from hearth.services.authevents import AuthEvent, auth_record
from hearth.storage import AuditTrail, from_us, to_us
from hearth.storage.accounts import AccountStore, UserRow
from hearth.storage.sessions import SessionRow, SessionStore

__all__ = ["Session", "SessionService", "Signed"]

#: Sessions past their end are deleted at most this often, when a new one begins, so that
#: abandoned sign-ins do not pile up in the database (Redis expires them by itself).
_PURGE_EVERY_US = 60_000_000

#: Activity is written back at most this often, so that a page that loads several resources
#: does one write, not one per resource; the idle timeout is minutes, so seconds do not matter.
_TOUCH_EVERY_US = 5_000_000


@dataclass(frozen=True, slots=True)
class Session:
    """A session as the rest of Hearth sees it (never its id)."""

    digest: bytes
    user_id: str | None
    state: SessionState
    created: datetime
    last_seen: datetime
    expires: datetime
    auth_time: datetime | None
    step_up_time: datetime | None
    amr: tuple[str, ...]
    csrf: str
    pin_failures: int
    source: str | None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def handle(self) -> str:
        """The name of this session in audit entries and logs."""
        return session_handle(self.digest)

    def csrf_ok(self, presented: str | None) -> bool:
        return csrf_matches(self.csrf, presented)


@dataclass(frozen=True, slots=True)
class Signed:
    """A new session id to put in the cookie, and the session it names."""

    session_id: str
    session: Session


def _to_session(row: SessionRow) -> Session:
    data: dict[str, Any] = orjson.loads(row.data) if row.data else {}
    return Session(
        digest=row.id_digest,
        user_id=row.user_id,
        state=SessionState(row.state),
        created=from_us(row.created_us),
        last_seen=from_us(row.last_seen_us),
        expires=from_us(row.expires_us),
        auth_time=from_us(row.auth_us) if row.auth_us is not None else None,
        step_up_time=from_us(row.step_up_us) if row.step_up_us is not None else None,
        amr=tuple(row.amr.split()),
        csrf=row.csrf,
        pin_failures=row.pin_failures,
        source=row.source,
        data=data,
    )


def _to_row(s: Session) -> SessionRow:
    return SessionRow(
        id_digest=s.digest,
        user_id=s.user_id,
        state=s.state.value,
        created_us=to_us(s.created),
        last_seen_us=to_us(s.last_seen),
        expires_us=to_us(s.expires),
        auth_us=to_us(s.auth_time) if s.auth_time is not None else None,
        step_up_us=to_us(s.step_up_time) if s.step_up_time is not None else None,
        amr=" ".join(s.amr),
        csrf=s.csrf,
        pin_failures=s.pin_failures,
        data=orjson.dumps(dict(s.data)) if s.data else None,
        source=s.source,
    )


class SessionService:
    def __init__(
        self,
        store: SessionStore,
        accounts: AccountStore,
        audit: AuditTrail,
        timeouts: SessionTimeouts,
        clock: Clock,
        random: Random,
        keyed_hash: Callable[[str, str], str],
    ) -> None:
        """``keyed_hash(domain, value)`` makes the CSRF token of a browser without a session
        from its pre-session cookie (:meth:`pre_session_csrf`)."""
        self._keyed_hash = keyed_hash
        self._store = store
        self._accounts = accounts
        self._audit = audit
        self.timeouts = timeouts
        self._clock = clock
        self._random = random
        self._purged_us = 0

    # -- CSRF before a session exists ---------------------------------------------------------
    def new_pre_session(self) -> str:
        """A random value for the pre-session cookie of a browser that has no session yet."""
        return new_secret(self._random)

    def pre_session_csrf(self, pre_session: str) -> str:
        """The CSRF token of forms shown to a browser without a session (the sign-in form,
        the set-up page): a keyed hash of its pre-session cookie, so a forged cross-site post
        (which cannot read the cookie) cannot carry it (login CSRF, ASVS v5.0.0-3.5.1)."""
        return self._keyed_hash("hearth/csrf/pre-session", pre_session)

    # -- reading --------------------------------------------------------------------------
    def load(self, session_id: str | None) -> Session | None:
        """The session named by a cookie value, after applying the timeouts; None if there is
        none (unknown, ended, or its user can no longer sign in)."""
        if not session_id or len(session_id) > 64:
            return None
        row = self._store.get(session_digest(session_id))
        if row is None:
            return None
        session = _to_session(row)
        now = self._clock.now()
        verdict = evaluate(
            session.state,
            last_seen=session.last_seen,
            expires=session.expires,
            now=now,
            idle=self.timeouts.idle,
        )
        if verdict is Verdict.END:
            self.end(session, reason="expired")
            return None
        if session.user_id is not None and session.state is not SessionState.PENDING:
            user = self._accounts.user(session.user_id)
            if user is None or user.status != "active":
                self.end(session, reason="user-disabled")
                return None
        if verdict is Verdict.LOCK:
            return self.lock(session, reason="idle")
        if (
            verdict is Verdict.OK
            and session.state is SessionState.ACTIVE
            and to_us(now) - to_us(session.last_seen) >= _TOUCH_EVERY_US
        ):
            self._store.touch(session.digest, to_us(now))
            session = replace(session, last_seen=now)
        return session

    def current_user(self, session_id: str | None, *, source: str | None) -> Principal | None:
        """The signed-in user of an active session, as a ``Principal``; else None."""
        session = self.load(session_id)
        if session is None or session.state is not SessionState.ACTIVE or not session.user_id:
            return None
        user = self._accounts.user(session.user_id)
        if user is None:
            return None
        return self.principal(session, user, source=source)

    @staticmethod
    def principal(session: Session, user: UserRow, *, source: str | None) -> Principal:
        auth_time = session.auth_time or session.created
        return Principal(
            subject=user.user_id,
            kind=PrincipalKind.USER,
            roles=frozenset(user.roles.split()),
            source=source,
            session=session.handle,
            attributes={
                "username": user.username,
                "display_name": user.display_name,
                "amr": " ".join(session.amr),
                "auth_time": str(int(auth_time.timestamp())),
            },
        )

    def require_step_up(self, session: Session, within: timedelta | None = None) -> None:
        """Raise ``STEP_UP_REQUIRED`` unless a second factor (TOTP or WebAuthn) was verified in
        this session within ``within`` (default ``[sessions] step_up_minutes``)."""
        window = within if within is not None else self.timeouts.step_up
        last = session.step_up_time
        if session.state is not SessionState.ACTIVE:
            raise HearthError(errors.SESSION_LOCKED)
        if last is None or self._clock.now() - last > window:
            raise HearthError(errors.STEP_UP_REQUIRED)

    # -- making and changing ----------------------------------------------------------------
    def begin(self, *, source: str | None, data: Mapping[str, Any]) -> Signed:
        """A pending session for a sign-in in progress; it ends after ``sign_in`` minutes."""
        now = self._clock.now()
        if to_us(now) - self._purged_us >= _PURGE_EVERY_US:
            self._purged_us = to_us(now)
            self._store.purge(to_us(now))
        session_id = new_secret(self._random)
        session = Session(
            digest=session_digest(session_id),
            user_id=None,
            state=SessionState.PENDING,
            created=now,
            last_seen=now,
            expires=now + self.timeouts.sign_in,
            auth_time=None,
            step_up_time=None,
            amr=(),
            csrf=new_secret(self._random),
            pin_failures=0,
            source=source,
            data=dict(data),
        )
        self._store.create(_to_row(session))
        return Signed(session_id, session)

    def update_data(self, session: Session, data: Mapping[str, Any]) -> Session:
        """Replace the in-progress state of a session (a challenge, a pending factor)."""
        changed = replace(session, data=dict(data))
        if not self._store.save(_to_row(changed)):
            raise HearthError(errors.SESSION_ENDED)
        return changed

    def establish(
        self,
        previous: Session | None,
        *,
        user_id: str,
        amr: tuple[str, ...],
        source: str | None,
        second_factor: bool,
    ) -> Signed:
        """A full sign-in: a new active session under a new id; ``previous`` (whatever session
        this browser had, pending or not) is gone. A second factor counts as a step-up."""
        now = self._clock.now()
        session_id = new_secret(self._random)
        session = Session(
            digest=session_digest(session_id),
            user_id=user_id,
            state=SessionState.ACTIVE,
            created=now,
            last_seen=now,
            expires=now + self.timeouts.absolute,
            auth_time=now,
            step_up_time=now if second_factor else None,
            amr=amr,
            csrf=new_secret(self._random),
            pin_failures=0,
            source=source,
        )
        if previous is not None:
            self._store.rotate(previous.digest, _to_row(session))
        else:
            self._store.create(_to_row(session))
        self._audit.record(
            auth_record(
                AuthEvent.SIGN_IN,
                Outcome.SUCCESS,
                now=now,
                actor=user_id,
                source=source,
                session=session.handle,
            )
        )
        return Signed(session_id, session)

    def rotate(self, session: Session, **changes: Any) -> Signed:
        """The same session under a new id (and a new CSRF token), with ``changes`` applied:
        after an unlock or a step-up, the privilege of the session changed (ASVS v5.0.0-7.2.4)."""
        session_id = new_secret(self._random)
        changed = replace(
            session,
            digest=session_digest(session_id),
            csrf=new_secret(self._random),
            **changes,
        )
        self._store.rotate(session.digest, _to_row(changed))
        return Signed(session_id, changed)

    def stepped_up(self, session: Session, *, method: str) -> Signed:
        """Record a verified second factor (TOTP or WebAuthn) now; rotate the id."""
        now = self._clock.now()
        signed = self.rotate(session, step_up_time=now, last_seen=now, data={})
        self._audit.record(
            auth_record(
                AuthEvent.STEP_UP,
                Outcome.SUCCESS,
                now=now,
                actor=session.user_id,
                source=session.source,
                session=signed.session.handle,
                code=method,
            )
        )
        return signed

    def lock(self, session: Session, *, reason: str) -> Session:
        """Lock an active session (idle timeout, or the user's own Lock button)."""
        locked = replace(session, state=SessionState.LOCKED, pin_failures=0, data={})
        self._store.save(_to_row(locked))
        self._audit.record(
            auth_record(
                AuthEvent.SESSION_LOCK,
                Outcome.SUCCESS,
                now=self._clock.now(),
                actor=session.user_id,
                source=session.source,
                session=session.handle,
                code=reason,
            )
        )
        return locked

    def unlock(self, session: Session, *, method: str) -> Signed:
        """Unlock a locked session: same user, same browser, within its absolute lifetime.
        Resets the idle timer only (NIST-RA-03); the id rotates."""
        if session.state is not SessionState.LOCKED:
            raise HearthError(errors.SESSION_ENDED)
        now = self._clock.now()
        changes: dict[str, Any] = {
            "state": SessionState.ACTIVE,
            "last_seen": now,
            "pin_failures": 0,
            "data": {},
        }
        if method == "key":
            changes["step_up_time"] = now
        signed = self.rotate(session, **changes)
        self._audit.record(
            auth_record(
                AuthEvent.SESSION_UNLOCK,
                Outcome.SUCCESS,
                now=now,
                actor=session.user_id,
                source=session.source,
                session=signed.session.handle,
                code=method,
            )
        )
        return signed

    def pin_failure(self, session: Session) -> int | None:
        """Count a wrong PIN on this session, atomically; the count so far (None: ended)."""
        return self._store.add_pin_failure(session.digest)

    def end(self, session: Session, *, reason: str) -> None:
        """End one session (sign-out, expiry, too many wrong PINs)."""
        self._store.delete(session.digest)
        if session.state is SessionState.PENDING:
            return  # an unfinished sign-in: nobody was signed in
        self._audit.record(
            auth_record(
                AuthEvent.SESSION_END,
                Outcome.SUCCESS,
                now=self._clock.now(),
                actor=session.user_id,
                source=session.source,
                session=session.handle,
                code=reason,
            )
        )

    def others(self, session: Session) -> list[Session]:
        """The user's other sessions (other browsers), for the account page (ASVS
        v5.0.0-7.5.2)."""
        if not session.user_id:
            return []
        rows = self._store.user_sessions(session.user_id)
        now_us = to_us(self._clock.now())
        return [
            _to_session(r) for r in rows if r.id_digest != session.digest and r.expires_us > now_us
        ]

    def end_others(self, session: Session) -> int:
        """End every other session of this user (after a credential change, ASVS
        v5.0.0-7.4.3); each is audited."""
        ended = 0
        for other in self.others(session):
            self.end(other, reason="ended-by-user")
            ended += 1
        return ended

    def end_user(self, user_id: str, *, reason: str) -> int:
        """End every session of a user at once (disabled, credentials reset, roles changed).
        The caller audits the change that caused it."""
        return self._store.delete_user(user_id)

    def purge(self) -> int:
        return self._store.purge(to_us(self._clock.now()))
