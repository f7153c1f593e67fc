"""hearth.fhir.jsonbody: strict parsing with limits and stable codes."""

from __future__ import annotations

import json

import pytest

from hearth.domain import HearthError
from hearth.domain import errors as E
from hearth.fhir.jsonbody import parse_json_body, parse_json_value


def code_of(raw: bytes, **kwargs: int) -> E.ErrorCode:
    with pytest.raises(HearthError) as caught:
        parse_json_body(raw, **kwargs)
    return caught.value.code


def test_a_resource_parses() -> None:
    body = parse_json_body(b'{"resourceType": "Patient", "name": [{"family": "a:b"}]}')
    assert body == {"resourceType": "Patient", "name": [{"family": "a:b"}]}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"{'resourceType': 'Patient'}",
        b'{"resourceType": "Patient",}',
        b'{"resourceType": "Patient", "x": NaN}',
        b'{"resourceType": "Patient", "x": Infinity}',
        b'{"resourceType": "Patient", "x": 1e400}',
        b'{"resourceType": "Patient"} // comment',
        b'\xef\xbb\xbf{"resourceType": "Patient"}',
        b'{"resourceType": "Patient", "x": "\xff"}',
        b'{"resourceType": "Patient", "x": "\\ud800"}',
        b'{"resourceType": "Patient"} {"resourceType": "Patient"}',
    ],
)
def test_malformed_json(raw: bytes) -> None:
    assert code_of(raw) is E.MALFORMED_JSON


def test_malformed_json_errors_do_not_echo_the_body() -> None:
    with pytest.raises(HearthError) as caught:
        parse_json_body(b'{"resourceType": "Patient", "name": "ZZSECRET" ZZSECRET}')
    assert "ZZSECRET" not in str(caught.value)
    assert "line 1" in caught.value.detail


@pytest.mark.parametrize("raw", [b"[]", b'"Patient"', b"1", b"null", b"true"])
def test_non_objects_are_refused(raw: bytes) -> None:
    assert code_of(raw) is E.MALFORMED_JSON


@pytest.mark.parametrize(
    "raw", [b"{}", b'{"resourceType": 1}', b'{"resourceType": ""}', b'{"resourcetype": "Patient"}']
)
def test_a_resource_needs_a_resource_type(raw: bytes) -> None:
    assert code_of(raw) is E.MISSING_RESOURCE_TYPE


@pytest.mark.parametrize(
    "raw",
    [
        b'{"resourceType": "Patient", "resourceType": "Observation"}',
        b'{"resourceType": "Patient", "name": [{"family": "a", "family": "b"}]}',
        b'{"resourceType": "Patient", "a": {"b": {"c": 1, "c": 1}}}',
        # Colons inside strings do not hide a duplicate.
        b'{"resourceType": "Patient", "u": "http://x:80/", "u": "urn:a:b"}',
        # Nor does a colon written as an escape.
        b'{"resourceType": "Patient", "x": "\\u003a", "x": "\\u003A"}',
    ],
)
def test_duplicate_keys_are_refused(raw: bytes) -> None:
    with pytest.raises(HearthError) as caught:
        parse_json_body(raw)
    assert caught.value.code is E.MALFORMED_JSON
    assert "repeats a key" in caught.value.detail


@pytest.mark.parametrize(
    "raw",
    [
        b'{"resourceType": "Patient", "a": "x:y:z", "b:c": "d", "e": ["f:g", {"h:i": ":"}]}',
        b'{"resourceType": "Patient", "x": "\\u003a", "y": "\\\\u003a"}',
        b'{"resourceType": "Patient", "a": [{"b": 1}, {"b": 1}]}',
    ],
)
def test_no_false_duplicates(raw: bytes) -> None:
    assert parse_json_body(raw) == json.loads(raw)


def nested(depth: int) -> bytes:
    """A resource whose deepest container is ``depth`` levels down (the root object is 1)."""
    return b'{"resourceType": "Patient", "a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_nesting_limit() -> None:
    assert parse_json_body(nested(64))
    assert code_of(nested(65)) is E.NESTING_TOO_DEEP
    assert parse_json_body(nested(10), max_depth=10)
    assert code_of(nested(11), max_depth=10) is E.NESTING_TOO_DEEP
    # Beyond orjson's own recursion limit the answer is the same.
    assert code_of(b"[" * 5000 + b"]" * 5000) is E.NESTING_TOO_DEEP


def array(n: int) -> bytes:
    return b'{"resourceType": "Patient", "a": [' + b",".join([b"1"] * n) + b"]}"


def test_array_limit() -> None:
    assert parse_json_body(array(10_000))
    assert code_of(array(10_001)) is E.ARRAY_TOO_LONG
    assert code_of(array(6), max_array=5) is E.ARRAY_TOO_LONG


def test_documents_other_than_resources() -> None:
    patch = b'[{"op": "replace", "path": "/active", "value": false}]'
    assert parse_json_value(patch) == [{"op": "replace", "path": "/active", "value": False}]
    assert parse_json_value(b'"a:b"') == "a:b"
    assert parse_json_value(b"3") == 3
    with pytest.raises(HearthError) as caught:
        parse_json_value(b'[{"op": "add", "op": "remove"}]')
    assert caught.value.code is E.MALFORMED_JSON


def test_codes_map_to_client_errors() -> None:
    for raw in (b"{", nested(65), array(10_001), b"{}"):
        with pytest.raises(HearthError) as caught:
            parse_json_body(raw)
        assert 400 <= caught.value.status < 500
