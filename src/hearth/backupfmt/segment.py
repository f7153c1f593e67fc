"""Segments: one table's rows, compressed with zstd (RFC 8878) and encrypted with age v1.

Write path (pull, bounded memory): rows -> :class:`RecordEncoder` frames -> zstd -> the
:class:`SegmentEncryptor` (age: X25519 recipient stanzas, then ChaCha20-Poly1305 in 64 KiB
authenticated chunks, the last one flagged) -> SHA-256 and length of the stored bytes -> sink.
The encryptor pulls plaintext as it needs it, so a segment of any size is written with a few
hundred KiB of buffers. A segment closes once its plaintext reaches ``max_plaintext_bytes``
(default 64 MiB) so that a failed upload is retried in bounded pieces.

Read path: stored bytes -> SHA-256 and length -> decryptor -> zstd -> :class:`RecordDecoder`
-> rows handed to a callback in batches. The stored bytes' digest is known only at the end, and
age authenticates each chunk as it goes, so rows delivered before an error are authentic but
possibly incomplete: a restore must not commit before :func:`read_segment` returns.
"""

from __future__ import annotations

import hashlib
import io
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


class _PlaintextSource(io.RawIOBase):
    """Pulls rows, frames and compresses them on demand: what the encryptor reads."""

    def __init__(
        self,
        encoder: RecordEncoder,
        rows: Iterator[Sequence[Any]],
        level: int,
        limit: int,
        on_row: Callable[[Sequence[Any]], None] | None,
    ) -> None:
        super().__init__()
        self._encoder = encoder
        self._rows = rows
        self._compressor = zstandard.ZstdCompressor(level=level).compressobj()
        self._limit = limit
        self._on_row = on_row
        self._pending = bytearray()
        self._finished = False
        self.exhausted = False
        self.plaintext_length = 0
        self.error: BaseException | None = None
        header = encoder.header()
        self.plaintext_length += len(header)
        self._pending += self._compressor.compress(header)

    def readable(self) -> bool:
        return True

    def _refill(self) -> None:
        batch: list[bytes] = []
        size = 0
        while size < _BATCH and self.plaintext_length + size < self._limit:
            row = next(self._rows, None)
            if row is None:
                self.exhausted = True
                break
            if self._on_row is not None:
                self._on_row(row)
            frame = self._encoder.row(row)
            batch.append(frame)
            size += len(frame)
        data = b"".join(batch)
        self.plaintext_length += len(data)
        self._pending += self._compressor.compress(data)
        if self.exhausted or self.plaintext_length >= self._limit:
            trailer = self._encoder.trailer()
            self.plaintext_length += len(trailer)
            self._pending += self._compressor.compress(trailer)
            self._pending += self._compressor.flush()
            self._finished = True

    def readinto(self, buffer: Any) -> int:
        try:
            view = memoryview(buffer).cast("B")
            while not self._pending and not self._finished:
                self._refill()
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            del self._pending[:n]
            return n
        except BaseException as exc:
            # The encryptor may wrap what we raise; keep the original for the caller.
            self.error = exc
            raise


class _DigestSink(io.RawIOBase):
    def __init__(self, sink: Writable) -> None:
        super().__init__()
        self._sink = sink
        self._hash = hashlib.sha256()
        self.length = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._hash.update(chunk)
        self.length += len(chunk)
        self._sink.write(chunk)
        return len(chunk)

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
    source = _PlaintextSource(encoder, rows, level, max_plaintext_bytes, on_row)
    digest = _DigestSink(sink)
    try:
        encryptor.encrypt_stream(source, digest)
    except BaseException:
        if source.error is not None:
            raise source.error from None
        raise
    sha = digest.hexdigest()
    info = SegmentInfo(
        name=segment_object_name(sha),
        table=table,
        sha256=sha,
        stored_length=digest.length,
        plaintext_length=source.plaintext_length,
        rows=encoder.rows,
    )
    return info, source.exhausted


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
