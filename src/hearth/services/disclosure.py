"""Releasing what a request read only once its audit entries are durable.

``disclosing(work)`` runs ``work`` with group-committed audit entries collected rather than
awaited in the worker thread; ``release`` (async) waits for all of them without holding a thread
and fails the request with ``AUDIT_FAILED`` if any could not be written. Adapters that serve many
requests use ``DisclosurePool``, which does both with one wake-up of the event loop per request;
everything else gets the blocking behaviour by default.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Generic, TypeVar

from hearth.domain import HearthError, errors
from hearth.storage import (
    AuditTicket,
    deferred_durability,
    resolve_when_durable,
    wait_tickets_async,
)

__all__ = ["DisclosurePool", "Pending", "disclosing"]

T = TypeVar("T")

#: A worker thread idle this long ends (anyio's worker threads: 10 s).
_IDLE_SECONDS = 10.0


class Pending(Generic[T]):
    """A result, or the error it raised, held back until its audit entries are durable."""

    __slots__ = ("_error", "_tickets", "_value")

    def __init__(
        self, value: T | None, error: BaseException | None, tickets: list[AuditTicket]
    ) -> None:
        self._value = value
        self._error = error
        self._tickets = tickets

    async def release(self) -> T:
        if not all(ticket.ended for ticket in self._tickets):
            await wait_tickets_async(self._tickets)
        for ticket in self._tickets:
            if ticket.error is not None:
                raise HearthError(errors.AUDIT_FAILED) from ticket.error
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def disclosing(work: Callable[[], T]) -> Pending[T]:
    """Run ``work`` (in a worker thread) collecting audit tickets instead of blocking on them."""
    with deferred_durability() as tickets:
        try:
            return Pending(work(), None, tickets)
        except BaseException as exc:  # noqa: BLE001 - re-raised by release() after the audit
            return Pending(None, exc, tickets)


class _Job:
    __slots__ = ("done_at", "future", "loop", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Pending[Any]] = loop.create_future()
        self.done_at: float | None = None
        self.timer: asyncio.TimerHandle | None = None


class DisclosurePool:
    """Worker threads for requests that may disclose PHI, with one wake-up each.

    ``await pool.run(work)`` runs ``work`` in a worker thread inside ``disclosing`` and wakes
    the awaiting task once: when the work has returned *and* the group commit of its audit
    entries has ended (the audit writer resolves the task's future with the rest of its batch).
    The result is still released only after ``Pending.release`` has found every entry durable,
    and a failed entry fails the request with ``AUDIT_FAILED``. Waiting for entries that do not
    become durable gives up ``timeout`` seconds after the work returned, as
    ``wait_tickets_async`` does; the work itself may take as long as it takes.

    It replaces a hand-off through anyio (``run_in_threadpool``: a capacity limiter, a cancel
    scope, a queue with a condition variable, a wake-up when the thread returns) followed by a
    second wait for the audit entries (a future per entry, ``gather``, ``wait_for`` and a second
    wake-up).
    """

    def __init__(self, *, threads: int = 40, timeout: float = 30.0) -> None:
        # 40: as many threads as anyio lends ``run_in_threadpool`` by default. They start as
        # needed: a job is handed to an idle thread if there is one, else to a new thread.
        self._max = threads
        self._timeout = timeout
        self._queue: queue.SimpleQueue[tuple[contextvars.Context, _Job, Callable[[], Any]]]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []

    async def run(self, work: Callable[[], T]) -> T:
        job = _Job(asyncio.get_running_loop())
        # The work runs in a copy of the request's context, as with ``run_in_threadpool``.
        self._submit((contextvars.copy_context(), job, work))
        return await self._released(job)  # type: ignore[no-any-return]

    async def run_here(self, work: Callable[[], T]) -> T:
        """``run``, with the work done on the calling event loop's own thread: for short work
        that waits on no network (a read by id from an embedded SQLite database), handing it to
        a worker thread and back costs more CPU than the work, and under the GIL the worker
        would not run it in parallel anyway (docs/design.md, "Group commit for reads"). The
        release is the same: the value waits, off any thread, until its audit entries are
        durable, and a failed or stuck commit fails the request."""
        job = _Job(asyncio.get_running_loop())
        # In a copy of the request's context, as ``run`` does: the work's context changes stay
        # with the work.
        contextvars.copy_context().run(_serve, job, work)
        return await self._released(job)  # type: ignore[no-any-return]

    async def _released(self, job: _Job) -> Any:
        job.timer = job.loop.call_later(self._timeout, self._expire, job)
        try:
            pending = await job.future
        finally:
            job.timer.cancel()
        return await pending.release()

    def _submit(self, item: tuple[contextvars.Context, _Job, Callable[[], Any]]) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # that thread is spoken for
            elif len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name="hearth-request", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put(item)

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    # Retire unless a job was handed over meanwhile (then ``_idle`` is 0).
                    if self._idle > 0:
                        self._idle -= 1
                        self._threads.remove(threading.current_thread())
                        return
                continue
            context, job, work = item
            context.run(_serve, job, work)
            with self._lock:
                self._idle += 1

    def _expire(self, job: _Job) -> None:
        """Fail the request if its entries are not durable ``timeout`` seconds after its work
        returned; until the work returns, look again later."""
        if job.future.done():
            return
        left = (
            self._timeout if job.done_at is None else job.done_at + self._timeout - time.monotonic()
        )
        if left > 0:
            job.timer = job.loop.call_later(left, self._expire, job)
            return
        job.future.set_exception(HearthError(errors.AUDIT_FAILED))


def _serve(job: _Job, work: Callable[[], Any]) -> None:
    """In a worker thread (or on the loop's, ``run_here``): run the work, then hand its result
    to the audit writer, which resolves the job once the work's entries are committed (at once
    if they already are)."""
    try:
        pending = disclosing(work)  # the work's own errors are kept in ``pending``
        job.done_at = time.monotonic()
        resolve_when_durable(pending._tickets, job.loop, job.future, pending)
    except BaseException as exc:  # noqa: BLE001 - the awaiting request must not wait forever
        with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            job.loop.call_soon_threadsafe(_fail, job.future, exc)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
