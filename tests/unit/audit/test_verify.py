"""The chain verifier on synthetic chains: every kind of damage is named where it happened."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime

from hearth.audit import (
    AuditRecord,
    FindingKind,
    SignedHead,
    SignedPoint,
    StoredEntry,
    checkpoint_message,
    genesis_hash,
    head_message,
    sequence,
    verify_chain,
)
from hearth.domain import Outcome

GENESIS = genesis_hash("test")
KEY = b"k" * 32


def link(prev: bytes, body: bytes) -> bytes:
    return hmac.new(KEY, b"hearth/audit/v1\x00" + prev + body, hashlib.sha256).digest()


def chain(n: int) -> list[StoredEntry]:
    prev = GENESIS
    out = []
    for seq in range(1, n + 1):
        record = AuditRecord(
            datetime(2026, 1, 1, tzinfo=UTC), f"user{seq}", "user", "read", Outcome.SUCCESS
        )
        entry = sequence(record, seq=seq, prev_hash=prev, sealed=None, link=link)
        out.append(
            StoredEntry(seq, entry.body, entry.prev_hash, entry.hash, {"actor": f"user{seq}"})
        )
        prev = entry.hash
    return out


def head(entry: StoredEntry | None, versions: int = 0) -> SignedHead:
    seq, digest = (entry.seq, entry.hash) if entry else (0, GENESIS)
    return SignedHead(seq, digest, versions, 1, b"sig:" + head_message(seq, digest, versions))


def checkpoint(entry: StoredEntry) -> SignedPoint:
    message = checkpoint_message(entry.seq, entry.hash)
    return SignedPoint(entry.seq, entry.hash, 1, b"sig:" + message)


def check(_key: int, signature: bytes, message: bytes) -> bool:
    return signature == b"sig:" + message


def run(
    entries: list[StoredEntry],
    signed: SignedHead | None,
    checkpoints: list[SignedPoint] = (),  # type: ignore[assignment]
    *,
    every: int = 1000,
    versions: int = 0,
    anchor: SignedHead | None = None,
) -> list[tuple[int, FindingKind]]:
    return [
        (f.seq, f.kind)
        for f in verify_chain(
            entries,
            genesis=GENESIS,
            link=link,
            head=signed,
            checkpoints=checkpoints,
            checkpoint_every=every,
            version_seq=versions,
            check_signature=check,
            anchor=anchor,
        )
    ]


def test_intact_chains_including_the_empty_one() -> None:
    entries = chain(6)
    assert run(entries, head(entries[-1]), [checkpoint(entries[2])], every=3) == [
        (6, FindingKind.DELETED)  # the checkpoint at 6 is missing
    ]
    assert (
        run(entries, head(entries[-1]), [checkpoint(entries[2]), checkpoint(entries[5])], every=3)
        == []
    )
    assert run([], head(None)) == []


def test_an_unsigned_or_missing_head_is_always_a_finding() -> None:
    assert run([], None) == [(0, FindingKind.BAD_SIGNATURE)]
    assert run([], SignedHead(0, GENESIS, 0, 1, None)) == [(0, FindingKind.BAD_SIGNATURE)]
    entries = chain(2)
    forged = SignedHead(2, entries[-1].hash, 0, 1, b"forged")
    assert run(entries, forged) == [(2, FindingKind.BAD_SIGNATURE)]


def test_a_checkpoint_cannot_stand_in_for_the_head() -> None:
    """Domain separation: copying a checkpoint's signature into the head does not verify."""
    entries = chain(4)
    cp = checkpoint(entries[1])
    fake_head = SignedHead(cp.seq, cp.hash, 0, cp.key_id, cp.signature)
    assert (2, FindingKind.BAD_SIGNATURE) in run(entries[:2], fake_head, [cp], every=2)


def test_an_edit_is_named_where_it_happened() -> None:
    """With a keyed chain an editor cannot recompute the hash: the edited entry is named."""
    entries = chain(5)
    entries[2] = replace(entries[2], body=entries[2].body.replace(b"read", b"rear"))
    assert run(entries, head(chain(5)[-1])) == [(3, FindingKind.EDITED)]


def test_rechaining_without_the_key_is_caught() -> None:
    entries = chain(5)
    body = entries[1].body.replace(b"user2", b"userX")
    forged_hash = hashlib.sha256(entries[0].hash + body).digest()
    tampered = [entries[0], replace(entries[1], body=body, hash=forged_hash), *entries[2:]]
    found = run(tampered, head(entries[-1]))
    assert (2, FindingKind.EDITED) in found
    assert (3, FindingKind.INSERTED_OR_REORDERED) in found


def test_deletions_truncation_and_extra_entries() -> None:
    entries = chain(6)
    assert (3, FindingKind.DELETED) in run(entries[:2] + entries[3:], head(entries[-1]))
    assert run(entries[:4], head(entries[-1])) == [(5, FindingKind.TRUNCATED)]
    assert run(entries, head(entries[3])) == [(5, FindingKind.INSERTED_OR_REORDERED)]
    wrong = SignedHead(6, b"\x00" * 32, 0, 1, b"sig:" + head_message(6, b"\x00" * 32, 0))
    assert run(entries, wrong) == [(6, FindingKind.CHECKPOINT_MISMATCH)]
    ghost = SignedPoint(9, b"\x00" * 32, 1, b"sig:" + checkpoint_message(9, b"\x00" * 32))
    assert (9, FindingKind.DELETED) in run(entries, head(entries[-1]), [ghost])
    forged_cp = SignedPoint(2, entries[1].hash, 1, b"forged")
    assert (2, FindingKind.BAD_SIGNATURE) in run(entries, head(entries[-1]), [forged_cp])
    moved = SignedPoint(2, entries[2].hash, 1, b"sig:" + checkpoint_message(2, entries[2].hash))
    assert (2, FindingKind.CHECKPOINT_MISMATCH) in run(entries, head(entries[-1]), [moved])


def test_the_head_pins_the_resource_versions() -> None:
    entries = chain(3)
    assert run(entries, head(entries[-1], versions=7), versions=7) == []
    assert run(entries, head(entries[-1], versions=7), versions=5) == [
        (3, FindingKind.VERSIONS_MISMATCH)
    ]


def test_the_outside_anchor_catches_a_rollback_to_an_older_signed_state() -> None:
    entries = chain(6)
    anchor = head(entries[4])
    assert run(entries, head(entries[-1]), anchor=anchor) == []
    # The database restored to the state after entry 3, genuinely signed back then:
    assert run(entries[:3], head(entries[2]), anchor=anchor) == [(4, FindingKind.TRUNCATED)]
    other = replace(anchor, hash=b"\x01" * 32, signature=b"sig:" + head_message(5, b"\x01" * 32, 0))
    assert run(entries, head(entries[-1]), anchor=other) == [(5, FindingKind.CHECKPOINT_MISMATCH)]
    forged = replace(anchor, signature=b"nope")
    assert run(entries, head(entries[-1]), anchor=forged) == [(5, FindingKind.BAD_SIGNATURE)]
    assert run([], head(None), anchor=head(None)) == []


def test_swapped_entries_and_column_and_format_edits() -> None:
    entries = chain(4)
    swapped = [entries[0], replace(entries[2], seq=2), replace(entries[1], seq=3), entries[3]]
    found = run(swapped, head(entries[-1]))
    assert (2, FindingKind.INSERTED_OR_REORDERED) in found
    assert (3, FindingKind.INSERTED_OR_REORDERED) in found
    columns = list(entries)
    columns[1] = replace(columns[1], columns={"actor": "someone"})
    assert run(columns, head(entries[-1])) == [(2, FindingKind.EDITED)]
    not_json = list(entries)
    not_json[0] = replace(not_json[0], body=b"\xff")
    assert (1, FindingKind.EDITED) in run(not_json, head(entries[-1]))
    future = list(entries)
    future[0] = replace(future[0], body=b'{"v":2}')
    findings = list(
        verify_chain(
            future,
            genesis=GENESIS,
            link=link,
            head=None,
            checkpoints=[],
            checkpoint_every=1000,
            version_seq=0,
            check_signature=check,
        )
    )
    assert (1, FindingKind.EDITED) in [(f.seq, f.kind) for f in findings]
    assert "audit entry 1" in str(findings[0])


def incremental(
    entries: list[StoredEntry],
    start: StoredEntry,
    signed: SignedHead | None,
    checkpoints: list[SignedPoint],
    *,
    partial: bool,
) -> list[tuple[int, FindingKind]]:
    return [
        (f.seq, f.kind)
        for f in verify_chain(
            [e for e in entries if e.seq > start.seq],
            genesis=start.hash,
            link=link,
            head=signed,
            checkpoints=checkpoints,
            checkpoint_every=3,
            version_seq=0,
            check_signature=check,
            start_seq=start.seq,
            partial=partial,
        )
    ]


def test_incremental_verification_resumes_at_a_checkpoint() -> None:
    """The scanner verifies from the last signed checkpoint on, not from the genesis."""
    entries = chain(8)
    points = [checkpoint(entries[2]), checkpoint(entries[5])]
    assert incremental(entries, entries[2], head(entries[-1]), points, partial=False) == []
    # Stopping before the head: neither the head nor the checkpoints past the end are checked.
    assert incremental(entries[:4], entries[2], None, points, partial=True) == []
    edited = list(entries)
    edited[4] = replace(entries[4], body=entries[4].body.replace(b"user5", b"userX"))
    found = incremental(edited, entries[2], head(entries[-1]), points, partial=False)
    assert (5, FindingKind.EDITED) in found
    # A checkpoint inside the span whose entry is gone is still a finding when partial.
    gone = [e for e in entries if e.seq != 6][:6]
    assert (6, FindingKind.DELETED) in incremental(gone, entries[2], None, points, partial=True)
