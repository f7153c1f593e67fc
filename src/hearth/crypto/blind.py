"""Keyed blind indexes: HMAC-SHA-256 of a normalised value, truncated to 16 bytes.

A blind index lets SQL find rows whose value equals a search term without the database ever
holding the value. The key never leaves the key ring; without it, a stolen database offers only
frequency analysis of equal values, which the design document discusses.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["BLIND_BYTES", "blind_index", "blind_indexes", "blind_indexes_memo"]

BLIND_BYTES = 16


def blind_index(key: bytes, domain: str, value: str) -> bytes:
    """Index token for ``value`` in ``domain`` (e.g. ``"Patient.name"``); domains never collide."""
    message = domain.encode("utf-8") + b"\x00" + value.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()[:BLIND_BYTES]


def blind_indexes(key: bytes, pairs: Iterable[tuple[str, str]]) -> set[bytes]:
    """``blind_index`` of many (domain, value) pairs: the same tokens, computed with the one-shot
    HMAC (``hmac.digest``), which is several times faster when a resource has dozens of keys."""
    digest = hmac.digest
    return {
        digest(key, domain.encode("utf-8") + b"\x00" + value.encode("utf-8"), "sha256")[
            :BLIND_BYTES
        ]
        for domain, value in pairs
    }


def blind_indexes_memo(
    key: bytes,
    pairs: Iterable[tuple[str, str]],
    memo: dict[tuple[str, str], bytes],
    limit: int,
) -> set[bytes]:
    """``blind_indexes``, remembering each pair's token in ``memo`` (emptied when it reaches
    ``limit`` entries, so memory stays bounded). For bulk index builds (restore): most keys of
    a population repeat (a status, a code, a year's date buckets), and the same pair always
    gives the same token under one key. The caller keeps one memo per key."""
    digest = hmac.digest
    out: set[bytes] = set()
    for pair in pairs:
        token = memo.get(pair)
        if token is None:
            if len(memo) >= limit:
                memo.clear()
            domain, value = pair
            message = domain.encode("utf-8") + b"\x00" + value.encode("utf-8")
            token = memo[pair] = digest(key, message, "sha256")[:BLIND_BYTES]
        out.add(token)
    return out
