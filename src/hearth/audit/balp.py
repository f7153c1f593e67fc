"""Audit entries as FHIR R4 ``AuditEvent`` resources shaped by IHE Basic Audit Log Patterns 1.1.4
(FHIR-AE-01..06). Pure: the entry (the chain's canonical JSON) goes in, a resource comes out.

The chain stays the source of truth: an AuditEvent is rendered on demand from one entry, names
its place in the chain (``seq`` and hash, in the ``audit-chain`` extension) and is never stored.

Shape (BALP ``Read``/``PatientRead``, ``Query``/``PatientQuery``, ``Create``, ``Update``,
``Delete`` and their ``Patient*`` variants for FHIR interactions): ``type`` rest with the
restful-interaction ``subtype``; ``action`` C/R/U/D/E; ``outcome`` 0/4/8; ``purposeOfEvent``;
agents: the user or client (``IRCP``, requestor, network address, purpose of use) and Hearth as
the server (DCM 110153); ``source`` the instance; entities: the resource (``Type/id/_history/n``),
the patient or patients, the query (base64 of the raw query, BALP PatientQuery; PHI, so only for
viewers allowed it) and the ``X-Request-Id`` transaction. Hearth's own events (sign-in, role and
break-the-glass changes, audit views) use DICOM event types.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "CHAIN_EXTENSION",
    "DISCLOSING_ACTIONS",
    "USER_SYSTEM",
    "audit_event",
    "is_rest",
]

CHAIN_EXTENSION = "https://hearth.dev/fhir/StructureDefinition/audit-chain"
#: The identifier system of Hearth's users (the immutable user id, HIP-AC-02).
USER_SYSTEM = "https://hearth.dev/fhir/user"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_PURPOSE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
_BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."

#: Actions that disclose a record's content (the accounting of disclosures reads these).
DISCLOSING_ACTIONS = frozenset({"read", "vread", "search", "history"})

# action -> (BALP profile, restful-interaction code for a type / instance call, C/R/U/D/E)
_REST: Mapping[str, tuple[str, str, str]] = {
    "read": ("Read", "read", "R"),
    "vread": ("Read", "vread", "R"),
    "history": ("Read", "history-type", "R"),
    "search": ("Query", "search-type", "E"),
    "create": ("Create", "create", "C"),
    "update": ("Update", "update", "U"),
    "patch": ("Update", "patch", "U"),
    "delete": ("Delete", "delete", "D"),
}

# Hearth's own events by prefix: DICOM event type (code, display).
_DICOM: tuple[tuple[str, str, str], ...] = (
    ("auth.", "110114", "User Authentication"),
    ("session.", "110114", "User Authentication"),
    ("audit.", "110101", "Audit Log Used"),
    ("break-glass.queue", "110101", "Audit Log Used"),
    ("break-glass.", "110113", "Security Alert"),
    ("access.", "110136", "Security Roles Changed"),
    ("user.", "110137", "User Security Attribute Changed"),
    ("mfa.", "110137", "User Security Attribute Changed"),
    ("token.", "110137", "User Security Attribute Changed"),
    ("export", "110106", "Export"),
)


def is_rest(action: str) -> bool:
    return action in _REST


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _outcome(outcome: str) -> str:
    return {"success": "0", "error": "8"}.get(outcome, "4")


def _agent(entry: Mapping[str, Any]) -> dict[str, Any]:
    actor = str(entry["actor"])
    kind = str(entry.get("actor_kind", "user"))
    if kind == "system":
        role = _coding(_DCM, "110150", "Application")
    else:
        role = _coding(_PARTICIPATION, "IRCP", "information recipient")
    agent: dict[str, Any] = {
        "type": {"coding": [role]},
        "who": {"identifier": {"system": USER_SYSTEM, "value": actor}},
        "requestor": True,
    }
    if entry.get("source"):
        agent["network"] = {"address": str(entry["source"]), "type": "2"}
    if entry.get("purpose"):
        agent["purposeOfUse"] = [{"coding": [_coding(_PURPOSE, str(entry["purpose"]))]}]
    return agent


def _patient_entity(patient: str) -> dict[str, Any]:
    return {
        "what": {"reference": f"Patient/{patient}"},
        "type": _coding(_ENTITY_TYPE, "1", "Person"),
        "role": _coding(_OBJECT_ROLE, "1", "Patient"),
    }


def _data_entity(reference: str) -> dict[str, Any]:
    return {
        "what": {"reference": reference},
        "type": _coding(_ENTITY_TYPE, "2", "System Object"),
        "role": _coding(_OBJECT_ROLE, "4", "Domain Resource"),
    }


def audit_event(
    entry: Mapping[str, Any],
    *,
    chain_hash: bytes,
    site: str,
    detail: Mapping[str, Any] | None = None,
    patients_shown: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One audit entry (its canonical body, decoded) as a BALP-shaped AuditEvent.

    ``detail`` is the entry's opened sealed detail (a search's query and what it disclosed),
    given only to viewers allowed to see it; ``patients_shown`` limits the patient entities (a
    patient's own accounting names only them, never the other patients a search touched).
    """
    seq = int(entry["seq"])
    action = str(entry["action"])
    res_type = entry.get("type")
    res_id = entry.get("id")
    version = entry.get("version")
    patient = entry.get("patient")
    patients = [str(p) for p in entry.get("patients") or ()]
    if patient is not None and str(patient) not in patients:
        patients.insert(0, str(patient))
    if patients_shown is not None:
        patients = [p for p in patients if p in patients_shown]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(seq),
        "meta": {"versionId": "1", "lastUpdated": entry["ts"]},
        "extension": [
            {
                "url": CHAIN_EXTENSION,
                "extension": [
                    {"url": "seq", "valueInteger": seq},
                    {"url": "hash", "valueString": chain_hash.hex()},
                ],
            }
        ],
        "recorded": entry["ts"],
        "outcome": _outcome(str(entry["outcome"])),
        "agent": [
            _agent(entry),
            {
                "type": {"coding": [_coding(_DCM, "110153", "Source Role ID")]},
                "who": {"display": "Hearth"},
                "requestor": False,
            },
        ],
        "source": {
            "site": site,
            "observer": {"display": "Hearth"},
            "type": [_coding(_SOURCE_TYPE, "4", "Application Server")],
        },
    }
    if entry.get("code"):
        event["outcomeDesc"] = str(entry["code"])
    if entry.get("purpose"):
        event["purposeOfEvent"] = [{"coding": [_coding(_PURPOSE, str(entry["purpose"]))]}]
    if action in _REST:
        profile, interaction, crud = _REST[action]
        if action == "history" and res_id is not None:
            interaction = "history-instance"
        if action == "search" and res_id is not None:
            interaction = "operation"  # $everything names the patient it ran on
        event["type"] = _coding(_EVENT_TYPE, "rest", "Restful Operation")
        event["subtype"] = [_coding(_INTERACTION, interaction)]
        event["action"] = crud
        event["meta"]["profile"] = [_BALP + ("Patient" if patients else "") + profile]
    else:
        code, display = next(
            ((c, d) for prefix, c, d in _DICOM if action.startswith(prefix)),
            ("110100", "Application Activity"),
        )
        event["type"] = _coding(_DCM, code, display)
        event["subtype"] = [_coding("https://hearth.dev/fhir/CodeSystem/audit-action", action)]
        event["action"] = "E"
    entities: list[dict[str, Any]] = []
    if res_type is not None and res_id is not None and res_type not in ("User",):
        reference = f"{res_type}/{res_id}"
        if version is not None:
            reference += f"/_history/{version}"
        if not (res_type == "Patient" and str(res_id) in patients and version is None):
            entities.append(_data_entity(reference))
    elif res_type == "User" and res_id is not None:
        entities.append(
            {
                "what": {"identifier": {"system": USER_SYSTEM, "value": str(res_id)}},
                "type": _coding(_ENTITY_TYPE, "1", "Person"),
                "role": _coding(_OBJECT_ROLE, "11", "Security User Entity"),
            }
        )
    entities.extend(_patient_entity(p) for p in patients)
    if detail is not None:
        query = detail.get("query")
        if isinstance(query, str) and query:
            entities.append(
                {
                    "type": _coding(_ENTITY_TYPE, "2", "System Object"),
                    "role": _coding(_OBJECT_ROLE, "24", "Query"),
                    "query": base64.b64encode(query.encode("utf-8")).decode("ascii"),
                }
            )
        for reference in detail.get("disclosed") or ():
            if isinstance(reference, str):
                entities.append(_data_entity(reference))
    if entry.get("request"):
        entities.append(
            {
                "what": {"identifier": {"value": str(entry["request"])}},
                "type": _coding(_BALP_ENTITY, "XrequestId", "X-Request-Id"),
            }
        )
    if entities:
        event["entity"] = entities
    return event
