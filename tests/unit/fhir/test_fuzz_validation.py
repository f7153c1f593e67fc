"""Fuzzing the parse-and-validate path (issue 2, "Hostile input"): nothing but HearthError escapes.

Three generators drive ``parse_json_body`` then ``validate_resource``: raw random bytes, random
JSON-shaped structures built from FHIR-like names and awkward values, and real R4 examples with
random mutations. Every outcome must be success or a ``HearthError`` with a stable code, and no
issue may echo a value planted in the resource.

The normal suite runs a few hundred examples per test (a few seconds). For a longer run::

    HEARTH_FUZZ_EXAMPLES=20000 pytest tests/unit/fhir/test_fuzz_validation.py
"""

from __future__ import annotations

import copy
import os
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.domain import HearthError
from hearth.domain.errors import ALL_CODES
from hearth.fhir.jsonbody import parse_json_body
from hearth.fhir.validation import validate_resource

from .conftest import example_paths

EXAMPLES = int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KNOWN_CODES = {c.code for c in ALL_CODES}
MARKER = "QQPLANTEDVALUEQQ"

SEEDS = [orjson.loads(p.read_bytes()) for p in example_paths()]

NAMES = st.sampled_from(
    [
        "resourceType",
        "id",
        "meta",
        "text",
        "div",
        "status",
        "name",
        "given",
        "family",
        "_given",
        "_family",
        "birthDate",
        "_birthDate",
        "extension",
        "url",
        "valueString",
        "valueQuantity",
        "value",
        "code",
        "coding",
        "system",
        "reference",
        "contained",
        "identifier",
        "entry",
        "resource",
        "item",
        "linkId",
        "subject",
        "telecom",
        "rank",
        "deceasedBoolean",
        "deceasedDateTime",
        "versionId",
        "lastUpdated",
        "profile",
        "_id",
        "modifierExtension",
        "type",
        "request",
        "method",
        "answer",
        "valueCoding",
        "x",
    ]
)
TYPES = st.sampled_from(["Patient", "Observation", "Bundle", "Questionnaire", "Parameters", "Foo"])
TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "Patient/1",
            "#x",
            "urn:uuid:x",
            "Patient?a=b",
            "2020-13-01",
            "1974-12-25",
            "2020-01-01T00:00:00Z",
            "<div>x</div>",
            "\x00",
            "a\u00a0b",
            MARKER,
            MARKER + "\x01",
            f"Patient/{MARKER}",
            "AAAA " * 20 + "!",
        ]
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(NAMES, st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=40,
)


def check(raw: bytes) -> None:
    """Parse and validate; only HearthError may escape, with a known code and no planted value."""
    try:
        resource = parse_json_body(raw)
        validate_resource(resource)
    except HearthError as exc:
        error = exc
    else:
        return
    assert error.code.code in KNOWN_CODES
    assert MARKER not in str(error)
    for issue in error.issues:
        assert issue.code.code in KNOWN_CODES
        assert MARKER not in issue.diagnostics
        assert MARKER not in (issue.expression or "")


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(TYPES, st.dictionaries(NAMES, JSON, max_size=8))
def test_random_json_shapes(rtype: str, body: dict[str, Any]) -> None:
    body["resourceType"] = rtype
    check(orjson.dumps(body))


@FUZZ
@given(JSON)
def test_random_json_documents(doc: Any) -> None:
    check(orjson.dumps(doc))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_paths(value, (*prefix, i)))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], how: int, value: Any) -> Any:
    if not path:
        return value if how == 0 else doc
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    current = parent[last]
    if how == 0:
        parent[last] = value  # replace with random JSON
    elif how == 1 and isinstance(parent, dict):
        del parent[last]  # drop an element (maybe a required one)
    elif how == 2:
        parent[last] = [current]  # wrap in an array
    elif how == 3 and isinstance(current, list) and current:
        parent[last] = current[0]  # unwrap an array
    elif how == 4 and isinstance(parent, dict) and isinstance(last, str):
        parent["_" + last] = value  # add a primitive-extension sibling
    elif how == 5 and isinstance(parent, dict) and isinstance(last, str):
        parent[last + "X"] = parent.pop(last)  # rename to an unknown element
    elif how == 6:
        parent[last] = MARKER  # plant a value that must never be echoed
    elif how == 7 and isinstance(current, dict):
        current.clear()  # empty object
    return doc


@FUZZ
@given(st.data())
def test_mutated_examples(data: st.DataObject) -> None:
    doc = copy.deepcopy(data.draw(st.sampled_from(SEEDS)))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        how = data.draw(st.integers(min_value=0, max_value=7))
        doc = _mutate(doc, path, how, data.draw(JSON))
    check(orjson.dumps(doc))
