"""Strict parsing of FHIR JSON request bodies (json.html; RFC 8259).

:func:`parse_json_body` turns the raw bytes of a request into a resource dict or raises a
``HearthError`` with a stable code; :func:`parse_json_value` does the same for any JSON value
(a JSON Patch document is an array). Both refuse:

- bytes that are not UTF-8 JSON (``MALFORMED_JSON``; orjson is strict: no NaN/Infinity, no
  comments, no trailing commas, no lone surrogates, no byte-order mark);
- objects with a repeated key (``MALFORMED_JSON``; FHIR JSON never repeats a property, and two
  parsers that keep different duplicates are a classic smuggling trick);
- nesting deeper than ``max_depth`` (``NESTING_TOO_DEEP``) and arrays longer than ``max_array``
  (``ARRAY_TOO_LONG``);
- for a resource body, anything but an object with a string ``resourceType``
  (``MALFORMED_JSON`` / ``MISSING_RESOURCE_TYPE``).

Duplicate keys are found without a second parse in the common case. orjson keeps the last of
repeated keys, so a document with duplicates loses members. Every ``:`` in JSON text is either a
name separator or a character inside a string, and orjson writes colons literally, so the text
and ``orjson.dumps`` of the parsed value hold the same number of colons exactly when no member
was lost, unless the text wrote a colon as the escape ``\\u003a``. Only when the counts differ,
or the text holds that escape, is the body re-read with the standard library's
``object_pairs_hook`` to decide exactly.

Errors name the position (line and column) at most, never content from the body.

Decimal precision (datatypes.html#decimal: "0.010 is regarded as different to 0.01, and the
original precision should be preserved"): JSON numbers become Python floats, which forget
trailing zeros and exponent notation. Where the text holds a number a float would rewrite
(``1.50``, ``1e3``, 16 or more digits), the value is read again with the standard library into
``FhirDecimal``, a float that remembers its literal, and ``dumps`` writes that literal back
verbatim. Bodies read from storage go through ``loads``, so precision survives every round trip.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from hearth.domain import HearthError
from hearth.domain.errors import (
    ARRAY_TOO_LONG,
    MALFORMED_JSON,
    MISSING_RESOURCE_TYPE,
    NESTING_TOO_DEEP,
)

__all__ = [
    "DEFAULT_MAX_ARRAY",
    "DEFAULT_MAX_DEPTH",
    "FhirDecimal",
    "dumps",
    "loads",
    "parse_json_body",
    "parse_json_value",
]

DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ARRAY = 10_000


class FhirDecimal(float):
    """A JSON number that keeps the text it was written as (``1.50`` stays ``1.50``)."""

    __slots__ = ("literal",)
    literal: str

    def __new__(cls, literal: str) -> FhirDecimal:
        value = super().__new__(cls, literal)
        value.literal = literal
        return value

    def __repr__(self) -> str:
        return self.literal

    def __reduce__(self) -> tuple[type[FhirDecimal], tuple[str]]:
        return (FhirDecimal, (self.literal,))

    def __deepcopy__(self, memo: dict[int, Any]) -> FhirDecimal:
        return self  # immutable


# A number a float would rewrite: a trailing zero after the point, an exponent, or more digits
# than a double holds. It must end like a JSON number (not inside a word); a match inside a
# string only costs the slower exact read, never a wrong value.
_LITERAL_NUMBER = re.compile(rb"(?:\.[0-9]*0|[0-9][eE][+-]?[0-9]+|[0-9.]{17,})(?=[\s,\]}])")


def _default(value: object) -> orjson.Fragment:
    if isinstance(value, FhirDecimal):
        return orjson.Fragment(value.literal.encode("ascii"))
    raise TypeError(type(value).__name__)


def dumps(value: Any, *, option: int = 0) -> bytes:
    """Serialise FHIR JSON, writing each ``FhirDecimal`` exactly as it was received."""
    return orjson.dumps(value, default=_default, option=option)


def loads(raw: bytes) -> Any:
    """Parse trusted JSON (a stored body), keeping decimal literals a float would change."""
    doc = orjson.loads(raw)
    if _LITERAL_NUMBER.search(raw):
        return json.loads(raw, parse_float=FhirDecimal)
    return doc


def parse_json_value(
    raw: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_array: int = DEFAULT_MAX_ARRAY,
) -> Any:
    """Parse any JSON value under the same limits and duplicate-key rule as a resource body."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson's own recursion limit (1024) is reported as a decode error; it is still a
        # nesting problem for the client.
        if "depth" in str(exc) or "recursion" in str(exc):
            raise HearthError(NESTING_TOO_DEEP) from None
        raise HearthError(
            MALFORMED_JSON,
            f"The request body is not valid JSON (line {exc.lineno}, column {exc.colno}).",
        ) from None
    except (TypeError, ValueError):
        raise HearthError(MALFORMED_JSON) from None
    _check_limits(doc, max_depth, max_array)
    if (
        raw.count(b":") != orjson.dumps(doc).count(b":") or b"\\u003a" in raw or b"\\u003A" in raw
    ) and _has_duplicate_keys(raw):
        raise HearthError(MALFORMED_JSON, "The JSON repeats a key inside one object.")
    if _LITERAL_NUMBER.search(raw):
        # orjson has already refused what is not strict JSON (NaN, Infinity, ...).
        return json.loads(raw, parse_float=FhirDecimal)
    return doc


def parse_json_body(
    raw: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_array: int = DEFAULT_MAX_ARRAY,
) -> dict[str, Any]:
    """Parse a FHIR resource body (http.html#create: the body is one resource in JSON form)."""
    doc = parse_json_value(raw, max_depth=max_depth, max_array=max_array)
    if type(doc) is not dict:
        raise HearthError(MALFORMED_JSON, "A FHIR resource must be a JSON object.")
    rtype = doc.get("resourceType")
    if type(rtype) is not str or not rtype:
        raise HearthError(MISSING_RESOURCE_TYPE)
    return doc


def _check_limits(doc: Any, max_depth: int, max_array: int) -> None:
    """Enforce the depth and array-length limits, one nesting level at a time (no recursion)."""
    level = [doc] if type(doc) is dict or type(doc) is list else []
    depth = 1
    while level:
        if depth > max_depth:
            raise HearthError(
                NESTING_TOO_DEEP, f"The JSON nests more than {max_depth} levels deep."
            )
        below: list[Any] = []
        for value in level:
            if type(value) is dict:
                items: Any = value.values()
            else:
                if len(value) > max_array:
                    raise HearthError(
                        ARRAY_TOO_LONG, f"A JSON array has more than {max_array} items."
                    )
                items = value
            for item in items:
                if type(item) is dict or type(item) is list:
                    below.append(item)
        level = below
        depth += 1


def _has_duplicate_keys(raw: bytes) -> bool:
    """The exact (slow) check, only when the cheap count is inconclusive."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise _Duplicate
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=hook)
    except _Duplicate:
        return True
    except (ValueError, RecursionError):
        # orjson accepted the text and the walk bounded its depth, so this does not happen;
        # fail closed all the same.
        return True
    return False


class _Duplicate(Exception):
    pass
