"""Access decisions. Pure: the repository gate asks, this package answers."""

from hearth.security.policy import (
    ALL_TYPES,
    AccessPolicy,
    Decision,
    Denial,
    Grant,
    RolePolicy,
    bootstrap_roles,
)

__all__ = [
    "ALL_TYPES",
    "AccessPolicy",
    "Decision",
    "Denial",
    "Grant",
    "RolePolicy",
    "bootstrap_roles",
]
