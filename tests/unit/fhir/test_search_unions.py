"""Parameters searched as the union of others (``extract._unions``) or with the parameters of
their element's fields (``extract._element_unions``): which they are, and that the keys found in
the domains they are searched in are exactly the keys they would have had of their own."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hearth.fhir import definitions
from hearth.fhir.search.extract import (
    _alternatives,
    _element_unions,
    extract,
    indexed_params,
    own_values,
)
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
        if param.union_of and not param.shared_fields
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
        if not param.union_of or param.shared_fields:
            continue
        values = extract(param, resource)
        own = set(param_keys(param, values)) | ({PRESENT} if values else set())
        parts = {key for domain, key in indexed if domain in param.domains}
        assert own == parts, code
        assert not any(domain == param.domain for domain, _ in indexed), code


ADDRESS_PARTS = ("address-city", "address-country", "address-postalcode", "address-state")
ADDRESS_FIELDS = frozenset({"city", "country", "postalCode", "state"})


def test_the_element_unions_of_r4_are_name_and_address() -> None:
    found = {
        (res_type, code): (param.union_of, param.shared_fields)
        for res_type in definitions.resource_types()
        for code, param in indexed_params(res_type).items()
        if param.shared_fields
    }
    names = (("family", "given"), frozenset({"family", "given"}))
    addresses = (ADDRESS_PARTS, ADDRESS_FIELDS)
    assert found == {
        ("Patient", "name"): names,
        ("Practitioner", "name"): names,
        **{
            (res_type, "address"): addresses
            for res_type in (
                "InsurancePlan",
                "Location",
                "Organization",
                "Patient",
                "Person",
                "Practitioner",
                "RelatedPerson",
            )
        },
    }


PEOPLE: list[dict[str, Any]] = [
    {  # every field of a HumanName and an Address, two of each, lists with two entries
        "resourceType": "Patient",
        "name": [
            {
                "use": "official",
                "text": "Dr. Ann Marie Andersson-Lee Jr.",
                "family": "Andersson-Lee",
                "given": ["Ann", "Marie"],
                "prefix": ["Dr."],
                "suffix": ["Jr.", "PhD"],
            },
            {"family": "Lee", "given": ["Annie"]},
        ],
        "address": [
            {
                "text": "12 Example Street, Springfield IL 62701",
                "line": ["12 Example Street", "Flat 3"],
                "city": "Springfield",
                "district": "Sangamon",
                "state": "IL",
                "postalCode": "62701",
                "country": "US",
            },
            {"city": "Springfield", "country": "United States of America (the long form)"},
        ],
    },
    {  # fields only the element itself indexes: nothing is found in the parts
        "resourceType": "Patient",
        "name": [{"text": "Mx Kai", "prefix": ["Mx"]}],
        "address": [{"line": ["1 Road"], "district": "North"}],
    },
    {  # fields only the parts index: nothing of the element's own
        "resourceType": "Practitioner",
        "name": [{"family": "House", "given": ["Greg"]}],
        "address": [{"state": "NJ", "postalCode": "08540"}],
    },
    {  # a name with no strings at all: no key anywhere, not even "has a value"
        "resourceType": "Patient",
        "name": [{"use": "nickname"}],
        "address": [{"use": "home", "city": "Ely"}],
    },
]


@pytest.mark.parametrize("resource", PEOPLE)
def test_an_element_union_finds_exactly_its_own_keys_in_its_domains(
    resource: dict[str, Any],
) -> None:
    params = indexed_params(resource["resourceType"])
    indexed = index_resource(resource).keys
    checked = 0
    for code, param in params.items():
        if not param.shared_fields:
            continue
        checked += 1
        values = extract(param, resource)
        whole = set(param_keys(param, values)) | ({PRESENT} if values else set())
        found = {key for domain, key in indexed if domain in param.domains}
        assert whole == found, code
        # Its own domain holds only the other fields' keys.
        own = own_values(param, resource)
        assert {key for domain, key in indexed if domain == param.domain} == set(
            param_keys(param, own)
        ) | ({PRESENT} if own else set()), code
    assert checked == 2


def test_fields_their_parts_index_have_no_keys_in_the_elements_domain() -> None:
    practitioner = PEOPLE[2]  # family, given, state and postal code only
    domains = {domain for domain, _key in index_resource(practitioner).keys}
    assert "search/v1/Practitioner/family" in domains
    assert "search/v1/Practitioner/name" not in domains
    assert "search/v1/Practitioner/address" not in domains


def test_the_element_keeps_the_keys_of_its_other_fields_only() -> None:
    """Beside every field, single and listed: the element's own domain holds the exact keys of
    ``text``, ``prefix``, ``suffix``, ``line`` and ``district``, and none of the shared ones."""
    keys = index_resource(PEOPLE[0]).keys
    name, address = "search/v1/Patient/name", "search/v1/Patient/address"
    for own in ("Dr.", "Jr.", "PhD", "Dr. Ann Marie Andersson-Lee Jr."):
        assert (name, "x:" + own) in keys
    for shared in ("Andersson-Lee", "Lee", "Ann", "Marie", "Annie"):
        assert (name, "x:" + shared) not in keys
        assert ("search/v1/Patient/family", "x:" + shared) in keys or (
            "search/v1/Patient/given",
            "x:" + shared,
        ) in keys
    for own in ("12 Example Street", "Flat 3", "Sangamon"):
        assert (address, "x:" + own) in keys
    for shared in ("Springfield", "IL", "62701", "US"):
        assert (address, "x:" + shared) not in keys


def test_a_part_of_a_union_is_never_an_element_union() -> None:
    """A union is searched in its parts' own domains alone, so a part must keep all its keys."""
    plain = {
        code: replace(param, union_of=(), shared_fields=frozenset())
        for code, param in indexed_params("Patient").items()
    }
    assert "name" in _element_unions(plain)
    made_up = replace(plain["given"], code="name-or-given", union_of=("given", "name"))
    assert "name" not in _element_unions({**plain, "name-or-given": made_up})


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
