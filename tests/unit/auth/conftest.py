"""Shared fixtures for the authentication core tests: deterministic randomness, cheap argon2."""

from __future__ import annotations

import hashlib

import pytest

from hearth.auth.argon2id import Argon2Parameters


class CountingRandom:
    """A deterministic ``hearth.domain.Random``: SHA-256 of a counter, stretched to ``n`` bytes.

    Randomness is a parameter of the pure core, so tests pass this instead of the system's.
    """

    def __init__(self, seed: bytes = b"test") -> None:
        self.seed = seed
        self.calls = 0

    def token_bytes(self, n: int) -> bytes:
        self.calls += 1
        out = b""
        block = 0
        while len(out) < n:
            out += hashlib.sha256(b"%s/%d/%d" % (self.seed, self.calls, block)).digest()
            block += 1
        return out[:n]


class FixedRandom:
    """Always the same byte, for pinning edge cases of encodings."""

    def __init__(self, byte: int) -> None:
        self.byte = byte

    def token_bytes(self, n: int) -> bytes:
        return bytes([self.byte]) * n


#: Cheap parameters so that the unit tests run fast; the format and logic do not depend on cost.
CHEAP = Argon2Parameters(time_cost=1, memory_kib=64, parallelism=1)


@pytest.fixture
def random() -> CountingRandom:
    return CountingRandom()


@pytest.fixture
def cheap() -> Argon2Parameters:
    return CHEAP


@pytest.fixture
def fixed_random() -> type[FixedRandom]:
    return FixedRandom


@pytest.fixture
def counting_random() -> type[CountingRandom]:
    return CountingRandom
