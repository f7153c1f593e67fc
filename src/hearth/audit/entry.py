"""The audit entry format, version 1, and its hash chain.

An entry is canonical JSON (keys sorted, no whitespace, UTF-8) with ``"v": 1``. Fields:

``seq`` position in the chain (1, 2, ...); ``ts`` UTC time, ISO 8601 with microseconds;
``actor`` the principal's unique id and ``actor_kind`` (user, client, system); ``action``;
``outcome`` (success, denied, not-found, invalid, error) and ``code`` (a stable HRT code on
failure); ``type``/``id``/``version`` of the resource when there is one; ``patient`` the id of the
patient whose record it is, when known; ``purpose`` (purpose of use, e.g. TREAT, ETREAT);
``source`` the client's network address; ``session`` and ``request`` ids; ``sealed`` detail that
may hold PHI (a search's query string), sealed like a resource body under AAD bound to ``seq``;
``patients`` (sorted random ids) when an access disclosed the records of several patients.

The chain: ``hash[n] = HMAC-SHA-256(chain key, "hearth/audit/v1" 0x00 | hash[n-1] | body[n])``
with ``hash[0]`` the instance's genesis value, so chains of two instances cannot be spliced.
The chain key lives in the key ring (purpose ``audit-chain``): someone who can edit the database
but not read the keys cannot recompute a hash, so an edited entry is named as the entry edited,
not as a broken link further on. This module computes links through a ``ChainLink`` function it
is given; the key never enters it.

Two signed statements anchor the chain (Ed25519, domain-separated so that one can never stand
in for the other): a checkpoint every N entries, ``"hearth/audit-checkpoint/v1" 0x00 | seq |
hash``, and the head, re-signed at every commit, ``"hearth/audit-head/v1" 0x00 | seq | hash |
version sequence``, which also pins how many resource versions existed at that commit.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from hearth.domain import Outcome

__all__ = [
    "AUDIT_FORMAT_VERSION",
    "CHAIN_PREFIX",
    "AuditRecord",
    "ChainLink",
    "SequencedEntry",
    "checkpoint_message",
    "genesis_hash",
    "head_message",
    "sealed_aad",
    "sequence",
]

AUDIT_FORMAT_VERSION = 1
#: What the chain key MACs before ``hash[n-1] | body[n]`` (see ``hearth.crypto``).
CHAIN_PREFIX = b"hearth/audit/v1\x00"

#: ``link(prev_hash, body) -> hash``: the keyed chain function, from the key ring.
ChainLink = Callable[[bytes, bytes], bytes]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What the gate captures about one access, before it is placed in the chain."""

    ts: datetime
    actor: str
    actor_kind: str
    action: str
    outcome: Outcome
    res_type: str | None = None
    res_id: str | None = None
    version: int | None = None
    patient: str | None = None
    purpose: str | None = None
    source: str | None = None
    session: str | None = None
    request: str | None = None
    code: str | None = None
    detail: bytes | None = None  # may hold PHI: sealed before it is stored
    #: Every patient whose records the access disclosed, when it touched several (a search,
    #: a history page, $everything): the per-patient accounting of disclosures follows it.
    patients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SequencedEntry:
    seq: int
    ts_us: int
    body: bytes
    prev_hash: bytes
    hash: bytes
    record: AuditRecord


def _ts_us(ts: datetime) -> int:
    delta = ts.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def sealed_aad(seq: int) -> bytes:
    return b"hearth/audit-detail/v1\x00%d" % seq


def genesis_hash(instance_id: str) -> bytes:
    return hashlib.sha256(b"hearth/audit-genesis/v1\x00" + instance_id.encode("ascii")).digest()


def body_for(record: AuditRecord, seq: int, sealed: bytes | None) -> bytes:
    fields: dict[str, Any] = {
        "v": AUDIT_FORMAT_VERSION,
        "seq": seq,
        "ts": record.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": record.actor,
        "actor_kind": record.actor_kind,
        "action": record.action,
        "outcome": record.outcome.value,
    }
    optional = {
        "type": record.res_type,
        "id": record.res_id,
        "version": record.version,
        "patient": record.patient,
        "purpose": record.purpose,
        "source": record.source,
        "session": record.session,
        "request": record.request,
        "code": record.code,
        "sealed": base64.b64encode(sealed).decode("ascii") if sealed is not None else None,
        "patients": sorted(set(record.patients)) or None,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def sequence(
    record: AuditRecord, *, seq: int, prev_hash: bytes, sealed: bytes | None, link: ChainLink
) -> SequencedEntry:
    """Place ``record`` at ``seq`` after ``prev_hash``; ``sealed`` is its sealed detail."""
    body = body_for(record, seq, sealed)
    return SequencedEntry(
        seq=seq,
        ts_us=_ts_us(record.ts),
        body=body,
        prev_hash=prev_hash,
        hash=link(prev_hash, body),
        record=record,
    )


_U64 = struct.Struct(">Q")


def checkpoint_message(seq: int, entry_hash: bytes) -> bytes:
    """What a checkpoint signs: a position in the chain and the hash at it."""
    return b"hearth/audit-checkpoint/v1\x00" + _U64.pack(seq) + entry_hash


def head_message(seq: int, entry_hash: bytes, version_seq: int) -> bytes:
    """What the head signs: the end of the chain and the resource version sequence then."""
    return b"hearth/audit-head/v1\x00" + _U64.pack(seq) + entry_hash + _U64.pack(version_seq)
