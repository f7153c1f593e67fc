"""The plaintext of a segment: one table's rows as length-prefixed frames (format version 1).

Layout, before compression and encryption::

    magic    "HEARTH-SEGMENT" 0x00 0x01          (16 bytes; the last byte is the version)
    header   u32be n, n bytes of canonical JSON {"columns": [...], "table": "..."}
    row*     u32be n (n >= 1), n bytes: one value per column, in column order
    trailer  u32be 0, u64be row count            (nothing may follow)

A value is a tag byte and its body: 0x00 null, 0x01 false, 0x02 true, 0x03 i64be integer,
0x04 f64be float, 0x05 u32be length + UTF-8 text, 0x06 u32be length + bytes. The trailer makes
the plaintext self-delimiting, so a stream cut at a frame boundary is still caught even before
the AEAD's final-chunk check.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from hearth.backupfmt.canonical import canonical_bytes, parse_json_strict
from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_ARGUMENT, BACKUP_FORMAT

__all__ = [
    "MAGIC",
    "MAX_FRAME_BYTES",
    "RecordDecoder",
    "RecordEncoder",
    "Row",
    "Value",
]

MAGIC = b"HEARTH-SEGMENT\x00\x01"
#: No single row may exceed this, so a reader's memory stays bounded on hostile input.
MAX_FRAME_BYTES = 64 * 1024 * 1024

Value = None | bool | int | float | str | bytes
Row = tuple[Value, ...]

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_NULL, _FALSE, _TRUE, _INT, _FLOAT, _TEXT, _BYTES = range(7)
_TAG_I64 = struct.Struct(">Bq")
_TAG_F64 = struct.Struct(">Bd")
_TAG_U32 = struct.Struct(">BI")


def _encode_int(value: int) -> bytes:
    try:
        return _TAG_I64.pack(_INT, value)
    except struct.error:
        raise HearthError(BACKUP_ARGUMENT, "An integer exceeds 64 bits.") from None


def _encode_bytes(value: bytes) -> bytes:
    return _TAG_U32.pack(_BYTES, len(value)) + value


def _encode_text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _TAG_U32.pack(_TEXT, len(data)) + data


def _encode_float(value: float) -> bytes:
    return _TAG_F64.pack(_FLOAT, value)


def _encode_slow(value: object) -> bytes:
    if value is None:
        return b"\x00"
    if isinstance(value, bool):
        return b"\x02" if value else b"\x01"
    if isinstance(value, int):
        return _encode_int(int(value))
    if isinstance(value, bytes | bytearray | memoryview):
        # A driver may hand binary columns over as a buffer: the same bytes, the same tag.
        return _encode_bytes(bytes(value))
    if isinstance(value, str):
        return _encode_text(str(value))
    if isinstance(value, float):
        return _encode_float(float(value))
    raise HearthError(BACKUP_ARGUMENT, "A row value has an unsupported type.")


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    type(None): lambda _: b"\x00",
    bool: lambda v: b"\x02" if v else b"\x01",
    int: _encode_int,
    bytes: _encode_bytes,
    str: _encode_text,
    float: _encode_float,
}


def _table_name_ok(name: str) -> bool:
    return 0 < len(name) <= 128 and name.isascii() and name.replace("_", "a").isalnum()


class RecordEncoder:
    """Encodes one table's rows into frames; the caller concatenates the returned bytes."""

    __slots__ = ("columns", "rows", "table")

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        if not _table_name_ok(table) or not columns or not all(map(_table_name_ok, columns)):
            raise HearthError(BACKUP_ARGUMENT, "Table and column names are ASCII identifiers.")
        if len(set(columns)) != len(columns):
            raise HearthError(BACKUP_ARGUMENT, "A column is named twice.")
        self.table = table
        self.columns = tuple(columns)
        self.rows = 0

    def header(self) -> bytes:
        body = canonical_bytes({"table": self.table, "columns": list(self.columns)})
        return MAGIC + _U32.pack(len(body)) + body

    def row(self, values: Sequence[Value]) -> bytes:
        """One row's frame."""
        out = bytearray()
        self.row_into(values, out)
        return bytes(out)

    def row_into(self, values: Sequence[Value], out: bytearray) -> None:
        """Append one row's frame to ``out`` (the writer's batch): no bytes object per value
        or per frame. On an error ``out`` is left as it was."""
        if len(values) != len(self.columns):
            raise HearthError(BACKUP_ARGUMENT, "A row has the wrong number of values.")
        start = len(out)
        out += b"\x00\x00\x00\x00"  # the frame's length, filled in below
        # Dispatch on the exact type (bool is its own type, so it never reaches the int case);
        # subclasses such as IntEnum fall back to the isinstance chain. Text, integers, bytes
        # and nulls (nearly every value) are encoded inline: no call per value.
        untyped: Sequence[Any] = values  # narrowed by ``type(v)`` below, which mypy does not see
        try:
            for v in untyped:
                kind = type(v)
                if kind is str:
                    data = v.encode("utf-8")
                    out += _TAG_U32.pack(_TEXT, len(data))
                    out += data
                elif kind is int:
                    out += _TAG_I64.pack(_INT, v)
                elif kind is bytes:
                    out += _TAG_U32.pack(_BYTES, len(v))
                    out += v
                elif v is None:
                    out.append(_NULL)
                else:
                    out += (_ENCODERS.get(kind) or _encode_slow)(v)
            length = len(out) - start - 4
            if length > MAX_FRAME_BYTES:
                raise HearthError(BACKUP_ARGUMENT, "A row is larger than a segment frame allows.")
            _U32.pack_into(out, start, length)
        except struct.error:
            del out[start:]
            raise HearthError(BACKUP_ARGUMENT, "An integer exceeds 64 bits.") from None
        except BaseException:
            del out[start:]
            raise
        self.rows += 1

    def trailer(self) -> bytes:
        return _U32.pack(0) + _U64.pack(self.rows)


def _decode_row(payload: bytes, ncolumns: int) -> Row:
    values: list[Value] = []
    pos = 0
    end = len(payload)
    try:
        while pos < end:
            tag = payload[pos]
            pos += 1
            if tag == _NULL:
                values.append(None)
            elif tag == _FALSE:
                values.append(False)
            elif tag == _TRUE:
                values.append(True)
            elif tag == _INT:
                values.append(_I64.unpack_from(payload, pos)[0])
                pos += 8
            elif tag == _FLOAT:
                values.append(_F64.unpack_from(payload, pos)[0])
                pos += 8
            elif tag in (_TEXT, _BYTES):
                (n,) = _U32.unpack_from(payload, pos)
                pos += 4
                if pos + n > end:
                    raise HearthError(BACKUP_FORMAT, "A segment value runs past its frame.")
                raw = payload[pos : pos + n]
                pos += n
                values.append(raw.decode("utf-8") if tag == _TEXT else raw)
            else:
                raise HearthError(BACKUP_FORMAT, "A segment value has an unknown tag.")
    except (struct.error, UnicodeDecodeError):
        raise HearthError(BACKUP_FORMAT, "A segment row is malformed.") from None
    if len(values) != ncolumns:
        raise HearthError(BACKUP_FORMAT, "A segment row has the wrong number of values.")
    return tuple(values)


class RecordDecoder:
    """Incremental decoder: ``feed`` plaintext as it arrives, get whole rows back; ``finish``
    raises unless the trailer was seen with the right count and nothing followed it."""

    __slots__ = ("_buffer", "_done", "_header_seen", "columns", "plaintext_length", "rows", "table")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header_seen = False
        self._done = False
        self.table = ""
        self.columns: tuple[str, ...] = ()
        self.rows = 0
        self.plaintext_length = 0

    def feed(self, data: bytes) -> list[Row]:
        self.plaintext_length += len(data)
        if self._done:
            if data:
                raise HearthError(BACKUP_FORMAT, "Data follows the segment trailer.")
            return []
        buf = self._buffer
        buf += data
        out: list[Row] = []
        pos = 0
        if not self._header_seen:
            if len(buf) < len(MAGIC) + 4:
                return out
            if bytes(buf[: len(MAGIC)]) != MAGIC:
                raise HearthError(BACKUP_FORMAT, "Not a Hearth segment, or an unknown version.")
            (n,) = _U32.unpack_from(buf, len(MAGIC))
            if n > 65536:
                raise HearthError(BACKUP_FORMAT, "The segment header is too large.")
            start = len(MAGIC) + 4
            if len(buf) < start + n:
                return out
            header = parse_json_strict(bytes(buf[start : start + n]))
            self._read_header(header)
            pos = start + n
        ncolumns = len(self.columns)
        while len(buf) - pos >= 4:
            (n,) = _U32.unpack_from(buf, pos)
            if n == 0:
                if len(buf) - pos < 12:
                    break
                (count,) = _U64.unpack_from(buf, pos + 4)
                if count != self.rows:
                    raise HearthError(BACKUP_FORMAT, "The segment trailer's row count is wrong.")
                if len(buf) - pos > 12:
                    raise HearthError(BACKUP_FORMAT, "Data follows the segment trailer.")
                self._done = True
                pos += 12
                break
            if n > MAX_FRAME_BYTES:
                raise HearthError(BACKUP_FORMAT, "A segment frame is larger than allowed.")
            if len(buf) - pos - 4 < n:
                break
            out.append(_decode_row(bytes(buf[pos + 4 : pos + 4 + n]), ncolumns))
            self.rows += 1
            pos += 4 + n
        del buf[:pos]
        return out

    def _read_header(self, header: object) -> None:
        if not isinstance(header, dict) or set(header) != {"table", "columns"}:
            raise HearthError(BACKUP_FORMAT, "The segment header is malformed.")
        table, columns = header["table"], header["columns"]
        if (
            not isinstance(table, str)
            or not _table_name_ok(table)
            or not isinstance(columns, list)
            or not columns
            or not all(isinstance(c, str) and _table_name_ok(c) for c in columns)
        ):
            raise HearthError(BACKUP_FORMAT, "The segment header is malformed.")
        self.table = table
        self.columns = tuple(columns)
        self._header_seen = True

    def finish(self) -> None:
        if not self._done:
            raise HearthError(BACKUP_FORMAT, "The segment ends before its trailer.")
