"""The chain verifier on synthetic chains: every kind of damage is named."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from hearth.audit import (
    AuditRecord,
    FindingKind,
    SignedPoint,
    StoredEntry,
    checkpoint_message,
    genesis_hash,
    sequence,
    verify_chain,
)
from hearth.domain import Outcome

GENESIS = genesis_hash("test")


def chain(n: int) -> list[StoredEntry]:
    prev = GENESIS
    out = []
    for seq in range(1, n + 1):
        record = AuditRecord(
            datetime(2026, 1, 1, tzinfo=UTC), f"user{seq}", "user", "read", Outcome.SUCCESS
        )
        entry = sequence(record, seq=seq, prev_hash=prev, sealed=None)
        out.append(
            StoredEntry(seq, entry.body, entry.prev_hash, entry.hash, {"actor": f"user{seq}"})
        )
        prev = entry.hash
    return out


def signed(entry: StoredEntry) -> SignedPoint:
    return SignedPoint(
        entry.seq, entry.hash, 1, b"sig:" + checkpoint_message(entry.seq, entry.hash)
    )


def check(_key: int, signature: bytes, message: bytes) -> bool:
    return signature == b"sig:" + message


def run(
    entries: list[StoredEntry], head: SignedPoint | None, checkpoints: list[SignedPoint]
) -> list[tuple[int, FindingKind]]:
    return [
        (f.seq, f.kind)
        for f in verify_chain(
            entries, genesis=GENESIS, head=head, checkpoints=checkpoints, check_signature=check
        )
    ]


def test_intact_chain() -> None:
    entries = chain(5)
    assert run(entries, signed(entries[-1]), [signed(entries[1])]) == []


def test_edited_body() -> None:
    entries = chain(5)
    entries[2] = replace(entries[2], body=entries[2].body.replace(b"read", b"rear"))
    assert (3, FindingKind.EDITED) in run(entries, signed(chain(5)[-1]), [])


def test_edited_and_rechained_is_caught_by_the_checkpoint() -> None:
    entries = chain(5)
    body = entries[1].body.replace(b"user2", b"userX")
    prev = entries[0].hash
    rebuilt = entries[:1]
    from hearth.audit import chain_hash

    for e in [replace(entries[1], body=body), *entries[2:]]:
        h = chain_hash(prev, e.body)
        rebuilt.append(replace(e, prev_hash=prev, hash=h, columns={}))
        prev = h
    original = chain(5)
    found = run(rebuilt, signed(original[-1]), [signed(original[2])])
    assert (3, FindingKind.CHECKPOINT_MISMATCH) in found
    assert (5, FindingKind.CHECKPOINT_MISMATCH) in found


def test_deleted_middle_and_tail_and_head_problems() -> None:
    entries = chain(6)
    assert (3, FindingKind.DELETED) in run(entries[:2] + entries[3:], signed(entries[-1]), [])
    assert run(entries[:4], signed(entries[-1]), []) == [(5, FindingKind.TRUNCATED)]
    assert run(entries, signed(entries[3]), []) == [(5, FindingKind.INSERTED_OR_REORDERED)]
    bad = SignedPoint(6, entries[-1].hash, 1, b"forged")
    assert run(entries, bad, []) == [(6, FindingKind.BAD_SIGNATURE)]
    assert run(entries, None, []) == [(6, FindingKind.BAD_SIGNATURE)]
    wrong_hash = SignedPoint(6, b"\x00" * 32, 1, b"sig:" + checkpoint_message(6, b"\x00" * 32))
    assert run(entries, wrong_hash, []) == [(6, FindingKind.CHECKPOINT_MISMATCH)]
    cp = SignedPoint(9, b"\x00" * 32, 1, b"x")
    assert (9, FindingKind.DELETED) in run(entries, signed(entries[-1]), [cp])
    forged_cp = SignedPoint(2, entries[1].hash, 1, b"forged")
    assert (2, FindingKind.BAD_SIGNATURE) in run(entries, signed(entries[-1]), [forged_cp])


def test_swapped_entries_and_column_and_format_edits() -> None:
    entries = chain(4)
    swapped = [entries[0], replace(entries[2], seq=2), replace(entries[1], seq=3), entries[3]]
    found = run(swapped, signed(entries[-1]), [])
    assert (2, FindingKind.INSERTED_OR_REORDERED) in found
    assert (3, FindingKind.INSERTED_OR_REORDERED) in found
    columns = list(entries)
    columns[1] = replace(columns[1], columns={"actor": "someone"})
    assert run(columns, signed(entries[-1]), []) == [(2, FindingKind.EDITED)]
    not_json = list(entries)
    not_json[0] = replace(not_json[0], body=b"\xff")
    assert (1, FindingKind.EDITED) in run(not_json, signed(entries[-1]), [])
    future = list(entries)
    future[0] = replace(future[0], body=b'{"v":2}')
    assert (1, FindingKind.EDITED) in run(future, signed(entries[-1]), [])
    assert "audit entry 1" in str(
        next(
            verify_chain(future, genesis=GENESIS, head=None, checkpoints=[], check_signature=check)
        )
    )
