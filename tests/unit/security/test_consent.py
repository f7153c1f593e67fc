"""Consents that deny a named practitioner or organization (R4 consent.html, FHIR-CN-01..03)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hearth.security.consent import ConsentDenial, consent_denials, reference_key

NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
DOC = ("Practitioner", "d1")


def consent(**provision: Any) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": "c1",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "patient": {"reference": "Patient/p1"},
        "provision": provision,
    }


ACTOR = [{"reference": {"reference": "Practitioner/d1"}}]


def test_a_deny_naming_the_actor_closes_the_record() -> None:
    found = consent_denials(consent(type="deny", actor=ACTOR), [DOC], NOW)
    assert found == [ConsentDenial("p1", None, None, "c1")]
    assert found[0].covers("Observation", "o1")


def test_other_actors_permits_and_other_states_are_ignored() -> None:
    assert consent_denials(consent(type="deny", actor=ACTOR), [("Practitioner", "x")], NOW) == []
    assert consent_denials(consent(type="permit", actor=ACTOR), [DOC], NOW) == []
    inactive = {**consent(type="deny", actor=ACTOR), "status": "inactive"}
    assert consent_denials(inactive, [DOC], NOW) == []
    research = {**consent(type="deny", actor=ACTOR), "scope": {"coding": [{"code": "research"}]}}
    assert consent_denials(research, [DOC], NOW) == []
    assert consent_denials({**research, "scope": "odd"}, [DOC], NOW) == []
    no_patient = {**consent(type="deny", actor=ACTOR), "patient": {"reference": "Group/1"}}
    assert consent_denials(no_patient, [DOC], NOW) == []
    assert consent_denials({"resourceType": "Patient"}, [DOC], NOW) == []
    unscoped = {k: v for k, v in consent(type="deny", actor=ACTOR).items() if k != "scope"}
    assert len(consent_denials(unscoped, [DOC], NOW)) == 1


def test_nested_denials_classes_data_and_periods() -> None:
    nested = consent(
        type="permit",
        provision=[
            {
                "type": "deny",
                "actor": ACTOR,
                "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
            },
            {"type": "deny", "actor": ACTOR, "data": [{"reference": {"reference": "Condition/9"}}]},
        ],
    )
    by_type, by_data = consent_denials(nested, [DOC], NOW)
    assert by_type.types == {"Observation"}
    assert by_type.covers("Observation", None)
    assert not by_type.covers("Condition", "9")
    assert by_data.covers("Condition", "9")
    assert not by_data.covers("Condition", "8")
    assert not by_data.covers("Condition", None)
    for period, applies in (
        ({"start": "2025", "end": "2026-12"}, True),
        ({"start": "2026-01-16"}, False),
        ({"end": "2025-12-31"}, False),
        ({"end": "2026-01-15T09:00:00Z"}, False),
        ({"end": "2026-01-15T10:00:00"}, True),
        ({"start": "2026-12", "end": "2027"}, False),
        ({"start": "garbage"}, True),  # an unreadable bound is no bound
        ("not a period", True),
    ):
        found = consent_denials(consent(type="deny", actor=ACTOR, period=period), [DOC], NOW)
        assert bool(found) is applies, period


def test_reference_keys() -> None:
    assert reference_key({"reference": "Practitioner/1"}) == ("Practitioner", "1")
    assert reference_key({"reference": "https://x/fhir/Practitioner/1/_history/2"}) == (
        "Practitioner",
        "1",
    )
    for bad in ({"reference": "1"}, {"reference": 5}, "Practitioner/1", {"reference": "/1"}):
        assert reference_key(bad) is None
