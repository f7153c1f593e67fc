"""Access decisions. Pure: the repository gate asks, this package answers."""

from hearth.security.compartment import in_patient_compartment
from hearth.security.policy import (
    ALL_TYPES,
    AccessPolicy,
    Decision,
    Denial,
    Grant,
    RolePolicy,
    bootstrap_roles,
)
from hearth.security.scopes import ScopedPolicy, interaction_for, matches_query, scope_decision
from hearth.security.search_scope import SearchScope, SearchScopePolicy

__all__ = [
    "ALL_TYPES",
    "AccessPolicy",
    "Decision",
    "Denial",
    "Grant",
    "RolePolicy",
    "ScopedPolicy",
    "SearchScope",
    "SearchScopePolicy",
    "bootstrap_roles",
    "in_patient_compartment",
    "interaction_for",
    "matches_query",
    "scope_decision",
]
