"""PLACEHOLDER until the fhirdefs branch lands its generated definitions; replace wholesale."""

from __future__ import annotations

from typing import Any

import orjson

from hearth.domain import HearthError, errors


def parse_json_body(raw: bytes, *, max_depth: int = 64, max_array: int = 10_000) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HearthError(errors.MALFORMED_JSON) from None
    if not isinstance(value, dict):
        raise HearthError(errors.MALFORMED_JSON)
    return value


def parse_json_value(raw: bytes, *, max_depth: int = 64, max_array: int = 10_000) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HearthError(errors.MALFORMED_JSON) from None
