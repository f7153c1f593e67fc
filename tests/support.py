"""Helpers shared by tests: deterministic clock and randomness, throwaway instances."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hearth.domain import Principal, PrincipalKind
from hearth.settings import load_settings
from hearth.wiring import ADMIN_ROLE, Container, InitResult, init_instance

__all__ = ["FixedClock", "Instance", "SeededRandom", "admin", "make_instance", "nobody"]


class FixedClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 15, 9, 30, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class SeededRandom:
    """Deterministic bytes (SHA-256 in counter mode over a seed): reproducible tests only."""

    def __init__(self, seed: bytes = b"hearth-tests") -> None:
        self._seed = seed
        self._counter = 0

    def token_bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._counter += 1
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
        return out[:n]


class Instance:
    """A Hearth instance in a temporary home, with its container and admin token."""

    def __init__(self, home: Path, result: InitResult, container: Container) -> None:
        self.home = home
        self.result = result
        self.container = container
        self.admin_token = result.admin_token

    @property
    def settings_url(self) -> str:
        return self.container.settings.database_url.reveal()


def make_instance(
    home: Path,
    database_url: str | None,
    *,
    clock: FixedClock | None = None,
    random: SeededRandom | None = None,
) -> Instance:
    result = init_instance(home, database_url=database_url, clock=clock, random=random)
    container = Container(load_settings(home), clock=clock, random=random)
    return Instance(home, result, container)


def admin(subject: str = "admin") -> Principal:
    return Principal(subject=subject, roles=frozenset({ADMIN_ROLE}), source="127.0.0.1")


def nobody(subject: str = "mallory") -> Principal:
    """An authenticated principal with no role: every access must be denied."""
    return Principal(subject=subject, kind=PrincipalKind.USER, source="127.0.0.1")
