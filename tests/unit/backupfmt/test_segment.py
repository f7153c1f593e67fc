"""Segments: zstd + age streams of records, content-addressed, read back with every check."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from collections.abc import Iterator

import pytest
from tests.unit.backupfmt.helpers import VERSION_COLUMNS, make_keys, version_rows

from hearth.backupfmt import SegmentError, SegmentFault, SegmentInfo, read_segment, write_segment
from hearth.backupfmt.records import Row
from hearth.crypto.backup import AgeDecryptor
from hearth.domain import HearthError

KEYS = make_keys()


def _write(
    rows: Iterator[tuple[object, ...]], limit: int = 1 << 26
) -> tuple[SegmentInfo, bytes, bool]:
    sink = io.BytesIO()
    info, exhausted = write_segment(
        "resource_versions", VERSION_COLUMNS, rows, KEYS.encryptor, sink, max_plaintext_bytes=limit
    )
    return info, sink.getvalue(), exhausted


def _read(info: SegmentInfo, stored: bytes, decryptor: AgeDecryptor | None = None) -> list[Row]:
    out: list[Row] = []
    read_segment(
        io.BytesIO(stored), info, decryptor or KEYS.decryptor, lambda t, c, rows: out.extend(rows)
    )
    return out


def test_round_trip_and_content_address() -> None:
    info, stored, exhausted = _write(version_rows(1, 300))
    assert exhausted
    assert info.sha256 == hashlib.sha256(stored).hexdigest()
    assert info.name == "segments/" + info.sha256
    assert info.stored_length == len(stored)
    assert info.rows == 300
    assert stored.startswith(b"age-encryption.org/v1\n")
    assert _read(info, stored) == list(version_rows(1, 300))


def test_no_plaintext_in_stored_bytes() -> None:
    marker = b"PLANTED-PATIENT-NAME-Zebulon"
    _, stored, _ = _write(iter([(1, "Patient", "p", 1, b"m" * 32, marker)]))
    assert marker not in stored
    assert b"Patient" not in stored


def test_segments_close_at_the_size_limit_and_keep_the_rest() -> None:
    rows = version_rows(1, 500)
    taken: list[Row] = []
    exhausted = False
    while not exhausted:
        info, stored, exhausted = _write(rows, limit=2000)
        assert info.plaintext_length < 2000 + 200  # one row over at most
        taken += _read(info, stored)
    assert taken == list(version_rows(1, 500))


def test_wrong_identity_is_reported_as_such() -> None:
    info, stored, _ = _write(version_rows(1, 5))
    with pytest.raises(SegmentError) as err:
        _read(info, stored, AgeDecryptor([KEYS.other_identity]))
    assert err.value.fault is SegmentFault.IDENTITY


@pytest.mark.parametrize("where", ["header", "first-chunk", "last-byte"])
def test_a_flipped_bit_is_a_hash_fault(where: str) -> None:
    info, stored, _ = _write(version_rows(1, 2000))
    index = {"header": 30, "first-chunk": len(stored) // 3, "last-byte": len(stored) - 1}[where]
    damaged = bytearray(stored)
    damaged[index] ^= 0x04
    with pytest.raises(SegmentError) as err:
        _read(info, bytes(damaged))
    assert err.value.fault is SegmentFault.HASH


def test_a_flipped_bit_under_a_matching_digest_is_an_aead_fault() -> None:
    # An attacker who also rewrites the manifest entry's digest (but cannot re-sign it) still
    # meets the AEAD: here the entry is patched in memory to isolate that second line.
    info, stored, _ = _write(version_rows(1, 2000))
    damaged = bytearray(stored)
    damaged[len(stored) // 2] ^= 0x01
    patched = SegmentInfo(
        info.name, info.table, hashlib.sha256(damaged).hexdigest(), len(damaged),
        info.plaintext_length, info.rows,
    )  # fmt: skip
    with pytest.raises(SegmentError) as err:
        _read(patched, bytes(damaged))
    assert err.value.fault is SegmentFault.DECRYPT


def test_truncation_is_caught() -> None:
    info, stored, _ = _write(version_rows(1, 2000))
    for cut in (len(stored) - 1, len(stored) // 2, 10):
        with pytest.raises(SegmentError) as err:
            _read(info, stored[:cut])
        assert err.value.fault is SegmentFault.HASH
    truncated = stored[: len(stored) - 20]
    patched = SegmentInfo(
        info.name, info.table, hashlib.sha256(truncated).hexdigest(), len(truncated),
        info.plaintext_length, info.rows,
    )  # fmt: skip
    with pytest.raises(SegmentError) as err:
        _read(patched, truncated)
    assert err.value.fault is SegmentFault.DECRYPT


def test_counts_that_differ_from_the_manifest_are_refused() -> None:
    info, stored, _ = _write(version_rows(1, 10))
    for wrong in (
        SegmentInfo(info.name, "users", info.sha256, info.stored_length, info.plaintext_length, 10),
        SegmentInfo(
            info.name, info.table, info.sha256, info.stored_length, info.plaintext_length, 9
        ),
        SegmentInfo(info.name, info.table, info.sha256, info.stored_length, 1, 10),
    ):
        with pytest.raises(SegmentError) as err:
            _read(wrong, stored)
        assert err.value.fault is SegmentFault.RECORDS


def test_errors_from_the_row_callback_propagate_unchanged() -> None:
    info, stored, _ = _write(version_rows(1, 10))

    def boom(table: str, columns: tuple[str, ...], rows: list[Row]) -> None:
        raise KeyError("consumer failed")

    with pytest.raises(KeyError):
        read_segment(io.BytesIO(stored), info, KEYS.decryptor, boom)


def test_errors_from_the_row_source_propagate_unchanged() -> None:
    def rows() -> Iterator[tuple[object, ...]]:
        yield from version_rows(1, 3)
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        _write(rows())


def test_size_limit_must_be_positive() -> None:
    with pytest.raises(HearthError):
        _write(version_rows(1, 1), limit=0)


class _CountingSink:
    def __init__(self) -> None:
        self.length = 0
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.length += len(data)
        self.hash.update(data)
        return len(data)


@pytest.mark.slow
def test_memory_stays_bounded_for_a_large_segment() -> None:
    """48 MiB of rows stream through with a small fraction of that held in Python memory."""
    body = bytes(range(256)) * 64  # 16 KiB, poorly compressible enough to matter

    def rows() -> Iterator[tuple[object, ...]]:
        for seq in range(1, 3073):
            yield (seq, "Observation", f"o{seq}", 1, b"m" * 32, body)

    sink = _CountingSink()
    tracemalloc.start()
    try:
        info, exhausted = write_segment(
            "resource_versions", VERSION_COLUMNS, rows(), KEYS.encryptor, sink
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exhausted
    assert info.plaintext_length > 48 * 1024 * 1024
    assert peak < 8 * 1024 * 1024
