"""User accounts and their credentials, each change audited in its own transaction (issue 4).

``AccountStore`` is the narrow interface the user, sign-in and account services reach storage
through. Every method that changes something takes the audit record that describes the change
and appends it in the same transaction (the repository's rule, applied to accounts): an MFA
change, a lock or a disabled user never commits without its entry. Records never carry secrets.

TOTP seeds are the one secret the server must read back (it computes the codes), so they are
sealed under the active data key with associated data bound to the user id (NIST-OTP-03);
everything else is stored as an argon2id hash made by ``hearth.auth`` before it gets here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from hearth.audit import AuditRecord
from hearth.crypto import KeyRing
from hearth.domain import HearthError, Random, errors
from hearth.storage.audit import AuditTrail
from hearth.storage.sql.accounts import CredentialRow, EnrolmentRow, SqlAccounts, UserRow
from hearth.storage.sql.store import SqlStore

__all__ = [
    "AccountStore",
    "CredentialRow",
    "EnrolmentRow",
    "UserRow",
    "credential_digest",
    "totp_aad",
]


def credential_digest(credential_id: bytes) -> bytes:
    return hashlib.sha256(b"hearth/webauthn-credential/v1\x00" + credential_id).digest()


def totp_aad(user_id: str) -> bytes:
    """Associated data of a sealed TOTP secret (sealed under a ``secrets`` key)."""
    return b"hearth/totp-secret/v1\x00" + user_id.encode("ascii")


class AccountStore:
    def __init__(
        self, store: SqlStore, audit: AuditTrail, keyring: KeyRing, random: Random
    ) -> None:
        self._store = store
        self._sql = SqlAccounts()
        self._audit = audit
        self._keys = keyring
        self._random = random

    # -- reading --------------------------------------------------------------------------
    def user(self, user_id: str) -> UserRow | None:
        with self._store.read() as conn:
            return self._sql.user(conn, user_id)

    def user_by_name(self, username: str) -> UserRow | None:
        with self._store.read() as conn:
            return self._sql.user_by_name(conn, username)

    def user_by_handle(self, handle: bytes) -> UserRow | None:
        with self._store.read() as conn:
            return self._sql.user_by_handle(conn, handle)

    def users(self) -> list[UserRow]:
        with self._store.read() as conn:
            return self._sql.users(conn)

    def totp_secret(self, user: UserRow) -> str | None:
        if user.totp_secret is None:
            return None
        return self._keys.open_secret(user.totp_secret, aad=totp_aad(user.user_id)).decode("ascii")

    def recovery_codes(self, user_id: str) -> list[tuple[int, str]]:
        with self._store.read() as conn:
            return self._sql.recovery_codes(conn, user_id)

    def credentials(self, user_id: str) -> list[CredentialRow]:
        with self._store.read() as conn:
            return self._sql.credentials(conn, user_id)

    def credential(self, credential_id: bytes) -> CredentialRow | None:
        with self._store.read() as conn:
            return self._sql.credential(conn, credential_digest(credential_id))

    def enrolment(self, token_id: str) -> EnrolmentRow | None:
        with self._store.read() as conn:
            return self._sql.enrolment(conn, token_id)

    # -- users ----------------------------------------------------------------------------
    def create_user(self, row: UserRow, records: Sequence[AuditRecord]) -> None:
        with self._store.write() as conn:
            if self._sql.user_by_name(conn, row.username) is not None:
                raise HearthError(errors.USER_EXISTS)
            self._sql.insert_user(conn, row)
            self._audit.append_in(conn, records)

    def update_user(
        self, user_id: str, now_us: int, records: Sequence[AuditRecord], **values: object
    ) -> None:
        """Change columns of one user (status, roles, locked_us, password_hash, pin_hash)."""
        with self._store.write() as conn:
            if not self._sql.update_user(conn, user_id, now_us, **values):
                raise HearthError(errors.USER_NOT_FOUND)
            self._audit.append_in(conn, records)

    def reset_credentials(self, user_id: str, now_us: int, records: Sequence[AuditRecord]) -> None:
        """Remove every credential of a user: password, TOTP, recovery codes, keys, PIN, and
        every set-up link not yet used."""
        with self._store.write() as conn:
            done = self._sql.update_user(
                conn,
                user_id,
                now_us,
                password_hash=None,
                totp_secret=None,
                totp_last_step=None,
                pin_hash=None,
                locked_us=None,
            )
            if not done:
                raise HearthError(errors.USER_NOT_FOUND)
            self._sql.replace_recovery_codes(conn, user_id, [])
            self._sql.delete_credentials(conn, user_id)
            self._sql.cancel_enrolments(conn, user_id, now_us)
            self._audit.append_in(conn, records)

    # -- TOTP and recovery codes ------------------------------------------------------------
    def set_totp(
        self,
        user_id: str,
        secret: str | None,
        *,
        used_step: int | None,
        now_us: int,
        recovery_hashes: list[str] | None,
        records: Sequence[AuditRecord],
        password_hash: str | None = None,
    ) -> None:
        """Enrol (or remove, with ``secret`` None) a TOTP seed, with its first used step, and
        optionally replace the recovery codes and the password in the same transaction."""
        sealed = (
            self._keys.seal_secret(
                secret.encode("ascii"), aad=totp_aad(user_id), random=self._random
            )
            if secret is not None
            else None
        )
        values: dict[str, object] = {"totp_secret": sealed, "totp_last_step": used_step}
        if password_hash is not None:
            values["password_hash"] = password_hash
        with self._store.write() as conn:
            if not self._sql.update_user(conn, user_id, now_us, **values):
                raise HearthError(errors.USER_NOT_FOUND)
            if recovery_hashes is not None:
                self._sql.replace_recovery_codes(conn, user_id, recovery_hashes)
            self._audit.append_in(conn, records)

    def accept_totp_step(self, user_id: str, step: int) -> bool:
        """Mark a TOTP step used; False when it (or a later one) was used already: a replay."""
        with self._store.write() as conn:
            return self._sql.accept_totp_step(conn, user_id, step)

    def replace_recovery_codes(
        self, user_id: str, hashes: list[str], records: Sequence[AuditRecord]
    ) -> None:
        with self._store.write() as conn:
            self._sql.replace_recovery_codes(conn, user_id, hashes)
            self._audit.append_in(conn, records)

    def use_recovery_code(self, user_id: str, position: int) -> bool:
        with self._store.write() as conn:
            return self._sql.use_recovery_code(conn, user_id, position)

    # -- WebAuthn credentials ---------------------------------------------------------------
    def add_credential(
        self, row: CredentialRow, records: Sequence[AuditRecord], *, enrolment: str | None = None
    ) -> None:
        """Store a new credential; with ``enrolment``, use up that set-up link in the same
        transaction (or fail if another request used it first)."""
        with self._store.write() as conn:
            if self._sql.credential(conn, row.cred_digest) is not None:
                raise HearthError(errors.WEBAUTHN_FAILED, "This key is already registered.")
            if enrolment is not None and not self._sql.use_enrolment(
                conn, enrolment, row.created_us
            ):
                raise HearthError(errors.ENROLMENT_INVALID)
            self._sql.insert_credential(conn, row)
            self._audit.append_in(conn, records)

    def rename_credential(
        self, user_id: str, credential_id: bytes, name: str, records: Sequence[AuditRecord]
    ) -> None:
        with self._store.write() as conn:
            if not self._sql.rename_credential(
                conn, user_id, credential_digest(credential_id), name
            ):
                raise HearthError(errors.CREDENTIAL_NOT_FOUND)
            self._audit.append_in(conn, records)

    def remove_credential(
        self, user_id: str, credential_id: bytes, records: Sequence[AuditRecord]
    ) -> None:
        with self._store.write() as conn:
            if not self._sql.delete_credential(conn, user_id, credential_digest(credential_id)):
                raise HearthError(errors.CREDENTIAL_NOT_FOUND)
            self._audit.append_in(conn, records)

    def advance_sign_count(self, row: CredentialRow, new: int, now_us: int) -> bool:
        with self._store.write() as conn:
            return self._sql.advance_sign_count(
                conn, row.cred_digest, seen=row.sign_count, new=new, now_us=now_us
            )

    # -- set-up links -----------------------------------------------------------------------
    def create_enrolment(self, row: EnrolmentRow, records: Sequence[AuditRecord]) -> None:
        with self._store.write() as conn:
            self._sql.cancel_enrolments(conn, row.user_id, row.created_us)
            self._sql.insert_enrolment(conn, row)
            self._audit.append_in(conn, records)

    def complete_enrolment(
        self,
        token_id: str,
        user_id: str,
        now_us: int,
        records: Sequence[AuditRecord],
        *,
        recovery_hashes: list[str] | None = None,
        **values: object,
    ) -> None:
        """Use up a set-up link and set the user's new credentials in one transaction
        (``totp_secret`` sealed with :meth:`seal_totp`)."""
        with self._store.write() as conn:
            if not self._sql.use_enrolment(conn, token_id, now_us):
                raise HearthError(errors.ENROLMENT_INVALID)
            if not self._sql.update_user(conn, user_id, now_us, **values):
                raise HearthError(errors.USER_NOT_FOUND)
            if recovery_hashes is not None:
                self._sql.replace_recovery_codes(conn, user_id, recovery_hashes)
            self._audit.append_in(conn, records)

    def seal_totp(self, user_id: str, secret: str) -> bytes:
        return self._keys.seal_secret(
            secret.encode("ascii"), aad=totp_aad(user_id), random=self._random
        )

    def record(self, record: AuditRecord) -> None:
        """Audit an event that changes nothing stored here (a failed sign-in), durably."""
        self._audit.record(record)
