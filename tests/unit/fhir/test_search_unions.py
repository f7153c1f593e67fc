"""Parameters searched as the union of others (``extract._unions``): which they are, and that
their parts' index keys are exactly the keys they would have had of their own."""

from __future__ import annotations

from typing import Any

import pytest

from hearth.fhir import definitions
from hearth.fhir.search.extract import _alternatives, extract, indexed_params
from hearth.fhir.search.index import PRESENT, index_resource, param_keys

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _cc(code: str, system: str = LOINC) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


OBSERVATIONS: list[dict[str, Any]] = [
    {  # a value of its own, no components
        "resourceType": "Observation",
        "status": "final",
        "code": _cc("8867-4"),
        "valueQuantity": {"value": 72, "system": UCUM, "code": "/min"},
    },
    {  # a blood pressure panel: values only in components
        "resourceType": "Observation",
        "status": "final",
        "code": _cc("85354-9"),
        "component": [
            {"code": _cc("8480-6"), "valueQuantity": {"value": 120, "system": UCUM, "code": "mm"}},
            {"code": _cc("8462-4"), "valueQuantity": {"value": 80.5, "unit": "mm[Hg]"}},
        ],
    },
    {  # a concept value, a component with a concept and one without a value
        "resourceType": "Observation",
        "status": "final",
        "code": _cc("72166-2"),
        "valueCodeableConcept": _cc("8517006", "http://snomed.info/sct"),
        "component": [
            {"code": _cc("11367-0"), "valueCodeableConcept": _cc("LA15920-4")},
            {"code": _cc("8480-6"), "dataAbsentReason": _cc("unknown", "urn:dar")},
        ],
    },
    {  # absent itself, and the same code on itself and on a component
        "resourceType": "Observation",
        "status": "final",
        "code": _cc("8310-5"),
        "dataAbsentReason": _cc("asked-unknown", "urn:dar"),
        "component": [{"code": _cc("8310-5"), "valueQuantity": {"value": 37.2, "code": "Cel"}}],
    },
]


def test_the_unions_of_r4_are_observations_combo_parameters() -> None:
    found = {
        (res_type, code): param.union_of
        for res_type in definitions.resource_types()
        for code, param in indexed_params(res_type).items()
        if param.union_of
    }
    assert found == {
        ("Observation", "combo-code"): ("code", "component-code"),
        ("Observation", "combo-code-value-concept"): (
            "code-value-concept",
            "component-code-value-concept",
        ),
        ("Observation", "combo-code-value-quantity"): (
            "code-value-quantity",
            "component-code-value-quantity",
        ),
        ("Observation", "combo-data-absent-reason"): (
            "component-data-absent-reason",
            "data-absent-reason",
        ),
        ("Observation", "combo-value-concept"): ("component-value-concept", "value-concept"),
        ("Observation", "combo-value-quantity"): ("component-value-quantity", "value-quantity"),
    }


@pytest.mark.parametrize("resource", OBSERVATIONS)
def test_a_union_has_exactly_its_parts_keys(resource: dict[str, Any]) -> None:
    params = indexed_params("Observation")
    indexed = index_resource(resource).keys
    for code, param in params.items():
        if not param.union_of:
            continue
        values = extract(param, resource)
        own = set(param_keys(param, values)) | ({PRESENT} if values else set())
        parts = {key for domain, key in indexed if domain in param.domains}
        assert own == parts, code
        assert not any(domain == param.domain for domain, _ in indexed), code


def test_alternatives_split_only_at_the_top_level() -> None:
    assert _alternatives("A.b | (A.c as Quantity) | A.d.where(x = 'p|q')") == [
        "A.b",
        "(A.c as Quantity)",
        "A.d.where(x = 'p|q')",
    ]
    assert _alternatives("A.b") == ["A.b"]
    # An escaped quote does not end a literal; a delimited identifier is read like one.
    assert _alternatives("A.b | 'x\\' | y' | `A|B`.e") == ["A.b", "'x\\' | y'", "`A|B`.e"]


@pytest.mark.parametrize(
    "expression",
    ["A.b | A.c = true", "A.b | A.c != 'x'", "A.b | A.c and A.d", "A.b | A.c contains 'x'"],
)
def test_no_alternatives_under_a_looser_operator(expression: str) -> None:
    """``|`` binds more tightly than comparisons and boolean operators (FHIRPath operator
    precedence): ``A.b | A.c = true`` compares the union, so it is not one."""
    assert _alternatives(expression) is None
