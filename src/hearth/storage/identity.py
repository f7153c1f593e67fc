"""Operator API tokens: issue, look up, revoke. Only digests are stored.

An API token acts as one user with that user's roles. Tokens are issued only from the command
line (``hearth init``, ``hearth serve --issue-admin-credential``, ``hearth token issue``) by
someone with host access to the instance's key files, live at most a week, and are audited
by id: ``token.issue`` and ``token.revoke`` name the token (``session = token:<id>``) and the
user it acts as, every access made with it carries the same ``session``, and a known token that
is presented wrong, expired or revoked is audited under its id too. People sign in with MFA;
see docs/design.md (threat model) for why these tokens remain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from hearth.audit import AuditRecord
from hearth.crypto import tokens
from hearth.domain import Clock, Outcome, Random
from hearth.storage.audit import AuditTrail
from hearth.storage.repository import to_us
from hearth.storage.sql.store import SqlStore, TokenRow

__all__ = ["ApiTokenStore", "TokenGrant"]


@dataclass(frozen=True, slots=True)
class TokenGrant:
    subject: str
    roles: frozenset[str]
    token_id: str


class ApiTokenStore:
    def __init__(self, store: SqlStore, audit: AuditTrail, clock: Clock, random: Random) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self._random = random

    def _audit_event(
        self,
        action: str,
        outcome: Outcome,
        actor: str,
        *,
        source: str | None = None,
        code: str | None = None,
        token_id: str | None = None,
        subject: str | None = None,
    ) -> AuditRecord:
        return AuditRecord(
            ts=self._clock.now(),
            actor=actor,
            actor_kind="user" if actor.startswith("usr_") or actor == "anonymous" else "system",
            action=action,
            outcome=outcome,
            res_type="User" if subject is not None else None,
            res_id=subject,
            source=source,
            session=f"token:{token_id}" if token_id is not None else None,
            code=code,
        )

    def issue(
        self, *, subject: str, roles: frozenset[str], label: str, ttl: timedelta | None, by: str
    ) -> str:
        """Create a token and return it; it is shown once and only its digest is kept."""
        now = self._clock.now()
        issued = tokens.issue(self._random)
        row = TokenRow(
            token_id=issued.token_id,
            subject=subject,
            roles=" ".join(sorted(roles)),
            digest=issued.digest,
            created_us=to_us(now),
            expires_us=to_us(now + ttl) if ttl is not None else None,
            revoked_us=None,
            label=label,
        )
        with self._store.write() as conn:
            self._store.insert_token(conn, row)
            self._audit.append_in(
                conn,
                [
                    self._audit_event(
                        "token.issue",
                        Outcome.SUCCESS,
                        by,
                        token_id=issued.token_id,
                        subject=subject,
                    )
                ],
            )
        return issued.token

    def verify(self, token: str) -> TokenGrant | None:
        """The grant for a presented token; None if it is unknown, wrong, expired or revoked."""
        parsed = tokens.parse(token)
        if parsed is None:
            return None
        token_id, secret = parsed
        with self._store.read() as conn:
            row = self._store.token(conn, token_id)
        if row is None or not tokens.secret_matches(secret, row.digest):
            return None
        now_us = to_us(self._clock.now())
        if row.revoked_us is not None or (row.expires_us is not None and row.expires_us <= now_us):
            return None
        return TokenGrant(row.subject, frozenset(row.roles.split()), row.token_id)

    def record_failure(self, source: str | None, code: str, token: str | None = None) -> None:
        """Audit a refused bearer token; one of ours that exists (wrong secret, expired or
        revoked) is named by its id, never anything a caller merely typed."""
        token_id: str | None = None
        parsed = tokens.parse(token) if token else None
        if parsed is not None:
            with self._store.read() as conn:
                row = self._store.token(conn, parsed[0])
            token_id = row.token_id if row is not None else None
        self._audit.record(
            self._audit_event(
                "authenticate",
                Outcome.DENIED,
                "anonymous",
                source=source,
                code=code,
                token_id=token_id,
            )
        )

    def revoke_all(self, subject: str, *, by: str) -> int:
        with self._store.write() as conn:
            count = self._store.revoke_tokens(
                conn, subject=subject, now_us=to_us(self._clock.now())
            )
            self._audit.append_in(
                conn, [self._audit_event("token.revoke", Outcome.SUCCESS, by, subject=subject)]
            )
        return count
