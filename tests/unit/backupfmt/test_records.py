"""Segment plaintext framing: every value type round-trips; damage is refused."""

from __future__ import annotations

import struct

import pytest

from hearth.backupfmt import RecordDecoder, RecordEncoder
from hearth.backupfmt.records import MAGIC, MAX_FRAME_BYTES, Row
from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_ARGUMENT, BACKUP_FORMAT

ROWS: list[Row] = [
    (1, None, True, False, -(2**63), 2**63 - 1, 1.5, "", "Zoë 名", b"", b"\x00\xff" * 10),
    (2, None, False, True, 0, 7, -0.0, "x" * 1000, "y", b"z", b"\x01"),
]
COLUMNS = tuple(f"c{i}" for i in range(11))


def _encode(rows: list[Row]) -> bytes:
    enc = RecordEncoder("t_1", COLUMNS)
    return enc.header() + b"".join(enc.row(r) for r in rows) + enc.trailer()


def _decode(data: bytes, step: int | None = None) -> tuple[RecordDecoder, list[Row]]:
    dec = RecordDecoder()
    out: list[Row] = []
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        out += dec.feed(data[i : i + step])
    dec.finish()
    return dec, out


@pytest.mark.parametrize("step", [None, 1, 3, 17])
def test_round_trip_in_any_chunking(step: int | None) -> None:
    data = _encode(ROWS)
    dec, rows = _decode(data, step)
    assert rows == ROWS
    assert (dec.table, dec.columns, dec.rows, dec.plaintext_length) == (
        "t_1",
        COLUMNS,
        2,
        len(data),
    )


def test_empty_table_round_trips() -> None:
    dec, rows = _decode(_encode([]))
    assert rows == []
    assert dec.rows == 0


def _expect_format_error(data: bytes) -> None:
    with pytest.raises(HearthError) as info:
        _decode(data)
    assert info.value.code is BACKUP_FORMAT


def test_truncation_at_every_point_is_refused() -> None:
    data = _encode(ROWS)
    for cut in range(len(data)):
        _expect_format_error(data[:cut])


def test_trailing_data_is_refused() -> None:
    _expect_format_error(_encode(ROWS) + b"\x00")
    dec = RecordDecoder()
    dec.feed(_encode(ROWS))
    with pytest.raises(HearthError):
        dec.feed(b"x")


def test_wrong_trailer_count_is_refused() -> None:
    data = bytearray(_encode(ROWS))
    data[-1] ^= 1
    _expect_format_error(bytes(data))


def test_bad_magic_or_version_is_refused() -> None:
    data = bytearray(_encode(ROWS))
    data[len(MAGIC) - 1] = 2
    _expect_format_error(bytes(data))


def _with_row(payload: bytes) -> bytes:
    enc = RecordEncoder("t", ["a"])
    return enc.header() + struct.pack(">I", len(payload)) + payload + struct.pack(">IQ", 0, 1)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x07",  # unknown tag
        b"\x03\x00",  # integer cut short
        b"\x05\x00\x00\x00\x09ab",  # text longer than its frame
        b"\x05\x00\x00\x00\x01\xff",  # invalid UTF-8
        b"\x00\x00",  # two values for one column
    ],
)
def test_malformed_rows_are_refused(payload: bytes) -> None:
    _expect_format_error(_with_row(payload))


def test_oversized_frames_are_refused_before_buffering() -> None:
    enc = RecordEncoder("t", ["a"])
    dec = RecordDecoder()
    with pytest.raises(HearthError):
        dec.feed(enc.header() + struct.pack(">I", MAX_FRAME_BYTES + 1))


@pytest.mark.parametrize(
    "header",
    [b"[]", b'{"table":"t"}', b'{"table":"t","columns":[]}', b'{"table":"a b","columns":["c"]}'],
)
def test_malformed_headers_are_refused(header: bytes) -> None:
    _expect_format_error(MAGIC + struct.pack(">I", len(header)) + header + struct.pack(">IQ", 0, 0))


@pytest.mark.parametrize(
    ("table", "columns"), [("", ["a"]), ("t", []), ("t", ["a", "a"]), ("t;drop", ["a"])]
)
def test_encoder_refuses_bad_names(table: str, columns: list[str]) -> None:
    with pytest.raises(HearthError) as info:
        RecordEncoder(table, columns)
    assert info.value.code is BACKUP_ARGUMENT


@pytest.mark.parametrize("row", [(2**63,), (object(),), (1, 2)])
def test_encoder_refuses_bad_values(row: tuple[object, ...]) -> None:
    enc = RecordEncoder("t", ["a"])
    with pytest.raises(HearthError):
        enc.row(row)  # type: ignore[arg-type]


@pytest.mark.parametrize("row", [(2**63, "x"), (object(), "x"), ("x", 2**64)])
def test_a_refused_row_leaves_the_batch_as_it_was(row: tuple[object, ...]) -> None:
    enc = RecordEncoder("t", ["a", "b"])
    batch = bytearray()
    enc.row_into((1, "one"), batch)
    before = bytes(batch)
    with pytest.raises(HearthError):
        enc.row_into(row, batch)  # type: ignore[arg-type]
    assert batch == before
    assert enc.rows == 1


def test_frames_appended_in_place_equal_single_frames() -> None:
    rows: list[tuple[object, ...]] = [(1, "é", b"\x00", None, True), (-5, "", b"", False, 2.5)]
    batch = bytearray()
    appended = RecordEncoder("t", ["a", "b", "c", "d", "e"])
    single = RecordEncoder("t", ["a", "b", "c", "d", "e"])
    for row in rows:
        appended.row_into(row, batch)  # type: ignore[arg-type]
    assert bytes(batch) == b"".join(single.row(r) for r in rows)  # type: ignore[arg-type]


def test_binary_buffers_encode_as_bytes() -> None:
    """A driver may return a binary column as a memoryview or bytearray: the same frame."""
    enc = RecordEncoder("t", ["a"])
    expected = enc.row((b"\x01\x02",))
    assert enc.row((memoryview(b"\x01\x02"),)) == expected  # type: ignore[arg-type]
    assert enc.row((bytearray(b"\x01\x02"),)) == expected  # type: ignore[arg-type]
