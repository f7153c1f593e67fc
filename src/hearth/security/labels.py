"""Security labels: which ones restrict access (R4 security-labels.html, FHIR-SL-01..03).

A resource's ``meta.security`` may carry confidentiality codes (v3-Confidentiality: ``U``, ``L``,
``M``, ``N`` normal; ``R`` restricted; ``V`` very restricted), sensitivity codes (v3-ActCode's
ActInformationSensitivityPolicy: ``ETH`` substance abuse, ``HIV``, ``PSY``, ``BH`` behavioural
health, ...), US privacy law codes (v3-ActUSPrivacyLaw, e.g. ``42CFRPart2``) and handling marks
(v3-ObservationValue: ``REDACTED``, ``SUBSETTED``; v3-ActReason purposes of use).

``restricting_labels`` reduces them to canonical names. A resource is released only to a role
that holds every restricting name it carries (FHIR-SL-03). Fail closed: a code this module does
not recognise, in any system other than the two handling systems, becomes ``"?"``, which only a
role holding ``"?"`` or ``"*"`` may see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ACT_CODE",
    "ALL_LABELS",
    "CONFIDENTIALITY",
    "KNOWN_RESTRICTING",
    "LABEL_DOMAIN",
    "OBSERVATION_VALUE",
    "PRIVACY_LAW",
    "PURPOSE_OF_USE",
    "REDACTED",
    "SENSITIVITY",
    "UNRECOGNISED",
    "carry_restricting",
    "held_labels",
    "lacking_labels",
    "restricting_labels",
]

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PRIVACY_LAW = "http://terminology.hl7.org/CodeSystem/v3-ActUSPrivacyLaw"
OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
PURPOSE_OF_USE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

#: The mark the gate adds when it removed elements a role may not see (minimum necessary).
REDACTED: Mapping[str, str] = {
    "system": OBSERVATION_VALUE,
    "code": "REDACTED",
    "display": "redacted",
}

#: The blind-index domain of the label keys the gate adds to each resource's search index, so
#: that SQL can leave out rows carrying a label the principal lacks (docs/design.md).
LABEL_DOMAIN = "access/v1/label"

#: The canonical name of any label this module does not recognise.
UNRECOGNISED = "?"
#: A role's wildcard: every label, recognised or not.
ALL_LABELS = "*"

_OPEN_CONFIDENTIALITY = frozenset({"U", "L", "M", "N"})
_RESTRICTED_CONFIDENTIALITY = frozenset({"R", "V"})

#: v3 ActInformationSensitivityPolicy codes (R4 v3-ActCode), each restricting on its own.
SENSITIVITY: frozenset[str] = frozenset(
    {
        "ETH",  # substance abuse information sensitivity
        "ETHUD",  # alcohol use disorder
        "OPIOIDUD",  # opioid use disorder
        "SUD",  # substance use disorder
        "GDIS",  # genetic disease
        "HIV",
        "MST",  # military sexual trauma
        "SCA",  # sickle cell anaemia
        "SDV",  # sexual assault, abuse or domestic violence
        "SEX",  # sexuality and reproductive health
        "SPI",  # specially protected information
        "STD",  # sexually transmitted disease
        "TBOO",  # taboo
        "BH",  # behavioural health
        "COGN",  # cognitive disability
        "DVD",  # developmental disability
        "EMOTDIS",  # emotional disturbance
        "MH",  # mental health
        "PSY",  # psychiatry
        "PSYTHPN",  # psychotherapy note (excluded from the right of access, 164.524(a)(1))
        "SOC",  # social services
        "ADOL",  # adolescent
        "CEL",  # celebrity
        "EMP",  # employee
        "DEMO",  # demographic information sensitivity
        "DIA",  # diagnosis
        "DRGIS",  # drug information sensitivity
        "LOCIS",  # location information sensitivity
        "PDS",  # patient default sensitivity
        "PRS",  # patient requested sensitivity
    }
)
_PRIVACY_LAWS = frozenset(
    {"42CFRPart2", "CommonRule", "HIPAANOPP", "HIPAAPsyNotes", "HIPAASelfPay", "Title38Section7332"}
)

#: Every canonical restricting name a resource can carry; SQL enumerates the ones a principal
#: lacks from this finite set (an unrecognised label is ``"?"``).
KNOWN_RESTRICTING: frozenset[str] = (
    _RESTRICTED_CONFIDENTIALITY | SENSITIVITY | _PRIVACY_LAWS | {UNRECOGNISED}
)


def _codings(resource: Mapping[str, Any]) -> Iterable[tuple[object, object]]:
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return
    labels = meta.get("security")
    if not isinstance(labels, list):
        return
    for coding in labels:
        if isinstance(coding, dict):
            yield coding.get("system"), coding.get("code")


def _canonical(system: object, code: object) -> str | None:
    """The restricting name of one coding, or None when it restricts nothing."""
    if not isinstance(code, str):
        return UNRECOGNISED
    if system == CONFIDENTIALITY:
        if code in _OPEN_CONFIDENTIALITY:
            return None
        return code if code in _RESTRICTED_CONFIDENTIALITY else UNRECOGNISED
    if system in (OBSERVATION_VALUE, PURPOSE_OF_USE):
        return None  # handling marks and purposes of use say how, not who
    if system == ACT_CODE:
        return code if code in SENSITIVITY else UNRECOGNISED
    if system == PRIVACY_LAW:
        return code if code in _PRIVACY_LAWS else UNRECOGNISED
    return UNRECOGNISED


def restricting_labels(resource: Mapping[str, Any] | None) -> frozenset[str]:
    """The canonical restricting labels ``resource`` carries (FHIR-SL-03)."""
    if not resource:
        return frozenset()
    found = {_canonical(system, code) for system, code in _codings(resource)}
    found.discard(None)
    return frozenset(label for label in found if label is not None)


def held_labels(granted: Iterable[str]) -> frozenset[str] | None:
    """The labels a set of grants lets one see; None for every label (``"*"``)."""
    granted = frozenset(granted)
    return None if ALL_LABELS in granted else granted


def lacking_labels(held: frozenset[str] | None) -> frozenset[str]:
    """The restricting names a holder of ``held`` may not see (empty when it holds all)."""
    return frozenset() if held is None else KNOWN_RESTRICTING - held


def carry_restricting(new: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` with every restricting label of ``stored`` it lacks put back (FHIR-SL-03: only a
    role that manages labels may remove one; a body sent without them keeps them)."""
    have = restricting_labels(new)
    missing = []
    meta = stored.get("meta")
    for coding in (meta.get("security") if isinstance(meta, dict) else None) or ():
        if isinstance(coding, dict):
            label = _canonical(coding.get("system"), coding.get("code"))
            if label is not None and label not in have:
                missing.append(coding)
                have = have | {label}
    if not missing:
        return dict(new)
    out = dict(new)
    new_meta = dict(out.get("meta") or {})
    new_meta["security"] = [*(new_meta.get("security") or []), *missing]
    out["meta"] = new_meta
    return out
