"""Keyed blind indexes: HMAC-SHA-256 of a normalised value, truncated to 16 bytes.

A blind index lets SQL find rows whose value equals a search term without the database ever
holding the value. The key never leaves the key ring; without it, a stolen database offers only
frequency analysis of equal values, which the design document discusses.

``Blinder`` computes the tokens the key ring hands out. It keys one HMAC context (from
``cryptography``) when the ring loads, and copies it for every message. OpenSSL 3 makes a
one-shot HMAC (``hmac.digest``) fetch and key a fresh context on every call, and that setup
costs about three times the hashing of a short value. A resource written has dozens of keys,
so this matters. ``blind_index`` is the same function computed the one-shot way: the reference
the test vectors pin.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC

__all__ = ["BLIND_BYTES", "Blinder", "blind_index"]

BLIND_BYTES = 16


def _message(domain: str, value: str) -> bytes:
    return domain.encode("utf-8") + b"\x00" + value.encode("utf-8")


def blind_index(key: bytes, domain: str, value: str) -> bytes:
    """Index token for ``value`` in ``domain`` (e.g. ``"Patient.name"``); domains never collide."""
    return hmac.new(key, _message(domain, value), hashlib.sha256).digest()[:BLIND_BYTES]


class Blinder:
    """``blind_index`` under one key, with the key's HMAC context set up once."""

    __slots__ = ("_keyed", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._keyed = HMAC(key, SHA256())

    def token(self, domain: str, value: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(_message(domain, value))
        return mac.finalize()[:BLIND_BYTES]

    def tokens(self, pairs: Iterable[tuple[str, str]]) -> set[bytes]:
        """The token of every (domain, value) pair, as a set (the search index of a resource)."""
        keyed = self._keyed
        out: set[bytes] = set()
        for domain, value in pairs:
            mac = keyed.copy()
            mac.update(domain.encode("utf-8") + b"\x00" + value.encode("utf-8"))
            out.add(mac.finalize()[:BLIND_BYTES])
        return out

    def tokens_memo(
        self,
        pairs: Iterable[tuple[str, str]],
        memo: dict[tuple[str, str], bytes],
        limit: int,
    ) -> set[bytes]:
        """``tokens``, remembering each pair's token in ``memo`` (emptied when it reaches
        ``limit`` entries, so memory stays bounded). For bulk index builds (restore): most keys
        of a population repeat (a status, a code, a year's date buckets), and the same pair
        always gives the same token under one key. The caller keeps one memo per key."""
        out: set[bytes] = set()
        for pair in pairs:
            token = memo.get(pair)
            if token is None:
                if len(memo) >= limit:
                    memo.clear()
                token = memo[pair] = self.token(*pair)
            out.add(token)
        return out
