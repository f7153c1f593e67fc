"""``extract`` with a memo selects exactly what it selects without one, for every parameter.

The memo shares one expression's values between the parameters of one resource (``code`` and
the ``code-value-*`` composites); a composite's component expressions are read against the
composite's own element type, so the same expression text under two roots must not share."""

from __future__ import annotations

import random
from typing import Any

import pytest

from hearth.fhir.search.extract import Memo, extract, indexed_params
from tests.synthea import patient_bundle, provider_pool

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

BLOOD_PRESSURE: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
    "subject": {"reference": "Patient/p1"},
    "effectivePeriod": {"start": "2024-01-01", "end": "2024-01-02"},
    "valueString": "see components",
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueCodeableConcept": {"coding": [{"system": "urn:x", "code": "high"}]},
        },
        {"code": {"text": "when"}, "valueDateTime": "2024-01-01T10:00:00Z"},
    ],
}


def resources() -> list[dict[str, Any]]:
    rng = random.Random(11)
    made = patient_bundle(rng, provider_pool(rng, 2), encounters=2, observations_per_encounter=3)
    return [BLOOD_PRESSURE, *(e["resource"] for e in made.bundle["entry"])]


@pytest.mark.parametrize("resource", resources(), ids=lambda r: r["resourceType"])
def test_every_parameter_selects_the_same_with_and_without_the_memo(
    resource: dict[str, Any],
) -> None:
    memo: Memo = {}
    params = indexed_params(resource["resourceType"]).values()
    with_memo = {p.code: extract(p, resource, memo) for p in params}
    assert with_memo == {p.code: extract(p, resource) for p in params}
    assert memo  # it was used
    if resource is BLOOD_PRESSURE:
        assert len(with_memo["component-code-value-quantity"]) == 1
        assert len(with_memo["combo-code-value-concept"]) == 1
        assert with_memo["code-value-string"]
