"""Synthetic demo data: patients with encounters, conditions and observations.

Everything is generated here from a seeded pseudo-random generator; no real person's data is
used or shipped. Names come from short lists of common given and family names, combined at
random; dates, codes and measurements are drawn within plausible ranges.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from hearth.services.progress import NullProgress, Progress
from hearth.storage import RecordRepository

__all__ = ["DemoSummary", "generate_patient_record", "load_demo"]

GIVEN = (
    "Ava",
    "Ben",
    "Chloe",
    "Daniel",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Isla",
    "Jamal",
    "Keiko",
    "Liam",
    "Maya",
    "Noah",
    "Olivia",
    "Priya",
    "Quinn",
    "Rosa",
    "Samuel",
    "Tara",
    "Umar",
    "Valentina",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoe",
)
FAMILY = (
    "Abbott",
    "Baptiste",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fujita",
    "Gallagher",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quintero",
    "Rasmussen",
    "Silva",
    "Tanaka",
    "Underwood",
    "Vasquez",
    "Whitfield",
    "Xu",
    "Yamamoto",
    "Zielinski",
)
CITIES = (
    ("Springfield", "IL", "627"),
    ("Riverton", "WY", "825"),
    ("Fairview", "OR", "970"),
    ("Madison", "WI", "537"),
    ("Franklin", "TN", "370"),
)
CONDITIONS = (
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertensive disorder"),
    ("195967001", "Asthma"),
    ("55822004", "Hyperlipidemia"),
    ("35489007", "Depressive disorder"),
    ("40055000", "Chronic sinusitis"),
    ("399211009", "History of myocardial infarction"),
)
# (LOINC code, display, unit, UCUM code, low, high, decimals)
VITALS = (
    ("8867-4", "Heart rate", "beats/minute", "/min", 52, 110, 0),
    ("8310-5", "Body temperature", "Cel", "Cel", 36.1, 38.4, 1),
    ("29463-7", "Body weight", "kg", "kg", 48, 120, 1),
    ("8302-2", "Body height", "cm", "cm", 150, 195, 1),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", "mm[Hg]", 100, 165, 0),
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", "mg/dL", 70, 210, 0),
)
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


@dataclass(frozen=True, slots=True)
class DemoSummary:
    patients: int
    resources: int


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _patient(rng: random.Random, index: int) -> dict[str, Any]:
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    city, state, zip3 = rng.choice(CITIES)
    born = date(1935, 1, 1) + timedelta(days=rng.randrange(0, 365 * 85))
    return {
        "resourceType": "Patient",
        "identifier": [
            {
                "system": "urn:oid:2.16.840.1.113883.3.9999.1",
                "value": f"MRN{100000 + index:07d}",
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "telecom": [
            {"system": "phone", "value": f"555-01{rng.randrange(0, 100):02d}", "use": "home"}
        ],
        "gender": rng.choice(("female", "male", "other", "unknown")),
        "birthDate": born.isoformat(),
        "address": [
            {
                "line": [f"{rng.randrange(1, 9999)} {rng.choice(FAMILY)} Street"],
                "city": city,
                "state": state,
                "postalCode": f"{zip3}{rng.randrange(0, 100):02d}",
                "country": "US",
            }
        ],
    }


def generate_patient_record(
    rng: random.Random, index: int, *, now: datetime, practitioner: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(role, resource)`` for one synthetic patient; ``role`` names what it is.

    References to the patient use the placeholder ``Patient/{patient}``, and observations and
    conditions refer to their encounter as ``Encounter/{encounter:N}``; the loader fills them
    in once the server has assigned ids.
    """
    yield "patient", _patient(rng, index)
    for n in range(rng.randrange(1, 4)):
        start = now - timedelta(days=rng.randrange(1, 3 * 365), minutes=rng.randrange(0, 600))
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            },
            "subject": {"reference": "Patient/{patient}"},
            "period": {"start": _iso(start), "end": _iso(start + timedelta(minutes=30))},
        }
        if practitioner is not None:
            encounter["participant"] = [{"individual": {"reference": practitioner}}]
        yield f"encounter:{n}", encounter
        for code, display, unit, ucum, low, high, decimals in rng.sample(VITALS, k=3):
            value = round(rng.uniform(low, high), decimals)
            yield (
                "observation",
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "observation-category",
                                    "code": "vital-signs" if code != "2339-0" else "laboratory",
                                }
                            ]
                        }
                    ],
                    "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                    "subject": {"reference": "Patient/{patient}"},
                    "encounter": {"reference": f"Encounter/{{encounter:{n}}}"},
                    "effectiveDateTime": _iso(start + timedelta(minutes=10)),
                    "valueQuantity": {
                        "value": value,
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": ucum,
                    },
                },
            )
    for code, display in rng.sample(CONDITIONS, k=rng.randrange(0, 3)):
        yield (
            "condition",
            {
                "resourceType": "Condition",
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
                "subject": {"reference": "Patient/{patient}"},
                "onsetDateTime": _iso(now - timedelta(days=rng.randrange(30, 3650))),
            },
        )


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, str) and "{" in value:
        for role, res_id in ids.items():
            value = value.replace("{" + role + "}", res_id)
    return value


def load_demo(
    repo: RecordRepository,
    *,
    patients: int,
    seed: int,
    now: datetime,
    progress: Progress | None = None,
) -> DemoSummary:
    """Create ``patients`` synthetic patient records through the gate, one transaction each."""
    rng = random.Random(seed)  # noqa: S311 - synthetic demo data, not a security use
    progress = progress or NullProgress()
    progress.start("synthetic patients", patients)
    with repo.batch() as batch:
        org = batch.create(
            {"resourceType": "Organization", "name": "Hearth Demo Clinic", "active": True}
        )
        practitioner = batch.create(
            {
                "resourceType": "Practitioner",
                "name": [{"family": "Demo", "given": ["Dana"], "prefix": ["Dr."]}],
                "active": True,
            }
        )
    created = 2
    reference = f"Practitioner/{practitioner.res_id}"
    for index in range(patients):
        ids: dict[str, str] = {}
        with repo.batch() as batch:
            for role, resource in generate_patient_record(
                rng, index, now=now, practitioner=reference
            ):
                if role == "patient":
                    resource["managingOrganization"] = {"reference": f"Organization/{org.res_id}"}
                stored = batch.create(_fill(resource, ids))
                if role in ("patient",) or role.startswith("encounter:"):
                    ids[role] = stored.res_id
                created += 1
        progress.advance()
    progress.finish()
    return DemoSummary(patients, created)
