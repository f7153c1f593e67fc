"""Patient privacy Consents that deny a named practitioner or organization (R4 consent.html,
FHIR-CN-01..03).

Hearth honours the part of a privacy Consent that matters for access control: a ``deny``
provision naming an actor the principal acts as (its Practitioner, one of its PractitionerRoles,
or an Organization it belongs to) keeps that principal out of the patient's record, for the
resource types the provision's ``class`` lists (every type when none is listed) or only for the
resources its ``data`` names, while the provision's ``period`` holds.

What is honoured: Consents with ``status`` ``active``, a ``patient``, and a ``scope`` that is
``patient-privacy`` (or absent). Deny provisions are found at every nesting level. A nested
``permit`` inside a deny is *not* treated as an exception: Hearth fails towards keeping the
patient's record closed, and says so here. Consents with other scopes (research, advance
directives, treatment) are not access rules and are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "RESOURCE_TYPES_SYSTEM",
    "ConsentDenial",
    "consent_denials",
    "denied_actors",
    "reference_key",
]

RESOURCE_TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"
_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"


@dataclass(frozen=True, slots=True)
class ConsentDenial:
    """The patient's record is closed to the principal: for ``types`` (None: every type), or
    only for the resources ``resources`` names (``"Type/id"``) when that is not None."""

    patient: str
    types: frozenset[str] | None = None
    resources: frozenset[str] | None = None
    consent: str | None = None  # the deciding Consent's id, for the audit (BALP AuthZconsent)

    def covers(self, res_type: str, res_id: str | None) -> bool:
        if self.resources is not None:
            return res_id is not None and f"{res_type}/{res_id}" in self.resources
        return self.types is None or res_type in self.types


def reference_key(reference: object) -> tuple[str, str] | None:
    """``(type, id)`` of a relative literal reference (``Practitioner/123``), else None."""
    if not isinstance(reference, dict):
        return None
    target = reference.get("reference")
    if not isinstance(target, str):
        return None
    parts = target.split("/_history/", 1)[0].split("/")
    if len(parts) < 2 or not parts[-2] or not parts[-1]:
        return None
    return parts[-2], parts[-1]


def _instant(text: object, *, end: bool) -> datetime | None:
    """A FHIR date or dateTime as a UTC instant; a partial date covers its whole span."""
    if not isinstance(text, str) or len(text) < 4:
        return None
    try:
        if len(text) == 4:
            return datetime(int(text) + (1 if end else 0), 1, 1, tzinfo=UTC)
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            if end:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            return datetime(year, month, 1, tzinfo=UTC)
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day.replace(hour=23, minute=59, second=59) if end else day
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _in_period(period: object, now: datetime) -> bool:
    if not isinstance(period, dict):
        return True
    start = _instant(period.get("start"), end=False)
    stop = _instant(period.get("end"), end=True)
    return (start is None or start <= now) and (stop is None or now <= stop)


def _provisions(node: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, dict):
        yield node
        for child in node.get("provision") or ():
            yield from _provisions(child)


def _privacy_scope(consent: Mapping[str, Any]) -> bool:
    scope = consent.get("scope")
    if scope is None:
        return True
    codings = scope.get("coding") if isinstance(scope, dict) else None
    if not isinstance(codings, list):
        return False
    return any(
        isinstance(c, dict)
        and c.get("code") == "patient-privacy"
        and c.get("system") in (_SCOPE_SYSTEM, None)
        for c in codings
    )


def consent_denials(
    consent: Mapping[str, Any], actors: Iterable[tuple[str, str]], now: datetime
) -> list[ConsentDenial]:
    """The denials one Consent imposes on a principal acting as ``actors`` at ``now``."""
    if consent.get("resourceType") != "Consent" or consent.get("status") != "active":
        return []
    if not _privacy_scope(consent):
        return []
    patient = reference_key(consent.get("patient"))
    if patient is None or patient[0] != "Patient":
        return []
    wanted = set(actors)
    consent_id = consent.get("id") if isinstance(consent.get("id"), str) else None
    out: list[ConsentDenial] = []
    for node in _provisions(consent.get("provision")):
        if node.get("type") != "deny" or not _in_period(node.get("period"), now):
            continue
        named = {
            reference_key(a.get("reference"))
            for a in node.get("actor") or ()
            if isinstance(a, dict)
        }
        if not named & wanted:
            continue
        types = frozenset(
            c["code"]
            for c in node.get("class") or ()
            if isinstance(c, dict)
            and c.get("system") in (RESOURCE_TYPES_SYSTEM, None)
            and isinstance(c.get("code"), str)
        )
        data = [
            reference_key(d.get("reference")) for d in node.get("data") or () if isinstance(d, dict)
        ]
        resources = frozenset(f"{t}/{i}" for t, i in (d for d in data if d is not None))
        out.append(
            ConsentDenial(
                patient=patient[1],
                types=types or None,
                resources=resources or None,
                consent=consent_id,
            )
        )
    return out


def denied_actors(consent: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """``(type, id)`` of every actor a ``deny`` provision of ``consent`` names, at any nesting
    level, whatever the Consent's status, scope or the provision's period: the actors it
    restricts now or could restrict after an edit of those (the rule that nobody edits a
    restriction on themselves, ``hearth.security.relationships.widens``)."""
    out: set[tuple[str, str]] = set()
    for node in _provisions(consent.get("provision")):
        if node.get("type") != "deny":
            continue
        for actor in node.get("actor") or ():
            key = reference_key(actor.get("reference")) if isinstance(actor, dict) else None
            if key is not None:
                out.add(key)
    return frozenset(out)
