"""hearth.fhir.validation: one negative test (at least) per rule, and the positive twin."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hearth.domain import HearthError
from hearth.domain import errors as E
from hearth.fhir import definitions
from hearth.fhir.validation import MAX_ISSUES, collect_issues, validate_resource

Res = dict[str, Any]


def patient(**changes: Any) -> Res:
    base: Res = {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z"},
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Peter</div>',
        },
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
        "active": True,
        "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
        "telecom": [{"system": "phone", "value": "(03) 5555 6473", "rank": 1}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "deceasedBoolean": False,
        "managingOrganization": {"reference": "Organization/1"},
    }
    base.update(changes)
    return base


def observation(**changes: Any) -> Res:
    base: Res = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 67.5, "unit": "kg"},
    }
    if any(k.lstrip("_").startswith("value") and k != "valueQuantity" for k in changes):
        del base["valueQuantity"]
    base.update(changes)
    return base


def issues(resource: Any, **kwargs: Any) -> list[tuple[str, str | None]]:
    return [(i.code.code, i.expression) for i in collect_issues(resource, **kwargs)]


def only(resource: Any, code: E.ErrorCode, expression: str, **kwargs: Any) -> None:
    assert issues(resource, **kwargs) == [(code.code, expression)]


def test_the_base_resources_are_valid() -> None:
    assert issues(patient()) == []
    assert issues(observation()) == []
    validate_resource(patient(), resource_type="Patient")


# ----------------------------------------------------------------------------- resourceType


def test_missing_resource_type_raises_its_own_code() -> None:
    body = patient()
    del body["resourceType"]
    with pytest.raises(HearthError) as caught:
        validate_resource(body)
    assert caught.value.code is E.MISSING_RESOURCE_TYPE


def test_resource_type_must_match_the_url() -> None:
    with pytest.raises(HearthError) as caught:
        validate_resource(patient(), resource_type="Observation")
    assert caught.value.code is E.TYPE_MISMATCH


@pytest.mark.parametrize("rtype", ["Foo", "patient", "Resource", "DomainResource", 7, ""])
def test_unknown_resource_type(rtype: Any) -> None:
    with pytest.raises(HearthError) as caught:
        validate_resource(patient(resourceType=rtype))
    assert caught.value.code is E.INVALID_RESOURCE
    assert [i.code for i in caught.value.issues] == [E.UNKNOWN_RESOURCE_TYPE]
    assert caught.value.status == 400


def test_a_non_object_is_refused() -> None:
    with pytest.raises(HearthError) as caught:
        validate_resource(["Patient"])  # type: ignore[arg-type]
    assert caught.value.code is E.INVALID_RESOURCE
    assert collect_issues("Patient")[0].code is E.WRONG_TYPE


def test_errors_carry_issues_and_a_count() -> None:
    with pytest.raises(HearthError) as caught:
        validate_resource(patient(foo=1, bar=2))
    assert caught.value.code is E.INVALID_RESOURCE
    assert len(caught.value.issues) == 2
    assert "2 issues" in caught.value.detail


# ----------------------------------------------------------------------------- elements


def test_unknown_elements() -> None:
    only(patient(foo=1), E.UNKNOWN_ELEMENT, "Patient.foo")
    only(patient(name=[{"family": "x", "nick": "y"}]), E.UNKNOWN_ELEMENT, "Patient.name[0].nick")
    only(patient(fhir_comments=["x"]), E.UNKNOWN_ELEMENT, "Patient")


def test_unknown_element_names_that_look_like_data_are_not_echoed() -> None:
    found = collect_issues(patient(**{"John Smith 1970-01-01": 1}))
    assert [i.code for i in found] == [E.UNKNOWN_ELEMENT]
    assert "John" not in found[0].diagnostics
    assert found[0].expression == "Patient"


def test_resource_type_is_only_allowed_at_a_resource_root() -> None:
    only(
        patient(name=[{"resourceType": "X", "family": "x"}]),
        E.UNKNOWN_ELEMENT,
        "Patient.name[0].resourceType",
    )


# ----------------------------------------------------------------------------- JSON types


@pytest.mark.parametrize(
    ("changes", "expression"),
    [
        ({"active": "true"}, "Patient.active"),
        ({"active": 1}, "Patient.active"),
        ({"gender": 1}, "Patient.gender"),
        ({"gender": {"code": "male"}}, "Patient.gender"),
        ({"birthDate": None}, "Patient.birthDate"),
        ({"name": ["Peter"]}, "Patient.name[0]"),
        ({"managingOrganization": "Organization/1"}, "Patient.managingOrganization"),
        ({"telecom": [{"system": "phone", "rank": "1"}]}, "Patient.telecom[0].rank"),
        ({"telecom": [{"system": "phone", "rank": 1.5}]}, "Patient.telecom[0].rank"),
        ({"telecom": [{"system": "phone", "rank": True}]}, "Patient.telecom[0].rank"),
    ],
)
def test_wrong_json_types(changes: Res, expression: str) -> None:
    only(patient(**changes), E.WRONG_TYPE, expression)


def test_arrays_exactly_where_cardinality_is_more_than_one() -> None:
    only(patient(gender=["male"]), E.WRONG_TYPE, "Patient.gender")
    only(patient(name={"family": "x"}), E.WRONG_TYPE, "Patient.name")
    only(patient(name=[{"family": ["x"]}]), E.WRONG_TYPE, "Patient.name[0].family")
    only(patient(name=[{"given": "Peter"}]), E.WRONG_TYPE, "Patient.name[0].given")


def test_decimals() -> None:
    assert issues(observation(valueQuantity={"value": 1})) == []
    assert issues(observation(valueQuantity={"value": -0.0001})) == []
    only(
        observation(valueQuantity={"value": "1.0"}), E.WRONG_TYPE, "Observation.valueQuantity.value"
    )
    only(
        observation(valueQuantity={"value": float("nan")}),
        E.BAD_PRIMITIVE,
        "Observation.valueQuantity.value",
    )


def test_integer_ranges() -> None:
    ok = patient(telecom=[{"system": "phone", "rank": 2**31 - 1}])
    assert issues(ok) == []
    only(
        patient(telecom=[{"system": "phone", "rank": 2**31}]),
        E.BAD_PRIMITIVE,
        "Patient.telecom[0].rank",
    )
    # positiveInt starts at 1, unsignedInt at 0, integer is signed 32-bit.
    only(
        patient(telecom=[{"system": "phone", "rank": 0}]),
        E.BAD_PRIMITIVE,
        "Patient.telecom[0].rank",
    )
    assert issues(patient(photo=[{"size": 0}])) == []
    only(patient(photo=[{"size": -1}]), E.BAD_PRIMITIVE, "Patient.photo[0].size")
    assert issues(observation(valueInteger=-(2**31))) == []
    only(observation(valueInteger=-(2**31) - 1), E.BAD_PRIMITIVE, "Observation.valueInteger")


# ----------------------------------------------------------------------------- primitives


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (patient(birthDate="1974-13-25"), "Patient.birthDate"),
        (patient(birthDate="74-12-25"), "Patient.birthDate"),
        (patient(birthDate="1974-12-25T10:00:00Z"), "Patient.birthDate"),
        (
            patient(deceasedBoolean=None, deceasedDateTime="2020-01-01T10:00:00"),
            "Patient.deceasedDateTime",
        ),
        (patient(meta={"lastUpdated": "2020-01-01"}), "Patient.meta.lastUpdated"),
        (observation(valueTime="25:00:00"), "Observation.valueTime"),
        (patient(implicitRules="http://a b"), "Patient.implicitRules"),
        (patient(gender=" male"), "Patient.gender"),
        (patient(gender="male  female"), "Patient.gender"),
        (patient(id="a/b"), "Patient.id"),
        (patient(id="x" * 65), "Patient.id"),
        (patient(language=""), "Patient.language"),
        (patient(name=[{"family": ""}]), "Patient.name[0].family"),
        (patient(name=[{"family": "a\x01b"}]), "Patient.name[0].family"),
        (patient(name=[{"family": "a\x0cb"}]), "Patient.name[0].family"),
        (patient(photo=[{"data": "abc"}]), "Patient.photo[0].data"),
        (patient(photo=[{"data": "YW Jj"}]), "Patient.photo[0].data"),
        (
            patient(extension=[{"url": "http://x", "valueOid": "1.2.3"}]),
            "Patient.extension[0].valueOid",
        ),
        (
            patient(extension=[{"url": "http://x", "valueUuid": "urn:uuid:1234"}]),
            "Patient.extension[0].valueUuid",
        ),
        (
            patient(extension=[{"url": "http://x y", "valueString": "v"}]),
            "Patient.extension[0].url",
        ),
    ],
)
def test_bad_primitive_values(resource: Res, expression: str) -> None:
    if "deceasedBoolean" in resource and resource["deceasedBoolean"] is None:
        del resource["deceasedBoolean"]
    only(resource, E.BAD_PRIMITIVE, expression)


@pytest.mark.parametrize(
    "resource",
    [
        patient(birthDate="1974"),
        patient(birthDate="1974-12"),
        patient(deceasedBoolean=None, deceasedDateTime="2020-01-01T10:00:00.123+14:00"),
        patient(name=[{"family": "O'Brien\tJr.\r\n", "given": ["Bénédicte", "Ζωή", "李"]}]),
        patient(name=[{"family": "non\u00a0breaking space"}]),
        patient(photo=[{"data": "YWJj\nZGVm"}]),
        patient(photo=[{"data": "  YWJjZGVm  "}]),
        patient(extension=[{"url": "http://x", "valueOid": "urn:oid:1.2.3"}]),
        patient(
            extension=[
                {"url": "http://x", "valueUuid": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"}
            ]
        ),
        patient(id="A-Za.z0-9"),
        patient(id="x" * 64),
        observation(valueTime="23:59:60"),
    ],
)
def test_good_primitive_values(resource: Res) -> None:
    if "deceasedBoolean" in resource and resource["deceasedBoolean"] is None:
        del resource["deceasedBoolean"]
    assert issues(resource) == []


def test_base64_check_is_linear_time() -> None:
    # The R4 regex backtracks exponentially on this; ours answers at once.
    nasty = patient(photo=[{"data": "AAAA " * 5000 + "!"}])
    only(nasty, E.BAD_PRIMITIVE, "Patient.photo[0].data")


# ----------------------------------------------------------------------------- JSON shape rules


def test_empty_objects_arrays_and_strings() -> None:
    only(patient(maritalStatus={}), E.BUSINESS_RULE, "Patient.maritalStatus")
    only(patient(name=[]), E.CARDINALITY, "Patient.name")
    only(patient(name=[{"given": []}]), E.CARDINALITY, "Patient.name[0].given")
    only(patient(gender=""), E.BAD_PRIMITIVE, "Patient.gender")


def test_an_element_with_only_an_id_is_empty() -> None:
    only(patient(maritalStatus={"id": "x"}), E.BUSINESS_RULE, "Patient.maritalStatus")


def test_primitive_extension_siblings() -> None:
    ext = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00",
            }
        ]
    }
    assert issues(patient(_birthDate=ext)) == []
    # A sibling alone is enough: the value may be absent (json.html#primitive).
    body = patient(_birthDate=ext)
    del body["birthDate"]
    assert issues(body) == []
    only(patient(_birthDate="x"), E.WRONG_TYPE, "Patient._birthDate")
    only(patient(_nope={"id": "a"}), E.UNKNOWN_ELEMENT, "Patient._nope")
    only(patient(_name={"extension": ext["extension"]}), E.UNKNOWN_ELEMENT, "Patient._name")
    only(patient(_id={"extension": ext["extension"]}), E.UNKNOWN_ELEMENT, "Patient._id")
    only(patient(_birthDate={"foo": 1}), E.UNKNOWN_ELEMENT, "Patient._birthDate.foo")
    only(patient(_birthDate={}), E.BUSINESS_RULE, "Patient._birthDate")


def test_primitive_arrays_line_up_with_their_extension_arrays() -> None:
    ext = {"extension": [{"url": "http://x", "valueString": "y"}]}
    good = patient(name=[{"given": ["Peter", None], "_given": [None, ext]}])
    assert issues(good) == []
    only_ext = patient(name=[{"_given": [ext]}])
    assert issues(only_ext) == []
    only(patient(name=[{"given": ["Peter", None]}]), E.WRONG_TYPE, "Patient.name[0].given[1]")
    only(
        patient(name=[{"given": ["Peter", None], "_given": [None, None]}]),
        E.WRONG_TYPE,
        "Patient.name[0].given[1]",
    )
    only(
        patient(name=[{"given": ["Peter"], "_given": [None, ext]}]),
        E.CARDINALITY,
        "Patient.name[0]._given",
    )
    only(patient(name=[{"_given": ext}]), E.WRONG_TYPE, "Patient.name[0]._given")
    only(patient(name=[{"_given": []}]), E.CARDINALITY, "Patient.name[0]._given")
    only(patient(name=[{"_given": [None]}]), E.WRONG_TYPE, "Patient.name[0]._given[0]")
    only(
        patient(name=[{"given": ["a"], "_given": ["x"]}]), E.WRONG_TYPE, "Patient.name[0]._given[0]"
    )


# ----------------------------------------------------------------------------- cardinality


def test_required_elements() -> None:
    body = observation()
    del body["status"], body["code"]
    assert sorted(issues(body)) == [
        (E.REQUIRED_MISSING.code, "Observation.code"),
        (E.REQUIRED_MISSING.code, "Observation.status"),
    ]
    only(patient(link=[{"type": "seealso"}]), E.REQUIRED_MISSING, "Patient.link[0].other")


def test_required_primitive_satisfied_by_its_extension() -> None:
    absent = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                "valueCode": "unknown",
            }
        ]
    }
    body = observation(_status=absent)
    del body["status"]
    assert issues(body) == []


def test_required_choice_element() -> None:
    only(
        {"resourceType": "Patient", "extension": [{"url": "http://x"}]},
        E.BUSINESS_RULE,
        "Patient.extension[0]",
    )
    body: Res = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [
            {
                "linkId": "1",
                "type": "boolean",
                "enableWhen": [{"question": "q", "operator": "exists"}],
            }
        ],
    }
    only(body, E.REQUIRED_MISSING, "Questionnaire.item[0].enableWhen[0].answer[x]")


def test_maximum_cardinality_zero_in_a_profiled_datatype() -> None:
    # Immunization.doseQuantity is a SimpleQuantity: no comparator (sqty-1).
    body: Res = {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"text": "x"},
        "patient": {"reference": "Patient/p1"},
        "occurrenceString": "last year",
        "doseQuantity": {"value": 5, "comparator": "<"},
    }
    only(body, E.CARDINALITY, "Immunization.doseQuantity.comparator")
    del body["doseQuantity"]["comparator"]
    assert issues(body) == []


def test_only_one_choice_variant() -> None:
    only(patient(deceasedDateTime="2020"), E.CARDINALITY, "Patient.deceasedDateTime")
    two = observation(valueString="x")
    two["valueQuantity"] = {"value": 1}
    assert issues(two) == [(E.CARDINALITY.code, "Observation.valueQuantity")]
    ext = {"extension": [{"url": "http://x", "valueString": "y"}]}
    mixed = observation(_valueString=ext)
    mixed["valueBoolean"] = True
    assert issues(mixed) == [(E.CARDINALITY.code, "Observation.valueBoolean")]
    both = observation(valueString="x", _valueString=ext)
    assert issues(both) == []


def test_choice_variant_must_be_an_allowed_type() -> None:
    only(observation(valueCoding={"code": "x"}), E.UNKNOWN_ELEMENT, "Observation.valueCoding")
    only(observation(valuequantity={"value": 1}), E.UNKNOWN_ELEMENT, "Observation.valuequantity")


# ----------------------------------------------------------------------------- contained


def test_contained_resources_are_validated() -> None:
    body = patient(
        contained=[{"resourceType": "Practitioner", "id": "pr1", "birthDate": "1974-13-01"}]
    )
    only(body, E.BAD_PRIMITIVE, "Patient.contained[0].birthDate")
    only(
        patient(contained=[{"resourceType": "Nope", "id": "x"}]),
        E.UNKNOWN_RESOURCE_TYPE,
        "Patient.contained[0]",
    )
    only(patient(contained=[{"id": "x"}]), E.REQUIRED_MISSING, "Patient.contained[0]")
    only(patient(contained=["x"]), E.WRONG_TYPE, "Patient.contained[0]")


def test_contained_resource_rules() -> None:
    nested = patient(
        contained=[
            {
                "resourceType": "Patient",
                "id": "a",
                "contained": [{"resourceType": "Patient", "id": "b"}],
            }
        ]
    )
    assert (E.BUSINESS_RULE.code, "Patient.contained[0].contained") in issues(nested)
    versioned = patient(
        contained=[{"resourceType": "Patient", "id": "a", "meta": {"versionId": "1"}}]
    )
    only(versioned, E.BUSINESS_RULE, "Patient.contained[0].meta")
    labelled = patient(
        contained=[{"resourceType": "Patient", "id": "a", "meta": {"security": [{"code": "R"}]}}]
    )
    only(labelled, E.BUSINESS_RULE, "Patient.contained[0].meta.security")


def test_bundle_entries_and_parameters_are_validated() -> None:
    bundle: Res = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient(foo=1)}, {"resource": observation(status=["final"])}],
    }
    assert issues(bundle) == [
        (E.UNKNOWN_ELEMENT.code, "Bundle.entry[0].resource.foo"),
        (E.WRONG_TYPE.code, "Bundle.entry[1].resource.status"),
    ]
    params: Res = {
        "resourceType": "Parameters",
        "parameter": [{"name": "r", "resource": patient(birthDate="x")}],
    }
    only(params, E.BAD_PRIMITIVE, "Parameters.parameter[0].resource.birthDate")


def test_nested_content_references_are_validated() -> None:
    body: Res = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [
            {
                "linkId": "1",
                "type": "group",
                "item": [
                    {"linkId": "1.1", "type": "string", "item": [{"type": "string", "bogus": 1}]}
                ],
            }
        ],
    }
    assert issues(body) == [
        (E.UNKNOWN_ELEMENT.code, "Questionnaire.item[0].item[0].item[0].bogus"),
        (E.REQUIRED_MISSING.code, "Questionnaire.item[0].item[0].item[0].linkId"),
    ]


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    "reference",
    [
        "Organization/1",
        "Organization/1/_history/2",
        "http://example.org/fhir/Organization/1",
        "https://example.org/fhir/Organization/1/_history/3",
        "https://example.org/some/other/url?x=1",
        "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
        "urn:oid:1.2.3.4",
    ],
)
def test_good_references(reference: str) -> None:
    assert issues(patient(managingOrganization={"reference": reference})) == []


@pytest.mark.parametrize(
    "reference",
    [
        "Organization/",
        "organization/1",
        "Nope/1",
        "Organization/a b",
        "Organization/1/_history/",
        "Organization/1/extra",
        "urn:uuid:not-a-uuid",
        "urn:oid:abc",
        "ftp://example.org/Organization/1",
        "#",
        "#missing",
        "Organization?identifier=x",
        "Organization",
    ],
)
def test_bad_references(reference: str) -> None:
    body = patient(managingOrganization={"reference": reference})
    if reference == "#":
        # "#" refers to the containing resource itself: well formed (references.html#contained).
        assert issues(body) == []
        return
    only(body, E.BAD_REFERENCE, "Patient.managingOrganization.reference")


def test_local_references_resolve_to_contained_resources() -> None:
    body = patient(
        contained=[{"resourceType": "Organization", "id": "org1", "name": "x"}],
        managingOrganization={"reference": "#org1"},
    )
    assert issues(body) == []
    # A contained resource may point at a sibling or at its container.
    body["contained"].append(
        {"resourceType": "Practitioner", "id": "pr", "name": [{"family": "x"}]}
    )
    body["generalPractitioner"] = [{"reference": "#pr"}]
    assert issues(body) == []


def test_reference_target_types_are_checked() -> None:
    only(
        patient(managingOrganization={"reference": "Patient/1"}),
        E.BAD_REFERENCE,
        "Patient.managingOrganization.reference",
    )
    only(
        patient(generalPractitioner=[{"reference": "http://x.org/fhir/Patient/1"}]),
        E.BAD_REFERENCE,
        "Patient.generalPractitioner[0].reference",
    )
    # Elements typed Reference(Any) take every type.
    provenance: Res = {
        "resourceType": "Provenance",
        "target": [{"reference": "Patient/1"}, {"reference": "Observation/2"}],
        "recorded": "2020-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/1"}}],
    }
    assert issues(provenance) == []


def test_conditional_references_only_in_transactions() -> None:
    conditional = observation(subject={"reference": "Patient?identifier=http://x|1"})
    only(conditional, E.BAD_REFERENCE, "Observation.subject.reference")
    assert issues(conditional, allow_conditional_references=True) == []
    only(
        observation(subject={"reference": "Nope?identifier=1"}),
        E.BAD_REFERENCE,
        "Observation.subject.reference",
        allow_conditional_references=True,
    )
    transaction: Res = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": conditional, "request": {"method": "POST", "url": "Observation"}}],
    }
    assert issues(transaction) == []
    batch = copy.deepcopy(transaction)
    batch["type"] = "batch"
    only(batch, E.BAD_REFERENCE, "Bundle.entry[0].resource.subject.reference")


def test_display_only_references_are_fine() -> None:
    assert issues(patient(managingOrganization={"display": "Acme"})) == []
    only(
        patient(managingOrganization={"reference": ""}),
        E.BAD_PRIMITIVE,
        "Patient.managingOrganization.reference",
    )
    only(
        patient(managingOrganization={"reference": 1}),
        E.WRONG_TYPE,
        "Patient.managingOrganization.reference",
    )


# ----------------------------------------------------------------------------- required bindings

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"


def test_a_code_outside_its_required_value_set_is_refused() -> None:
    only(patient(gender="banana"), E.CODE_NOT_IN_VALUE_SET, "Patient.gender")
    with pytest.raises(HearthError) as caught:
        validate_resource(patient(gender="banana"), resource_type="Patient")
    assert caught.value.code is E.INVALID_RESOURCE
    assert caught.value.status == 400
    [issue] = caught.value.issues
    assert issue.code.code == "HRT-0214"
    assert issue.code.issue == "code-invalid"
    assert GENDER_VS in issue.diagnostics
    assert "banana" not in issue.diagnostics


@pytest.mark.parametrize("gender", ["male", "female", "other", "unknown"])
def test_codes_of_the_value_set_are_accepted(gender: str) -> None:
    assert issues(patient(gender=gender)) == []


def test_codes_are_compared_exactly() -> None:
    only(patient(gender="Male"), E.CODE_NOT_IN_VALUE_SET, "Patient.gender")
    only(patient(gender="m"), E.CODE_NOT_IN_VALUE_SET, "Patient.gender")


def test_the_format_and_type_checks_come_first() -> None:
    only(patient(gender=" male"), E.BAD_PRIMITIVE, "Patient.gender")
    only(patient(gender=""), E.BAD_PRIMITIVE, "Patient.gender")
    only(patient(gender=1), E.WRONG_TYPE, "Patient.gender")
    only(patient(gender={"code": "male"}), E.WRONG_TYPE, "Patient.gender")


@pytest.mark.parametrize(
    "status",
    [
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    ],
)
def test_observation_status(status: str) -> None:
    assert issues(observation(status=status)) == []
    only(observation(status="bogus"), E.CODE_NOT_IN_VALUE_SET, "Observation.status")


def test_codes_in_datatypes_are_checked() -> None:
    only(
        patient(name=[{"use": "nickname-ish", "family": "x"}]),
        E.CODE_NOT_IN_VALUE_SET,
        "Patient.name[0].use",
    )
    only(
        observation(valueQuantity={"value": 1, "comparator": "~"}),
        E.CODE_NOT_IN_VALUE_SET,
        "Observation.valueQuantity.comparator",
    )
    assert issues(observation(valueQuantity={"value": 1, "comparator": "<="})) == []


def test_a_primitive_array_of_codes_is_checked_entry_by_entry() -> None:
    timing = {"repeat": {"dayOfWeek": ["mon", "funday", "fri", "MON"], "periodUnit": "d"}}
    assert issues(observation(effectiveTiming=timing)) == [
        (E.CODE_NOT_IN_VALUE_SET.code, "Observation.effectiveTiming.repeat.dayOfWeek[1]"),
        (E.CODE_NOT_IN_VALUE_SET.code, "Observation.effectiveTiming.repeat.dayOfWeek[3]"),
    ]
    ext = {"extension": [{"url": "http://x", "valueString": "y"}]}
    aligned = {"repeat": {"dayOfWeek": ["mon", None], "_dayOfWeek": [None, ext]}}
    assert issues(observation(effectiveTiming=aligned)) == []
    search: Res = {
        "resourceType": "SearchParameter",
        "url": "http://x/sp",
        "name": "x",
        "status": "draft",
        "description": "x",
        "code": "x",
        "base": ["Patient", "Patients"],
        "type": "token",
    }
    only(search, E.CODE_NOT_IN_VALUE_SET, "SearchParameter.base[1]")


def test_codes_whose_value_set_is_not_listed_are_not_checked() -> None:
    # Attachment.contentType is bound (required) to mime types, urn:ietf:bcp:13, which the R4
    # package does not enumerate; Patient.language has a preferred binding; Coding.code none.
    content_type = definitions.element("Patient.photo.contentType")
    assert content_type is not None
    assert content_type.value_set is None
    body = patient(
        photo=[{"contentType": "banana", "data": "AAAA"}],
        language="banana",
        maritalStatus={"coding": [{"system": "http://x", "code": "banana"}]},
    )
    assert issues(body) == []


def test_contained_and_bundled_resources_are_checked() -> None:
    only(
        patient(contained=[{"resourceType": "Patient", "id": "a", "gender": "banana"}]),
        E.CODE_NOT_IN_VALUE_SET,
        "Patient.contained[0].gender",
    )
    bundle: Res = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient()}, {"resource": observation(status="bogus")}],
    }
    only(bundle, E.CODE_NOT_IN_VALUE_SET, "Bundle.entry[1].resource.status")
    bundle["type"] = "heap"
    assert (E.CODE_NOT_IN_VALUE_SET.code, "Bundle.type") in issues(bundle)
    params: Res = {
        "resourceType": "Parameters",
        "parameter": [{"name": "r", "resource": patient(gender="banana")}],
    }
    only(params, E.CODE_NOT_IN_VALUE_SET, "Parameters.parameter[0].resource.gender")


# ------------------------------------------------------------------ meta, text, extensions


def test_meta() -> None:
    assert (
        issues(
            patient(meta={"profile": ["http://x/p"], "tag": [{"system": "http://x", "code": "t"}]})
        )
        == []
    )
    only(patient(meta={"profile": "http://x/p"}), E.WRONG_TYPE, "Patient.meta.profile")
    only(patient(meta={"versionId": 1}), E.WRONG_TYPE, "Patient.meta.versionId")
    only(patient(meta={"tag": [{"code": 1}]}), E.WRONG_TYPE, "Patient.meta.tag[0].code")


def test_narrative() -> None:
    only(patient(text={"status": "generated"}), E.REQUIRED_MISSING, "Patient.text.div")
    only(
        patient(text={"status": "generated", "div": "<p>x</p>"}),
        E.BAD_PRIMITIVE,
        "Patient.text.div",
    )
    only(patient(text={"status": "generated", "div": 1}), E.WRONG_TYPE, "Patient.text.div")
    only(patient(text={"div": "<div>x</div>"}), E.REQUIRED_MISSING, "Patient.text.status")


def test_extensions() -> None:
    good = {"url": "http://x", "valueString": "y"}
    assert issues(patient(extension=[good], modifierExtension=[good])) == []
    nested = {"url": "http://x", "extension": [good, {"url": "http://z", "valueInteger": 1}]}
    assert issues(patient(extension=[nested])) == []
    only(patient(extension=[{"valueString": "y"}]), E.REQUIRED_MISSING, "Patient.extension[0].url")
    only(
        patient(modifierExtension=[{"valueString": "y"}]),
        E.REQUIRED_MISSING,
        "Patient.modifierExtension[0].url",
    )
    only(
        patient(extension=[{"url": "http://x", "valueString": "y", "extension": [good]}]),
        E.BUSINESS_RULE,
        "Patient.extension[0]",
    )
    only(patient(extension=[{"url": "http://x"}]), E.BUSINESS_RULE, "Patient.extension[0]")
    only(
        patient(extension=[{"url": "http://x", "valueFoo": 1}]),
        E.UNKNOWN_ELEMENT,
        "Patient.extension[0].valueFoo",
    )
    only(
        patient(name=[{"family": "x", "extension": [{"url": "http://x", "valueBoolean": "yes"}]}]),
        E.WRONG_TYPE,
        "Patient.name[0].extension[0].valueBoolean",
    )


# ----------------------------------------------------------------------------- limits and privacy


def test_issues_are_capped() -> None:
    body = patient(**{f"bogus{i}": i for i in range(MAX_ISSUES + 50)})
    found = collect_issues(body)
    assert len(found) == MAX_ISSUES
    with pytest.raises(HearthError) as caught:
        validate_resource(body)
    assert "stopped at the limit" in caught.value.detail


def test_deep_structures_stop_without_recursion_errors() -> None:
    ext: Res = {"url": "http://x", "valueString": "leaf"}
    for _ in range(400):
        ext = {"url": "http://x", "extension": [ext]}
    found = collect_issues(patient(extension=[ext]))
    assert [i.code for i in found] == [E.NESTING_TOO_DEEP]


def test_diagnostics_never_echo_values() -> None:
    marker = "ZZSECRETMARKER"
    body = patient(
        birthDate=f"{marker}-01",
        gender=[marker],
        name=[{"family": 1, "given": [marker + "\x01"]}],
        managingOrganization={"reference": f"Patient/{marker}"},
        generalPractitioner=[{"reference": f"{marker}/x"}],
        contained=[{"resourceType": marker}],
        text={"status": "generated", "div": marker},
        photo=[{"data": marker}],
        telecom=[{"system": marker, "value": "x"}],
    )
    with pytest.raises(HearthError) as caught:
        validate_resource(body)
    found = caught.value.issues
    assert E.CODE_NOT_IN_VALUE_SET in [i.code for i in found]
    assert len(found) >= 9
    for issue in found:
        assert marker not in issue.diagnostics
        assert marker not in (issue.expression or "")
    assert marker not in caught.value.detail
    assert marker not in str(caught.value)


def test_validation_does_not_change_the_resource() -> None:
    body = patient(foo=1, contained=[{"resourceType": "Organization", "id": "o"}])
    before = copy.deepcopy(body)
    collect_issues(body)
    assert body == before
