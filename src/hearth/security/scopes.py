"""SMART scopes as a limit on a principal's own rights (SMART App Launch 2.2, SMART-SC-01..08).

A principal that carries scopes (an OAuth access token) may do only what both its own rights
(the role policy) and one of its scopes allow: the intersection, never the union (SMART-SC-05,
ASVS 8.3.3). ``ScopedPolicy`` wraps any ``AccessPolicy`` to enforce that.

Decisions come in two steps, as the repository asks them:

1. before loading (``resource`` is None): is there a granted scope for this interaction on this
   type? If not, the answer is ``FORBIDDEN`` (403).
2. with the resource in hand (reads after loading, writes before storing): does one of those
   scopes reach this resource: the launch patient's compartment for ``patient/`` scopes
   (SMART-SC-07), the scope's query for granular scopes (SMART-SC-04)? If not, the answer is
   ``OUT_OF_SCOPE``, which the gate turns into 404 for reads, so nothing leaks.

Search-time narrowing (turning scopes into query filters) is the authorization model's work;
until then a search is allowed by step 1 and every result must pass step 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, assert_never

from hearth.domain import Action, Principal, ScopeContext, SmartScope
from hearth.security.compartment import in_patient_compartment
from hearth.security.policy import AccessPolicy, Decision, Denial

__all__ = [
    "TOKEN_PARAMETERS",
    "ScopedPolicy",
    "interaction_for",
    "matches_query",
    "scope_decision",
]

#: Granular-scope parameters Hearth evaluates on a resource: token search parameters whose
#: element has the same name (R4 search parameters category, code, status, type). A scope
#: narrowed by any other parameter reaches nothing (fail closed).
TOKEN_PARAMETERS = frozenset({"category", "code", "status", "type"})
_KNOWN_ACTIONS = frozenset(Action)


def interaction_for(action: Action, *, instance: bool) -> str:
    """The SMART interaction letter an action needs (SMART-SC-01).

    ``r`` covers read, vread and instance history; ``s`` type and system search and history.
    """
    match action:
        case Action.CREATE:
            return "c"
        case Action.READ | Action.VREAD:
            return "r"
        case Action.HISTORY:
            return "r" if instance else "s"
        case Action.SEARCH:
            return "s"
        case Action.UPDATE | Action.PATCH:
            return "u"
        case Action.DELETE:
            return "d"
        case _:  # pragma: no cover - fails the type check when an Action is added unmatched
            assert_never(action)


def _codings(value: Any) -> Iterable[tuple[str | None, str | None]]:
    """(system, code) pairs of a code, Coding or CodeableConcept value, or lists of them."""
    if isinstance(value, list):
        for item in value:
            yield from _codings(item)
    elif isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if "coding" in value:
            yield from _codings(value["coding"])
        elif "code" in value:
            system, code = value.get("system"), value.get("code")
            yield (
                system if isinstance(system, str) else None,
                code if isinstance(code, str) else None,
            )


def _token_matches(token: str, value: Any) -> bool:
    """FHIR token search semantics (R4 search.html#token): ``code``, ``system|code``,
    ``|code`` (no system) and ``system|`` (any code in the system)."""
    system, bar, code = token.rpartition("|") if "|" in token else ("", "", token)
    for have_system, have_code in _codings(value):
        if not bar:
            if have_code == code:
                return True
        elif not system:
            if have_system is None and have_code == code:
                return True
        elif have_system == system and (not code or have_code == code):
            return True
    return False


def matches_query(resource: Mapping[str, Any], query: tuple[tuple[str, str], ...]) -> bool:
    """Whether a resource satisfies a granular scope's query (SMART-SC-04).

    Every parameter must match; a comma in a value means any of the listed values.
    """
    for name, value in query:
        if name not in TOKEN_PARAMETERS:
            return False
        element = resource.get(name)
        if not any(_token_matches(option, element) for option in value.split(",")):
            return False
    return True


def _reaches(
    scope: SmartScope,
    principal: Principal,
    res_type: str,
    res_id: str | None,
    resource: Mapping[str, Any] | None,
) -> bool:
    """Whether one scope reaches one resource (step 2), or may reach it (step 1)."""
    if scope.context is ScopeContext.PATIENT:
        if principal.patient is None:  # patient/ scopes need a patient in context (SC-07)
            return False
        decidable = resource is not None or (res_type == "Patient" and res_id is not None)
        if decidable and not in_patient_compartment(res_type, res_id, resource, principal.patient):
            return False
    if scope.query and resource is not None:
        return matches_query(resource, scope.query)
    return True


def scope_decision(
    principal: Principal,
    action: Action,
    res_type: str,
    resource: Mapping[str, Any] | None = None,
    *,
    res_id: str | None = None,
) -> Decision:
    """Whether the principal's granted scopes allow this (SMART-SC-01..08, BS-09).

    A principal without scopes (None) is not limited here; an empty set allows nothing.
    """
    scopes = principal.scopes
    if scopes is None:
        return Decision.allow("not delegated")
    if action not in _KNOWN_ACTIONS:  # fail closed on anything unrecognised
        return Decision.deny(Denial.FORBIDDEN, "unknown action")
    letter = interaction_for(action, instance=res_id is not None)
    # A system-level interaction (``res_type`` "*") needs a wildcard scope; a typed one is
    # covered by a scope on its type or by a wildcard (present and future types, SC-08).
    candidates = [
        s for s in scopes if letter in s.interactions and s.resource_type in ("*", res_type)
    ]
    if not candidates:
        return Decision.deny(Denial.FORBIDDEN, "no granted scope allows this")
    for scope in candidates:
        if _reaches(scope, principal, res_type, res_id, resource):
            return Decision.allow(f"scope {scope}")
    if resource is None and not (res_type == "Patient" and res_id is not None):
        return Decision.deny(Denial.FORBIDDEN, "no granted scope applies in this context")
    return Decision.deny(Denial.OUT_OF_SCOPE, "outside the granted scopes")


class ScopedPolicy:
    """An ``AccessPolicy`` that intersects another policy's answer with the granted scopes."""

    def __init__(self, inner: AccessPolicy) -> None:
        self._inner = inner

    def decide(
        self,
        principal: Principal,
        action: Action,
        res_type: str,
        resource: Mapping[str, Any] | None = None,
        *,
        res_id: str | None = None,
    ) -> Decision:
        decision = self._inner.decide(principal, action, res_type, resource, res_id=res_id)
        if not decision.allowed:
            return decision
        return scope_decision(principal, action, res_type, resource, res_id=res_id)
