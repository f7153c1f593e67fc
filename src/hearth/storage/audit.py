"""Writing the audit chain: in the writer's own transaction, or group-committed for reads.

A change and its audit entry commit together (``append_in``). Reads disclose PHI without
changing anything, so their entries are group-committed (``record``): concurrent requests hand
their entries to one writer thread that appends them all in one transaction, the way PostgreSQL
batches WAL flushes, and each request waits until its entry is durable before it may answer.
If the audit write fails, every waiting request fails closed with ``AUDIT_FAILED``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from hearth.audit import AuditRecord, checkpoint_message, sealed_aad, sequence
from hearth.crypto import KeyRing, sealed_key_id
from hearth.domain import HearthError, Random, errors
from hearth.storage.sql.store import AUDIT_SEQ, AuditHeadRow, AuditRow, CheckpointRow, SqlStore

__all__ = ["AuditTrail"]

log = logging.getLogger("hearth.audit")

_STOP = object()


@dataclass(slots=True)
class _Pending:
    record: AuditRecord
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class AuditTrail:
    """Appends entries to the hash chain, signing the head at every commit."""

    def __init__(
        self,
        store: SqlStore,
        keyring: KeyRing,
        random: Random,
        *,
        checkpoint_every: int = 1000,
        max_batch: int = 512,
        wait_seconds: float = 30.0,
    ) -> None:
        self._store = store
        self._keys = keyring
        self._random = random
        self._checkpoint_every = checkpoint_every
        self._max_batch = max_batch
        self._wait = wait_seconds
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- in the caller's transaction --------------------------------------------------------
    def append_in(self, conn: Connection, records: Sequence[AuditRecord]) -> None:
        """Append ``records`` inside ``conn``'s transaction; they commit or roll back with it.

        Any database failure becomes ``AUDIT_FAILED``, which aborts the caller's transaction:
        a change whose audit entry cannot be written is not made (fail closed).
        """
        if not records:
            return
        try:
            self._append(conn, records)
        except DBAPIError as exc:
            log.error("audit append failed: %s", type(exc).__name__)
            raise HearthError(errors.AUDIT_FAILED) from exc

    def _append(self, conn: Connection, records: Sequence[AuditRecord]) -> None:
        head = self._store.audit_head(conn, for_update=True)
        if head is None:
            raise HearthError(errors.AUDIT_FAILED, "The audit chain is not initialised.")
        first = self._store.next_seq(conn, AUDIT_SEQ, len(records))
        if first != head.seq + 1:
            raise HearthError(errors.AUDIT_FAILED, "The audit sequence and head disagree.")
        prev = head.hash
        rows: list[AuditRow] = []
        checkpoints: list[CheckpointRow] = []
        for offset, record in enumerate(records):
            seq = first + offset
            sealed = (
                self._keys.seal(record.detail, aad=sealed_aad(seq), random=self._random)
                if record.detail is not None
                else None
            )
            entry = sequence(record, seq=seq, prev_hash=prev, sealed=sealed)
            rows.append(
                AuditRow(
                    seq=seq,
                    ts_us=entry.ts_us,
                    actor=record.actor,
                    action=record.action,
                    outcome=record.outcome.value,
                    res_type=record.res_type,
                    res_id=record.res_id,
                    patient=record.patient,
                    detail_key_id=sealed_key_id(sealed) if sealed is not None else None,
                    body=entry.body,
                    prev_hash=entry.prev_hash,
                    hash=entry.hash,
                )
            )
            if seq % self._checkpoint_every == 0:
                key_id, signature = self._keys.sign(checkpoint_message(seq, entry.hash))
                checkpoints.append(CheckpointRow(seq, entry.ts_us, entry.hash, key_id, signature))
            prev = entry.hash
        self._store.insert_audit(conn, rows)
        for checkpoint in checkpoints:
            self._store.insert_checkpoint(conn, checkpoint)
        last = rows[-1]
        key_id, signature = self._keys.sign(checkpoint_message(last.seq, last.hash))
        self._store.set_audit_head(conn, AuditHeadRow(last.seq, last.hash, key_id, signature))

    # -- group commit for reads ---------------------------------------------------------------
    def record(self, record: AuditRecord) -> None:
        """Append one entry and return once it is durable; raise ``AUDIT_FAILED`` otherwise."""
        self._ensure_thread()
        pending = _Pending(record)
        self._queue.put(pending)
        if not pending.done.wait(self._wait):
            raise HearthError(errors.AUDIT_FAILED)
        if pending.error is not None:
            raise HearthError(errors.AUDIT_FAILED) from pending.error

    def record_now(self, conn: Connection | None, record: AuditRecord) -> None:
        """Append inside ``conn`` when there is one, otherwise group-commit."""
        if conn is not None:
            self.append_in(conn, [record])
        else:
            self.record(record)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="hearth-audit-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch: list[_Pending] = [item]  # type: ignore[list-item]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)  # type: ignore[arg-type]
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._store.write() as conn:
                self.append_in(conn, [p.record for p in batch])
        except Exception as exc:  # noqa: BLE001 - every waiter must be released, failing closed
            # The exception text may quote SQL parameters; log only its type.
            log.error("audit group commit failed: %s", type(exc).__name__)
            for pending in batch:
                pending.error = exc
                pending.done.set()
            return
        for pending in batch:
            pending.done.set()

    def close(self) -> None:
        """Drain the queue and stop the writer thread."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout=self._wait)
