"""Canonical JSON (RFC 8785 subset) and strict parsing."""

from __future__ import annotations

import pytest

from hearth.backupfmt import canonical_bytes, parse_json_strict
from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_FORMAT


def test_keys_are_sorted_without_whitespace() -> None:
    assert (
        canonical_bytes({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    )


@pytest.mark.parametrize(
    "value",
    [{"x": 1.5}, {"x": float("nan")}, {"é": 1}, {"x": object()}, {"x": b"raw"}],
)
def test_values_outside_the_subset_are_refused(value: dict[str, object]) -> None:
    with pytest.raises(HearthError) as info:
        canonical_bytes(value)
    assert info.value.code is BACKUP_FORMAT


def test_deep_nesting_is_refused() -> None:
    value: dict[str, object] = {}
    cursor = value
    for _ in range(20):
        cursor["x"] = {}
        cursor = cursor["x"]  # type: ignore[assignment]
    with pytest.raises(HearthError):
        canonical_bytes(value)


@pytest.mark.parametrize(
    "data",
    [b'{"a":1,"a":2}', b'{"a":1.0}', b'{"a":NaN}', b"\xff", b"{", b'{"a":Infinity}'],
)
def test_strict_parse_refuses(data: bytes) -> None:
    with pytest.raises(HearthError) as info:
        parse_json_strict(data)
    assert info.value.code is BACKUP_FORMAT


def test_round_trip() -> None:
    value = {"z": {"y": [1, 2, {"k": "v"}]}, "a": None}
    assert parse_json_strict(canonical_bytes(value)) == value
