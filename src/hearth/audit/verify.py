"""Verification of the audit chain: names each edited, deleted, inserted or reordered entry.

The verifier is pure: it receives the stored rows in ``seq`` order, the signed head, the signed
checkpoints, an optional anchor kept outside the database, the keyed link function and a function
that checks a signature. It keeps going after a finding so that one run names every damaged
entry, re-anchoring on each stored hash to localise damage.

What each check catches:

- an entry whose keyed hash does not match its content was edited (the key is not in the
  database, so an editor cannot recompute it);
- a gap in ``seq`` is a deletion; a ``prev_hash`` that is not the previous entry's hash, or a
  body that names another position, is an insertion or a reordering;
- the head must be signed (from the very first, empty chain on), must name the last entry, and
  must pin the current resource version sequence: removing entries from the end, or resource
  versions from the end, breaks one of these;
- a checkpoint must exist at every multiple of the interval up to the head, and agree with its
  entry: dropping the head back to an old checkpoint or re-chaining a stretch is caught;
- the anchor, a signed head kept outside the database, must lie on the chain: rolling the whole
  database back to an older, genuinely signed state is caught up to the anchor's position.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import orjson

from hearth.audit.entry import ChainLink, checkpoint_message, head_message

__all__ = [
    "ChainFinding",
    "FindingKind",
    "SignedHead",
    "SignedPoint",
    "StoredEntry",
    "verify_chain",
]


class FindingKind(enum.StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED_OR_REORDERED = "inserted-or-reordered"
    TRUNCATED = "truncated"
    BAD_SIGNATURE = "bad-signature"
    CHECKPOINT_MISMATCH = "checkpoint-mismatch"
    VERSIONS_MISMATCH = "versions-mismatch"


@dataclass(frozen=True, slots=True)
class StoredEntry:
    seq: int
    body: bytes
    prev_hash: bytes
    hash: bytes
    # Columns stored beside the body for querying, keyed by the body field they repeat; they
    # must agree with it.
    columns: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class SignedPoint:
    """A signed checkpoint: a position in the chain and the hash at it."""

    seq: int
    hash: bytes
    key_id: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedHead:
    """The signed end of the chain, with the resource version sequence at that commit."""

    seq: int
    hash: bytes
    version_seq: int
    key_id: int
    signature: bytes | None


@dataclass(frozen=True, slots=True)
class ChainFinding:
    seq: int
    kind: FindingKind
    message: str

    def __str__(self) -> str:
        return f"audit entry {self.seq}: {self.kind.value}: {self.message}"


SignatureCheck = Callable[[int, bytes, bytes], bool]  # (key_id, signature, message) -> valid


def _head_ok(head: SignedHead, check: SignatureCheck) -> bool:
    return head.signature is not None and check(
        head.key_id, head.signature, head_message(head.seq, head.hash, head.version_seq)
    )


def verify_chain(
    entries: Iterable[StoredEntry],
    *,
    genesis: bytes,
    link: ChainLink,
    head: SignedHead | None,
    checkpoints: Iterable[SignedPoint],
    checkpoint_every: int,
    version_seq: int,
    check_signature: SignatureCheck,
    anchor: SignedHead | None = None,
    on_entry: Callable[[int], None] | None = None,
    start_seq: int = 0,
    partial: bool = False,
) -> Iterator[ChainFinding]:
    """Yield a finding for every problem; yields nothing for an intact chain.

    ``version_seq`` is the resource version sequence as stored now (the ``counter`` row).

    Incremental verification (the integrity scanner): ``entries`` may start after
    ``start_seq``, continuing from ``genesis``, which is then the hash at ``start_seq`` taken
    from a checkpoint whose signature the caller verified. With ``partial`` the entries stop
    before the head: the head and the anchor are not checked, nor checkpoints past the last
    entry given.
    """
    wanted = {cp.seq: cp for cp in checkpoints if cp.seq > start_seq}
    seen_hashes: dict[int, bytes] = {}
    expected_seq = start_seq + 1
    expected_prev = genesis
    last_seq, last_hash = start_seq, genesis
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
        if link(entry.prev_hash, entry.body) != entry.hash:
            yield ChainFinding(entry.seq, FindingKind.EDITED, "content does not match its hash")
        yield from _check_body(entry)
        checkpoint = wanted.pop(entry.seq, None)
        if checkpoint is not None:
            message = checkpoint_message(checkpoint.seq, checkpoint.hash)
            if not check_signature(checkpoint.key_id, checkpoint.signature, message):
                yield ChainFinding(entry.seq, FindingKind.BAD_SIGNATURE, "checkpoint signature")
            elif checkpoint.hash != entry.hash:
                yield ChainFinding(
                    entry.seq,
                    FindingKind.CHECKPOINT_MISMATCH,
                    "differs from its signed checkpoint (edited and re-chained)",
                )
        elif entry.seq % checkpoint_every == 0:
            yield ChainFinding(entry.seq, FindingKind.DELETED, "its signed checkpoint is missing")
        if anchor is not None and entry.seq == anchor.seq:
            seen_hashes[entry.seq] = entry.hash
        expected_seq = entry.seq + 1
        expected_prev = entry.hash
        last_seq, last_hash = entry.seq, entry.hash
    for seq in sorted(wanted):
        if partial and seq > last_seq:
            continue
        yield ChainFinding(seq, FindingKind.DELETED, "a signed checkpoint names a missing entry")
    if partial:
        return
    yield from _check_head(head, last_seq, last_hash, version_seq, check_signature)
    if anchor is not None:
        yield from _check_anchor(anchor, seen_hashes, last_seq, genesis, check_signature)


def _check_head(
    head: SignedHead | None,
    last_seq: int,
    last_hash: bytes,
    version_seq: int,
    check: SignatureCheck,
) -> Iterator[ChainFinding]:
    if head is None or not _head_ok(head, check):
        yield ChainFinding(
            last_seq, FindingKind.BAD_SIGNATURE, "the chain head is missing, unsigned or forged"
        )
        return
    if head.seq > last_seq:
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
    if head.version_seq != version_seq:
        yield ChainFinding(
            head.seq,
            FindingKind.VERSIONS_MISMATCH,
            f"the signed head counts {head.version_seq} resource versions but the database "
            f"holds {version_seq} (versions removed from the end, or the counter edited)",
        )


def _check_anchor(
    anchor: SignedHead,
    seen: Mapping[int, bytes],
    last_seq: int,
    genesis: bytes,
    check: SignatureCheck,
) -> Iterator[ChainFinding]:
    if not _head_ok(anchor, check):
        yield ChainFinding(anchor.seq, FindingKind.BAD_SIGNATURE, "the outside anchor is forged")
    elif anchor.seq > last_seq:
        yield ChainFinding(
            last_seq + 1,
            FindingKind.TRUNCATED,
            f"the chain ends at {last_seq}, before entry {anchor.seq} that the anchor kept "
            "outside the database names (the database was rolled back)",
        )
    elif seen.get(anchor.seq, genesis) != anchor.hash:
        yield ChainFinding(
            anchor.seq, FindingKind.CHECKPOINT_MISMATCH, "differs from the outside anchor"
        )


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
