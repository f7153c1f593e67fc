"""Retries with exponential backoff for transient target failures; time and sleep injected.

A retried operation must be idempotent: every target operation is (puts are write-once and
compare content, reads and lists have no effect, a delete that finds nothing after a retry is
reported as not found only if the first attempt never reached the server).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from hearth.domain import HearthError
from hearth.domain.errors import TARGET_UNAVAILABLE

__all__ = ["RetryPolicy", "Transient"]

T = TypeVar("T")


class Transient(Exception):
    """Raised inside a target to say "this attempt failed in a way worth retrying"."""


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``attempts`` tries; waits ``base_delay * 2**k`` capped at ``max_delay``; gives up
    early once ``deadline`` seconds have passed on ``clock``."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    deadline: float = 300.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    #: Called as ``on_retry(attempt, delay, reason)`` before each wait (for logs and alarms).
    on_retry: Callable[[int, float, str], None] | None = field(default=None, compare=False)

    def delays(self) -> list[float]:
        return [min(self.max_delay, self.base_delay * 2**k) for k in range(self.attempts - 1)]

    def run(self, operation: Callable[[], T], what: str) -> T:
        """Run ``operation``; retry on :class:`Transient`; raise ``TARGET_UNAVAILABLE`` when
        tries or time run out. Any other exception propagates at once."""
        start = self.clock()
        delays = self.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except Transient as exc:
                reason = str(exc) or type(exc).__name__
                if attempt > len(delays) or self.clock() - start >= self.deadline:
                    raise HearthError(
                        TARGET_UNAVAILABLE, f"{what} failed after {attempt} attempts: {reason}"
                    ) from exc
                delay = delays[attempt - 1]
                if self.on_retry is not None:
                    self.on_retry(attempt, delay, reason)
                self.sleep(delay)
