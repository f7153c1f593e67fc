"""Keeping a process's key ring in step with the database (docs/design.md, "Keys").

Every change of the key set (``hearth keys rotate``, ``retire``, ``rewrap``, the creation of a
purpose's first key) runs under the version counter's row lock and increments the key epoch
(``instance_meta.key_epoch``). A writer takes the same lock before it seals, then calls
``LiveKeys.ensure_current`` in its own transaction: if the epoch moved, it reloads the ring
before sealing anything. So a write can never seal under a key that a concurrent retirement
destroys: either the retirement committed first, and the writer sees its epoch and reloads, or
the write committed first, and the retirement counts its row and refuses.

Reads reload when they meet a key id the ring does not hold, and every process also looks at
the epoch at most every 30 seconds.

A reload that fails (the KEK no longer opens a new key, because ``hearth keys rewrap`` moved the
instance to a new key file) first re-reads the KEK from the configuration; if that fails too,
the process keeps the keys it has, drops those retired since (so it never seals under them),
logs, and raises the ``keys.reload_failed`` alarm, instead of failing every request.

The ring counts the messages each AES-GCM key seals. The counts are added to the database
(``counter`` rows ``seals:<key id>``) when the epoch moves, when 65,536 are pending, and when
the process closes; past ``nonce_warn_at`` and ``nonce_alarm_at`` the ``keys.nonce_budget``
alarm asks for a rotation, well before the 2**32 messages per key that random 96-bit GCM nonces
allow (NIST SP 800-38D 8.3).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy import Connection

from hearth.crypto import (
    SEALING_PURPOSES,
    KeyEncryptionKey,
    KeyPurpose,
    KeyRing,
    KeyState,
    WrappedKey,
)
from hearth.domain import Alarm, AlarmKind, AlarmRaiser, HearthError, Severity, errors
from hearth.storage.sql.store import KeyRow, SqlStore

__all__ = [
    "NONCE_ALARM_AT",
    "NONCE_LIMIT",
    "NONCE_WARN_AT",
    "LiveKeys",
    "wrapped_keys",
]

log = logging.getLogger("hearth.keys")

#: Messages one AES-GCM key may seal with random 96-bit nonces (NIST SP 800-38D 8.3).
NONCE_LIMIT = 2**32
#: A warning alarm asks for a rotation at a quarter of the limit, a critical one at half.
NONCE_WARN_AT = 2**30
NONCE_ALARM_AT = 2**31
#: Pending seal counts are written to the database once this many have accumulated.
_FLUSH_STEP = 65_536


def wrapped_keys(rows: Iterable[KeyRow]) -> list[WrappedKey]:
    return [
        WrappedKey(r.key_id, KeyPurpose(r.purpose), KeyState(r.state), r.wrapped, r.kek_id)
        for r in rows
    ]


class LiveKeys:
    """The process's ``KeyRing`` (``ring``), reloaded when the key epoch moves."""

    def __init__(
        self,
        store: SqlStore,
        kek: KeyEncryptionKey,
        *,
        reload_kek: Callable[[], KeyEncryptionKey],
        alarms: AlarmRaiser,
        refresh_seconds: float = 30.0,
        nonce_warn_at: int = NONCE_WARN_AT,
        nonce_alarm_at: int = NONCE_ALARM_AT,
        monotonic: Callable[[], float] = time.monotonic,
        blind_memo: int = 0,
    ) -> None:
        """``blind_memo``: see ``KeyRing``; only for a process that one bulk job owns."""
        self._store = store
        self._kek = kek
        self._reload_kek = reload_kek
        self._alarms = alarms
        self._refresh_seconds = refresh_seconds
        self._warn_at = nonce_warn_at
        self._alarm_at = nonce_alarm_at
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failed_epoch: int | None = None
        self._pending: dict[int, int] = {}
        self._alarmed: dict[int, Severity] = {}
        with store.snapshot() as conn:
            epoch = store.key_epoch(conn)
            rows = store.keys(conn)
        self.ring = KeyRing(wrapped_keys(rows), kek, epoch=epoch, blind_memo=blind_memo)
        self.ring.on_unknown_key = self._on_unknown_key
        self._checked = monotonic()

    @property
    def kek(self) -> KeyEncryptionKey:
        """The KEK in use; it changes when a reload picks up a rotated key file."""
        return self._kek

    def kek_for(self, rows: Iterable[KeyRow]) -> KeyEncryptionKey:
        """The KEK that wraps ``rows`` (read under the key lock), to wrap a new key with.

        After ``hearth keys rewrap`` a process that started earlier holds the old KEK; a key
        it wrapped with that would be lost once the old key file is destroyed. So it reads the
        KEK now configured, and refuses if that does not match either.
        """
        wanted = {r.kek_id for r in rows if r.wrapped is not None}
        if wanted <= {self._kek.kek_id}:
            return self._kek
        try:
            kek = self._reload_kek()
        except (HearthError, OSError, ValueError):
            kek = None
        if kek is None or not wanted <= {kek.kek_id}:
            raise HearthError(
                errors.KEY_UNAVAILABLE,
                "The instance's keys are wrapped under another key-encryption key than the one "
                "configured: check keys.file (or the passphrase) in hearth.toml.",
            )
        self._kek = kek
        return kek

    # -- the write path ---------------------------------------------------------------------
    def ensure_current(self, conn: Connection) -> None:
        """Reload the ring if the key epoch moved. Call inside a write transaction, after taking
        the version counter's row lock (``SqlStore.next_seq``) and before sealing."""
        epoch = self._store.key_epoch(conn)
        if epoch in (self.ring.epoch, self._failed_epoch):
            return
        with self._lock:
            if epoch not in (self.ring.epoch, self._failed_epoch):
                self._reload(self._store.keys(conn), epoch)

    # -- the read path ----------------------------------------------------------------------
    def refresh_due(self) -> bool:
        """Whether the next ``refresh`` will look at the database (and may reload the ring or
        write the pending seal counts): a caller that must not wait can send that work to a
        thread that may."""
        return self._monotonic() - self._checked >= self._refresh_seconds

    def refresh(self, *, force: bool = False) -> None:
        """Pick up keys changed by another process: at most every 30 seconds, or now."""
        if not force and not self.refresh_due():
            return
        self._checked = self._monotonic()
        with self._store.snapshot() as conn:
            epoch = self._store.key_epoch(conn)
            # Only forward: a writer may have loaded a newer epoch than this snapshot shows.
            # A periodic refresh retries a failed reload (the operator may have fixed it).
            moved = epoch > self.ring.epoch and not (force and epoch == self._failed_epoch)
            if moved:
                with self._lock:
                    if epoch > self.ring.epoch:
                        self._reload(self._store.keys(conn), epoch)
        if not force:
            self._take_counts()
            if moved or sum(self._pending.values()) >= _FLUSH_STEP:
                self.flush_seal_counts()

    def _on_unknown_key(self) -> None:
        """A blob or row names a key this ring lacks: reload once if the epoch moved."""
        with self._store.snapshot() as conn:
            epoch = self._store.key_epoch(conn)
            if epoch > self.ring.epoch and epoch != self._failed_epoch:
                with self._lock:
                    self._reload(self._store.keys(conn), epoch)

    def _reload(self, rows: list[KeyRow], epoch: int) -> None:
        keys = wrapped_keys(rows)
        self._take_counts()
        try:
            self.ring.reload(keys, self._kek, epoch=epoch)
        except HearthError as first:
            if first.code is not errors.KEY_UNAVAILABLE:
                raise
            if not self._try_configured_kek(keys, epoch):
                self._keep_old_ring(keys, epoch, first)
                return
        self._failed_epoch = None

    def _try_configured_kek(self, keys: list[WrappedKey], epoch: int) -> bool:
        """After ``hearth keys rewrap`` the configuration names the new key file: try it."""
        try:
            kek = self._reload_kek()
            if kek.kek_id == self._kek.kek_id:
                return False
            self.ring.reload(keys, kek, epoch=epoch)
        except (HearthError, OSError, ValueError):
            return False
        self._kek = kek
        log.warning("key ring reloaded under the key-encryption key now configured")
        return True

    def _keep_old_ring(self, keys: list[WrappedKey], epoch: int, error: HearthError) -> None:
        retired = [k.key_id for k in keys if k.state is KeyState.RETIRED or k.wrapped is None]
        self.ring.forget(retired)
        first_failure = self._failed_epoch != epoch
        self._failed_epoch = epoch
        if first_failure:
            log.error("key ring reload failed (%s); keeping the keys already loaded", error.code)
            self._alarms.raise_alarm(
                Alarm(
                    AlarmKind.KEY_RELOAD_FAILED,
                    Severity.CRITICAL,
                    "keys",
                    "The server could not load keys changed by another process and keeps "
                    "the keys it had. Check keys.file in hearth.toml (or the passphrase or "
                    "KMS) and restart the server.",
                    {"epoch": str(epoch), "code": error.code.code},
                )
            )

    # -- the nonce budget -------------------------------------------------------------------
    def _take_counts(self) -> None:
        for key_id, n in self.ring.take_seal_counts().items():
            self._pending[key_id] = self._pending.get(key_id, 0) + n

    def flush_seal_counts(self) -> None:
        """Add the pending seal counts to the database and check them against the budget."""
        self._take_counts()
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with self._store.write() as conn:
                self._store.add_seal_counts(conn, pending)
                totals = self._store.seal_counts(conn)
        except HearthError as exc:
            log.warning("seal counts not written (%s); kept for the next attempt", exc.code)
            for key_id, n in pending.items():
                self._pending[key_id] = self._pending.get(key_id, 0) + n
            return
        self._check_budget(totals)

    def check_budget(self) -> None:
        """Alarm on the seal counts stored so far (at start-up, once alarms can be raised)."""
        with self._store.read() as conn:
            totals = self._store.seal_counts(conn)
        self._check_budget(totals)

    def _check_budget(self, totals: dict[int, int]) -> None:
        # Only active keys still spend nonces; one rotated out has stopped.
        active = {self.ring.active_id(p) for p in SEALING_PURPOSES if self.ring.has_active(p)}
        for key_id in active & set(totals):
            total = totals[key_id]
            severity = (
                Severity.CRITICAL
                if total >= self._alarm_at
                else Severity.WARNING
                if total >= self._warn_at
                else None
            )
            if severity is None or self._alarmed.get(key_id) is severity:
                continue
            self._alarmed[key_id] = severity
            self._alarms.raise_alarm(
                Alarm(
                    AlarmKind.KEY_NONCE_BUDGET,
                    severity,
                    f"key:{key_id}",
                    "A sealing key has sealed a large share of the messages its random nonces "
                    "allow (NIST SP 800-38D 8.3): rotate it (`hearth keys rotate --purpose "
                    f"{self.ring.purpose_of(key_id)}`).",
                    {"seals": str(total), "limit": str(NONCE_LIMIT)},
                )
            )
