"""The patient compartment (R4 compartmentdefinition-patient) used by patient/ scopes."""

from __future__ import annotations

from hearth.security import in_patient_compartment
from hearth.security.compartment import references_patient


def test_patient_is_its_own_compartment() -> None:
    assert in_patient_compartment("Patient", "p1", None, "p1")
    assert not in_patient_compartment("Patient", "p2", None, "p1")
    assert in_patient_compartment("Patient", None, {"id": "p1"}, "p1")
    assert not in_patient_compartment("Patient", None, {"resourceType": "Patient"}, "p1")


def test_reference_forms() -> None:
    assert references_patient({"reference": "Patient/p1"}, "p1")
    assert references_patient({"reference": "https://h.example/fhir/Patient/p1"}, "p1")
    assert references_patient({"reference": "Patient/p1/_history/3"}, "p1")
    assert not references_patient({"reference": "Patient/p10"}, "p1")
    assert not references_patient({"reference": "Group/p1"}, "p1")
    assert not references_patient({"display": "Patient/p1"}, "p1")
    assert not references_patient("Patient/p1", "p1")


def test_nested_and_repeated_paths() -> None:
    team = {
        "resourceType": "CareTeam",
        "participant": [
            {"member": {"reference": "Practitioner/d"}},
            {"member": {"reference": "Patient/p1"}},
        ],
    }
    assert in_patient_compartment("CareTeam", "t", team, "p1")
    assert not in_patient_compartment("CareTeam", "t", team, "p2")
    obs = {"performer": [{"reference": "Patient/p1"}]}
    assert in_patient_compartment("Observation", "o", obs, "p1")


def test_unlisted_types_and_missing_content() -> None:
    assert not in_patient_compartment(
        "Organization", "o", {"partOf": {"reference": "Patient/p1"}}, "p1"
    )
    assert not in_patient_compartment("Observation", "o", None, "p1")


def test_a_path_through_a_non_object_reaches_nothing() -> None:
    obs = {"subject": "Patient/p1", "performer": [5, "x"]}
    assert not in_patient_compartment("Observation", "o", obs, "p1")
    team = {"participant": ["Patient/p1", {"member": "Patient/p1"}]}
    assert not in_patient_compartment("CareTeam", "t", team, "p1")
