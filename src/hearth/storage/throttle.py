"""Counters for sign-in throttling: in this process, or in Redis (``hearth.storage.redis``).

A counter is a number of failures and the time of the last one, forgotten ``ttl`` after that
last failure; a member set counts the distinct names one address has failed against. Keys are
built by the throttle service from keyed hashes, never from what a user typed, so a Redis
``KEYS *`` shows no user names (a mistyped password in the name field would otherwise sit
there in the clear).

The in-process store serves one Hearth process. Its size is bounded (the oldest entries go
first), so a flood of random names cannot exhaust memory; the price under such a flood is that
the oldest names' counts are forgotten early, which the per-address counter still covers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Failures", "MemoryCounters", "ThrottleCounters"]

_MAX_ENTRIES = 200_000
_MAX_MEMBERS = 10_000


@dataclass(frozen=True, slots=True)
class Failures:
    count: int = 0
    last_us: int | None = None


class ThrottleCounters(Protocol):
    def failures(self, key: str, now_us: int) -> Failures: ...

    def add_failure(self, key: str, now_us: int, ttl_seconds: int) -> Failures:
        """Count one more failure at ``now_us``, atomically; the new state."""
        ...

    def clear(self, key: str) -> None: ...

    def add_member(self, key: str, member: str, now_us: int, ttl_seconds: int) -> int:
        """Add ``member`` to the set at ``key`` (members older than ``ttl`` drop out); the
        number of distinct members now in it."""
        ...


@dataclass(slots=True)
class _Counter:
    count: int
    last_us: int
    expires_us: int


class MemoryCounters:
    """``ThrottleCounters`` in a dictionary, for a single process."""

    def __init__(self, max_entries: int = _MAX_ENTRIES) -> None:
        self._counters: OrderedDict[str, _Counter] = OrderedDict()
        # Each set is kept in the order members were last seen, oldest first, so expiring the
        # old ones pops from the front and adding one is amortised constant time.
        self._sets: OrderedDict[str, OrderedDict[str, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def failures(self, key: str, now_us: int) -> Failures:
        with self._lock:
            counter = self._counters.get(key)
            if counter is None or counter.expires_us <= now_us:
                return Failures()
            return Failures(counter.count, counter.last_us)

    def add_failure(self, key: str, now_us: int, ttl_seconds: int) -> Failures:
        with self._lock:
            counter = self._counters.pop(key, None)
            if counter is None or counter.expires_us <= now_us:
                counter = _Counter(0, now_us, 0)
            counter.count += 1
            counter.last_us = now_us
            counter.expires_us = now_us + ttl_seconds * 1_000_000
            self._counters[key] = counter
            while len(self._counters) > self._max:
                self._counters.popitem(last=False)
            return Failures(counter.count, counter.last_us)

    def clear(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)
            self._sets.pop(key, None)

    def add_member(self, key: str, member: str, now_us: int, ttl_seconds: int) -> int:
        horizon = now_us - ttl_seconds * 1_000_000
        with self._lock:
            members = self._sets.pop(key, None)
            if members is None:
                members = OrderedDict()
            members.pop(member, None)
            members[member] = now_us
            while members:
                oldest = next(iter(members.values()))
                if oldest > horizon and len(members) <= _MAX_MEMBERS:
                    break
                members.popitem(last=False)  # expired, or past the cap (the count saturates)
            self._sets[key] = members
            while len(self._sets) > self._max:
                self._sets.popitem(last=False)
            return len(members)
