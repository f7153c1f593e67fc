"""Segments: one table's rows, compressed with zstd (RFC 8878) and encrypted with age v1.

Write path (bounded memory, two threads): rows -> :class:`RecordEncoder` frames in the
caller's thread, in batches of 256 KiB through a queue of at most four batches -> zstd -> the
:class:`SegmentEncryptor` (age: X25519 recipient stanzas, then ChaCha20-Poly1305 in 64 KiB
authenticated chunks, the last one flagged) -> SHA-256 and length of the stored bytes -> sink,
all in one worker thread per segment, so that reading and encoding the next rows overlaps with
compressing, encrypting and writing the previous ones. The encryptor pulls plaintext as it needs
it, so a segment of any size is written with a few MiB of buffers. The stored bytes do not
depend on the threads: zstd sees the same pieces in the same order as a single thread would
give it. An error on either side stops both before ``write_segment`` returns, and is raised in
the caller's thread: the row source's or ``on_row``'s as it was, the encryptor's or the sink's
as the worker saw it. A segment closes once its plaintext reaches ``max_plaintext_bytes``
(default 64 MiB) so that a failed upload is retried in bounded pieces.

Read path: stored bytes -> SHA-256 and length -> decryptor -> zstd -> :class:`RecordDecoder`
-> rows handed to a callback in batches. The stored bytes' digest is known only at the end, and
age authenticates each chunk as it goes, so rows delivered before an error are authentic but
possibly incomplete: a restore must not commit before :func:`read_segment` returns.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any, cast

import zstandard

from hearth.backupfmt.interfaces import Readable, SegmentDecryptor, SegmentEncryptor, Writable
from hearth.backupfmt.naming import SHA256_HEX_PATTERN, segment_object_name
from hearth.backupfmt.records import RecordDecoder, RecordEncoder, Row
from hearth.domain import HearthError, IntegrityError
from hearth.domain.errors import (
    BACKUP_ARGUMENT,
    BACKUP_FORMAT,
    BACKUP_INVALID,
    BACKUP_NO_IDENTITY,
)

__all__ = [
    "DEFAULT_MAX_PLAINTEXT_BYTES",
    "DEFAULT_ZSTD_LEVEL",
    "SegmentError",
    "SegmentFault",
    "SegmentInfo",
    "digest_stream",
    "read_segment",
    "write_segment",
]

DEFAULT_MAX_PLAINTEXT_BYTES = 64 * 1024 * 1024
DEFAULT_ZSTD_LEVEL = 3
_BATCH = 256 * 1024
_READ = 256 * 1024


class SegmentFault(StrEnum):
    """Which check a segment failed; the verifier reports it under ``segment.<fault>``."""

    HASH = "hash"  # the stored bytes are not the ones the manifest names
    IDENTITY = "identity"  # no identity given opens the age header
    DECRYPT = "decrypt"  # an AEAD tag failed, or the stream was cut or extended
    RECORDS = "records"  # the plaintext is malformed or its counts differ from the manifest


class SegmentError(HearthError):
    def __init__(self, fault: SegmentFault, name: str, cause: HearthError | None = None) -> None:
        code = BACKUP_FORMAT if fault is SegmentFault.RECORDS else BACKUP_INVALID
        if fault is SegmentFault.IDENTITY:
            code = BACKUP_NO_IDENTITY
        detail = f"Segment {name} failed its {fault.value} check"
        if cause is not None:
            detail += f": {cause.detail}"
        super().__init__(code, detail)
        self.fault = fault
        self.name = name


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A manifest's entry for one segment. ``sha256`` and ``stored_length`` describe the stored
    (encrypted) bytes; ``plaintext_length`` and ``rows`` the record stream inside."""

    name: str
    table: str
    sha256: str
    stored_length: int
    plaintext_length: int
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": self.table,
            "sha256": self.sha256,
            "stored_length": self.stored_length,
            "plaintext_length": self.plaintext_length,
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, value: object) -> SegmentInfo:
        fields = ("name", "table", "sha256", "stored_length", "plaintext_length", "rows")
        if not isinstance(value, dict) or set(value) != set(fields):
            raise HearthError(BACKUP_FORMAT, "A manifest segment entry is malformed.")
        name, table, sha = value["name"], value["table"], value["sha256"]
        counts = (value["stored_length"], value["plaintext_length"], value["rows"])
        if (
            not isinstance(name, str)
            or not isinstance(table, str)
            or not isinstance(sha, str)
            or not SHA256_HEX_PATTERN.fullmatch(sha)
            or not all(type(c) is int and c >= 0 for c in counts)
        ):
            raise HearthError(BACKUP_FORMAT, "A manifest segment entry is malformed.")
        return cls(name, table, sha, counts[0], counts[1], counts[2])


class _Abort(Exception):
    """Put on the queue when the producing thread gave up; ends the worker's read."""


_END = object()
_ABORT = object()
#: Plaintext batches in flight between the encoding thread and the compressing worker.
_QUEUE_BATCHES = 4


class _PlaintextSource(io.RawIOBase):
    """What the encryptor reads, in the worker thread: plaintext batches from a bounded queue,
    each compressed in turn (the same ``compress`` calls, in the same pieces, as one thread
    would make, so the stored bytes do not depend on the threads)."""

    def __init__(self, batches: queue.Queue[object], level: int) -> None:
        super().__init__()
        self._batches = batches
        self._compressor = zstandard.ZstdCompressor(level=level).compressobj()
        self._pending = bytearray()
        self.finished = False
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def _refill(self) -> None:
        item = self._batches.get()
        if item is _END:
            self._pending += self._compressor.flush()
            self.finished = True
        elif isinstance(item, bytes | bytearray):
            self._pending += self._compressor.compress(item)
        else:
            raise _Abort

    def readinto(self, buffer: Any) -> int:
        try:
            view = memoryview(buffer).cast("B")
            while not self._pending and not self.finished:
                self._refill()
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            del self._pending[:n]
            return n
        except BaseException as exc:
            # The encryptor may wrap what we raise; keep the original for the caller.
            self.error = exc
            raise


class _Worker(threading.Thread):
    """Compresses, encrypts, hashes and writes one segment while the caller's thread encodes
    the next rows. python-zstandard and hashlib release the GIL on large buffers."""

    def __init__(self, source: _PlaintextSource, encryptor: SegmentEncryptor, sink: _DigestSink):
        super().__init__(name="hearth-segment", daemon=True)
        self._source = source
        self._encryptor = encryptor
        self._sink = sink
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._encryptor.encrypt_stream(self._source, self._sink)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.error = self._source.error or self._sink.error or exc


def _produce(
    batches: queue.Queue[object],
    worker: _Worker,
    sink: _DigestSink,
    encoder: RecordEncoder,
    rows: Iterator[Sequence[Any]],
    limit: int,
    on_row: Callable[[Sequence[Any]], None] | None,
) -> tuple[int, bool, bool]:
    """Encode rows into plaintext batches for the worker, in the caller's thread (rows and
    ``on_row`` stay on the thread that owns them). Returns the plaintext length, whether
    ``rows`` is exhausted, and whether it stopped early because the worker failed."""

    def put(item: object) -> bool:
        while sink.error is None:
            try:
                batches.put(item, timeout=0.05)
                return True
            except queue.Full:
                if not worker.is_alive():
                    return False
        return False

    header = encoder.header()
    length = len(header)
    if not put(header):
        return length, False, True
    exhausted = False
    encode = encoder.row_into
    while True:
        # Frames are appended to the batch in place; the worker owns it once it is queued.
        batch = bytearray()
        while len(batch) < _BATCH and length + len(batch) < limit:
            row = next(rows, None)
            if row is None:
                exhausted = True
                break
            if on_row is not None:
                on_row(row)
            encode(row, batch)
        length += len(batch)
        if not put(batch):
            return length, exhausted, True
        if exhausted or length >= limit:
            trailer = encoder.trailer()
            length += len(trailer)
            return length, exhausted, not (put(trailer) and put(_END))


class _DigestSink(io.RawIOBase):
    def __init__(self, sink: Writable) -> None:
        super().__init__()
        self._sink = sink
        self._hash = hashlib.sha256()
        self.length = 0
        self.error: BaseException | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            chunk = bytes(data)
            self._hash.update(chunk)
            self.length += len(chunk)
            self._sink.write(chunk)
            return len(chunk)
        except BaseException as exc:
            self.error = exc
            raise

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def write_segment(
    table: str,
    columns: Sequence[str],
    rows: Iterator[Sequence[Any]],
    encryptor: SegmentEncryptor,
    sink: Writable,
    *,
    max_plaintext_bytes: int = DEFAULT_MAX_PLAINTEXT_BYTES,
    level: int = DEFAULT_ZSTD_LEVEL,
    on_row: Callable[[Sequence[Any]], None] | None = None,
) -> tuple[SegmentInfo, bool]:
    """Write rows from ``rows`` as one segment into ``sink`` until the plaintext reaches
    ``max_plaintext_bytes`` or ``rows`` ends. Returns the segment's manifest entry and whether
    ``rows`` is exhausted; rows not yet taken stay in the iterator for the next segment.
    ``on_row`` sees each row before it is encoded (the writer computes Merkle leaves there)."""
    if max_plaintext_bytes < 1:
        raise HearthError(BACKUP_ARGUMENT, "Segments need a positive size limit.")
    encoder = RecordEncoder(table, columns)
    batches: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_BATCHES)
    source = _PlaintextSource(batches, level)
    digest = _DigestSink(sink)
    worker = _Worker(source, encryptor, digest)
    worker.start()
    stopped = True
    try:
        plaintext_length, exhausted, stopped = _produce(
            batches, worker, digest, encoder, rows, max_plaintext_bytes, on_row
        )
    finally:
        if stopped:
            _cancel(batches)
        worker.join()
    failed = digest.error or worker.error
    if failed is not None:
        if isinstance(failed, OSError):
            # The spool's disk or file failed under the worker (full, gone, read-only).
            raise HearthError(
                BACKUP_ARGUMENT, f"A segment could not be written ({type(failed).__name__})."
            ) from failed
        raise failed
    if stopped or not source.finished:
        raise HearthError(BACKUP_INVALID, "A segment was not written to its end.")
    sha = digest.hexdigest()
    info = SegmentInfo(
        name=segment_object_name(sha),
        table=table,
        sha256=sha,
        stored_length=digest.length,
        plaintext_length=plaintext_length,
        rows=encoder.rows,
    )
    return info, exhausted


def _cancel(batches: queue.Queue[object]) -> None:
    """Tell a worker waiting for plaintext that none will come (only the producer puts)."""
    while True:
        try:
            batches.get_nowait()
        except queue.Empty:
            break
    batches.put_nowait(_ABORT)


class _DigestSource(io.RawIOBase):
    def __init__(self, source: Readable) -> None:
        super().__init__()
        self._source = source
        self._hash = hashlib.sha256()
        self.length = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._source.read(len(view))
        except BaseException as exc:
            self.error = exc
            raise
        n = len(data)
        view[:n] = data
        self._hash.update(data)
        self.length += n
        return n

    def drain(self) -> None:
        while chunk := self._source.read(_READ):
            self._hash.update(chunk)
            self.length += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def digest_stream(source: Readable) -> tuple[str, int]:
    """SHA-256 (hex) and length of everything ``source`` yields."""
    reader = _DigestSource(source)
    reader.drain()
    return reader.hexdigest(), reader.length


class _RecordSink(io.RawIOBase):
    def __init__(self, on_rows: Callable[[str, tuple[str, ...], list[Row]], None] | None) -> None:
        super().__init__()
        self.decoder = RecordDecoder()
        self._on_rows = on_rows
        self.error: BaseException | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.error is not None:
            # A layer between us and the decryptor may retry the write; keep the first error.
            raise self.error
        try:
            chunk = bytes(data)
            rows = self.decoder.feed(chunk)
            if rows and self._on_rows is not None:
                self._on_rows(self.decoder.table, self.decoder.columns, rows)
            return len(chunk)
        except BaseException as exc:
            self.error = exc
            raise


class _DecompressingSink(io.RawIOBase):
    """zstd stream decompression into the record sink, output bounded per call."""

    def __init__(self, target: _RecordSink) -> None:
        super().__init__()
        self._target = target
        # stream_writer hands the output on in pieces of at most _READ bytes, so a highly
        # compressible (or hostile) stream never inflates into one large buffer.
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            cast("IO[bytes]", target), write_size=_READ, closefd=False
        )

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        try:
            self._writer.write(chunk)
        except zstandard.ZstdError:
            raise HearthError(BACKUP_FORMAT, "A segment's compressed stream is corrupt.") from None
        return len(chunk)


def read_segment(
    source: Readable,
    info: SegmentInfo,
    decryptor: SegmentDecryptor,
    on_rows: Callable[[str, tuple[str, ...], list[Row]], None] | None = None,
) -> tuple[str, ...]:
    """Decrypt, decompress and decode one stored segment, checking it against its manifest
    entry: stored SHA-256 and length, AEAD tags, table, plaintext length and row count. Rows go
    to ``on_rows(table, columns, rows)`` in batches. Returns the segment's column names.

    Raises :class:`SegmentError` naming the failed check. When decryption fails the rest of the
    stored bytes is still read, so that altered bytes are reported as a ``hash`` fault (the
    cause) rather than a ``decrypt`` fault (the symptom). An exception raised by ``on_rows``
    itself propagates unchanged."""
    reader = _DigestSource(source)
    records = _RecordSink(on_rows)
    decompress = _DecompressingSink(records)
    failure: SegmentFault | None = None
    cause: HearthError | None = None
    try:
        decryptor.decrypt_stream(reader, decompress)
        records.decoder.finish()
    except Exception as exc:  # noqa: BLE001 - classified below; the rest is re-raised
        inner = reader.error or records.error or exc
        if isinstance(inner, HearthError) and inner.code is BACKUP_NO_IDENTITY:
            failure = SegmentFault.IDENTITY
        elif isinstance(inner, IntegrityError):
            failure = SegmentFault.DECRYPT
        elif isinstance(inner, HearthError) and inner.code is BACKUP_FORMAT:
            failure = SegmentFault.RECORDS
        else:
            raise inner from None
        cause = inner
    reader.drain()
    if reader.hexdigest() != info.sha256 or reader.length != info.stored_length:
        raise SegmentError(SegmentFault.HASH, info.name)
    if failure is not None:
        raise SegmentError(failure, info.name, cause)
    decoder = records.decoder
    if (
        decoder.table != info.table
        or decoder.rows != info.rows
        or decoder.plaintext_length != info.plaintext_length
    ):
        raise SegmentError(SegmentFault.RECORDS, info.name)
    return decoder.columns
