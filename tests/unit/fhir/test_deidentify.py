"""The de-identified view's rewrite (HIPAA Safe Harbor, 164.514(b)(2)) and its search rule."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hearth.fhir.deidentify import PSEUDED, Deidentifier, search_refusal
from hearth.fhir.validation import collect_issues


def fake_pseudonym(res_type: str, res_id: str) -> str:
    return f"p{len(res_type)}x{res_id[::-1]}"


REWRITE = Deidentifier(fake_pseudonym, year=2026)

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "pat-1",
    "meta": {
        "versionId": "3",
        "lastUpdated": "2026-01-02T03:04:05Z",
        "source": "http://clinic.example/ehr/42",
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}
        ],
    },
    "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Zed Quill</div>',
    },
    "identifier": [{"system": "http://hospital.example/mrn", "value": "MRN-777"}],
    "active": True,
    "name": [{"family": "Quill", "given": ["Zed"]}],
    "telecom": [{"system": "phone", "value": "555-0100"}],
    "gender": "female",
    "birthDate": "1971-06-15",
    "_birthDate": {"extension": [{"url": "http://x.example/time", "valueString": "04:00"}]},
    "address": [
        {
            "use": "home",
            "line": ["12 Harbour Lane"],
            "city": "Portland",
            "district": "Cumberland",
            "state": "ME",
            "postalCode": "04101-1234",
            "country": "US",
        },
        {"city": "Tiny", "state": "WY", "postalCode": "82301"},
        {"city": "London", "postalCode": "SW1A 1AA", "country": "GB"},
    ],
    "maritalStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                "code": "M",
                "display": "Married",
            }
        ],
        "text": "married to Ann Quill",
    },
    "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo="}],
    "contact": [
        {
            "relationship": [{"coding": [{"code": "N"}]}],
            "name": {"family": "Quill", "given": ["Ann"]},
            "telecom": [{"system": "email", "value": "ann@example.org"}],
            "gender": "female",
        }
    ],
    "generalPractitioner": [{"reference": "Practitioner/doc-9", "display": "Dr Who"}],
    "managingOrganization": {"reference": "https://other.example/fhir/Organization/1"},
    "extension": [
        {
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
            "valueCode": "F",
        },
        {"url": "http://example.org/nickname", "valueString": "Zeddy"},
    ],
}


def test_a_patient_keeps_no_safe_harbor_identifier() -> None:
    out = REWRITE.resource(PATIENT)
    assert out["id"] == fake_pseudonym("Patient", "pat-1")
    assert out["birthDate"] == "1971"
    assert out["gender"] == "female"
    assert out["active"] is True
    assert out["address"] == [
        {"use": "home", "state": "ME", "postalCode": "041", "country": "US"},
        {"state": "WY", "postalCode": "000"},  # 823: a three-digit area of 20,000 or fewer
        {"country": "GB"},
    ]
    marital = PATIENT["maritalStatus"]["coding"][0]
    assert out["maritalStatus"] == {"coding": [{"system": marital["system"], "code": "M"}]}
    assert out["contact"] == [{"gender": "female"}]  # a coding without a system goes
    assert out["generalPractitioner"] == [
        {"reference": f"Practitioner/{fake_pseudonym('Practitioner', 'doc-9')}"}
    ]
    assert "managingOrganization" not in out  # an absolute URL cannot be pseudonymised
    assert out["extension"] == [PATIENT["extension"][0]]
    for gone in ("identifier", "name", "telecom", "photo", "text", "_birthDate"):
        assert gone not in out
    assert out["meta"] == {"security": [PATIENT["meta"]["security"][0], PSEUDED]}
    text = orjson.dumps(out).decode()
    for planted in ("Quill", "Zed", "MRN-777", "555-0100", "Harbour", "Portland", "Cumberland",
                    "04101", "ann@example", "Dr Who", "pat-1", "doc-9", "Zeddy", "06-15",
                    "iVBOR", "clinic.example", "2026-01-02"):  # fmt: skip
        assert planted not in text, planted
    # What leaves is still valid R4.
    assert collect_issues(out) == []


def test_the_input_is_not_changed() -> None:
    before = orjson.dumps(PATIENT)
    REWRITE.resource(PATIENT)
    assert orjson.dumps(PATIENT) == before


@pytest.mark.parametrize(
    ("born", "kept"), [("1936", False), ("1937-01-01", "1937"), ("1936-12-31", False)]
)
def test_ages_over_89_lose_the_birth_year(born: str, kept: str | bool) -> None:
    out = REWRITE.resource({"resourceType": "Patient", "id": "a", "birthDate": born})
    assert out.get("birthDate", False) == kept


def test_an_observation_keeps_codes_values_and_years() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}],
            "text": "sugar for Zed",
        },
        "subject": {"reference": "Patient/pat-1", "display": "Zed Quill"},
        "encounter": {"reference": "Encounter/enc-1"},
        "effectivePeriod": {"start": "2025-03-04T10:00:00+01:00", "end": "2025-03-04"},
        "issued": "2025-03-04T11:00:00Z",
        "performer": [{"identifier": {"value": "NPI-123"}}],
        "valueQuantity": {
            "value": 5.4,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
        "note": [{"text": "Zed called back"}],
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueString": "see Zed's chart",
            }
        ],
        "contained": [
            {
                "resourceType": "Practitioner",
                "id": "c1",
                "name": [{"family": "Nurse"}],
                "gender": "male",
            }
        ],
        "hasMember": [{"reference": "#c1"}],
    }
    out = REWRITE.resource(obs)
    assert out["subject"] == {"reference": f"Patient/{fake_pseudonym('Patient', 'pat-1')}"}
    assert out["encounter"] == {"reference": f"Encounter/{fake_pseudonym('Encounter', 'enc-1')}"}
    assert out["effectivePeriod"] == {"start": "2025", "end": "2025"}
    assert out["valueQuantity"] == obs["valueQuantity"]
    assert out["code"] == {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}
    assert out["component"] == [{"code": obs["component"][0]["code"]}]
    assert out["contained"] == [{"resourceType": "Practitioner", "id": "c1", "gender": "male"}]
    assert out["hasMember"] == [{"reference": "#c1"}]
    for gone in ("issued", "performer", "note"):
        assert gone not in out
    assert "Zed" not in orjson.dumps(out).decode()


def test_unknown_elements_and_types_are_dropped() -> None:
    out = REWRITE.resource({"resourceType": "Basic", "id": "b", "code": {}, "secret": "x"})
    assert out == {
        "resourceType": "Basic",
        "id": fake_pseudonym("Basic", "b"),
        "meta": {"security": [PSEUDED]},
    }
    assert REWRITE.resource({"resourceType": "NoSuchType", "id": "x"}) == {
        "meta": {"security": [PSEUDED]}
    }


CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.mark.parametrize(
    ("res_type", "terms", "allowed"),
    [
        ("Observation", [("code", "http://loinc.org|2339-0")], True),
        ("Observation", [("code", "http://loinc.org|2339-0,http://loinc.org|718-7")], True),
        ("Observation", [("category", f"{CATEGORY}|vital-signs")], True),
        ("Observation", [("value-quantity", "gt5")], True),
        ("Observation", [("value-quantity", "5.4||mmol/L")], True),
        ("Observation", [("date", "ge2020"), ("date", "lt2024")], True),
        ("Observation", [("date", "2020,2021")], True),
        ("Patient", [("gender", "female"), ("birthdate", "1970")], True),
        ("Patient", [("birthdate:missing", "true")], True),
        ("Patient", [("active", "true")], True),
        ("Observation", [("status:not", "final")], True),
        ("Condition", [("onset-age", "lt50")], True),
        ("Observation", [("code:not", "x|y")], False),
        ("Observation", [("category", "vital-signs")], False),  # a bare code of a Coding
        ("Condition", [("category", "http://example.org/local|MRN-445566")], False),
        ("Condition", [("code", "|44054006")], False),
        ("Condition", [("_tag", "http://example.org/import|batch-oldman-john")], False),
        ("Patient", [("name", "Quill")], False),
        ("Patient", [("family:exact", "Quill")], False),
        ("Patient", [("identifier", "MRN-777")], False),
        ("Patient", [("_id", "pat-1")], False),
        ("Patient", [("telecom", "555")], False),
        ("Patient", [("birthdate", "1971-06-15")], False),
        ("Patient", [("birthdate", "ge1971-06")], False),
        ("Patient", [("birthdate", "ap1945")], False),
        ("Patient", [("birthdate", "1931")], False),  # 90 or older in 2026
        ("Patient", [("birthdate", "le1936")], False),
        ("Condition", [("onset-age", "93")], False),
        ("Observation", [("value-quantity", "95||a")], False),
        ("Observation", [("value-quantity", "1100|http://unitsofmeasure.org|mo")], False),
        ("Observation", [("subject", "Patient/pat-1")], False),
        ("Observation", [("subject:Patient.name", "Quill")], False),
        ("Patient", [("_has:Observation:subject:code", "x")], False),
        ("Observation", [("code:text", "glucose")], False),
        ("Patient", [("address-postalcode", "04101")], False),
        ("Observation", [("_source", "http://x")], False),
    ],
)
def test_what_a_deidentified_view_may_search_by(
    res_type: str, terms: list[tuple[str, str]], allowed: bool
) -> None:
    refusal = search_refusal(res_type, tuple(terms), (), None, year=2026)
    assert (refusal is None) is allowed, refusal
    if refusal is not None:
        for _name, value in terms:
            assert value not in refusal  # the message never quotes a search value


def test_sorting_and_compartments() -> None:
    assert search_refusal("Observation", (), (("code", "token"),), None, year=2026) is None
    assert search_refusal("Observation", (), (("date", "date"),), None, year=2026) is not None
    assert search_refusal("Observation", (), (("_id", None),), None, year=2026) is not None
    assert search_refusal("Observation", (), (), "pat-1", year=2026) is not None


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        ({"value": 42, "system": "http://unitsofmeasure.org", "code": "a"}, 42),
        ({"value": 89, "system": "http://unitsofmeasure.org", "code": "a"}, 89),
        ({"value": 93, "system": "http://unitsofmeasure.org", "code": "a"}, ">=90"),
        ({"value": 1100, "system": "http://unitsofmeasure.org", "code": "mo"}, ">=90"),
        ({"value": 30, "system": "http://unitsofmeasure.org", "code": "mo"}, 30),
        ({"value": 95, "unit": "years"}, None),  # no UCUM code: not guessed at
    ],
)
def test_ages_of_90_and_over_become_one_category(age: dict[str, Any], expected: object) -> None:
    condition = {
        "resourceType": "Condition",
        "id": "c",
        "subject": {"reference": "Patient/p"},
        "onsetAge": age,
    }
    out = REWRITE.resource(condition).get("onsetAge")
    if expected is None:
        assert out is None
    elif expected == ">=90":
        assert out is not None
        assert (out["value"], out["comparator"], out["code"]) == (90, ">=", "a")
    else:
        assert out is not None
        assert (out["value"], out["code"]) == (expected, age["code"])


def test_ages_in_any_quantity_are_capped_too() -> None:
    years = {"system": "http://unitsofmeasure.org", "code": "a", "unit": "yr"}
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "30525-0"}]},
        "valueQuantity": {"value": 95, **years},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "30525-0"}]},
                "valueRange": {"low": {"value": 94, **years}, "high": {"value": 40, **years}},
            }
        ],
    }
    out = REWRITE.resource(obs)
    assert (out["valueQuantity"]["value"], out["valueQuantity"]["comparator"]) == (90, ">=")
    rng = out["component"][0]["valueRange"]
    assert (rng["low"]["value"], rng["low"]["comparator"]) == (90, ">=")
    assert rng["high"] == {
        "value": 40,
        "unit": "a",
        "system": "http://unitsofmeasure.org",
        "code": "a",
    }


def test_free_text_in_codes_uris_units_extensions_and_contained_ids_goes() -> None:
    condition = {
        "resourceType": "Condition",
        "id": "c",
        "meta": {"tag": [{"system": "http://example.org/import", "code": "batch-oldman-john"}]},
        "code": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "44054006",
                    "display": "DM2 - Mrs Nov",
                },
                {"system": "http://example.org/local", "code": "MRN-445566"},
            ]
        },
        "category": [{"coding": [{"system": "urn:oid:1.2.3.4.mrn", "code": "MRN445566"}]}],
        "subject": {"reference": "Patient/p"},
        "asserter": {"reference": "#dr-jane-doe-npi-1234567890"},
        "contained": [
            {"resourceType": "Practitioner", "id": "dr-jane-doe-npi-1234567890", "gender": "female"}
        ],
        "extension": [
            {"url": "http://example.org/contact", "valueUri": "mailto:nov@example.com"},
            {"url": "http://example.org/ssn", "valueCode": "123-45-6789"},
        ],
    }
    out = REWRITE.resource(condition)
    assert out["code"] == {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}
    assert "category" not in out
    assert "extension" not in out
    assert "tag" not in out["meta"]
    assert out["contained"] == [{"resourceType": "Practitioner", "id": "c1", "gender": "female"}]
    assert out["asserter"] == {"reference": "#c1"}
    text = orjson.dumps(out).decode()
    for planted in ("Nov", "445566", "oldman", "jane", "nov@", "123-45"):
        assert planted not in text, planted
    plan = {
        "resourceType": "CarePlan",
        "id": "p",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p"},
        "instantiatesUri": ["http://hospital.example/patients/john-smith-445566/plan"],
        "activity": [
            {"detail": {"status": "scheduled", "quantity": {"value": 3, "unit": "visits to John"}}}
        ],
    }
    out = REWRITE.resource(plan)
    assert "instantiatesUri" not in out
    assert out["activity"] == [{"detail": {"status": "scheduled", "quantity": {"value": 3}}}]


def test_kept_extensions_keep_their_coded_parts() -> None:
    race = {
        "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "extension": [
            {
                "url": "ombCategory",
                "valueCoding": {
                    "system": "urn:oid:2.16.840.1.113883.6.238",
                    "code": "2106-3",
                    "display": "White",
                },
            },
            {"url": "text", "valueString": "White, per Mrs Nov"},
        ],
    }
    out = REWRITE.resource({"resourceType": "Patient", "id": "p", "extension": [race]})
    assert out["extension"] == [
        {
            "url": race["url"],
            "extension": [
                {
                    "url": "ombCategory",
                    "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"},
                }
            ],
        }
    ]


def test_unique_numbers_and_the_version_id_go() -> None:
    study = {
        "resourceType": "ImagingStudy",
        "id": "s",
        "meta": {"versionId": "2"},
        "status": "available",
        "subject": {"reference": "Patient/p"},
        "series": [
            {
                "uid": "2.25.1234567",
                "modality": {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "CT",
                },
            }
        ],
    }
    out = REWRITE.resource(study)
    assert "versionId" not in out["meta"]  # how often a record was edited
    assert out["series"] == [{"modality": study["series"][0]["modality"]}]
