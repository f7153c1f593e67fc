"""Verification of the audit chain: names each edited, deleted, inserted or reordered entry.

The verifier is pure: it receives the stored rows in ``seq`` order, the signed head and the
signed checkpoints, and a function that checks a signature. It keeps going after a finding so
that one run names every damaged entry, re-anchoring on each stored hash to localise damage.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import orjson

from hearth.audit.entry import chain_hash, checkpoint_message

__all__ = ["ChainFinding", "FindingKind", "SignedPoint", "StoredEntry", "verify_chain"]


class FindingKind(enum.StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED_OR_REORDERED = "inserted-or-reordered"
    TRUNCATED = "truncated"
    BAD_SIGNATURE = "bad-signature"
    CHECKPOINT_MISMATCH = "checkpoint-mismatch"


@dataclass(frozen=True, slots=True)
class StoredEntry:
    seq: int
    body: bytes
    prev_hash: bytes
    hash: bytes
    # Columns stored beside the body for querying; they must agree with it.
    columns: dict[str, object]


@dataclass(frozen=True, slots=True)
class SignedPoint:
    """A signed (seq, hash): the chain head or a checkpoint."""

    seq: int
    hash: bytes
    key_id: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class ChainFinding:
    seq: int
    kind: FindingKind
    message: str

    def __str__(self) -> str:
        return f"audit entry {self.seq}: {self.kind.value}: {self.message}"


SignatureCheck = Callable[[int, bytes, bytes], bool]  # (key_id, signature, message) -> valid


def _signed_ok(point: SignedPoint, check: SignatureCheck) -> bool:
    return check(point.key_id, point.signature, checkpoint_message(point.seq, point.hash))


def verify_chain(
    entries: Iterable[StoredEntry],
    *,
    genesis: bytes,
    head: SignedPoint | None,
    checkpoints: Iterable[SignedPoint],
    check_signature: SignatureCheck,
    on_entry: Callable[[int], None] | None = None,
) -> Iterator[ChainFinding]:
    """Yield a finding for every problem; yields nothing for an intact chain."""
    wanted = {cp.seq: cp for cp in checkpoints}
    expected_seq = 1
    expected_prev = genesis
    last_seq, last_hash = 0, genesis
    for entry in entries:
        if on_entry is not None:
            on_entry(entry.seq)
        if entry.seq > expected_seq:
            first, last = expected_seq, entry.seq - 1
            span = str(first) if first == last else f"{first} to {last}"
            yield ChainFinding(first, FindingKind.DELETED, f"entries {span} are missing")
        elif entry.prev_hash != expected_prev:
            yield ChainFinding(
                entry.seq,
                FindingKind.INSERTED_OR_REORDERED,
                "does not chain to the entry before it",
            )
        if chain_hash(entry.prev_hash, entry.body) != entry.hash:
            yield ChainFinding(entry.seq, FindingKind.EDITED, "content does not match its hash")
        yield from _check_body(entry)
        checkpoint = wanted.pop(entry.seq, None)
        if checkpoint is not None:
            if not _signed_ok(checkpoint, check_signature):
                yield ChainFinding(entry.seq, FindingKind.BAD_SIGNATURE, "checkpoint signature")
            elif checkpoint.hash != entry.hash:
                yield ChainFinding(
                    entry.seq,
                    FindingKind.CHECKPOINT_MISMATCH,
                    "differs from its signed checkpoint (edited and re-chained)",
                )
        expected_seq = entry.seq + 1
        expected_prev = entry.hash
        last_seq, last_hash = entry.seq, entry.hash
    for seq in sorted(wanted):
        yield ChainFinding(seq, FindingKind.DELETED, "a signed checkpoint names a missing entry")
    if head is None:
        if last_seq:
            yield ChainFinding(last_seq, FindingKind.BAD_SIGNATURE, "the chain head is missing")
        return
    if not _signed_ok(head, check_signature):
        yield ChainFinding(head.seq, FindingKind.BAD_SIGNATURE, "chain head signature")
    elif head.seq > last_seq:
        yield ChainFinding(
            last_seq + 1,
            FindingKind.TRUNCATED,
            f"entries {last_seq + 1} to {head.seq} were removed from the end",
        )
    elif head.seq < last_seq:
        yield ChainFinding(
            head.seq + 1, FindingKind.INSERTED_OR_REORDERED, "entries after the signed head"
        )
    elif head.hash != last_hash:
        yield ChainFinding(last_seq, FindingKind.CHECKPOINT_MISMATCH, "differs from signed head")


def _check_body(entry: StoredEntry) -> Iterator[ChainFinding]:
    try:
        body = orjson.loads(entry.body)
    except orjson.JSONDecodeError:
        yield ChainFinding(entry.seq, FindingKind.EDITED, "body is not JSON")
        return
    if not isinstance(body, dict) or body.get("v") != 1:
        yield ChainFinding(entry.seq, FindingKind.EDITED, "unknown entry format version")
        return
    if body.get("seq") != entry.seq:
        yield ChainFinding(
            entry.seq,
            FindingKind.INSERTED_OR_REORDERED,
            f"stored at position {entry.seq} but written as entry {body.get('seq')}",
        )
    for column, value in entry.columns.items():
        if body.get(column) != value:
            yield ChainFinding(
                entry.seq, FindingKind.EDITED, f"column {column!r} disagrees with the entry"
            )
