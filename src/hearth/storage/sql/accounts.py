"""SQL for user accounts, their credentials, set-up links and console sessions (issue 4).

Like ``store.py`` for records, this module holds every statement about accounts and nothing else:
no hashing, sealing or auditing. The atomic compare-and-set updates (the TOTP step, a recovery
code, a sign counter, a set-up link, the PIN failure count) are what make one-time secrets
one-time when two requests race: the ``WHERE`` clause decides, and ``rowcount`` says who won.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from hearth.storage.sql import tables as t

__all__ = [
    "CredentialRow",
    "EnrolmentRow",
    "SessionRow",
    "SqlAccounts",
    "UserRow",
]

_U = t.user_account
_R = t.recovery_code
_W = t.webauthn_credential
_E = t.user_enrolment
_S = t.web_session


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    username: str
    display_name: str
    roles: str  # space-separated role names
    status: str
    created_us: int
    updated_us: int
    locked_us: int | None
    password_hash: str | None
    totp_secret: bytes | None  # sealed
    totp_last_step: int | None
    pin_hash: str | None
    webauthn_handle: bytes


@dataclass(frozen=True, slots=True)
class CredentialRow:
    cred_digest: bytes
    credential_id: bytes
    user_id: str
    name: str
    public_key: bytes
    sign_count: int
    transports: str  # space-separated
    aaguid: str
    user_verified: bool
    backup_eligible: bool
    created_us: int
    last_used_us: int | None


@dataclass(frozen=True, slots=True)
class EnrolmentRow:
    token_id: str
    user_id: str
    digest: bytes
    created_us: int
    expires_us: int
    used_us: int | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    id_digest: bytes
    user_id: str | None
    state: str
    created_us: int
    last_seen_us: int
    expires_us: int
    auth_us: int | None
    step_up_us: int | None
    amr: str
    csrf: str
    pin_failures: int
    data: bytes | None
    source: str | None


def _user(r: object) -> UserRow:
    m = r._mapping  # type: ignore[attr-defined]
    return UserRow(
        user_id=m["user_id"],
        username=m["username"],
        display_name=m["display_name"],
        roles=m["roles"],
        status=m["status"],
        created_us=m["created_us"],
        updated_us=m["updated_us"],
        locked_us=m["locked_us"],
        password_hash=m["password_hash"],
        totp_secret=bytes(m["totp_secret"]) if m["totp_secret"] is not None else None,
        totp_last_step=m["totp_last_step"],
        pin_hash=m["pin_hash"],
        webauthn_handle=bytes(m["webauthn_handle"]),
    )


def _credential(r: object) -> CredentialRow:
    m = r._mapping  # type: ignore[attr-defined]
    return CredentialRow(
        cred_digest=bytes(m["cred_digest"]),
        credential_id=bytes(m["credential_id"]),
        user_id=m["user_id"],
        name=m["name"],
        public_key=bytes(m["public_key"]),
        sign_count=int(m["sign_count"]),
        transports=m["transports"],
        aaguid=m["aaguid"],
        user_verified=bool(m["user_verified"]),
        backup_eligible=bool(m["backup_eligible"]),
        created_us=m["created_us"],
        last_used_us=m["last_used_us"],
    )


def session_row(r: object) -> SessionRow:
    m = r._mapping  # type: ignore[attr-defined]
    return SessionRow(
        id_digest=bytes(m["id_digest"]),
        user_id=m["user_id"],
        state=m["state"],
        created_us=m["created_us"],
        last_seen_us=m["last_seen_us"],
        expires_us=m["expires_us"],
        auth_us=m["auth_us"],
        step_up_us=m["step_up_us"],
        amr=m["amr"],
        csrf=m["csrf"],
        pin_failures=int(m["pin_failures"]),
        data=bytes(m["data"]) if m["data"] is not None else None,
        source=m["source"],
    )


class SqlAccounts:
    """Statements over the account tables; every method runs inside the caller's transaction."""

    # -- users ----------------------------------------------------------------------------
    def insert_user(self, conn: Connection, row: UserRow) -> None:
        conn.execute(
            insert(_U).values(
                user_id=row.user_id,
                username=row.username,
                display_name=row.display_name,
                roles=row.roles,
                status=row.status,
                created_us=row.created_us,
                updated_us=row.updated_us,
                locked_us=row.locked_us,
                password_hash=row.password_hash,
                totp_secret=row.totp_secret,
                totp_last_step=row.totp_last_step,
                pin_hash=row.pin_hash,
                webauthn_handle=row.webauthn_handle,
            )
        )

    def user(self, conn: Connection, user_id: str) -> UserRow | None:
        r = conn.execute(select(_U).where(_U.c.user_id == user_id)).first()
        return _user(r) if r is not None else None

    def user_by_name(self, conn: Connection, username: str) -> UserRow | None:
        r = conn.execute(select(_U).where(_U.c.username == username)).first()
        return _user(r) if r is not None else None

    def user_by_handle(self, conn: Connection, handle: bytes) -> UserRow | None:
        r = conn.execute(select(_U).where(_U.c.webauthn_handle == handle)).first()
        return _user(r) if r is not None else None

    def users(self, conn: Connection) -> list[UserRow]:
        return [_user(r) for r in conn.execute(select(_U).order_by(_U.c.username))]

    def update_user(self, conn: Connection, user_id: str, now_us: int, **values: object) -> bool:
        done = conn.execute(
            update(_U).where(_U.c.user_id == user_id).values(updated_us=now_us, **values)
        )
        return bool(done.rowcount)

    def replace_totp_secret(
        self, conn: Connection, user_id: str, *, old: bytes, new: bytes
    ) -> bool:
        """Swap a re-sealed TOTP secret in, unless the user enrolled another meanwhile."""
        done = conn.execute(
            update(_U)
            .where(_U.c.user_id == user_id, _U.c.totp_secret == old)
            .values(totp_secret=new)
        )
        return bool(done.rowcount)

    def accept_totp_step(self, conn: Connection, user_id: str, step: int) -> bool:
        """Record ``step`` as used if it is newer than the last one (NIST-OTP-02)."""
        done = conn.execute(
            update(_U)
            .where(
                _U.c.user_id == user_id,
                or_(_U.c.totp_last_step.is_(None), _U.c.totp_last_step < step),
            )
            .values(totp_last_step=step)
        )
        return bool(done.rowcount)

    # -- recovery codes -------------------------------------------------------------------
    def recovery_codes(self, conn: Connection, user_id: str) -> list[tuple[int, str]]:
        rows = conn.execute(
            select(_R.c.position, _R.c.code_hash)
            .where(_R.c.user_id == user_id)
            .order_by(_R.c.position)
        )
        return [(int(p), str(h)) for p, h in rows]

    def replace_recovery_codes(self, conn: Connection, user_id: str, hashes: list[str]) -> None:
        conn.execute(delete(_R).where(_R.c.user_id == user_id))
        if hashes:
            conn.execute(
                insert(_R),
                [{"user_id": user_id, "position": i, "code_hash": h} for i, h in enumerate(hashes)],
            )

    def use_recovery_code(self, conn: Connection, user_id: str, position: int) -> bool:
        done = conn.execute(delete(_R).where(_R.c.user_id == user_id, _R.c.position == position))
        return bool(done.rowcount)

    # -- WebAuthn credentials -------------------------------------------------------------
    def insert_credential(self, conn: Connection, row: CredentialRow) -> None:
        conn.execute(
            insert(_W).values(
                cred_digest=row.cred_digest,
                credential_id=row.credential_id,
                user_id=row.user_id,
                name=row.name,
                public_key=row.public_key,
                sign_count=row.sign_count,
                transports=row.transports,
                aaguid=row.aaguid,
                user_verified=row.user_verified,
                backup_eligible=row.backup_eligible,
                created_us=row.created_us,
                last_used_us=row.last_used_us,
            )
        )

    def credential(self, conn: Connection, cred_digest: bytes) -> CredentialRow | None:
        r = conn.execute(select(_W).where(_W.c.cred_digest == cred_digest)).first()
        return _credential(r) if r is not None else None

    def credentials(self, conn: Connection, user_id: str) -> list[CredentialRow]:
        rows = conn.execute(
            select(_W).where(_W.c.user_id == user_id).order_by(_W.c.created_us, _W.c.name)
        )
        return [_credential(r) for r in rows]

    def rename_credential(
        self, conn: Connection, user_id: str, cred_digest: bytes, name: str
    ) -> bool:
        done = conn.execute(
            update(_W)
            .where(_W.c.cred_digest == cred_digest, _W.c.user_id == user_id)
            .values(name=name)
        )
        return bool(done.rowcount)

    def delete_credential(self, conn: Connection, user_id: str, cred_digest: bytes) -> bool:
        done = conn.execute(
            delete(_W).where(_W.c.cred_digest == cred_digest, _W.c.user_id == user_id)
        )
        return bool(done.rowcount)

    def delete_credentials(self, conn: Connection, user_id: str) -> int:
        return int(conn.execute(delete(_W).where(_W.c.user_id == user_id)).rowcount)

    def advance_sign_count(
        self, conn: Connection, cred_digest: bytes, *, seen: int, new: int, now_us: int
    ) -> bool:
        """Move the counter from ``seen`` to ``new`` only if no other sign-in moved it first."""
        done = conn.execute(
            update(_W)
            .where(_W.c.cred_digest == cred_digest, _W.c.sign_count == seen)
            .values(sign_count=new, last_used_us=now_us)
        )
        return bool(done.rowcount)

    # -- set-up links ---------------------------------------------------------------------
    def insert_enrolment(self, conn: Connection, row: EnrolmentRow) -> None:
        conn.execute(
            insert(_E).values(
                token_id=row.token_id,
                user_id=row.user_id,
                digest=row.digest,
                created_us=row.created_us,
                expires_us=row.expires_us,
                used_us=row.used_us,
            )
        )

    def enrolment(self, conn: Connection, token_id: str) -> EnrolmentRow | None:
        r = conn.execute(select(_E).where(_E.c.token_id == token_id)).first()
        if r is None:
            return None
        return EnrolmentRow(
            r.token_id, r.user_id, bytes(r.digest), r.created_us, r.expires_us, r.used_us
        )

    def use_enrolment(self, conn: Connection, token_id: str, now_us: int) -> bool:
        done = conn.execute(
            update(_E)
            .where(_E.c.token_id == token_id, _E.c.used_us.is_(None), _E.c.expires_us > now_us)
            .values(used_us=now_us)
        )
        return bool(done.rowcount)

    def cancel_enrolments(self, conn: Connection, user_id: str, now_us: int) -> int:
        done = conn.execute(
            update(_E).where(_E.c.user_id == user_id, _E.c.used_us.is_(None)).values(used_us=now_us)
        )
        return int(done.rowcount)

    # -- sessions -------------------------------------------------------------------------
    def insert_session(self, conn: Connection, row: SessionRow) -> None:
        conn.execute(
            insert(_S).values(
                id_digest=row.id_digest,
                user_id=row.user_id,
                state=row.state,
                created_us=row.created_us,
                last_seen_us=row.last_seen_us,
                expires_us=row.expires_us,
                auth_us=row.auth_us,
                step_up_us=row.step_up_us,
                amr=row.amr,
                csrf=row.csrf,
                pin_failures=row.pin_failures,
                data=row.data,
                source=row.source,
            )
        )

    def session(self, conn: Connection, id_digest: bytes) -> SessionRow | None:
        r = conn.execute(select(_S).where(_S.c.id_digest == id_digest)).first()
        return session_row(r) if r is not None else None

    def update_session(self, conn: Connection, row: SessionRow) -> bool:
        done = conn.execute(
            update(_S)
            .where(_S.c.id_digest == row.id_digest)
            .values(
                user_id=row.user_id,
                state=row.state,
                last_seen_us=row.last_seen_us,
                expires_us=row.expires_us,
                auth_us=row.auth_us,
                step_up_us=row.step_up_us,
                amr=row.amr,
                csrf=row.csrf,
                pin_failures=row.pin_failures,
                data=row.data,
            )
        )
        return bool(done.rowcount)

    def touch_session(self, conn: Connection, id_digest: bytes, now_us: int) -> None:
        conn.execute(update(_S).where(_S.c.id_digest == id_digest).values(last_seen_us=now_us))

    def add_pin_failure(self, conn: Connection, id_digest: bytes) -> int | None:
        """Count one more PIN attempt; the new count, or None if the session is gone."""
        done = conn.execute(
            update(_S).where(_S.c.id_digest == id_digest).values(pin_failures=_S.c.pin_failures + 1)
        )
        if not done.rowcount:
            return None
        value = conn.execute(
            select(_S.c.pin_failures).where(_S.c.id_digest == id_digest)
        ).scalar_one()
        return int(value)

    def delete_session(self, conn: Connection, id_digest: bytes) -> bool:
        return bool(conn.execute(delete(_S).where(_S.c.id_digest == id_digest)).rowcount)

    def user_sessions(self, conn: Connection, user_id: str) -> list[SessionRow]:
        rows = conn.execute(select(_S).where(_S.c.user_id == user_id))
        return [session_row(r) for r in rows]

    def delete_user_sessions(self, conn: Connection, user_id: str) -> int:
        return int(conn.execute(delete(_S).where(_S.c.user_id == user_id)).rowcount)

    def purge_sessions(self, conn: Connection, now_us: int) -> int:
        return int(conn.execute(delete(_S).where(_S.c.expires_us <= now_us)).rowcount)

    def count_sessions(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(_S)).scalar_one())
