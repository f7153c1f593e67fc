"""SQL for OAuth clients, grants, codes, refresh tokens, launches and client certificates.

Kept beside ``store.py`` (which holds the resource, audit and key statements) so that each file
stays one concept. Nothing here decides or audits; ``hearth.storage.oauth`` does, inside the
transactions it owns. All statements are parameterised (ASVS 1.2.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, delete, insert, select, update

from hearth.storage.sql import tables as t

__all__ = [
    "CertificateRow",
    "ClientRow",
    "CodeRow",
    "GrantRow",
    "LaunchRow",
    "OAuthSql",
    "RefreshRow",
]


@dataclass(frozen=True, slots=True)
class ClientRow:
    client_id: str
    name: str
    auth_method: str
    metadata: str
    secret_digest: bytes | None
    created_us: int
    revoked_us: int | None
    created_by: str


@dataclass(frozen=True, slots=True)
class GrantRow:
    grant_id: str
    client_id: str
    subject: str
    kind: str
    roles: str
    scope: str
    patient: str | None
    encounter: str | None
    fhir_user: str | None
    cnf: str | None
    created_us: int
    expires_us: int
    revoked_us: int | None = None
    revoke_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshRow:
    token_id: str
    grant_id: str
    digest: bytes
    created_us: int
    expires_us: int
    used_us: int | None = None


@dataclass(frozen=True, slots=True)
class CodeRow:
    code_id: str
    digest: bytes
    client_id: str
    redirect_uri: str
    challenge: str
    request: str
    created_us: int
    expires_us: int
    used_us: int | None = None
    grant_id: str | None = None


@dataclass(frozen=True, slots=True)
class LaunchRow:
    launch_id: str
    client_id: str
    subject: str
    patient: str | None
    encounter: str | None
    created_us: int
    expires_us: int
    used_us: int | None = None


@dataclass(frozen=True, slots=True)
class CertificateRow:
    thumbprint: str
    subject_kind: str
    subject: str
    not_after_us: int
    label: str
    created_us: int
    revoked_us: int | None = None


def _values(row: object) -> dict[str, object]:
    return {name: getattr(row, name) for name in row.__slots__}  # type: ignore[attr-defined]


class OAuthSql:
    """Statements over the OAuth tables; each takes the caller's connection."""

    # -- clients ------------------------------------------------------------------------------
    def insert_client(self, conn: Connection, row: ClientRow) -> None:
        conn.execute(insert(t.oauth_client).values(_values(row)))

    def client(self, conn: Connection, client_id: str) -> ClientRow | None:
        r = conn.execute(
            select(t.oauth_client).where(t.oauth_client.c.client_id == client_id)
        ).first()
        return ClientRow(**r._mapping) if r is not None else None

    def clients(self, conn: Connection) -> list[ClientRow]:
        rows = conn.execute(select(t.oauth_client).order_by(t.oauth_client.c.created_us))
        return [ClientRow(**r._mapping) for r in rows]

    def revoke_client(self, conn: Connection, client_id: str, now_us: int) -> bool:
        done = conn.execute(
            update(t.oauth_client)
            .where(t.oauth_client.c.client_id == client_id, t.oauth_client.c.revoked_us.is_(None))
            .values(revoked_us=now_us)
        )
        return bool(done.rowcount)

    # -- grants -------------------------------------------------------------------------------
    def insert_grant(self, conn: Connection, row: GrantRow) -> None:
        conn.execute(insert(t.oauth_grant).values(_values(row)))

    def grant(self, conn: Connection, grant_id: str) -> GrantRow | None:
        r = conn.execute(select(t.oauth_grant).where(t.oauth_grant.c.grant_id == grant_id)).first()
        return GrantRow(**r._mapping) if r is not None else None

    def revoke_grants(
        self,
        conn: Connection,
        *,
        now_us: int,
        reason: str,
        grant_id: str | None = None,
        subject: str | None = None,
        client_id: str | None = None,
    ) -> list[str]:
        """Revoke the grants matching every given filter; returns the ids revoked."""
        g = t.oauth_grant.c
        where: list[ColumnElement[bool]] = [g.revoked_us.is_(None)]
        if grant_id is not None:
            where.append(g.grant_id == grant_id)
        if subject is not None:
            where.append(g.subject == subject)
        if client_id is not None:
            where.append(g.client_id == client_id)
        ids = [r[0] for r in conn.execute(select(g.grant_id).where(*where))]
        if ids:
            conn.execute(
                update(t.oauth_grant)
                .where(g.grant_id.in_(ids))
                .values(revoked_us=now_us, revoke_reason=reason)
            )
        return ids

    # -- refresh tokens -------------------------------------------------------------------------
    def insert_refresh(self, conn: Connection, row: RefreshRow) -> None:
        conn.execute(insert(t.oauth_refresh).values(_values(row)))

    def refresh(self, conn: Connection, token_id: str, *, for_update: bool) -> RefreshRow | None:
        query = select(t.oauth_refresh).where(t.oauth_refresh.c.token_id == token_id)
        if for_update:
            query = query.with_for_update()
        r = conn.execute(query).first()
        return RefreshRow(**r._mapping) if r is not None else None

    def use_refresh(self, conn: Connection, token_id: str, now_us: int) -> bool:
        """Mark a refresh token used; False if it already was (a concurrent redemption)."""
        done = conn.execute(
            update(t.oauth_refresh)
            .where(t.oauth_refresh.c.token_id == token_id, t.oauth_refresh.c.used_us.is_(None))
            .values(used_us=now_us)
        )
        return bool(done.rowcount)

    # -- authorization codes ------------------------------------------------------------------
    def insert_code(self, conn: Connection, row: CodeRow) -> None:
        conn.execute(insert(t.oauth_code).values(_values(row)))

    def code(self, conn: Connection, code_id: str) -> CodeRow | None:
        r = conn.execute(
            select(t.oauth_code).where(t.oauth_code.c.code_id == code_id).with_for_update()
        ).first()
        return CodeRow(**r._mapping) if r is not None else None

    def use_code(self, conn: Connection, code_id: str, now_us: int, grant_id: str | None) -> bool:
        """Mark a code used, by the grant it yielded or (None) by a failed redemption; False if
        it already was."""
        done = conn.execute(
            update(t.oauth_code)
            .where(t.oauth_code.c.code_id == code_id, t.oauth_code.c.used_us.is_(None))
            .values(used_us=now_us, grant_id=grant_id)
        )
        return bool(done.rowcount)

    def purge_codes(self, conn: Connection, before_us: int) -> None:
        conn.execute(delete(t.oauth_code).where(t.oauth_code.c.expires_us < before_us))

    # -- launches -----------------------------------------------------------------------------
    def insert_launch(self, conn: Connection, row: LaunchRow) -> None:
        conn.execute(insert(t.oauth_launch).values(_values(row)))

    def launch(self, conn: Connection, launch_id: str) -> LaunchRow | None:
        r = conn.execute(
            select(t.oauth_launch).where(t.oauth_launch.c.launch_id == launch_id)
        ).first()
        return LaunchRow(**r._mapping) if r is not None else None

    def use_launch(self, conn: Connection, launch_id: str, now_us: int) -> bool:
        done = conn.execute(
            update(t.oauth_launch)
            .where(t.oauth_launch.c.launch_id == launch_id, t.oauth_launch.c.used_us.is_(None))
            .values(used_us=now_us)
        )
        return bool(done.rowcount)

    # -- client assertion replay cache ----------------------------------------------------------
    def remember_assertion(
        self, conn: Connection, client_id: str, jti_digest: bytes, expires_us: int, now_us: int
    ) -> bool:
        """Record an assertion id; False when it was already seen and has not yet expired."""
        a = t.oauth_assertion.c
        conn.execute(delete(t.oauth_assertion).where(a.expires_us < now_us))
        seen = conn.execute(
            select(a.expires_us).where(a.client_id == client_id, a.jti_digest == jti_digest)
        ).first()
        if seen is not None:
            return False
        conn.execute(
            insert(t.oauth_assertion).values(
                client_id=client_id, jti_digest=jti_digest, expires_us=expires_us
            )
        )
        return True

    # -- client certificates ------------------------------------------------------------------
    def insert_certificate(self, conn: Connection, row: CertificateRow) -> None:
        conn.execute(insert(t.client_certificate).values(_values(row)))

    def certificate(self, conn: Connection, thumbprint: str) -> CertificateRow | None:
        r = conn.execute(
            select(t.client_certificate).where(t.client_certificate.c.thumbprint == thumbprint)
        ).first()
        return CertificateRow(**r._mapping) if r is not None else None

    def certificates(self, conn: Connection) -> list[CertificateRow]:
        rows = conn.execute(
            select(t.client_certificate).order_by(t.client_certificate.c.created_us)
        )
        return [CertificateRow(**r._mapping) for r in rows]

    def revoke_certificate(self, conn: Connection, thumbprint: str, now_us: int) -> bool:
        c = t.client_certificate.c
        done = conn.execute(
            update(t.client_certificate)
            .where(c.thumbprint == thumbprint, c.revoked_us.is_(None))
            .values(revoked_us=now_us)
        )
        return bool(done.rowcount)
