"""Segments: zstd + age streams of records, content-addressed, read back with every check."""

from __future__ import annotations

import errno
import hashlib
import io
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from tests.unit.backupfmt.helpers import VERSION_COLUMNS, fake_mac, make_keys, version_rows

from hearth.backupfmt import SegmentError, SegmentFault, SegmentInfo, read_segment, write_segment
from hearth.backupfmt.records import Row
from hearth.crypto.backup import AgeDecryptor
from hearth.domain import HearthError, errors

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


def _segment_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hearth-segment"]


def _large_rows(n: int) -> Iterator[tuple[object, ...]]:
    for seq in range(1, n + 1):
        body = hashlib.sha512(b"%d" % seq).digest() * 4  # poorly compressible
        yield (seq, "Observation", f"o-{seq}", 1, fake_mac(seq), body)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_compressed_stream_is_the_single_threaded_writers() -> None:
    """The worker thread changes nothing in the stored format: for a fixed input, the zstd
    stream inside each segment (decrypted) is byte for byte what the single-threaded writer of
    0.x produced (digests recorded from it), segments close at the same rows."""
    rows = _large_rows(6000)
    got = []
    exhausted = False
    while not exhausted:
        sink = io.BytesIO()
        info, exhausted = write_segment(
            "resource_versions",
            VERSION_COLUMNS,
            rows,
            KEYS.encryptor,
            sink,
            max_plaintext_bytes=1_000_000,
        )
        compressed = io.BytesIO()
        KEYS.decryptor.decrypt_stream(io.BytesIO(sink.getvalue()), compressed)
        got.append((info.rows, info.plaintext_length, sha256(compressed.getvalue())))
    assert got == [
        (2885, 1000110, "c298ee7a7dd4635c4dc5db455d5013e84192fb50ec0cb85f96a6965663f32f93"),
        (2882, 1000176, "18af6ee2dfd27848dd43aeb14e807102615fbf240a06487b4ddcfad01c59249d"),
        (233, 80973, "29ea2bed997fc0cc5d35d06189cb2c8254e3b8f67b5bea982e7e7faf7aac9d84"),
    ]


class _FullSink:
    def __init__(self, room: int) -> None:
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


@pytest.mark.parametrize("room", [0, 300_000])
def test_a_failed_write_in_the_worker_stops_the_segment(room: int) -> None:
    rows = _large_rows(20_000)
    with pytest.raises(HearthError) as caught:
        write_segment("resource_versions", VERSION_COLUMNS, rows, KEYS.encryptor, _FullSink(room))
    assert caught.value.code is errors.BACKUP_ARGUMENT
    assert "OSError" in caught.value.detail
    assert _segment_threads() == []
    # Encoding stopped soon after the failure, a few batches ahead at most.
    assert sum(1 for _ in rows) > 10_000


class _FailingEncryptor:
    """A real age encryptor that gives up after reading the header and a first batch."""

    recipients = KEYS.encryptor.recipients

    def encrypt_stream(self, source: Any, sink: Any) -> None:
        source.read(1024)
        raise ValueError("encryptor failed")


def test_an_encryptor_error_in_the_worker_reaches_the_caller() -> None:
    rows = _large_rows(20_000)
    with pytest.raises(ValueError, match="encryptor failed"):
        write_segment("resource_versions", VERSION_COLUMNS, rows, _FailingEncryptor(), _FullSink(0))
    assert _segment_threads() == []


def test_a_row_source_error_stops_the_worker() -> None:
    def rows() -> Iterator[tuple[object, ...]]:
        yield from _large_rows(3000)
        raise RuntimeError("database went away")

    sink = _CountingSink()
    with pytest.raises(RuntimeError, match="database went away"):
        write_segment("resource_versions", VERSION_COLUMNS, rows(), KEYS.encryptor, sink)
    assert _segment_threads() == []


def test_the_encryptor_reports_a_sink_that_failed_on_the_last_chunk() -> None:
    """pyrage drops an error from the sink's write when it flushes the last chunk; the
    encryptor raises it, so a short stream is never taken for a written one."""
    with pytest.raises(OSError, match="No space left") as caught:
        KEYS.encryptor.encrypt_stream(io.BytesIO(b"abc" * 10), _FullSink(0))
    assert caught.value.errno == errno.ENOSPC
