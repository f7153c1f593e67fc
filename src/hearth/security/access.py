"""The one access decision point (issue 5 item 1; X-08; HIPAA 164.312(a)(1); ASVS 8.2.1-8.3.3).

Every path that can return or change PHI asks here: reads, searches and what they include,
history, ``$everything``, transaction entries, audit views and, later, exports. Pure: the gate
gathers the *facts* (``Facts``: who the principal acts as, which Consents deny them, which
break-the-glass grant they invoke; per resource, its compartment patients and which of those are
linked to the principal) and this module answers.

``DecisionPoint.profile(principal, facts)`` resolves a principal's roles, granted SMART scopes
and facts into an ``AccessProfile`` for one request. The profile answers three questions:

- ``decide(action, res_type, ...)``: may the principal do this, to this type or this resource?
  Deny by default; an action it does not know fails closed. ``FORBIDDEN`` (403) when no role
  grants the interaction on the type at all; ``OUT_OF_SCOPE`` when the type is granted but this
  resource is outside the principal's reach, which the gate answers as not-found (404) for reads;
- ``search_scope(res_type, compartment=...)``: the same rule stated for every row of a type at
  once, so that the gate enforces it in SQL (counts and pages stay right);
- ``allows(capability)``: Hearth's own actions (audit views, break-the-glass, administration).

A resource is reached through one role when all of these hold:

1. the role grants the interaction on the type (a permission scope with the interaction letter,
   and, for a granular permission, the resource matches its query); a ``delegated_only`` role
   grants nothing without scopes;
2. the patient reach: directory types (``relationships.DIRECTORY_TYPES``) need nothing more;
   other types outside the patient compartment need a role that reaches ``all`` patients; a
   compartment type needs ``all``, or one of its patients ``linked`` to the principal, or the
   principal's own patient (``self``);
3. the role holds every restricting security label the resource carries;
4. no Consent denies the principal the resource's patient for that type.

An active break-the-glass grant the request invokes lifts 2, 3 and 4 for its patient (never 1:
emergency access stays within what the role may do) and records the access under ``ETREAT``.
A principal with SMART scopes (an OAuth token) additionally needs a granted scope: the
intersection of the user's rights and the scopes, never the union (SMART-SC-05, ASVS 8.3.3). A
``patient/`` scope reaches only the launch patient's compartment, and directory resources.

A write of a resource that states relationships (``relationships.FACT_TYPES``) is further asked
``decide_relationships``: nobody writes one that widens their own access
(``relationships.widens``), and nothing of the kind is written under a break-the-glass grant,
so that emergency access cannot outlive the grant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hearth.domain import Action, Principal, ScopeContext, SmartScope
from hearth.security.consent import ConsentDenial
from hearth.security.labels import held_labels, lacking_labels, restricting_labels
from hearth.security.policy import Decision, Denial
from hearth.security.relationships import DIRECTORY_TYPES, FACT_TYPES, Stated, widens
from hearth.security.roles import PURPOSES, Capability, PatientScope, Role, RoleCatalog
from hearth.security.scopes import interaction_for, matches_query

__all__ = [
    "BREAK_GLASS_ATTRIBUTE",
    "CHAIN_TYPES",
    "EMERGENCY_PURPOSE",
    "AccessProfile",
    "DecisionPoint",
    "Facts",
    "PatientReach",
    "Reach",
    "SearchScope",
]

EMERGENCY_PURPOSE = "ETREAT"
#: ``Principal.attributes`` key naming the break-the-glass grant a request invokes (set by the
#: web adapter from the ``X-Hearth-Break-Glass`` header).
BREAK_GLASS_ATTRIBUTE = "break_glass"
#: Types never stored as resources: AuditEvent is rendered from the audit chain (the source of
#: truth) by the audit views, which the ``audit.read`` capability decides.
CHAIN_TYPES = frozenset({"AuditEvent"})
_KNOWN_ACTIONS = frozenset(Action)
_KNOWN_CAPABILITIES = frozenset(Capability)

Query = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Facts:
    """What the gate found out about a principal for one request."""

    practitioner: str | None = None  # the Practitioner the user is linked to
    patient: str | None = None  # the Patient a patient user is
    #: (type, id) of every actor the principal acts as: its Practitioner, that Practitioner's
    #: active PractitionerRoles and their Organizations (hearth.security.relationships).
    actors: frozenset[tuple[str, str]] = frozenset()
    #: Denials of active privacy Consents naming one of ``actors``.
    denials: tuple[ConsentDenial, ...] = ()
    #: Patients of the active break-the-glass grant this request invokes.
    break_glass: frozenset[str] = frozenset()
    #: The grant's id, for the audit.
    break_glass_grant: str | None = None


@dataclass(frozen=True, slots=True)
class PatientReach:
    """Which patients' rows: everyone (no condition), those linked to the principal, and/or
    the explicit ``ids``. Neither flag and no ids reaches no patient row."""

    everyone: bool = False
    linked: bool = False
    ids: frozenset[str] = frozenset()

    @property
    def nothing(self) -> bool:
        return not self.everyone and not self.linked and not self.ids


@dataclass(frozen=True, slots=True)
class Reach:
    """One way rows of a type are reached (through one role, or one break-the-glass grant).

    A row is reached when it is in ``patients``, carries none of the ``lacking`` labels,
    matches one of ``queries`` (None: no query constraint) and is not in ``excluded``
    (Consent denials: patient ids, and ``Type/id`` of single resources)."""

    patients: PatientReach
    lacking: frozenset[str] = frozenset()
    queries: tuple[Query, ...] | None = None
    excluded_patients: frozenset[str] = frozenset()
    excluded_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Delegation:
    """What a granted scope allows of a type's rows: the launch patient's compartment only
    (``within``, for ``patient/`` scopes; None otherwise) and the scope's query, if any."""

    within: frozenset[str] | None
    query: Query


@dataclass(frozen=True, slots=True)
class SearchScope:
    """Every row of one type a principal may see, for the gate to compile to SQL.

    Rows reached by one of ``reaches`` (empty: no row) and, for a delegated principal
    (``delegations`` not None), allowed by one of ``delegations`` (empty: no row)."""

    reaches: tuple[Reach, ...]
    delegations: tuple[Delegation, ...] | None = None

    @property
    def unrestricted(self) -> bool:
        """Whether every row of the type is visible (no SQL condition needed)."""
        return (
            self.delegations is None
            and len(self.reaches) == 1
            and self.reaches[0] == Reach(PatientReach(everyone=True))
        )

    @property
    def nothing(self) -> bool:
        return not self.reaches or (self.delegations is not None and not self.delegations)


@dataclass(frozen=True, slots=True)
class _Grant:
    role: Role
    query: Query | None  # None: the permission has no query


def _letter(action: Action, instance: bool) -> str:
    return interaction_for(action, instance=instance)


class AccessProfile:
    """One principal's rights for one request: roles, scopes and facts resolved."""

    def __init__(self, principal: Principal, roles: tuple[Role, ...], facts: Facts) -> None:
        self.principal = principal
        self.facts = facts
        delegated = principal.scopes is not None
        # A delegated_only role counts only when the principal carries scopes.
        roles = tuple(r for r in roles if delegated or not r.delegated_only)
        # Identified and de-identified answers never mix: pseudonyms joined to real ids (from
        # a clinical role, the audit views, a write) would undo the rewrite. A de-identified
        # role held beside any role that grants anything is inert (research gets its own
        # account).
        if any(not r.deidentified and (r.permissions or r.capabilities) for r in roles):
            roles = tuple(r for r in roles if not r.deidentified)
        self.roles = roles
        self._labels = {r.name: held_labels(r.labels) for r in self.roles}

    # -- what the profile says about the principal -------------------------------------------
    @property
    def purpose(self) -> str:
        """The purpose of use this request's accesses are recorded under (v3 ActReason)."""
        if self.facts.break_glass:
            return EMERGENCY_PURPOSE
        # Several roles: the first purpose in PURPOSES order (treatment before payment before
        # operations); each single access is recorded under the purpose of the role that
        # granted it (``Decision.purpose``).
        order = list(PURPOSES)
        ranked = sorted(
            self.roles, key=lambda r: (order.index(r.purpose) if r.purpose in order else 99, r.name)
        )
        return ranked[0].purpose if ranked else self.principal.purpose_of_use

    @property
    def needs_links(self) -> bool:
        """Whether decisions need the ``linked`` fact (a role scoped by care relationships)."""
        return any(r.patients is PatientScope.LINKED for r in self.roles)

    @property
    def deidentified(self) -> bool:
        """Whether everything this principal receives is de-identified (``hearth.fhir.
        deidentify``): it holds a de-identified role, so (above) no identified clinical one."""
        return any(r.deidentified for r in self.roles)

    @property
    def unrestricted(self) -> bool:
        """Whether every resource of every type is visible unmasked (no SQL scope, no masks)."""
        return self.principal.scopes is None and any(
            r.patients is PatientScope.ALL
            and r.labels == frozenset({"*"})
            and not r.masks
            and not r.deidentified
            and any(p.resource_type == "*" and not p.query for p in r.permissions)
            for r in self.roles
        )

    @property
    def masks_anything(self) -> bool:
        """Whether some role of the principal masks an element of some type."""
        return any(r.masks for r in self.roles)

    def role_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles)

    def search_masks(self, res_type: str) -> tuple[str, ...]:
        """The elements of ``res_type`` a search by this principal may not read (FHIR-SL-03):
        every element that a role letting it search the type masks.

        Which role decides a resource (the least masked that reaches it), and so which
        elements of it are masked, is known only per resource, after SQL has counted and paged
        the matches: a criterion on an element that one of those roles masks could count or
        order resources through it, so the union is refused (fail closed). Unless one of them
        reaches every row of the type unmasked (every patient, every label, no granular
        query): that role then decides every resource, and nothing is masked.
        """
        grants = (
            [] if res_type in CHAIN_TYPES else self._grants(_letter(Action.SEARCH, False), res_type)
        )
        roles = {g.role.name: g.role for g in grants}
        masks = {m for role in roles.values() for m in role.masks_for(res_type)}
        if not masks:
            return ()
        for name, role in roles.items():
            if (
                not role.masks_for(res_type)
                and any(g.role.name == name and g.query is None for g in grants)
                and (res_type in DIRECTORY_TYPES or role.patients is PatientScope.ALL)
                and self._labels[name] is None
            ):
                return ()
        return tuple(sorted(masks))

    # -- capabilities ---------------------------------------------------------------------------
    def allows(self, capability: Capability) -> Decision:
        """Hearth's own actions. Capabilities are never delegated to a token: an app acting
        for a user reaches FHIR data through its scopes, and nothing else (SMART-SC-05)."""
        if capability not in _KNOWN_CAPABILITIES:  # fail closed on anything unrecognised
            return Decision.deny(Denial.FORBIDDEN, "unknown action")
        if self.principal.scopes is not None:
            return Decision.deny(Denial.FORBIDDEN, "not available to delegated access")
        for role in self.roles:
            if capability in role.capabilities:
                return Decision.allow(f"role {role.name}")
        return Decision.deny(Denial.FORBIDDEN, "no role grants this")

    # -- one resource -------------------------------------------------------------------------
    def _grants(self, letter: str, res_type: str) -> list[_Grant]:
        out = []
        for role in self.roles:
            for p in role.permissions:
                if letter in p.interactions and p.resource_type in ("*", res_type):
                    out.append(_Grant(role, p.query or None))
        return out

    def _delegations(self, letter: str, res_type: str) -> list[SmartScope] | None:
        scopes = self.principal.scopes
        if scopes is None:
            return None
        return [
            s for s in scopes if letter in s.interactions and s.resource_type in ("*", res_type)
        ]

    def _patient_reach(
        self,
        role: Role,
        res_type: str,
        patients: frozenset[str] | None,
        linked: frozenset[str],
    ) -> bool:
        if res_type in DIRECTORY_TYPES:
            return True
        if patients is None:  # a type outside the patient compartment
            return role.patients is PatientScope.ALL
        match role.patients:
            case PatientScope.ALL:
                return True
            case PatientScope.LINKED:
                return bool(patients & linked)
            case PatientScope.SELF:
                return self.facts.patient is not None and self.facts.patient in patients
            case _:
                return False

    def _denied(self, res_type: str, res_id: str | None, patients: frozenset[str] | None) -> bool:
        if not patients or res_type in DIRECTORY_TYPES:
            return False
        return any(d.patient in patients and d.covers(res_type, res_id) for d in self.facts.denials)

    def decide(
        self,
        action: Action,
        res_type: str,
        *,
        res_id: str | None = None,
        resource: Mapping[str, Any] | None = None,
        patients: frozenset[str] | None = None,
        linked: frozenset[str] = frozenset(),
        instance: bool | None = None,
    ) -> Decision:
        """Decide ``action`` on a type (``resource`` None, before loading) or on one resource.

        ``patients`` are the resource's compartment patients (None for a type outside the
        patient compartment) and ``linked`` those of them linked to the principal; both are
        facts the gate computes. ``instance`` says whether the interaction names one resource
        (read, vread, instance history); it defaults to ``res_id is not None``.
        """
        if action not in _KNOWN_ACTIONS:  # fail closed on anything unrecognised
            return Decision.deny(Denial.FORBIDDEN, "unknown action")
        if res_type in CHAIN_TYPES:
            return Decision.deny(Denial.FORBIDDEN, "served from the audit chain")
        letter = _letter(action, res_id is not None if instance is None else instance)
        grants = self._grants(letter, res_type)
        delegations = self._delegations(letter, res_type)
        if not grants:
            return Decision.deny(Denial.FORBIDDEN, "no role grants this")
        if delegations is not None and not delegations:
            return Decision.deny(Denial.FORBIDDEN, "no granted scope allows this")
        if resource is None and patients is None:
            return Decision.allow("the type is granted")  # step 1: type level
        if delegations is not None and not any(
            self._scope_reaches(s, res_type, resource, patients) for s in delegations
        ):
            return Decision.deny(Denial.OUT_OF_SCOPE, "outside the granted scopes")
        emergency = bool(patients and patients & self.facts.break_glass) and (
            res_type not in DIRECTORY_TYPES
        )
        labels = restricting_labels(resource)
        denied = self._denied(res_type, res_id, patients)
        best: Decision | None = None
        for grant in grants:
            role = grant.role
            if grant.query and (resource is None or not matches_query(resource, grant.query)):
                continue
            if not emergency:
                if not self._patient_reach(role, res_type, patients, linked) or denied:
                    continue
                held = self._labels[role.name]
                if held is not None and not labels <= held:
                    continue
            masks = role.masks_for(res_type)
            purpose = EMERGENCY_PURPOSE if emergency else role.purpose
            decision = Decision.allow(f"role {role.name}", masks=masks, purpose=purpose)
            if best is None or len(masks) < len(best.masks):
                best = decision
            if not masks:
                break
        if best is None:
            return Decision.deny(Denial.OUT_OF_SCOPE, "outside the principal's reach")
        return best

    def decide_relationships(
        self,
        res_type: str,
        before: Stated,
        after: Stated,
        *,
        practitioner: str | None,
        actors: frozenset[tuple[str, str]],
    ) -> Decision:
        """May a write replace ``before`` with ``after``, which ``decide`` allowed already?

        ``practitioner`` and ``actors`` are who the principal is and acts as *now* (the gate
        reads them in the write's transaction, not from the facts it keeps for a few seconds,
        and for every principal, an unrestricted one included: a link it writes for itself
        outlasts the roles it holds today). Refused, whatever the principal's roles: a write
        that widens the principal's own access (``Denial.SELF_LINK``), and any write of a
        relationship under a break-the-glass grant (``Denial.EMERGENCY``), since a relationship
        written in an emergency would keep the record open after the grant ends."""
        if res_type not in FACT_TYPES:
            return Decision.allow("states no relationship")
        if widens(actors, practitioner, before, after):
            return Decision.deny(Denial.SELF_LINK, "widens the principal's own access")
        if self.facts.break_glass_grant is not None:
            return Decision.deny(Denial.EMERGENCY, "a relationship written under a grant")
        return Decision.allow("leaves the principal's own access as it was")

    def _scope_reaches(
        self,
        scope: SmartScope,
        res_type: str,
        resource: Mapping[str, Any] | None,
        patients: frozenset[str] | None,
    ) -> bool:
        if scope.context is ScopeContext.PATIENT and res_type not in DIRECTORY_TYPES:
            launch = self.principal.patient
            if launch is None or patients is None or launch not in patients:
                return False
        return not (scope.query and (resource is None or not matches_query(resource, scope.query)))

    # -- every row of a type --------------------------------------------------------------------
    def search_scope(
        self, res_type: str, *, compartment: bool, action: Action = Action.SEARCH
    ) -> SearchScope:
        """The rows of ``res_type`` this principal may see (type-level ``action``), stated for
        the gate to compile to SQL. ``compartment`` says whether the type belongs to the patient
        compartment (the gate knows the R4 CompartmentDefinition; this module does not)."""
        letter = _letter(action, False)
        grants = [] if res_type in CHAIN_TYPES else self._grants(letter, res_type)
        directory = res_type in DIRECTORY_TYPES
        reaches: list[Reach] = []
        for role in {g.role.name: g.role for g in grants}.values():
            found = [g.query for g in grants if g.role is role]
            role_queries = (
                None if any(q is None for q in found) else tuple(q for q in found if q is not None)
            )
            if directory:
                patients = PatientReach(everyone=True)
            elif not compartment:
                patients = PatientReach(everyone=role.patients is PatientScope.ALL)
            else:
                patients = PatientReach(
                    everyone=role.patients is PatientScope.ALL,
                    linked=role.patients is PatientScope.LINKED,
                    ids=frozenset({self.facts.patient})
                    if role.patients is PatientScope.SELF and self.facts.patient
                    else frozenset(),
                )
            if patients.nothing:
                continue
            excluded_patients: set[str] = set()
            excluded_ids: set[str] = set()
            if compartment and not directory:
                for d in self.facts.denials:
                    if d.resources is not None:
                        excluded_ids.update(
                            r.split("/", 1)[1] for r in d.resources if r.startswith(res_type + "/")
                        )
                    elif d.types is None or res_type in d.types:
                        excluded_patients.add(d.patient)
            reaches.append(
                Reach(
                    patients=patients,
                    lacking=lacking_labels(self._labels[role.name]),
                    queries=role_queries,
                    excluded_patients=frozenset(excluded_patients),
                    excluded_ids=frozenset(excluded_ids),
                )
            )
            if compartment and not directory and self.facts.break_glass:
                reaches.append(
                    Reach(PatientReach(ids=self.facts.break_glass), queries=role_queries)
                )
        delegations = self._delegations(letter, res_type)
        stated: tuple[Delegation, ...] | None = None
        if delegations is not None:
            out = []
            for s in delegations:
                within = None
                if s.context is ScopeContext.PATIENT and not directory:
                    launch = self.principal.patient
                    if launch is None or not compartment:
                        continue
                    within = frozenset({launch})
                out.append(Delegation(within, s.query))
            stated = tuple(dict.fromkeys(out))
        return SearchScope(tuple(dict.fromkeys(reaches)), stated)


class DecisionPoint:
    """Builds ``AccessProfile``s from the current role catalog (roles are data: the catalog
    source is asked each time, so an administrator's edit applies to the next request)."""

    def __init__(self, catalog: Callable[[], RoleCatalog]) -> None:
        self._catalog = catalog

    @property
    def catalog(self) -> RoleCatalog:
        return self._catalog()

    def profile(
        self,
        principal: Principal,
        facts: Facts | None = None,
        *,
        catalog: RoleCatalog | None = None,
    ) -> AccessProfile:
        """The principal's profile under ``catalog`` (the current one when None)."""
        roles = (catalog or self._catalog()).of(principal.roles)
        return AccessProfile(principal, roles, facts or Facts())
