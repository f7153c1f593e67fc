"""A small generator of Synthea-shaped transaction Bundles (synthetic data only).

Synthea (synthetichealth/synthea) writes one transaction Bundle per patient: the Patient and
everything about them as ``POST`` entries with ``urn:uuid:`` full URLs and references, and the
Organization, Location and Practitioner that cared for them as *conditional creates*
(``ifNoneExist: identifier=...``), so that loading many bundles creates each provider once. This
module makes bundles of that shape from a seeded generator: tens of resource types, hundreds of
entries per patient. No real person's data is used.
"""

from __future__ import annotations

import base64
import random
import uuid
from datetime import date, datetime, timedelta
from typing import Any

__all__ = ["PatientBundle", "patient_bundle", "provider_pool"]

SYNTHEA = "https://github.com/synthetichealth/synthea"
NPI = "http://hl7.org/fhir/sid/us-npi"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"

GIVEN = ["Ada", "Bao", "Chidi", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kira"]
FAMILY = ["Abara", "Becker", "Costa", "Dimitrov", "Eze", "Fischer", "Garcia", "Haas", "Ito"]
CITIES = ["Springfield", "Riverton", "Lakeside", "Fairview", "Oakdale"]
VITALS = [
    ("8302-2", "Body Height", 150, 195, "cm"),
    ("29463-7", "Body Weight", 45, 120, "kg"),
    ("8867-4", "Heart rate", 55, 110, "/min"),
    ("8480-6", "Systolic blood pressure", 95, 170, "mm[Hg]"),
    ("2339-0", "Glucose", 65, 200, "mg/dL"),
]
CONDITIONS = [("44054006", "Diabetes"), ("38341003", "Hypertension"), ("195662009", "Pharyngitis")]


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


class PatientBundle:
    """A transaction Bundle for one patient, and what it holds."""

    def __init__(self, bundle: dict[str, Any], patient_uuid: str, family: str) -> None:
        self.bundle = bundle
        self.patient_uuid = patient_uuid
        self.family = family

    @property
    def entries(self) -> int:
        return len(self.bundle["entry"])


def provider_pool(rng: random.Random, size: int) -> list[dict[str, str]]:
    """Providers a population shares: each an organisation, a location and a practitioner."""
    return [
        {
            "org": f"org-{i:04d}",
            "loc": f"loc-{i:04d}",
            "npi": f"{9_990_000_000 + i}",
            "name": f"{rng.choice(CITIES)} Health {i}",
            "doc_family": rng.choice(FAMILY),
        }
        for i in range(size)
    ]


def _entry(resource: dict[str, Any], full_url: str, **request: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }


def patient_bundle(
    rng: random.Random,
    providers: list[dict[str, str]],
    *,
    encounters: int = 8,
    observations_per_encounter: int = 5,
) -> PatientBundle:
    entries: list[dict[str, Any]] = []
    provider = rng.choice(providers)
    org_url, loc_url, doc_url = (f"urn:uuid:{_id(rng)}" for _ in range(3))
    entries.append(
        _entry(
            {
                "resourceType": "Organization",
                "identifier": [{"system": SYNTHEA, "value": provider["org"]}],
                "active": True,
                "type": [
                    _cc(
                        "http://terminology.hl7.org/CodeSystem/organization-type",
                        "prov",
                        "Healthcare Provider",
                    )
                ],
                "name": provider["name"],
            },
            org_url,
            ifNoneExist=f"identifier={SYNTHEA}|{provider['org']}",
        )
    )
    entries.append(
        _entry(
            {
                "resourceType": "Location",
                "identifier": [{"system": SYNTHEA, "value": provider["loc"]}],
                "status": "active",
                "name": provider["name"],
                "managingOrganization": {"reference": org_url},
            },
            loc_url,
            ifNoneExist=f"identifier={SYNTHEA}|{provider['loc']}",
        )
    )
    entries.append(
        _entry(
            {
                "resourceType": "Practitioner",
                "identifier": [{"system": NPI, "value": provider["npi"]}],
                "active": True,
                "name": [{"family": provider["doc_family"], "given": ["Dr"], "prefix": ["Dr."]}],
                "gender": rng.choice(["male", "female"]),
            },
            doc_url,
            ifNoneExist=f"identifier={NPI}|{provider['npi']}",
        )
    )
    patient_uuid = _id(rng)
    patient_url = f"urn:uuid:{patient_uuid}"
    family = rng.choice(FAMILY)
    birth = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 30000))
    entries.append(
        _entry(
            {
                "resourceType": "Patient",
                "identifier": [
                    {"system": SYNTHEA, "value": patient_uuid},
                    {
                        "type": _cc(
                            "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "MR",
                            "Medical Record Number",
                        ),
                        "system": "http://hospital.smarthealthit.org",
                        "value": patient_uuid,
                    },
                ],
                "name": [{"use": "official", "family": family, "given": [rng.choice(GIVEN)]}],
                "telecom": [
                    {"system": "phone", "value": f"555-{rng.randrange(1000, 9999)}", "use": "home"}
                ],
                "gender": rng.choice(["male", "female"]),
                "birthDate": birth.isoformat(),
                "address": [
                    {
                        "line": [f"{rng.randrange(1, 999)} Main St"],
                        "city": rng.choice(CITIES),
                        "state": "MA",
                        "country": "US",
                    }
                ],
                "maritalStatus": _cc(
                    "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"
                ),
                "communication": [{"language": _cc("urn:ietf:bcp:47", "en-US", "English")}],
                "generalPractitioner": [{"reference": doc_url}],
            },
            patient_url,
        )
    )
    patient_ref = {"reference": patient_url}
    provenance_targets = [patient_ref]
    careteam_url = f"urn:uuid:{_id(rng)}"
    entries.append(
        _entry(
            {
                "resourceType": "CareTeam",
                "status": "active",
                "subject": patient_ref,
                "participant": [
                    {"member": {"reference": doc_url}},
                    {"member": {"reference": org_url}},
                ],
                "managingOrganization": [{"reference": org_url}],
            },
            careteam_url,
        )
    )
    condition_code, condition_name = rng.choice(CONDITIONS)
    start = datetime(2015, 1, 1) + timedelta(days=rng.randrange(0, 3000))
    for e in range(encounters):
        when = start + timedelta(days=30 * e, hours=rng.randrange(0, 9))
        enc_url = f"urn:uuid:{_id(rng)}"
        enc_ref = {"reference": enc_url}
        entries.append(
            _entry(
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "type": [_cc(SNOMED, "185349003", "Encounter for check up")],
                    "subject": patient_ref,
                    "participant": [{"individual": {"reference": doc_url}}],
                    "period": {"start": _ts(when), "end": _ts(when + timedelta(minutes=30))},
                    "location": [{"location": {"reference": loc_url}}],
                    "serviceProvider": {"reference": org_url},
                },
                enc_url,
            )
        )
        results = []
        for o in range(observations_per_encounter):
            code, display, low, high, unit = VITALS[o % len(VITALS)]
            obs_url = f"urn:uuid:{_id(rng)}"
            results.append({"reference": obs_url})
            entries.append(
                _entry(
                    {
                        "resourceType": "Observation",
                        "status": "final",
                        "category": [
                            _cc(
                                "http://terminology.hl7.org/CodeSystem/observation-category",
                                "vital-signs",
                                "vital-signs",
                            )
                        ],
                        "code": _cc(LOINC, code, display),
                        "subject": patient_ref,
                        "encounter": enc_ref,
                        "effectiveDateTime": _ts(when),
                        "issued": when.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"),
                        "valueQuantity": {
                            "value": round(rng.uniform(low, high), 1),
                            "unit": unit,
                            "system": UCUM,
                            "code": unit,
                        },
                    },
                    obs_url,
                )
            )
        entries.append(
            _entry(
                {
                    "resourceType": "DiagnosticReport",
                    "status": "final",
                    "code": _cc(LOINC, "85354-9", "Blood pressure panel"),
                    "subject": patient_ref,
                    "encounter": enc_ref,
                    "effectiveDateTime": _ts(when),
                    "issued": when.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"),
                    "result": results,
                },
                f"urn:uuid:{_id(rng)}",
            )
        )
        cond_url = f"urn:uuid:{_id(rng)}"
        if e == 0:
            entries.append(
                _entry(
                    {
                        "resourceType": "Condition",
                        "clinicalStatus": _cc(
                            "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "active",
                            "Active",
                        ),
                        "verificationStatus": _cc(
                            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "confirmed",
                            "Confirmed",
                        ),
                        "code": _cc(SNOMED, condition_code, condition_name),
                        "subject": patient_ref,
                        "encounter": enc_ref,
                        "onsetDateTime": _ts(when),
                        "recordedDate": _ts(when),
                    },
                    cond_url,
                )
            )
        med_url = f"urn:uuid:{_id(rng)}"
        entries.append(
            _entry(
                {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": _cc(
                        RXNORM, "314076", "lisinopril 10 MG Oral Tablet"
                    ),
                    "subject": patient_ref,
                    "encounter": enc_ref,
                    "authoredOn": _ts(when),
                    "requester": {"reference": doc_url},
                },
                med_url,
            )
        )
        entries.append(
            _entry(
                {
                    "resourceType": "Procedure",
                    "status": "completed",
                    "code": _cc(SNOMED, "430193006", "Medication reconciliation"),
                    "subject": patient_ref,
                    "encounter": enc_ref,
                    "performedPeriod": {
                        "start": _ts(when),
                        "end": _ts(when + timedelta(minutes=15)),
                    },
                    "location": {"reference": loc_url},
                },
                f"urn:uuid:{_id(rng)}",
            )
        )
        if e % 4 == 0:
            entries.append(
                _entry(
                    {
                        "resourceType": "Immunization",
                        "status": "completed",
                        "vaccineCode": _cc(CVX, "140", "Influenza, seasonal"),
                        "patient": patient_ref,
                        "encounter": enc_ref,
                        "occurrenceDateTime": _ts(when),
                        "primarySource": True,
                    },
                    f"urn:uuid:{_id(rng)}",
                )
            )
        claim_url = f"urn:uuid:{_id(rng)}"
        entries.append(
            _entry(
                {
                    "resourceType": "Claim",
                    "status": "active",
                    "type": _cc(
                        "http://terminology.hl7.org/CodeSystem/claim-type",
                        "professional",
                        "Professional",
                    ),
                    "use": "claim",
                    "patient": patient_ref,
                    "billablePeriod": {
                        "start": _ts(when),
                        "end": _ts(when + timedelta(minutes=30)),
                    },
                    "created": _ts(when),
                    "provider": {"reference": org_url},
                    "priority": _cc(
                        "http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal"
                    ),
                    "prescription": {"reference": med_url},
                    "insurance": [
                        {"sequence": 1, "focal": True, "coverage": {"display": "Medicaid"}}
                    ],
                    "item": [
                        {
                            "sequence": 1,
                            "productOrService": _cc(SNOMED, "185349003", "Check up"),
                            "encounter": [enc_ref],
                        }
                    ],
                    "total": {"value": 129.16, "currency": "USD"},
                },
                claim_url,
            )
        )
        entries.append(
            _entry(
                {
                    "resourceType": "ExplanationOfBenefit",
                    "status": "active",
                    "type": _cc(
                        "http://terminology.hl7.org/CodeSystem/claim-type",
                        "professional",
                        "Professional",
                    ),
                    "use": "claim",
                    "patient": patient_ref,
                    "billablePeriod": {
                        "start": _ts(when),
                        "end": _ts(when + timedelta(minutes=30)),
                    },
                    "created": _ts(when),
                    "insurer": {"display": "Medicaid"},
                    "provider": {"reference": doc_url},
                    "claim": {"reference": claim_url},
                    "outcome": "complete",
                    "insurance": [{"focal": True, "coverage": {"display": "Medicaid"}}],
                    "careTeam": [{"sequence": 1, "provider": {"reference": doc_url}}],
                },
                f"urn:uuid:{_id(rng)}",
            )
        )
    entries.append(
        _entry(
            {
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": _cc(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "active",
                    "Active",
                ),
                "verificationStatus": _cc(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "confirmed",
                    "Confirmed",
                ),
                "type": "allergy",
                "category": ["food"],
                "criticality": "low",
                "code": _cc(SNOMED, "91935009", "Allergy to peanuts"),
                "patient": patient_ref,
                "recordedDate": _ts(start),
            },
            f"urn:uuid:{_id(rng)}",
        )
    )
    entries.append(
        _entry(
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "order",
                "category": [_cc(SNOMED, "736285004", "Hyperlipidemia clinical management plan")],
                "subject": patient_ref,
                "period": {"start": _ts(start)},
                "careTeam": [{"reference": careteam_url}],
            },
            f"urn:uuid:{_id(rng)}",
        )
    )
    entries.append(
        _entry(
            {
                "resourceType": "DocumentReference",
                "status": "current",
                "type": _cc(LOINC, "34117-2", "History and physical note"),
                "subject": patient_ref,
                "date": start.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"),
                "author": [{"reference": doc_url}],
                "content": [
                    {
                        "attachment": {
                            "contentType": "text/plain; charset=utf-8",
                            "data": base64.b64encode(b"Synthetic note.").decode(),
                        }
                    }
                ],
            },
            f"urn:uuid:{_id(rng)}",
        )
    )
    entries.append(
        _entry(
            {
                "resourceType": "Provenance",
                "target": provenance_targets,
                "recorded": start.strftime("%Y-%m-%dT%H:%M:%S.000+00:00"),
                "agent": [{"who": {"reference": doc_url}, "onBehalfOf": {"reference": org_url}}],
            },
            f"urn:uuid:{_id(rng)}",
        )
    )
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return PatientBundle(bundle, patient_uuid, family)
