"""Care relationships: which patients a clinician may see (issue 5 item 3; HIPAA 164.312(a)(1)).

A user who works as a clinician is linked to one ``Practitioner`` resource (``hearth role link
USER --practitioner ID``). The principal then *acts as* that Practitioner, each active
``PractitionerRole`` whose ``practitioner`` is it, and each ``Organization`` those roles name
(organization membership). A patient is *linked* to the principal when a resource of one of the
kinds below references one of those actors through the named search parameter; the patients
linked are the ones in that resource's patient compartment:

============== ========================= =======================================================
resource        parameter                 what it means
============== ========================= =======================================================
CareTeam        ``participant``           the actor is on the patient's care team
EpisodeOfCare   ``care-manager``          the actor manages an episode of the patient's care
EpisodeOfCare   ``organization``          the actor's organization manages the episode
Encounter       ``participant``           the actor took part in one of the patient's encounters
Encounter       ``service-provider``      the actor's organization provided the encounter
Patient         ``general-practitioner``  the actor is the patient's nominated care provider
Patient         ``organization``          the actor's organization is the custodian of the record
============== ========================= =======================================================

CareTeams that are ``inactive`` or ``entered-in-error``, and EpisodesOfCare and Encounters that are
``cancelled`` or ``entered-in-error``, link nobody. A finished encounter still links: a treating
relationship outlives the visit. The storage layer turns these rules into one SQL subquery over
the search tables, so that scoping is enforced in SQL (docs/design.md, "Access control").

Relationships are written by someone else. A principal may not write a version that widens its
own access (``widens``): one that states a care link to one of the actors it acts as that the
version before did not, makes it act as a PractitionerRole or Organization it did not, or
changes a Consent that restricts one of its actors. A relationship that names a person is
stated by another: an administrator (``hearth role care-team``, which for oneself waits for a
second administrator), a colleague or an interface. See docs/design.md, "Relationships are
written by someone else".

``DIRECTORY_TYPES`` are resource types that describe the organisation, its people and its
knowledge, not a patient: they are reached by type permission alone. Every other type outside
the patient compartment (Task, Group, Bundle, Binary, ...) may hold PHI that cannot be tied to a
patient, so only a role that sees every patient reaches it (deny by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTOR_TYPES",
    "DIRECTORY_TYPES",
    "FACT_TYPES",
    "LINK_RULES",
    "ROLE_RULE",
    "LinkRule",
    "Stated",
    "care_links",
    "role_actors",
    "widens",
]

#: The resource types a principal can act as.
ACTOR_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization"})


@dataclass(frozen=True, slots=True)
class LinkRule:
    """A ``res_type`` resource referencing an actor through ``param`` links the patients in its
    compartment, unless its ``status_param`` is one of ``dead_statuses``."""

    res_type: str
    param: str
    status_param: str | None = None
    dead_statuses: frozenset[str] = frozenset()


_CARE_TEAM_DEAD = frozenset({"inactive", "entered-in-error"})
_EPISODE_DEAD = frozenset({"cancelled", "entered-in-error"})

LINK_RULES: tuple[LinkRule, ...] = (
    LinkRule("CareTeam", "participant", "status", _CARE_TEAM_DEAD),
    LinkRule("EpisodeOfCare", "care-manager", "status", _EPISODE_DEAD),
    LinkRule("EpisodeOfCare", "organization", "status", _EPISODE_DEAD),
    LinkRule("Encounter", "participant", "status", _EPISODE_DEAD),
    LinkRule("Encounter", "service-provider", "status", _EPISODE_DEAD),
    LinkRule("Patient", "general-practitioner"),
    LinkRule("Patient", "organization"),
)

_RULES_BY_TYPE: dict[str, tuple[LinkRule, ...]] = {}
for _rule in LINK_RULES:
    _RULES_BY_TYPE[_rule.res_type] = (*_RULES_BY_TYPE.get(_rule.res_type, ()), _rule)


def care_links(
    res_type: str,
    resource: Mapping[str, Any],
    refs: Iterable[tuple[str, str, str]],
    patients: Iterable[str],
) -> frozenset[tuple[str, str, str]]:
    """``(actor type, actor id, patient id)`` of the care relationships one resource states.

    ``refs`` are its references as the search index holds them (``(parameter, target type,
    target id)``) and ``patients`` its patient compartment, so the links agree with what search
    finds. Every rule's status parameter is the element ``status``, a code; a status among the
    rule's dead ones links nobody.
    """
    rules = _RULES_BY_TYPE.get(res_type)
    if not rules:
        return frozenset()
    patients = tuple(patients)
    if not patients:
        return frozenset()
    refs = tuple(refs)
    status = resource.get("status")
    out: set[tuple[str, str, str]] = set()
    for rule in rules:
        if rule.dead_statuses and status in rule.dead_statuses:
            continue
        for param, target_type, target_id in refs:
            if param == rule.param and target_type in ACTOR_TYPES:
                out.update((target_type, target_id, patient) for patient in patients)
    return frozenset(out)


#: How a Practitioner's roles and organizations are found: PractitionerRoles whose
#: ``practitioner`` is the user's Practitioner and whose ``active`` is not ``false``; each one's
#: ``organization`` is an Organization the user belongs to.
ROLE_RULE = LinkRule("PractitionerRole", "practitioner", "active", frozenset({"false"}))

#: Types whose writes change principals' access facts: what they act as (PractitionerRole), the
#: Consents that deny them, and whom they are linked to (the types of ``LINK_RULES``).
FACT_TYPES = frozenset({"Consent", "PractitionerRole"} | set(_RULES_BY_TYPE))


def role_actors(
    resource: Mapping[str, Any], refs: Iterable[tuple[str, str, str]]
) -> frozenset[tuple[str, str, str]]:
    """``(practitioner id, actor type, actor id)``: what one PractitionerRole makes each
    Practitioner it names act as (``ROLE_RULE``): the role itself and each Organization it
    names; nothing when its ``active`` is false. ``refs`` as for ``care_links``."""
    if resource.get("active") is False:
        return frozenset()
    refs = tuple(refs)
    acting = [("Organization", i) for p, t, i in refs if (p, t) == ("organization", "Organization")]
    own = resource.get("id")
    if isinstance(own, str):
        acting.append(("PractitionerRole", own))
    return frozenset(
        (i, actor_type, actor_id)
        for p, t, i in refs
        if p == "practitioner" and t == "Practitioner"
        for actor_type, actor_id in acting
    )


@dataclass(frozen=True, slots=True)
class Stated:
    """What one version of a resource says about who reaches whom (empty for a deletion and for
    a type that says nothing): its care links (``care_links``), what it makes practitioners act
    as (``role_actors``), and the actors a Consent's deny provisions name
    (``consent.denied_actors``)."""

    links: frozenset[tuple[str, str, str]] = frozenset()
    roles: frozenset[tuple[str, str, str]] = frozenset()
    restricted: frozenset[tuple[str, str]] = frozenset()


def widens(
    actors: frozenset[tuple[str, str]], practitioner: str | None, before: Stated, after: Stated
) -> bool:
    """Whether writing ``after`` over ``before`` widens the access of a principal who is
    ``practitioner`` and acts as ``actors``.

    It does when ``after`` links one of ``actors`` to a patient ``before`` did not (a new care
    team, or one the principal is added to or that is moved to another patient or made active
    again), changes what ``practitioner`` acts as (a PractitionerRole for oneself, one moved to
    another Organization, made active or inactive, or deleted: losing a role lifts the Consent
    denials that name it, while the patient may still be reached another way), or when
    ``before`` is a Consent that restricts one of ``actors``: whoever a restriction names does
    not edit or delete it, whatever the edit (narrowing a provision's types or period is a
    widening too hard to tell apart from the rest). Losing a care link never widens, and
    neither does any change to a Consent that restricts only others."""
    if any((t, i) in actors for t, i, _patient in after.links - before.links):
        return True
    changed_roles = after.roles ^ before.roles  # gained or lost: losing a role can lift a
    # Consent that denies it while the patient is still reached another way
    if practitioner is not None and any(p == practitioner for p, _t, _i in changed_roles):
        return True
    return bool(before.restricted & actors)


DIRECTORY_TYPES: frozenset[str] = frozenset(
    {
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "OrganizationAffiliation",
        "Location",
        "HealthcareService",
        "Endpoint",
        "Schedule",
        "Slot",
        "Medication",
        "MedicationKnowledge",
        "Substance",
        "ActivityDefinition",
        "PlanDefinition",
        "Questionnaire",
        "Library",
        "Measure",
        "ObservationDefinition",
        "SpecimenDefinition",
        "StructureDefinition",
        "ValueSet",
        "CodeSystem",
        "ConceptMap",
        "NamingSystem",
        "SearchParameter",
        "OperationDefinition",
        "CapabilityStatement",
        "ImplementationGuide",
    }
)
