"""Writing the audit chain: in the writer's own transaction, or group-committed for reads.

A change and its audit entry commit together (``append_in``). Reads disclose PHI without
changing anything, so their entries are group-committed (``record``): concurrent requests hand
their entries to one writer thread that appends them all in one transaction, the way PostgreSQL
batches WAL flushes, and each request waits until its entry is durable before it may answer.
If the audit write fails, every waiting request fails closed with ``AUDIT_FAILED``.

Waiting: by default ``record`` blocks the calling thread. Inside ``deferred_durability()`` it
returns at once and hands back the entry's ticket instead; whoever opened that block must then
wait for every ticket (``wait_tickets``, ``wait_tickets_async``, or ``resolve_when_durable``
and then a check of each ticket) before anything the call returned leaves the process. The web
adapter does this in one place (``hearth.services.disclosure.DisclosurePool``), so a worker
thread never sits blocked on the commit and the event loop is woken once per batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from hearth.audit import (
    AuditRecord,
    SignedHead,
    checkpoint_message,
    head_message,
    sealed_aad,
    sequence,
)
from hearth.crypto import KeyRing, sealed_key_id
from hearth.domain import HearthError, Random, errors
from hearth.storage.sql.store import VERSION_SEQ, AuditHeadRow, AuditRow, CheckpointRow, SqlStore

__all__ = [
    "AuditTicket",
    "AuditTrail",
    "deferred_durability",
    "resolve_when_durable",
    "wait_tickets",
    "wait_tickets_async",
]

log = logging.getLogger("hearth.audit")

_STOP = object()


#: A future waiting for a ticket, the loop it belongs to, and the value to resolve it with.
_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], object]


class AuditTicket:
    """One entry waiting for its group commit.

    ``_done`` is a lock held until the commit ends (releasing a plain lock is far cheaper than
    ``Event.set``); asynchronous waiters register a future and the value to resolve it with,
    resolved on their own event loop.
    """

    __slots__ = ("_done", "_finished", "_futures", "_guard", "error", "record")

    def __init__(self, record: AuditRecord) -> None:
        self.record = record
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()
        self._guard = threading.Lock()
        self._finished = False
        self._futures: list[_Waiter] = []

    def _finish(self, error: BaseException | None) -> list[_Waiter]:
        with self._guard:
            self.error = error
            self._finished = True
            futures, self._futures = self._futures, []
        self._done.release()
        return futures

    @property
    def ended(self) -> bool:
        """Whether this entry's commit has ended (successfully or not: see ``error``)."""
        return self._finished

    def wait(self, timeout: float) -> None:
        if not self._done.acquire(timeout=timeout):
            raise HearthError(errors.AUDIT_FAILED)
        self._done.release()
        if self.error is not None:
            raise HearthError(errors.AUDIT_FAILED) from self.error

    def _future(self) -> asyncio.Future[None] | None:
        if self._finished:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        return future if self._notify(loop, future, None) else None

    def _notify(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: object
    ) -> bool:
        """Have the writer resolve ``future`` with ``value`` on ``loop`` when this entry's commit
        ends; False (and nothing registered) if it already has."""
        with self._guard:
            if self._finished:
                return False
            self._futures.append((loop, future, value))
            return True


_DEFERRED: ContextVar[list[AuditTicket] | None] = ContextVar("hearth_audit_deferred", default=None)


@contextmanager
def deferred_durability() -> Iterator[list[AuditTicket]]:
    """Collect the tickets of group-committed entries instead of blocking on each.

    The caller MUST wait for every collected ticket before disclosing anything computed inside
    the block, and must treat a failed ticket as a failed request.
    """
    tickets: list[AuditTicket] = []
    token = _DEFERRED.set(tickets)
    try:
        yield tickets
    finally:
        _DEFERRED.reset(token)


def wait_tickets(tickets: Sequence[AuditTicket], timeout: float = 30.0) -> None:
    for ticket in tickets:
        ticket.wait(timeout)


async def wait_tickets_async(tickets: Sequence[AuditTicket], timeout: float = 30.0) -> None:
    """Wait, without holding a thread, until every entry is durable; raise if any failed."""
    futures = [f for f in (t._future() for t in tickets) if f is not None]
    if futures:
        try:
            await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except TimeoutError:
            raise HearthError(errors.AUDIT_FAILED) from None
    for ticket in tickets:
        if ticket.error is not None:
            raise HearthError(errors.AUDIT_FAILED) from ticket.error


def resolve_when_durable(
    tickets: Sequence[AuditTicket],
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    value: object,
) -> None:
    """Resolve ``future`` with ``value`` on ``loop`` once every ticket's commit has ended (at
    once if all have), from any thread. The writer is one thread taking tickets in the order
    they were queued and ending each batch's commit before the next, so the last ticket's end
    means every earlier one's has ended: only that one is waited on. A commit's success is not
    implied: whoever awaits ``future`` must still check each ticket's ``error`` (and that it
    ended) before disclosing anything, and is woken together with the rest of the batch."""
    if not tickets or not tickets[-1]._notify(loop, future, value):
        with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, [(future, value)])


def _resolve(futures: list[tuple[asyncio.Future[Any], object]]) -> None:
    for future, value in futures:
        if not future.done():
            future.set_result(value)


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
        anchor: Callable[[SignedHead], None] | None = None,
        anchored: Callable[[], SignedHead | None] | None = None,
        anchor_seconds: float = 10.0,
    ) -> None:
        self._store = store
        self._keys = keyring
        self._random = random
        # Outside anchoring: at most every ``anchor_seconds`` (and when the trail closes) the
        # committed, signed head is handed to ``anchor``, which keeps it outside the database.
        # ``anchored`` reads the head kept outside: the anchor only moves forward along the
        # chain, so a database rolled back to an older copy cannot re-anchor itself.
        self._anchor = anchor
        self._anchored = anchored
        self._anchor_refused = False
        self._anchor_seconds = anchor_seconds
        self._anchored_at = 0.0
        self._checkpoint_every = checkpoint_every
        self._max_batch = max_batch
        self._wait = wait_seconds
        self._queue: queue.SimpleQueue[AuditTicket | object] = queue.SimpleQueue()
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
        # The head row, locked for the rest of the transaction, is the chain's sequence: no
        # separate counter is needed, and concurrent appenders serialise on this lock.
        head = self._store.audit_head(conn, for_update=True)
        if head is None:
            raise HearthError(errors.AUDIT_FAILED, "The audit chain is not initialised.")
        first = head.seq + 1
        prev = head.hash
        rows: list[AuditRow] = []
        checkpoints: list[CheckpointRow] = []
        for offset, record in enumerate(records):
            seq = first + offset
            sealed = (
                self._keys.seal_audit_detail(
                    record.detail, aad=sealed_aad(seq), random=self._random
                )
                if record.detail is not None
                else None
            )
            entry = sequence(
                record, seq=seq, prev_hash=prev, sealed=sealed, link=self._keys.audit_link
            )
            rows.append(
                AuditRow(
                    seq=seq,
                    ts_us=entry.ts_us,
                    actor=record.actor,
                    action=record.action,
                    outcome=record.outcome.value,
                    res_type=record.res_type,
                    res_id=record.res_id,
                    version=record.version,
                    patient=record.patient,
                    detail_key_id=sealed_key_id(sealed) if sealed is not None else None,
                    body=entry.body,
                    prev_hash=entry.prev_hash,
                    hash=entry.hash,
                    patients=record.patients,
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
        # The head pins the resource version sequence as this transaction sees it: a write's
        # own new versions, or, for reads, everything committed before this append.
        version_seq = self._store.peek_seq(conn, VERSION_SEQ)
        key_id, signature = self._keys.sign(head_message(last.seq, last.hash, version_seq))
        head = AuditHeadRow(last.seq, last.hash, version_seq, key_id, signature)
        self._store.set_audit_head(conn, head)

    # -- group commit for reads ---------------------------------------------------------------
    def record(self, record: AuditRecord) -> None:
        """Append one entry and return once it is durable; raise ``AUDIT_FAILED`` otherwise.

        Inside ``deferred_durability()`` it returns at once; see the module docstring.
        """
        self._ensure_thread()
        ticket = AuditTicket(record)
        self._queue.put(ticket)
        deferred = _DEFERRED.get()
        if deferred is not None:
            deferred.append(ticket)
            return
        ticket.wait(self._wait)

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
            try:
                item = self._queue.get(timeout=self._anchor_seconds)
            except queue.Empty:
                self.anchor_now(due_only=True)
                continue
            if item is _STOP:
                return
            batch: list[AuditTicket] = [item]  # type: ignore[list-item]
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
            self.anchor_now(due_only=True)
            if stop:
                return

    def _commit(self, batch: list[AuditTicket]) -> None:
        error: BaseException | None = None
        try:
            with self._store.write() as conn:
                self.append_in(conn, [t.record for t in batch])
        except Exception as exc:  # noqa: BLE001 - every waiter must be released, failing closed
            # The exception text may quote SQL parameters; log only its type.
            log.error("audit group commit failed: %s", type(exc).__name__)
            error = exc
        # Wake each event loop once per batch, not once per waiting request.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
        for ticket in batch:
            for loop, future, value in ticket._finish(error):
                by_loop.setdefault(loop, []).append((future, value))
        for loop, futures in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting on it any more.
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, futures)

    def anchor_now(self, *, due_only: bool = False) -> None:
        """Hand the committed, signed head to the outside anchor (if one is configured)."""
        if self._anchor is None:
            return
        now = time.monotonic()
        if due_only and now - self._anchored_at < self._anchor_seconds:
            return
        self._anchored_at = now
        try:
            with self._store.read() as conn:
                head = self._store.audit_head(conn, for_update=False)
                if head is None or head.signature is None:
                    return
                kept = self._anchored() if self._anchored is not None else None
                if kept is not None and not self._extends(conn, head.seq, kept):
                    if not self._anchor_refused:
                        # Verification reports the rollback; after a deliberate restore an
                        # operator moves the anchor with `hearth audit anchor-reset`.
                        log.error(
                            "audit anchor kept at entry %d: this database's chain does not "
                            "contain it (rolled back or restored?)",
                            kept.seq,
                        )
                        self._anchor_refused = True
                    return
            self._anchor_refused = False
            self._anchor(
                SignedHead(head.seq, head.hash, head.version_seq, head.key_id, head.signature)
            )
        except Exception as exc:  # noqa: BLE001 - anchoring must never break the audit writer
            log.error("could not anchor the audit head: %s", type(exc).__name__)

    def _extends(self, conn: Connection, head_seq: int, kept: SignedHead) -> bool:
        """Whether the chain headed at ``head_seq`` contains the entry the anchor names."""
        if not kept.signature:
            return False  # an unreadable or forged anchor is replaced only deliberately
        if kept.seq == 0:
            return True
        if head_seq < kept.seq:
            return False
        rows = list(self._store.iter_audit(conn, after_seq=kept.seq - 1, upto_seq=kept.seq))
        return bool(rows) and rows[0].hash == kept.hash

    def close(self) -> None:
        """Drain the queue, stop the writer thread and anchor the final head."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout=self._wait)
        self.anchor_now()
