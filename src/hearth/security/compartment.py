"""Is a resource in one patient's compartment? (FHIR R4 compartmentdefinition-patient.html)

``patient/`` scopes reach only the launch patient's own resources (SMART-SC-07). A resource
belongs to Patient/X's compartment when X is the resource itself (a Patient) or when one of
the reference elements the R4 Patient CompartmentDefinition lists for its type points at X.

The table below covers the types Hearth serves today, with the compartment's search
parameters resolved to the elements they index. A type absent from the table is outside every
patient compartment: a ``patient/`` scope grants nothing on it (deny by default). The
authorization model (issue 5) may replace the table with the generated CompartmentDefinition.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["PATIENT_COMPARTMENT", "in_patient_compartment", "references_patient"]

#: Resource type -> element paths (dotted, lists flattened) whose references put the resource
#: in the referenced patient's compartment (R4 CompartmentDefinition "patient", parameters
#: resolved to elements).
PATIENT_COMPARTMENT: Mapping[str, tuple[str, ...]] = {
    "AllergyIntolerance": ("patient", "recorder", "asserter"),
    "Appointment": ("participant.actor",),
    "Basic": ("subject", "author"),
    "CarePlan": ("subject", "activity.detail.performer"),
    "CareTeam": ("subject", "participant.member"),
    "Claim": ("patient", "payee.party"),
    "ClinicalImpression": ("subject",),
    "Communication": ("subject", "sender", "recipient"),
    "Composition": ("subject", "author", "attester.party"),
    "Condition": ("subject", "asserter"),
    "Consent": ("patient",),
    "Coverage": ("policyHolder", "subscriber", "beneficiary", "payor"),
    "DetectedIssue": ("patient",),
    "DiagnosticReport": ("subject",),
    "DocumentReference": ("subject", "author"),
    "Encounter": ("subject",),
    "EpisodeOfCare": ("patient",),
    "FamilyMemberHistory": ("patient",),
    "Flag": ("subject",),
    "Goal": ("subject",),
    "ImagingStudy": ("subject",),
    "Immunization": ("patient",),
    "List": ("subject", "source"),
    "MedicationAdministration": ("subject", "performer.actor"),
    "MedicationDispense": ("subject", "receiver"),
    "MedicationRequest": ("subject",),
    "MedicationStatement": ("subject",),
    "NutritionOrder": ("patient",),
    "Observation": ("subject", "performer"),
    "Procedure": ("subject", "performer.actor"),
    "Provenance": ("target",),
    "QuestionnaireResponse": ("subject", "author"),
    "RelatedPerson": ("patient",),
    "ServiceRequest": ("subject", "performer"),
    "Specimen": ("subject",),
}


def _values(node: Any, path: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _values(item, path)
        return
    if not path:
        yield node
        return
    if isinstance(node, dict):
        yield from _values(node.get(path[0]), path[1:])


def references_patient(reference: object, patient_id: str) -> bool:
    """Whether a Reference points at ``Patient/<patient_id>`` (relative or absolute URL)."""
    if not isinstance(reference, dict):
        return False
    target = reference.get("reference")
    if not isinstance(target, str):
        return False
    target = target.split("/_history/", 1)[0]
    wanted = f"Patient/{patient_id}"
    return target == wanted or target.endswith("/" + wanted)


def in_patient_compartment(
    res_type: str, res_id: str | None, resource: Mapping[str, Any] | None, patient_id: str
) -> bool:
    """Whether the resource is in Patient/``patient_id``'s compartment.

    A Patient is judged by its id alone, so a read by id can be decided before loading; any
    other type needs its content.
    """
    if res_type == "Patient":
        own_id = res_id if res_id is not None else (resource or {}).get("id")
        return own_id == patient_id
    paths = PATIENT_COMPARTMENT.get(res_type)
    if paths is None or resource is None:
        return False
    return any(
        references_patient(value, patient_id)
        for path in paths
        for value in _values(resource, path.split("."))
    )
