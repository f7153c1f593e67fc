"""Canonical JSON for signed backup objects: the subset of RFC 8785 (JCS) that manifests use.

Manifests hold only objects, arrays, strings, integers, booleans and null; object keys are ASCII.
On that subset JCS reduces to: keys sorted, no insignificant whitespace, UTF-8, the shortest
string escapes. Floats are refused rather than canonicalised (JCS section 3.2.2.3 needs
ECMAScript number formatting, which no manifest field needs). Parsing refuses duplicate keys, so
two readers can never disagree about which value a signed key holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_FORMAT

__all__ = ["canonical_bytes", "parse_json_strict"]

_MAX_DEPTH = 16


def _check(value: object, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise HearthError(BACKUP_FORMAT, "The manifest nests too deeply.")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise HearthError(BACKUP_FORMAT, "Manifest keys are ASCII strings.")
            _check(item, depth + 1)
        return
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray | memoryview):
        for item in value:
            _check(item, depth + 1)
        return
    raise HearthError(BACKUP_FORMAT, "Manifests hold only strings, integers, booleans and null.")


def canonical_bytes(value: Mapping[str, Any]) -> bytes:
    """Serialise ``value`` canonically (RFC 8785 on the integer-only, ASCII-key subset)."""
    _check(value, 0)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise HearthError(BACKUP_FORMAT, "A JSON object repeats a key.")
        result[key] = value
    return result


def _no_float(text: str) -> int:
    raise HearthError(BACKUP_FORMAT, "Manifests hold no floating-point numbers.")


def _no_constant(text: str) -> int:
    raise HearthError(BACKUP_FORMAT, "Manifests hold no NaN or Infinity.")


def parse_json_strict(data: bytes) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys, floats, NaN and invalid UTF-8."""
    try:
        text = data.decode("utf-8")
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except HearthError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HearthError(BACKUP_FORMAT, "The object is not valid JSON.") from None
