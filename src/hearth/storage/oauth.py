"""OAuth state behind a narrow interface: clients, grants, codes, refresh tokens, launches,
client assertion ids and client certificate mappings, each change audited in its transaction.

Services reach these rows only through ``OAuthStore``; what it stores holds no secret in the
clear (refresh tokens, codes and client secrets are digests) and no PHI (see docs/design.md,
"OAuth 2 and SMART").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from hearth.audit import AuditRecord
from hearth.domain import Clock, Outcome
from hearth.storage.audit import AuditTrail
from hearth.storage.repository import to_us
from hearth.storage.sql.oauth import (
    CertificateRow,
    ClientRow,
    CodeRow,
    GrantRow,
    LaunchRow,
    OAuthSql,
    RefreshRow,
)
from hearth.storage.sql.store import SqlStore

__all__ = [
    "AuditEvent",
    "CertificateRow",
    "ClientRow",
    "CodeRow",
    "GrantRow",
    "LaunchRow",
    "OAuthStore",
    "RefreshRow",
]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What to audit about one OAuth operation (never a token or secret)."""

    action: str
    outcome: Outcome
    actor: str
    actor_kind: str
    session: str | None = None  # the grant id, which links tokens to their issue and revocation
    patient: str | None = None
    source: str | None = None
    code: str | None = None


class OAuthStore:
    def __init__(self, store: SqlStore, audit: AuditTrail, clock: Clock) -> None:
        self._store = store
        self._sql = OAuthSql()
        self._audit = audit
        self._clock = clock

    def now_us(self) -> int:
        return to_us(self._clock.now())

    def _record(self, event: AuditEvent) -> AuditRecord:
        return AuditRecord(
            ts=self._clock.now(),
            actor=event.actor,
            actor_kind=event.actor_kind,
            action=event.action,
            outcome=event.outcome,
            patient=event.patient,
            source=event.source,
            session=event.session,
            code=event.code,
        )

    def _write(self, work: Callable[[Connection], object], events: Sequence[AuditEvent]) -> None:
        with self._store.write() as conn:
            work(conn)
            self._audit.append_in(conn, [self._record(e) for e in events])

    def audit(self, event: AuditEvent) -> None:
        """Audit a refusal or a read-only operation (group-committed, durable on return)."""
        self._audit.record(self._record(event))

    # -- clients ------------------------------------------------------------------------------
    def add_client(self, row: ClientRow, event: AuditEvent) -> None:
        self._write(lambda conn: self._sql.insert_client(conn, row), [event])

    def client(self, client_id: str) -> ClientRow | None:
        with self._store.read() as conn:
            return self._sql.client(conn, client_id)

    def clients(self) -> list[ClientRow]:
        with self._store.read() as conn:
            return self._sql.clients(conn)

    def revoke_client(self, client_id: str, event: AuditEvent) -> tuple[bool, list[str]]:
        """Revoke a client and every grant it holds, in one transaction."""
        now_us = self.now_us()
        with self._store.write() as conn:
            done = self._sql.revoke_client(conn, client_id, now_us)
            grants = self._sql.revoke_grants(
                conn, now_us=now_us, reason="client-revoked", client_id=client_id
            )
            if done:
                self._audit.append_in(conn, [self._record(event)])
        return done, grants

    # -- grants and tokens --------------------------------------------------------------------
    def add_grant(self, grant: GrantRow, event: AuditEvent) -> None:
        """Store a new grant (client credentials: no refresh token, no code)."""
        self._write(lambda conn: self._sql.insert_grant(conn, grant), [event])

    def grant(self, grant_id: str) -> GrantRow | None:
        with self._store.read() as conn:
            return self._sql.grant(conn, grant_id)

    def revoke_grants(
        self,
        event: AuditEvent,
        *,
        reason: str,
        grant_id: str | None = None,
        subject: str | None = None,
    ) -> list[str]:
        now_us = self.now_us()
        with self._store.write() as conn:
            ids = self._sql.revoke_grants(
                conn, now_us=now_us, reason=reason, grant_id=grant_id, subject=subject
            )
            if ids:
                self._audit.append_in(conn, [self._record(event)])
        return ids

    def rotate_refresh(
        self, token_id: str, new: RefreshRow, event: AuditEvent
    ) -> tuple[RefreshRow | None, GrantRow | None, bool]:
        """Redeem a refresh token: mark it used and store its successor, in one transaction.

        Returns (the presented row, its grant, whether it was fresh). A row that was already
        used is a replay: the caller revokes the whole family (RFC 9700 sec. 4.14.2).
        """
        with self._store.write() as conn:
            row = self._sql.refresh(conn, token_id, for_update=True)
            if row is None:
                return None, None, False
            grant = self._sql.grant(conn, row.grant_id)
            if row.used_us is not None or not self._sql.use_refresh(conn, token_id, new.created_us):
                return row, grant, False
            if grant is None or grant.revoked_us is not None:
                return row, grant, True
            self._sql.insert_refresh(conn, new)
            self._audit.append_in(conn, [self._record(event)])
        return row, grant, True

    def refresh_token(self, token_id: str) -> RefreshRow | None:
        with self._store.read() as conn:
            return self._sql.refresh(conn, token_id, for_update=False)

    # -- codes and launches -------------------------------------------------------------------
    def add_code(self, row: CodeRow, event: AuditEvent, *, launch_used: str | None = None) -> bool:
        """Store a code; with ``launch_used``, consume that EHR launch in the same transaction
        (False, and no code, when it was already used: launches are single use)."""
        with self._store.write() as conn:
            if launch_used is not None and not self._sql.use_launch(
                conn, launch_used, row.created_us
            ):
                return False
            self._sql.purge_codes(conn, row.created_us - 86_400_000_000)
            self._sql.insert_code(conn, row)
            self._audit.append_in(conn, [self._record(event)])
        return True

    def redeem_code(
        self, code_id: str, grant: GrantRow, refresh: RefreshRow | None, event: AuditEvent
    ) -> tuple[CodeRow | None, bool]:
        """Mark a code used and store the grant it yields, in one transaction.

        Returns (the code row, whether this redemption won). A second redemption returns the
        row with False; the caller then revokes the grant the first one produced.
        """
        with self._store.write() as conn:
            row = self._sql.code(conn, code_id)
            if row is None:
                return None, False
            if row.used_us is not None or not self._sql.use_code(
                conn, code_id, grant.created_us, grant.grant_id
            ):
                return row, False
            self._sql.insert_grant(conn, grant)
            if refresh is not None:
                self._sql.insert_refresh(conn, refresh)
            self._audit.append_in(conn, [self._record(event)])
        return row, True

    def spend_code(self, code_id: str, now_us: int, event: AuditEvent) -> None:
        """Use up a code whose redemption failed (one attempt per code), auditing the refusal
        in the same transaction. The code yields no grant."""
        with self._store.write() as conn:
            self._sql.use_code(conn, code_id, now_us, None)
            self._audit.append_in(conn, [self._record(event)])

    def code(self, code_id: str) -> CodeRow | None:
        with self._store.read() as conn:
            return self._sql.code(conn, code_id)

    def add_launch(self, row: LaunchRow, event: AuditEvent) -> None:
        self._write(lambda conn: self._sql.insert_launch(conn, row), [event])

    def launch(self, launch_id: str) -> LaunchRow | None:
        with self._store.read() as conn:
            return self._sql.launch(conn, launch_id)

    # -- client assertions --------------------------------------------------------------------
    def remember_assertion(self, client_id: str, jti: str, expires_us: int) -> bool:
        """Record a client assertion id; False if it was seen before (a replay)."""
        digest = hashlib.sha256(jti.encode("utf-8")).digest()
        try:
            with self._store.write() as conn:
                return self._sql.remember_assertion(
                    conn, client_id, digest, expires_us, self.now_us()
                )
        except SqlIntegrityError:  # a concurrent request inserted the same id first
            return False

    # -- client certificates ------------------------------------------------------------------
    def add_certificate(self, row: CertificateRow, event: AuditEvent) -> None:
        self._write(lambda conn: self._sql.insert_certificate(conn, row), [event])

    def certificate(self, thumbprint: str) -> CertificateRow | None:
        with self._store.read() as conn:
            return self._sql.certificate(conn, thumbprint)

    def certificates(self) -> list[CertificateRow]:
        with self._store.read() as conn:
            return self._sql.certificates(conn)

    def revoke_certificate(self, thumbprint: str, event: AuditEvent) -> bool:
        with self._store.write() as conn:
            done = self._sql.revoke_certificate(conn, thumbprint, self.now_us())
            if done:
                self._audit.append_in(conn, [self._record(event)])
        return done
