"""PLACEHOLDER until the fhirdefs branch lands its generated definitions; replace wholesale."""

from __future__ import annotations

RESOURCE_TYPES = frozenset(
    {
        "Patient",
        "Observation",
        "Encounter",
        "Condition",
        "Practitioner",
        "Organization",
        "Location",
        "CareTeam",
        "Basic",
        "Bundle",
        "OperationOutcome",
    }
)


def is_resource_type(name: str) -> bool:
    return name in RESOURCE_TYPES
