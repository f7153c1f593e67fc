"""Where console sessions live: the database by default, Redis when several processes share them.

Both stores implement ``SessionStore`` and pass the same contract tests. A session is keyed by
the SHA-256 digest of its id (``hearth.auth.sessions.session_digest``); its ``data`` (the state
of a sign-in in progress: a WebAuthn challenge, the TOTP seed being enrolled) is sealed under
the active ``secrets`` key with associated data bound to that digest, so neither a database
dump nor a Redis snapshot shows it, and a sealed blob cannot be moved to another session.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from hearth.crypto import KeyRing
from hearth.domain import IntegrityError, Random
from hearth.storage.sql.accounts import SessionRow, SqlAccounts
from hearth.storage.sql.store import SqlStore

__all__ = ["SessionRow", "SessionSealer", "SessionStore", "SqlSessionStore"]


class SessionStore(Protocol):
    """Session records by digest. ``data`` is plaintext at this interface, sealed at rest."""

    def create(self, row: SessionRow) -> None: ...

    def get(self, digest: bytes) -> SessionRow | None: ...

    def save(self, row: SessionRow) -> bool:
        """Replace the stored record with ``row``; False if the session no longer exists."""
        ...

    def rotate(self, old: bytes, row: SessionRow) -> None:
        """Store ``row`` under its new digest and remove ``old``, at once."""
        ...

    def touch(self, digest: bytes, now_us: int) -> None: ...

    def add_pin_failure(self, digest: bytes) -> int | None:
        """Atomically count one more PIN attempt; the new count, None if the session is gone."""
        ...

    def delete(self, digest: bytes) -> bool: ...

    def delete_user(self, user_id: str) -> int:
        """End every session of one user at once (a disabled user, reset credentials)."""
        ...

    def user_sessions(self, user_id: str) -> list[SessionRow]: ...

    def purge(self, now_us: int) -> int:
        """Drop sessions past their absolute end (Redis expires them by itself)."""
        ...


class SessionSealer:
    """Seals and opens a session's ``data`` (module docstring)."""

    def __init__(self, keyring: KeyRing, random: Random) -> None:
        self._keys = keyring
        self._random = random

    @staticmethod
    def _aad(digest: bytes) -> bytes:
        return b"hearth/session-data/v1\x00" + digest

    def seal(self, row: SessionRow) -> SessionRow:
        if row.data is None:
            return row
        sealed = self._keys.seal_secret(row.data, aad=self._aad(row.id_digest), random=self._random)
        return replace(row, data=sealed)

    def open(self, row: SessionRow) -> SessionRow | None:
        """The row with its data opened; None when the data does not open (treat as no
        session: fail closed)."""
        if row.data is None:
            return row
        try:
            return replace(row, data=self._keys.open_secret(row.data, aad=self._aad(row.id_digest)))
        except IntegrityError:
            return None


class SqlSessionStore:
    """Sessions in the ``web_session`` table."""

    def __init__(self, store: SqlStore, sealer: SessionSealer) -> None:
        self._store = store
        self._sql = SqlAccounts()
        self._sealer = sealer

    def create(self, row: SessionRow) -> None:
        with self._store.write() as conn:
            self._sql.insert_session(conn, self._sealer.seal(row))

    def get(self, digest: bytes) -> SessionRow | None:
        with self._store.read() as conn:
            row = self._sql.session(conn, digest)
        return self._sealer.open(row) if row is not None else None

    def save(self, row: SessionRow) -> bool:
        with self._store.write() as conn:
            return self._sql.update_session(conn, self._sealer.seal(row))

    def rotate(self, old: bytes, row: SessionRow) -> None:
        with self._store.write() as conn:
            self._sql.delete_session(conn, old)
            self._sql.insert_session(conn, self._sealer.seal(row))

    def touch(self, digest: bytes, now_us: int) -> None:
        with self._store.write() as conn:
            self._sql.touch_session(conn, digest, now_us)

    def add_pin_failure(self, digest: bytes) -> int | None:
        with self._store.write() as conn:
            return self._sql.add_pin_failure(conn, digest)

    def delete(self, digest: bytes) -> bool:
        with self._store.write() as conn:
            return self._sql.delete_session(conn, digest)

    def delete_user(self, user_id: str) -> int:
        with self._store.write() as conn:
            return self._sql.delete_user_sessions(conn, user_id)

    def user_sessions(self, user_id: str) -> list[SessionRow]:
        with self._store.read() as conn:
            rows = self._sql.user_sessions(conn, user_id)
        return [opened for r in rows if (opened := self._sealer.open(r)) is not None]

    def purge(self, now_us: int) -> int:
        with self._store.write() as conn:
            return self._sql.purge_sessions(conn, now_us)
