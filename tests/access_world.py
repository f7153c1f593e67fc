"""A small clinic for access-control tests: practitioners, patients linked to them by every kind
of care relationship (and some that must not link), labelled and unlabelled records, Consents,
and one user per default role. Built once per engine per test module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hearth.domain import Principal, PrincipalKind, SmartScope
from hearth.storage import RecordRepository
from hearth.wiring import Container
from tests.support import admin

CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LOINC = "http://loinc.org"

#: Patients the physician ``doc`` is linked to, by the rule named.
LINKED = (
    "careteam",  # CareTeam.participant
    "episode",  # EpisodeOfCare.careManager
    "episode_org",  # EpisodeOfCare.managingOrganization = doc's organization
    "encounter",  # Encounter.participant.individual
    "provider",  # Encounter.serviceProvider = doc's organization
    "gp",  # Patient.generalPractitioner = Practitioner
    "gp_role",  # Patient.generalPractitioner = doc's PractitionerRole
    "managed",  # Patient.managingOrganization = doc's organization
    "consent_expired",  # a CareTeam, and a Consent whose deny period is over
    "consent_obs_only",  # a CareTeam, and a Consent denying doc Observations only
)
#: Patients ``doc`` must not reach.
UNLINKED = (
    "dead_team",  # CareTeam entered-in-error
    "cancelled",  # Encounter cancelled
    "inactive_role_org",  # the organization of doc's inactive PractitionerRole
    "stranger",  # no relationship at all
    "consent_denied",  # a CareTeam, but a Consent denies Practitioner/doc
    "consent_org",  # a CareTeam, but a Consent denies doc's Organization
)
ROLES = (
    "physician",
    "nurse",
    "front-desk",
    "billing",
    "pharmacist",
    "researcher",
    "privacy-officer",
    "auditor",
    "administrator",
    "patient",
    "backend-service",
    "bootstrap-admin",
)


def privacy_consent(patient_id: str, actor: str, **provision: Any) -> dict[str, Any]:
    """An active privacy Consent of ``patient_id`` denying ``actor`` (a reference)."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"text": "deny"},
        "provision": {
            "type": "deny",
            "actor": [{"role": {"text": "prcp"}, "reference": {"reference": actor}}],
            **provision,
        },
    }


def label(code: str) -> dict[str, str]:
    return {"system": ACT if code not in ("R", "V", "N") else CONF, "code": code}


def observation(patient: str, *, labels: tuple[str, ...] = (), lab: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": OBS_CATEGORY, "code": "laboratory" if lab else "vital-signs"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": "2345-7" if lab else "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 72, "unit": "/min"},
        "note": [{"text": "Patient anxious."}],
    }
    if labels:
        body["meta"] = {"security": [label(code) for code in labels]}
    return body


@dataclass
class World:
    container: Container
    ids: dict[str, str] = field(default_factory=dict)  # names -> resource ids
    obs: dict[str, str] = field(default_factory=dict)  # "<patient>" / "<patient>:R" ... -> id
    users: dict[str, str] = field(default_factory=dict)  # role -> user id

    def principal(
        self,
        role: str,
        *,
        scopes: tuple[str, ...] | None = None,
        patient: str | None = None,
        break_glass: str | None = None,
    ) -> Principal:
        attributes = {"break_glass": break_glass} if break_glass else {}
        return Principal(
            subject=self.users[role],
            kind=PrincipalKind.USER,
            roles=frozenset({role}),
            scopes=frozenset(SmartScope.parse(s) for s in scopes) if scopes is not None else None,
            patient=patient,
            source="127.0.0.1",
            attributes=attributes,
        )

    def repo(self, role: str, **kwargs: Any) -> RecordRepository:
        return self.container.repository(self.principal(role, **kwargs))

    def patient(self, name: str) -> str:
        return self.ids[name]


def _create(repo: RecordRepository, body: dict[str, Any]) -> str:
    return repo.create(body).res_id


def build_world(container: Container) -> World:
    """The clinic; see the module docstring and LINKED/UNLINKED."""
    world = World(container)
    root = container.repository(admin())
    ids = world.ids

    def practitioner(name: str, family: str) -> str:
        ids[name] = _create(root, {"resourceType": "Practitioner", "name": [{"family": family}]})
        return ids[name]

    doc = practitioner("doc", "Osler")
    nurse = practitioner("nurse_p", "Nightingale")
    pharm = practitioner("pharm_p", "Pharmer")
    practitioner("other_p", "Other")
    clinic = ids["clinic"] = _create(root, {"resourceType": "Organization", "name": "Clinic"})
    other_org = ids["other_org"] = _create(root, {"resourceType": "Organization", "name": "Away"})
    ids["role_active"] = _create(
        root,
        {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": {"reference": f"Practitioner/{doc}"},
            "organization": {"reference": f"Organization/{clinic}"},
        },
    )
    ids["role_inactive"] = _create(
        root,
        {
            "resourceType": "PractitionerRole",
            "active": False,
            "practitioner": {"reference": f"Practitioner/{doc}"},
            "organization": {"reference": f"Organization/{other_org}"},
        },
    )

    def patient(name: str, **extra: Any) -> str:
        body = {"resourceType": "Patient", "name": [{"family": f"Fam{name}", "given": ["G"]}]}
        ids[name] = _create(root, {**body, **extra})
        return ids[name]

    def team(patient_id: str, *members: str, status: str = "active") -> str:
        return _create(
            root,
            {
                "resourceType": "CareTeam",
                "status": status,
                "subject": {"reference": f"Patient/{patient_id}"},
                "participant": [{"member": {"reference": m}} for m in members],
            },
        )

    def encounter(patient_id: str, status: str = "finished", **extra: Any) -> str:
        return _create(
            root,
            {
                "resourceType": "Encounter",
                "status": status,
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{patient_id}"},
                **extra,
            },
        )

    def consent(patient_id: str, actor: str, **provision: Any) -> str:
        return _create(root, privacy_consent(patient_id, actor, **provision))

    a = patient("careteam")
    ids["team_careteam"] = team(
        a, f"Practitioner/{doc}", f"Practitioner/{nurse}", f"Practitioner/{pharm}"
    )
    ids["episode_res"] = _create(
        root,
        {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": {"reference": f"Patient/{patient('episode')}"},
            "careManager": {"reference": f"Practitioner/{doc}"},
        },
    )
    _create(
        root,
        {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": {"reference": f"Patient/{patient('episode_org')}"},
            "managingOrganization": {"reference": f"Organization/{clinic}"},
        },
    )
    ids["encounter_res"] = encounter(
        patient("encounter"), participant=[{"individual": {"reference": f"Practitioner/{doc}"}}]
    )
    encounter(patient("provider"), serviceProvider={"reference": f"Organization/{clinic}"})
    patient("gp", generalPractitioner=[{"reference": f"Practitioner/{doc}"}])
    patient(
        "gp_role", generalPractitioner=[{"reference": f"PractitionerRole/{ids['role_active']}"}]
    )
    patient("managed", managingOrganization={"reference": f"Organization/{clinic}"})
    team(patient("dead_team"), f"Practitioner/{doc}", status="entered-in-error")
    encounter(
        patient("cancelled"),
        status="cancelled",
        participant=[{"individual": {"reference": f"Practitioner/{doc}"}}],
    )
    patient("inactive_role_org", managingOrganization={"reference": f"Organization/{other_org}"})
    patient("stranger")
    team(patient("consent_denied"), f"Practitioner/{doc}")
    consent(ids["consent_denied"], f"Practitioner/{doc}")
    team(patient("consent_org"), f"Practitioner/{doc}")
    consent(ids["consent_org"], f"Organization/{clinic}")
    team(patient("consent_expired"), f"Practitioner/{doc}")
    consent(
        ids["consent_expired"],
        f"Practitioner/{doc}",
        period={"start": "2019-01-01", "end": "2020-12-31"},
    )
    team(patient("consent_obs_only"), f"Practitioner/{doc}")
    consent(
        ids["consent_obs_only"],
        f"Practitioner/{doc}",
        **{"class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]},
    )

    for name in (*LINKED, *UNLINKED):
        pid = ids[name]
        world.obs[name] = _create(root, observation(pid))
        world.obs[f"{name}:R"] = _create(root, observation(pid, labels=("R",)))
        world.obs[f"{name}:V"] = _create(root, observation(pid, labels=("V",)))
        world.obs[f"{name}:HIV"] = _create(root, observation(pid, labels=("HIV",)))
        world.obs[f"{name}:lab"] = _create(root, observation(pid, lab=True))
    ids["appointment"] = _create(
        root,
        {
            "resourceType": "Appointment",
            "status": "booked",
            "comment": "Discuss the biopsy result.",
            "participant": [
                {"actor": {"reference": f"Patient/{a}"}, "status": "accepted"},
                {"actor": {"reference": f"Practitioner/{doc}"}, "status": "accepted"},
            ],
        },
    )
    ids["condition"] = _create(
        root,
        {
            "resourceType": "Condition",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
            "subject": {"reference": f"Patient/{a}"},
            "note": [{"text": "Family history of stroke."}],
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">HTN</div>',
            },
        },
    )
    ids["task"] = _create(
        root,
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "for": {"reference": f"Patient/{a}"},
        },
    )

    cli = container.system_principal("cli")
    for role in ROLES:
        info, _ = container.users.add(
            f"u-{role}", roles=frozenset({role}), by="test", link_ttl=None
        )
        world.users[role] = info.user_id
    container.access.link_user(cli, "u-physician", practitioner=doc, patient=None)
    container.access.link_user(cli, "u-nurse", practitioner=nurse, patient=None)
    container.access.link_user(cli, "u-pharmacist", practitioner=pharm, patient=None)
    container.access.link_user(cli, "u-patient", practitioner=None, patient=a)
    return world
