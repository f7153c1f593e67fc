"""Releasing what a request read only once its audit entries are durable.

``disclosing(work)`` runs ``work`` with group-committed audit entries collected rather than
awaited in the worker thread; ``release`` (async) waits for all of them without holding a thread
and fails the request with ``AUDIT_FAILED`` if any could not be written. Adapters that serve many
requests use this pair; everything else gets the blocking behaviour by default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from hearth.storage import AuditTicket, deferred_durability, wait_tickets_async

__all__ = ["Pending", "disclosing"]

T = TypeVar("T")


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
        await wait_tickets_async(self._tickets)
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
