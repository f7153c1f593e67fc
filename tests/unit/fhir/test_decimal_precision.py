"""FHIR decimals keep their precision (R4 datatypes.html#decimal)."""

from __future__ import annotations

import copy
import pickle

import pytest

from hearth.fhir.jsonbody import FhirDecimal, dumps, loads, parse_json_body, parse_json_value


@pytest.mark.parametrize(
    "literal", ["1.50", "0.010", "1e3", "-2.5E-3", "100.0", "0.12345678901234567"]
)
def test_literals_a_float_would_change_survive(literal: str) -> None:
    raw = b'{"resourceType":"Observation","valueQuantity":{"value":' + literal.encode() + b"}}"
    parsed = parse_json_body(raw)
    value = parsed["valueQuantity"]["value"]
    assert isinstance(value, float)
    assert value == float(literal)
    assert dumps(parsed) == raw
    assert dumps(loads(dumps(parsed))) == raw


def test_plain_numbers_stay_plain_floats_and_ints() -> None:
    doc = parse_json_value(b'{"a":1.5,"b":2,"c":[0.25,"text"]}')
    assert type(doc["a"]) is float
    assert type(doc["b"]) is int
    assert dumps(doc) == b'{"a":1.5,"b":2,"c":[0.25,"text"]}'


def test_a_number_like_string_only_takes_the_exact_path() -> None:
    raw = b'{"a":1.5,"c":"dose 1.50 mg"}'
    assert dumps(parse_json_value(raw)) == raw


def test_fhir_decimal_copies_and_pickles_with_its_literal() -> None:
    value = FhirDecimal("2.500")
    assert repr(value) == "2.500"
    assert copy.deepcopy({"v": value})["v"].literal == "2.500"
    assert pickle.loads(pickle.dumps(value)).literal == "2.500"  # noqa: S301 - our own bytes


def test_dumps_refuses_what_is_not_json() -> None:
    with pytest.raises(TypeError):
        dumps({"x": object()})
