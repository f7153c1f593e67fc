"""Decisions, and the first, minimal policy (superseded by ``hearth.security.access``).

``Decision`` is what the decision point answers. ``RolePolicy`` (explicit (type, action) grants
per role) and ``bootstrap_roles`` were the foundation's stand-in; the gate now asks
``hearth.security.access.DecisionPoint``, the one decision point, and they remain only as small
building blocks for tests and for policies composed by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hearth.domain import Action, Principal

__all__ = [
    "ALL_TYPES",
    "AccessPolicy",
    "Decision",
    "Denial",
    "Grant",
    "RolePolicy",
    "bootstrap_roles",
]

ALL_TYPES = "*"
_KNOWN_ACTIONS = frozenset(Action)


class Denial(enum.StrEnum):
    """Why a request was denied; decides between 403 (forbidden) and 404 (do not leak), and
    which code a 403 carries."""

    FORBIDDEN = "forbidden"  # the principal may never do this to this type
    OUT_OF_SCOPE = "out-of-scope"  # this particular resource is outside the principal's reach
    #: The write would state a relationship that widens the principal's own access.
    SELF_LINK = "self-link"
    #: The write of a relationship is made under a break-the-glass grant.
    EMERGENCY = "emergency"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    denial: Denial | None = None
    reason: str = ""
    #: Top-level elements to remove before the resource leaves (minimum necessary).
    masks: tuple[str, ...] = ()
    #: The purpose of use to record the access under, when the decision sets one.
    purpose: str | None = None

    @classmethod
    def allow(
        cls, reason: str = "", *, masks: tuple[str, ...] = (), purpose: str | None = None
    ) -> Decision:
        return cls(True, None, reason, masks, purpose)

    @classmethod
    def deny(cls, denial: Denial, reason: str) -> Decision:
        return cls(False, denial, reason)


class AccessPolicy(Protocol):
    def decide(
        self,
        principal: Principal,
        action: Action,
        res_type: str,
        resource: Mapping[str, Any] | None = None,
        *,
        res_id: str | None = None,
    ) -> Decision:
        """Decide one action on one type, or on one resource when ``resource`` is given.

        ``res_id`` names the resource of an instance-level interaction (read, vread, update,
        delete, instance history) and is None for type and system level ones.
        """
        ...


@dataclass(frozen=True, slots=True)
class Grant:
    res_type: str  # a resource type or ALL_TYPES
    actions: frozenset[Action]
    #: Applies only to a principal that carries scopes, which then bound it (a backend
    #: service's rights are its granted scopes; see ``bootstrap_roles``).
    delegated_only: bool = False


class RolePolicy:
    """Grants by role; everything not granted is denied."""

    def __init__(self, roles: Mapping[str, tuple[Grant, ...]]) -> None:
        self._roles = dict(roles)

    def decide(
        self,
        principal: Principal,
        action: Action,
        res_type: str,
        resource: Mapping[str, Any] | None = None,
        *,
        res_id: str | None = None,
    ) -> Decision:
        if action not in _KNOWN_ACTIONS:  # fail closed on anything unrecognised
            return Decision.deny(Denial.FORBIDDEN, "unknown action")
        for role in sorted(principal.roles):
            for grant in self._roles.get(role, ()):
                if grant.delegated_only and principal.scopes is None:
                    continue
                if action in grant.actions and grant.res_type in (ALL_TYPES, res_type):
                    return Decision.allow(f"role {role}")
        return Decision.deny(Denial.FORBIDDEN, "no role grants this")


def bootstrap_roles() -> dict[str, tuple[Grant, ...]]:
    """The roles the foundation ships: the bootstrap administrator, with full access, and the
    backend service, bounded by its scopes.

    The authorization model replaces this with the default role set (physician, nurse, ...).
    """
    return {
        "bootstrap-admin": (Grant(ALL_TYPES, frozenset(Action)),),
        # A registered backend service (SMART backend services): what it may do is exactly
        # the system/ scopes in its token, which never exceed its registration (SMART-SC-05).
        # Without scopes the role grants nothing.
        "backend-service": (Grant(ALL_TYPES, frozenset(Action), delegated_only=True),),
    }
