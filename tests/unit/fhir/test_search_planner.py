"""The pure search planner: FHIRPath subset, value ranges, buckets, index keys, parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.domain import HearthError, errors
from hearth.fhir import definitions
from hearth.fhir.search import (
    Context,
    index_resource,
    parameters_read,
    parse_search,
    read_elements,
    wildcard_includes,
)
from hearth.fhir.search.buckets import (
    NumberRegion,
    date_index_keys,
    date_maybe_keys,
    date_sure_keys,
    number_index_keys,
    number_maybe_keys,
    number_sure_keys,
)
from hearth.fhir.search.extract import indexed_params
from hearth.fhir.search.fhirpath import UnsupportedExpression, compile_expression
from hearth.fhir.search.values import date_range, fold, parse_number, soundex, to_us

CTX = Context(now_us=to_us(datetime(2025, 1, 1, tzinfo=UTC)))


def test_every_r4_expression_of_a_supported_type_compiles() -> None:
    skipped = []
    for res_type in sorted(definitions.resource_types()):
        compiled = indexed_params(res_type)
        for code, sp in definitions.search_parameters(res_type).items():
            if sp.expression and sp.type not in ("special",) and code not in compiled:
                skipped.append(f"{res_type}.{code}")
    # Two MolecularSequence composites reach outside their element with ``%resource``, which
    # the subset does not evaluate; they are left out of the CapabilityStatement too.
    assert set(skipped) == {
        "MolecularSequence.chromosome-variant-coordinate",
        "MolecularSequence.referenceseqid-variant-coordinate",
    }


def test_fhirpath_subset() -> None:
    obs = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/1"},
        "valueQuantity": {"value": 3},
        "component": [{"valueString": "x"}],
    }
    patient_only = compile_expression(
        "Observation.subject.where(resolve() is Patient)", "Observation"
    )
    assert [v for v, _ in patient_only(obs)] == [{"reference": "Patient/1"}]
    assert patient_only({**obs, "subject": {"reference": "Group/1"}}) == []
    as_type = compile_expression("(Observation.value as Quantity)", "Observation")
    assert as_type(obs) == [({"value": 3}, "Quantity")]
    assert compile_expression("Observation.value.as(string)", "Observation")(obs) == []
    deceased = compile_expression(
        "Patient.deceased.exists() and Patient.deceased != false", "Patient"
    )
    assert deceased({"deceasedBoolean": False}) == [(False, "boolean")]
    assert deceased({"deceasedDateTime": "2020"}) == [(True, "boolean")]
    with pytest.raises(UnsupportedExpression):
        compile_expression("Patient.name.select(family)", "Patient")


def test_values() -> None:
    assert fold("  Ångström MÜLLER ") == "angstrom muller"
    lo, hi = date_range("2021-02")
    assert hi - lo + 1 == 28 * 86_400_000_000
    assert date_range("2021-03-15T10:00:00+02:00")[0] == to_us(datetime(2021, 3, 15, 8, tzinfo=UTC))
    with pytest.raises(ValueError, match="date"):
        date_range("2021-3-1")
    assert parse_number("5.4") == (Decimal("5.4"), Decimal("0.05"))
    assert parse_number("100") == (Decimal(100), Decimal("0.5"))
    assert soundex("Robert") == soundex("Rupert") == "R163"


@given(st.datetimes(min_value=datetime(1700, 1, 1), max_value=datetime(2300, 1, 1)))
def test_date_buckets_cover_every_value(moment: datetime) -> None:
    us = to_us(moment.replace(tzinfo=UTC))
    keys = set(date_index_keys(us, us))
    assert keys & date_maybe_keys(us - 1, us + 1)
    day = to_us(datetime(moment.year, moment.month, moment.day, tzinfo=UTC))
    sure = date_sure_keys(day, day + 86_400_000_000 - 1)
    assert (keys & sure) or keys == {"w"}


@given(st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, places=4))
def test_number_buckets_are_sound(value: Decimal) -> None:
    keys = set(number_index_keys(value))
    inside = NumberRegion(value - 1, False, value + 1, False)
    assert keys & number_maybe_keys(inside)
    outside = NumberRegion(abs(value) + 10, True, None, False)
    assert not (keys & number_sure_keys(outside))


def test_index_holds_keys_not_values() -> None:
    entries = index_resource(
        {
            "resourceType": "Patient",
            "id": "p1",
            "name": [{"family": "Zed"}],
            "generalPractitioner": [{"reference": "Practitioner/d1"}],
        }
    )
    assert ("search/v1/Patient/family", "p:ze") in entries.keys
    assert entries.refs == {("general-practitioner", "Practitioner", "d1")}
    assert entries.patients == {"p1"}


def test_a_literal_reference_has_a_row_instead_of_a_has_a_value_key() -> None:
    def keys_of(subject: dict[str, object]) -> set[tuple[str, str]]:
        observation = {"resourceType": "Observation", "status": "final", "subject": subject}
        return index_resource(observation).keys

    subject = "search/v1/Observation/subject"
    assert (subject, "?") not in keys_of({"reference": "Patient/p1"})
    assert (subject, "?") in keys_of({"reference": "https://other.example/Patient/p1"})
    assert (subject, "?") in keys_of({"identifier": {"system": "urn:ids", "value": "1"}})
    # Other parameters keep their key: the status is a token.
    assert ("search/v1/Observation/status", "?") in keys_of({"reference": "Patient/p1"})


def test_parse_search_result_parameters() -> None:
    request = parse_search(
        "Observation",
        [
            ("code", "1,2"),
            ("date", "ge2020"),
            ("_count", "5000"),
            ("_sort", "-date,_id"),
            ("_include", "Observation:subject"),
            ("_revinclude:iterate", "Provenance:target"),
            ("_summary", "data"),
            ("_total", "none"),
        ],
        ctx=CTX,
        default_count=10,
        max_count=100,
    )
    assert request.count == 100
    assert [(k.code, k.descending) for k in request.sort] == [("date", True), ("_id", False)]
    assert request.includes[0].param == "subject"
    assert request.revincludes[0].iterate
    assert (request.summary, request.total) == ("data", "none")
    assert request.criteria[0].exact
    assert not request.criteria[1].exact
    with pytest.raises(HearthError) as exc:
        parse_search("Patient", [("_sort", "nope")], ctx=CTX, default_count=1, max_count=1)
    assert exc.value.code is errors.UNKNOWN_SEARCH_PARAMETER
    with pytest.raises(HearthError) as bad:
        parse_search("Patient", [("birthdate", "gt20x0")], ctx=CTX, default_count=1, max_count=1)
    assert bad.value.code is errors.BAD_SEARCH_VALUE
    assert "20x0" not in bad.value.detail


def test_summary_true_keeps_only_summary_elements() -> None:
    from hearth.fhir.search.shaping import shape

    patient = {
        "resourceType": "Patient",
        "id": "p",
        "name": [{"family": "Kept"}],
        "maritalStatus": {"text": "dropped"},
        "photo": [{"contentType": "image/png"}],
    }
    shaped = shape(patient, summary="true", elements=())
    assert shaped["name"] == patient["name"]
    assert "maritalStatus" not in shaped
    assert "photo" not in shaped
    assert shaped["meta"]["tag"][-1]["code"] == "SUBSETTED"
    assert shape(patient, summary=None, elements=()) is patient


def test_each_criterion_names_the_parameters_it_reads() -> None:
    """What the gate judges a search by (minimum necessary: a role may not search by an
    element it may not see): every parameter a criterion, its chains and ``_has`` levels, the
    sort keys and the named includes read."""
    request = parse_search(
        "Patient",
        [
            ("_has:Encounter:subject:reason-code", "x"),
            ("general-practitioner:Practitioner.name", "y"),
            ("birthdate", "2000"),
            ("_sort", "-family"),
            ("_revinclude", "Encounter:subject"),
            ("_include", "*"),
        ],
        ctx=CTX,
        default_count=10,
        max_count=10,
    )
    assert parameters_read(request) == [
        ("_has:Encounter:subject:reason-code", "Encounter", "reason-code"),
        ("_has:Encounter:subject:reason-code", "Encounter", "subject"),
        ("general-practitioner:Practitioner.name", "Patient", "general-practitioner"),
        ("general-practitioner:Practitioner.name", "Practitioner", "name"),
        ("birthdate", "Patient", "birthdate"),
        ("_sort=family", "Patient", "family"),
        ("_revinclude=Encounter:subject", "Encounter", "subject"),
    ]
    assert parameters_read(request.sub()) == parameters_read(request)[:5]
    spelt = wildcard_includes(request.includes)
    assert {i.param for i in spelt} == {"general-practitioner", "link", "organization"}


def test_the_elements_a_parameter_reads() -> None:
    assert read_elements("Encounter", "reason-code") == {"reasonCode"}
    assert read_elements("Encounter", "special-arrangement") == {"hospitalization"}
    assert read_elements("Patient", "deceased") == {"deceasedBoolean", "deceasedDateTime"}
    assert "valueQuantity" in (read_elements("Observation", "value-quantity") or ())
    # A composite over the resource reads its components' elements; over a backbone element,
    # that element.
    composite = read_elements("Observation", "code-value-quantity") or frozenset()
    assert {"code", "valueQuantity"} <= composite
    assert read_elements("Observation", "component-code-value-quantity") == {"component"}
    assert read_elements("Observation", "no-such-parameter") is None
    # Every indexed parameter of every type can be told.
    unknown = [
        (res_type, code)
        for res_type in sorted(definitions.resource_types())
        for code in indexed_params(res_type)
        if not read_elements(res_type, code)
    ]
    assert unknown == []
