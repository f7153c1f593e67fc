"""The gate's side of access control: gathering facts, and stating decisions in SQL.

``hearth.security.access`` decides and is pure. This module gives it what it needs and applies
its answers where the data is:

- ``RoleStore``: the role catalog (shipped defaults plus administrators' stored edits), cached
  in the process and reloaded at once after a local edit and within ``_ROLE_TTL`` seconds after
  another process's;
- ``AccessControl`` (one per container) and ``BoundAccess`` (one per repository, that is per
  request and principal): the principal's facts (its user link, the actors it works as, the
  Consents that deny them, the break-the-glass grant it invokes), each resource's compartment
  patients and which of them are linked to the principal, and the ``SearchScope`` of a type
  compiled into a condition the searcher runs in SQL, so counts and pages are right;
- ``stated``: what one version of a resource says about who reaches whom, from the same
  entries the search index holds, for the rule that nobody widens their own access by a write
  (``BoundAccess.decide_relationships``).

See docs/design.md, "Access control".
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, FromClause, select

from hearth.crypto import KeyRing
from hearth.domain import (
    Action,
    Clock,
    HearthError,
    Principal,
    PrincipalKind,
    StoredResource,
    errors,
)
from hearth.fhir import definitions
from hearth.fhir.search import (
    ALL,
    NONE,
    IdIn,
    Not,
    and_,
    index_resource,
    or_,
    param_for,
    parse_search,
)
from hearth.fhir.search.conditions import Cond
from hearth.fhir.search.criteria import Context
from hearth.fhir.search.extract import Ref, extract
from hearth.security import (
    BREAK_GLASS_ATTRIBUTE,
    FACT_TYPES,
    LABEL_DOMAIN,
    ROLE_RULE,
    AccessProfile,
    Capability,
    Decision,
    DecisionPoint,
    Facts,
    LinkRule,
    Reach,
    RoleCatalog,
    SearchScope,
    Stated,
    care_links,
    consent_denials,
    default_catalog,
    denied_actors,
    interaction_for,
    restricting_labels,
    role_actors,
)
from hearth.storage.sql import access as sql
from hearth.storage.sql import search as search_sql
from hearth.storage.sql.store import SqlStore, VersionRow

__all__ = [
    "AccessControl",
    "BoundAccess",
    "RoleStore",
    "compartment_patients",
    "in_compartment",
    "label_keys",
    "stated",
]

_ROLE_TTL = 5.0
#: A principal's linked patients are kept with its facts up to this many (ids of 36 characters:
#: about 4 MB at the limit); a larger panel is asked of SQL on every decision.
_PANEL_KEPT = 50_000

Opener = Callable[[VersionRow], StoredResource]
#: Filled once with (linked patients up to _PANEL_KEPT + 1, their ids if at most _PANEL_KEPT).
PanelBox = list[tuple[int, frozenset[str] | None]]
#: A type's compiled scope condition for one kind of principal (roles, SMART scopes, launch
#: patient), with the catalog and key ring generation it was compiled under.
ScopeKey = tuple[str, str, frozenset[str], frozenset[Any] | None, str | None]
ScopeBox = dict[ScopeKey, tuple[RoleCatalog, int, object]]


class _Kept:
    """A principal's lasting facts, kept ``_ROLE_TTL`` seconds, and what is derived from them
    alone: the linked patients (``PanelBox``) and each type's compiled scope (``ScopeBox``)."""

    __slots__ = ("at", "epoch", "facts", "generation", "panel", "scopes")

    def __init__(self, at: float, generation: int, epoch: int, facts: Facts) -> None:
        self.at = at
        self.generation = generation
        self.epoch = epoch
        self.facts = facts
        self.panel: PanelBox = []
        self.scopes: ScopeBox = {}


@cache
def _compartment_params(res_type: str) -> tuple[Any, ...]:
    params = []
    for code in definitions.patient_compartment(res_type):
        param = param_for(res_type, code)
        if param is not None and param.type == "reference":
            params.append(param)
    return tuple(params)


def in_compartment(res_type: str) -> bool:
    """Whether ``res_type`` belongs to the patient compartment (compartmentdefinition-patient)."""
    return res_type == "Patient" or bool(definitions.patient_compartment(res_type))


def compartment_patients(
    res_type: str, resource: Mapping[str, Any] | None, res_id: str | None = None
) -> frozenset[str] | None:
    """The patients whose compartment holds a resource (the same rule as the search index's
    ``search_compartment``), or None for a type outside the patient compartment."""
    if not in_compartment(res_type):
        return None
    out: set[str] = set()
    if res_type == "Patient":
        own = res_id or (resource or {}).get("id")
        if isinstance(own, str):
            out.add(own)
    if resource:
        for param in _compartment_params(res_type):
            for ref in extract(param, dict(resource)):
                if isinstance(ref, Ref) and ref.type == "Patient" and ref.id is not None:
                    out.add(ref.id)
    return frozenset(out)


def label_keys(resource: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(domain, key) of the restricting labels a resource carries, for its search index, so that
    SQL can leave out what a principal may not see (hearth.security.labels)."""
    return {(LABEL_DOMAIN, label) for label in restricting_labels(resource)}


def stated(res_type: str, res_id: str, resource: Mapping[str, Any] | None) -> Stated:
    """What one version of ``Type/id`` says about who reaches whom (``relationships.Stated``;
    empty for a deletion). Care links and roles come from the same references and compartment
    the search index holds for the version (``index_resource``), so the rule decides on what
    ``search_care_link`` and the principals' facts will hold once it is written."""
    if resource is None or res_type not in FACT_TYPES:
        return Stated()
    if res_type == "Consent":
        return Stated(restricted=denied_actors(resource))
    body = {**resource, "resourceType": res_type, "id": res_id}
    entries = index_resource(body, references_only=True)
    return Stated(
        links=care_links(res_type, body, entries.refs, entries.patients),
        roles=role_actors(body, entries.refs) if res_type == "PractitionerRole" else frozenset(),
    )


class RoleStore:
    """The role catalog: shipped defaults with administrators' edits (``access_role``)."""

    def __init__(self, store: SqlStore, defaults: RoleCatalog | None = None) -> None:
        self._store = store
        self._defaults = defaults or default_catalog()
        self._lock = threading.Lock()
        self._cached: tuple[float, RoleCatalog] | None = None
        #: Incremented by ``invalidate``; cached facts of an older generation are not used.
        self.generation = 0

    @property
    def defaults(self) -> RoleCatalog:
        return self._defaults

    def catalog(self) -> RoleCatalog:
        cached = self._cached
        now = time.monotonic()
        if cached is not None and now - cached[0] < _ROLE_TTL:
            return cached[1]
        with self._lock:
            with self._store.read() as conn:
                rows = sql.role_rows(conn)
            edits: dict[str, Mapping[str, Any] | None] = {
                r.name: None if r.deleted or r.definition is None else orjson.loads(r.definition)
                for r in rows
            }
            catalog = self._defaults.with_edits(edits)
            self._cached = (now, catalog)
            return catalog

    def invalidate(self) -> None:
        """Forget the catalog and every principal's cached facts (``AccessControl``): after a
        role edit or a link in this process. A write of facts drops only the facts
        (``AccessControl.forget_facts``)."""
        self._cached = None
        self.generation += 1


class AccessControl:
    """The decision point and the fact gathering around it; one per container."""

    def __init__(
        self,
        store: SqlStore,
        keyring: KeyRing,
        clock: Clock,
        roles: RoleStore,
        *,
        throttled: Callable[[Principal], bool] | None = None,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.clock = clock
        self.roles = roles
        self.point = DecisionPoint(roles.catalog)
        #: Whether a principal's access is paused (snooping detection); set by the wiring.
        self.throttled = throttled
        #: How care-relationship scoping is stated for this engine's planner (sql.InLinked).
        self.probe = store.db.write.dialect.name == "sqlite"
        # A principal's facts (link, actors, Consent denials, panel size) for _ROLE_TTL seconds,
        # like the role catalog: several statements per request otherwise. Dropped at once
        # by a local change (RoleStore.invalidate); another process's within the TTL.
        self._facts: dict[str, _Kept] = {}
        # Moved by a local write of a resource that states facts (``forget_facts``): kept facts
        # of an earlier epoch are not used. The role catalog does not depend on them.
        self._facts_epoch = 0
        self._epochs = itertools.count(1)  # next() is atomic: no two forgets share an epoch

    def cached_facts(self, subject: str) -> _Kept | None:
        found = self._facts.get(subject)
        if found is None:
            return None
        if (
            found.generation != self.roles.generation
            or found.epoch != self._facts_epoch
            or time.monotonic() - found.at >= _ROLE_TTL
        ):
            return None
        return found

    def facts_stamp(self) -> tuple[int, int]:
        """The role catalog generation and facts epoch, taken *before* facts are read: facts
        read across a change are then kept under the stamp before it, and not used again."""
        return self.roles.generation, self._facts_epoch

    def keep_facts(self, subject: str, facts: Facts, stamp: tuple[int, int]) -> _Kept:
        if len(self._facts) > 10_000:  # many principals in a short time: start over
            self._facts.clear()
        kept = _Kept(time.monotonic(), stamp[0], stamp[1], facts)
        self._facts[subject] = kept
        return kept

    def forget_facts(self) -> None:
        """A resource that states facts was written (a Consent, a PractitionerRole, a care
        relationship): every principal's kept facts may be stale; the role catalog is not."""
        self._facts_epoch = next(self._epochs)

    @property
    def catalog(self) -> RoleCatalog:
        return self.roles.catalog()

    def allows(self, principal: Principal, capability: Capability) -> Decision:
        """Hearth's own actions (audit views, break-the-glass, administration): they depend on
        roles alone, so no facts are gathered."""
        return self.point.profile(principal).allows(capability)

    def bind(self, principal: Principal, open_row: Opener) -> BoundAccess:
        return BoundAccess(self, principal, open_row)

    def profile(self, principal: Principal, open_row: Opener) -> AccessProfile:
        return self.bind(principal, open_row).profile

    # -- blind keys of the relationship rules ------------------------------------------------
    def _dead(self, rule: LinkRule) -> frozenset[bytes]:
        if rule.status_param is None:
            return frozenset()
        param = param_for(rule.res_type, rule.status_param)
        if param is None:  # pragma: no cover - the rules name R4 search parameters
            return frozenset()
        return frozenset(
            self.keyring.blind(domain, "c:" + s)
            for domain in param.domains
            for s in rule.dead_statuses
        )


class BoundAccess:
    """Access control for one principal, in one repository (one request)."""

    def __init__(self, control: AccessControl, principal: Principal, open_row: Opener) -> None:
        self._control = control
        self.principal = principal
        self._open = open_row
        self._profile: AccessProfile | None = None
        self._scopes: dict[tuple[str, str], object] = {}
        self._panel_box: PanelBox = []
        #: Compiled scopes shared by the requests that use the same kept facts, and the catalog
        #: the profile was built from; None when the facts are this request's own (a grant).
        self._kept_scopes: ScopeBox | None = None
        self._catalog: RoleCatalog | None = None
        #: Who the principal is and acts as, read in a write's transaction (``_acting``), with
        #: the transaction's connection.
        self._acting_now: tuple[Connection, str | None, frozenset[tuple[str, str]]] | None = None

    # -- the profile and its facts -----------------------------------------------------------
    @property
    def profile(self) -> AccessProfile:
        if self._profile is None:
            self._profile = self._resolve()
        return self._profile

    @property
    def resolved(self) -> AccessProfile | None:
        """The profile if it has been resolved already (nothing is queried)."""
        return self._profile

    def _resolve(self) -> AccessProfile:
        control = self._control
        principal = self.principal
        catalog = control.roles.catalog()
        bare = control.point.profile(principal, catalog=catalog)
        if bare.unrestricted and BREAK_GLASS_ATTRIBUTE not in principal.attributes:
            return bare
        if control.throttled is not None and control.throttled(principal):
            raise HearthError(errors.ACCESS_THROTTLED)
        kept = control.cached_facts(principal.subject)
        if kept is not None and BREAK_GLASS_ATTRIBUTE not in principal.attributes:
            # Kept facts and no grant to check: no statement to run, so no connection either
            # (on PostgreSQL a checkout is a round trip, the pool's liveness ping).
            facts = kept.facts
            self._panel_box = kept.panel
            self._kept_scopes = kept.scopes
        else:
            with control.store.read() as conn:
                facts = self._facts(conn, kept)
        self._catalog = catalog
        return control.point.profile(principal, facts, catalog=catalog)

    def _facts(self, conn: Connection, kept: _Kept | None) -> Facts:
        """The principal's facts: its link, actors and Consent denials (``kept`` for a few
        seconds, ``AccessControl.cached_facts``), and the break-the-glass grant it invokes
        (checked on every request: a grant ends or expires at an exact time)."""
        principal = self.principal
        if kept is None:
            stamp = self._control.facts_stamp()
            kept = self._control.keep_facts(principal.subject, self._lasting_facts(conn), stamp)
        facts = kept.facts
        self._panel_box = kept.panel
        grant_id = principal.attributes.get(BREAK_GLASS_ATTRIBUTE)
        if grant_id is None:
            self._kept_scopes = kept.scopes
            return facts
        grant = sql.grant(conn, grant_id)
        now_us = _us(self._control.clock)
        if (
            grant is None
            or grant.user_id != principal.subject
            or grant.ended_us is not None
            or not grant.created_us <= now_us < grant.expires_us
        ):
            raise HearthError(errors.BREAK_GLASS_NOT_ACTIVE)
        return replace(facts, break_glass=frozenset({grant.patient_id}), break_glass_grant=grant_id)

    def _lasting_facts(self, conn: Connection) -> Facts:
        link = sql.link_of(conn, self.principal.subject)
        practitioner = link.practitioner_id if link is not None else None
        patient = link.patient_id if link is not None else None
        actors = self._actors(conn, practitioner)
        denials = self._denials(conn, sorted(actors)) if actors else ()
        return Facts(
            practitioner=practitioner,
            patient=patient,
            actors=actors,
            denials=tuple(denials),
        )

    def _actors(
        self, conn: Connection, practitioner: str | None, *, inactive: bool = False
    ) -> frozenset[tuple[str, str]]:
        """What a user linked to ``practitioner`` acts as: it, its active PractitionerRoles
        and their Organizations (``ROLE_RULE``); with ``inactive``, its inactive roles too
        (and theirs), which an administrator's routine reactivation would switch on."""
        if practitioner is None:
            return frozenset()
        actors: set[tuple[str, str]] = {("Practitioner", practitioner)}
        dead = frozenset() if inactive else self._control._dead(ROLE_RULE)
        roles = sql.referencing_current(
            conn, "PractitionerRole", "practitioner", [("Practitioner", practitioner)], dead
        )
        actors.update(("PractitionerRole", role_id) for _seq, role_id in roles)
        for _seq, target_type, target_id in sql.reference_targets(
            conn, [seq for seq, _ in roles], "organization"
        ):
            if target_type == "Organization":
                actors.add(("Organization", target_id))
        return frozenset(actors)

    def _denials(self, conn: Connection, actors: Sequence[tuple[str, str]]) -> list[Any]:
        """Denials of the active privacy Consents that name one of ``actors``."""
        seqs = [seq for seq, _id in sql.referencing_current(conn, "Consent", "actor", actors)]
        out = []
        now = self._control.clock.now()
        for row in self._control.store.versions(conn, seqs):
            stored = self._open(row)
            if stored.resource is not None:
                out.extend(consent_denials(stored.resource, actors, now))
        return out

    def forget_facts(self) -> None:
        """A write changed what principals act as or are denied (see ``FACT_TYPES``)."""
        self._control.forget_facts()

    # -- writes of relationships -------------------------------------------------------------
    def decide_relationships(
        self,
        conn: Connection,
        res_type: str,
        res_id: str,
        resource: Mapping[str, Any] | None,
        prior: Mapping[str, Any] | None,
    ) -> Decision:
        """May this write of a ``FACT_TYPES`` resource replace ``prior`` with ``resource``
        (None: a deletion; ``prior`` None: a first version)? Nobody widens their own access by
        a write, and nothing that states relationships is written under a break-the-glass
        grant (``AccessProfile.decide_relationships``). Asked after the interaction was
        allowed."""
        profile = self.profile
        # ``stated`` is empty for a type that states no relationship: allowed just below.
        before, after = stated(res_type, res_id, prior), stated(res_type, res_id, resource)
        if (
            profile.facts.break_glass_grant is None
            and after.links <= before.links
            and after.roles == before.roles
            and not before.restricted
        ):
            # No care link gained, no role changed, no restriction that could name the
            # principal: no actors to read (a Patient or an Encounter with no new practitioner
            # or organization in it, as most writes of these types are).
            return Decision.allow("states nothing the principal's access could gain from")
        practitioner, actors = self._acting(conn)
        if not actors and profile.facts.break_glass_grant is None:
            return Decision.allow("the principal acts as nobody")  # nothing to find out
        return profile.decide_relationships(
            res_type, before, after, practitioner=practitioner, actors=actors
        )

    def _acting(self, conn: Connection) -> tuple[str | None, frozenset[tuple[str, str]]]:
        """The Practitioner the principal is and the actors it acts as, read on ``conn`` (the
        write's own, under the writers' lock) once per transaction: not the facts kept for a
        few seconds, which another process's new PractitionerRole may not be in yet. Within one
        transaction the principal's actors can only shrink (its writes that add one are
        refused, and another principal's write of facts ends a write group), so reading them
        once stays on the safe side. Hearth itself (a system principal) is linked to nobody."""
        if self.principal.kind is PrincipalKind.SYSTEM:
            return None, frozenset()
        read = self._acting_now
        if read is None or read[0] is not conn:
            link = sql.link_of(conn, self.principal.subject)
            practitioner = link.practitioner_id if link is not None else None
            # Inactive roles count: a link to one, or a move of one, takes effect the moment an
            # administrator makes it active again.
            actors = self._actors(conn, practitioner, inactive=True)
            read = self._acting_now = (conn, practitioner, actors)
        return read[1], read[2]

    # -- decisions on one resource -------------------------------------------------------------
    def linked(self, conn: Connection | None, patients: Iterable[str]) -> frozenset[str]:
        """Which of ``patients`` are linked to the principal: from the panel kept with the
        facts when it is small enough to keep (``_PANEL_KEPT``), else from SQL. Every path
        that discloses has also scoped its rows in SQL against the live index, so a panel kept
        for a few seconds can only refuse more, never allow more."""
        profile = self.profile
        wanted = frozenset(patients)
        if not wanted or not profile.needs_links or not profile.facts.actors:
            return frozenset()
        actors = tuple(sorted(profile.facts.actors))
        kept = self._kept_panel(actors, conn)
        if kept is not None:
            return wanted & kept
        if conn is not None:
            return sql.linked_among(conn, wanted, actors)
        with self._control.store.read() as own:
            return sql.linked_among(own, wanted, actors)

    def _kept_panel(
        self, actors: tuple[tuple[str, str], ...], conn: Connection | None
    ) -> frozenset[str] | None:
        box = self._panel_box
        if not box:
            if conn is not None:
                ids = sql.linked_ids(conn, actors, limit=_PANEL_KEPT + 1)
            else:
                with self._control.store.read() as own:
                    ids = sql.linked_ids(own, actors, limit=_PANEL_KEPT + 1)
            box.append((len(ids), frozenset(ids) if len(ids) <= _PANEL_KEPT else None))
        return box[0][1]

    def decide(
        self,
        action: Action,
        res_type: str,
        resource: Mapping[str, Any] | None = None,
        *,
        res_id: str | None = None,
        conn: Connection | None = None,
        instance: bool | None = None,
    ) -> Decision:
        """Decide one action: on a type (``resource`` None) or on one resource, with its facts."""
        profile = self.profile
        if resource is None:
            return profile.decide(action, res_type, res_id=res_id, instance=instance)
        patients = compartment_patients(res_type, resource, res_id)
        linked = self.linked(conn, patients or ())
        return profile.decide(
            action,
            res_type,
            res_id=res_id,
            resource=resource,
            patients=patients,
            linked=linked,
            instance=instance,
        )

    def decide_many(
        self,
        conn: Connection | None,
        action: Action,
        items: Sequence[StoredResource],
        *,
        instance: bool = False,
    ) -> list[Decision]:
        """Decisions for a page of resources, with one SQL query for all their links."""
        profile = self.profile
        facts = [compartment_patients(s.res_type, s.resource, s.res_id) for s in items]
        everyone = {p for f in facts if f for p in f}
        linked = self.linked(conn, everyone)
        return [
            profile.decide(
                action,
                s.res_type,
                res_id=s.res_id,
                resource=s.resource,
                patients=f,
                linked=linked & f if f else frozenset(),
                instance=instance,
            )
            if s.resource is not None
            else Decision.allow("a deletion discloses nothing")
            for s, f in zip(items, facts, strict=True)
        ]

    # -- decisions on every row of a type, in SQL ----------------------------------------------
    def search_scope(self, res_type: str, action: Action = Action.SEARCH) -> SearchScope:
        return self.profile.search_scope(
            res_type, compartment=in_compartment(res_type), action=action
        )

    def scope(self, res_type: str, action: Action = Action.SEARCH) -> object:
        """The rows of ``res_type`` the principal may reach with ``action`` (a search by
        default), as a condition the searcher compiles (docs/design.md, "Access control":
        scoping in SQL). The interaction matters for scopes: ``.r`` reads what ``.s`` cannot
        search."""
        key = (res_type, interaction_for(action, instance=False))
        found = self._scopes.get(key)
        if found is None:
            found = self._shared_scope(res_type, action, key[1])
            self._scopes[key] = found
        return found

    def _shared_scope(self, res_type: str, action: Action, letter: str) -> object:
        """The compiled scope, from the requests that share this principal's kept facts when
        one of them compiled it under the same role catalog and key ring (it depends on
        nothing else: the roles, SMART scopes and launch patient are in the key), else
        compiled now and shared. A request that invokes a grant compiles its own."""
        profile = self.profile  # resolved first: resolving finds what may be shared
        principal = self.principal
        shared = self._kept_scopes if self._catalog is not None else None
        key: ScopeKey = (res_type, letter, principal.roles, principal.scopes, principal.patient)
        keys = self._control.keyring.generation
        if shared is not None:
            found = shared.get(key)
            if found is not None and found[0] is self._catalog and found[1] == keys:
                return found[2]
        scope = profile.search_scope(res_type, compartment=in_compartment(res_type), action=action)
        compiled = self._compile(res_type, scope)
        if shared is not None and self._catalog is not None:
            shared[key] = (self._catalog, keys, compiled)
        return compiled

    def _compile(self, res_type: str, scope: SearchScope) -> object:
        if scope.unrestricted:
            return ALL
        if scope.nothing:
            return NONE
        options = [self._reach(res_type, reach) for reach in scope.reaches]
        cond: object = or_(*options)  # type: ignore[arg-type]
        if scope.delegations is not None:
            allowed = []
            for d in scope.delegations:
                parts: list[object] = []
                if d.within is not None:
                    parts.append(search_sql.InCompartment(d.within))
                if d.query:
                    parts.append(self._query(res_type, d.query))
                allowed.append(and_(*parts))  # type: ignore[arg-type]
            cond = and_(cond, or_(*allowed))  # type: ignore[arg-type]
        return cond

    def _reach(self, res_type: str, reach: Reach) -> object:
        parts: list[object] = []
        patients = reach.patients
        if not patients.everyone:
            options: list[object] = []
            if patients.linked:
                actors = tuple(sorted(self.profile.facts.actors))
                if actors:
                    probe = self._control.probe
                    options.append(sql.InLinked(actors, probe, self.panel(actors) if probe else 0))
                else:
                    options.append(NONE)
            if patients.ids:
                options.append(search_sql.InCompartment(patients.ids))
            parts.append(or_(*options))  # type: ignore[arg-type]
        if reach.lacking:
            blind = self._control.keyring.blind
            hashes = tuple(sorted(blind(LABEL_DOMAIN, label) for label in reach.lacking))
            labelled = sql.Labelled(hashes, correlated=not self._control.probe)
            parts.append(Not(labelled))  # type: ignore[arg-type]
        if reach.excluded_patients:
            parts.append(Not(search_sql.InCompartment(reach.excluded_patients)))  # type: ignore[arg-type]
        if reach.excluded_ids:
            parts.append(Not(IdIn(reach.excluded_ids)))
        if reach.queries is not None:
            parts.append(or_(*(self._query(res_type, q) for q in reach.queries)))
        return and_(*parts)  # type: ignore[arg-type]

    def panel(self, actors: tuple[tuple[str, str], ...]) -> int:
        """How many patients are linked to the principal, up to ``_PANEL_KEPT + 1`` (a plan
        hint, kept with the facts)."""
        self._kept_panel(actors, None)
        return self._panel_box[0][0]

    def _query(self, res_type: str, query: tuple[tuple[str, str], ...]) -> Cond:
        """A granular scope's query as an exact condition (search parameters, SMART-SC-04).
        A query the index cannot answer exactly reaches nothing (fail closed)."""
        try:
            request = parse_search(
                res_type,
                list(query),
                ctx=Context(now_us=0),
                default_count=1,
                max_count=1,
                strict=True,
            )
        except HearthError:
            return NONE
        if not request.exact or any(c.sure != c.maybe for c in request.criteria):
            return NONE
        return and_(*(c.sure for c in request.criteria))

    def in_scope(
        self, conn: Connection, res_type: str, res_id: str, action: Action = Action.READ
    ) -> bool:
        """Whether the current version of ``Type/id`` is within the principal's search scope
        for ``action`` (a read or write of an out-of-scope resource is refused before its body is
        fetched). Instance history is a read."""
        if action is Action.HISTORY:
            action = Action.READ
        cond = self.scope(res_type, action)
        if cond is ALL:
            return True
        root = search_sql.R.alias("r")
        both = and_(IdIn(frozenset({res_id})), cond)  # type: ignore[arg-type]
        where = search_sql.compile_cond(both, root, self._control.keyring.blind, res_type)
        query = select(root.c.seq).where(root.c.res_type == res_type, where).limit(1)
        return conn.execute(query).first() is not None

    def history_scope(self, res_type: str, versions: FromClause) -> ColumnElement[bool] | None:
        """A condition on ``resource_version`` rows: the resource's current version is in
        scope. None when the principal sees every row of the type."""
        cond = self.scope(res_type)
        if cond is ALL:
            return None
        root = search_sql.R.alias("r")
        where = search_sql.compile_cond(cond, root, self._control.keyring.blind, res_type)
        return versions.c.res_id.in_(
            select(root.c.res_id).where(root.c.res_type == res_type, where)
        )


def _us(clock: Clock) -> int:
    delta = clock.now().astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
