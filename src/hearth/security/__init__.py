"""Access decisions. Pure: the repository gate gathers facts and asks, this package answers.

``hearth.security.access.DecisionPoint`` is the one decision point (docs/design.md, "Access
control"); ``roles`` holds roles as data, ``labels`` and ``masks`` minimum necessary,
``consent`` patient Consents, ``relationships`` the care relationships that scope clinicians.
"""

from hearth.security.access import (
    BREAK_GLASS_ATTRIBUTE,
    CHAIN_TYPES,
    EMERGENCY_PURPOSE,
    AccessProfile,
    DecisionPoint,
    Delegation,
    Facts,
    PatientReach,
    Reach,
    SearchScope,
)
from hearth.security.compartment import in_patient_compartment
from hearth.security.consent import ConsentDenial, consent_denials, reference_key
from hearth.security.labels import (
    ALL_LABELS,
    KNOWN_RESTRICTING,
    LABEL_DOMAIN,
    REDACTED,
    UNRECOGNISED,
    carry_restricting,
    restricting_labels,
)
from hearth.security.masks import (
    apply_masks,
    masked_present,
    masked_reads,
    restore_masked,
    strip_redacted,
)
from hearth.security.policy import (
    ALL_TYPES,
    AccessPolicy,
    Decision,
    Denial,
    Grant,
    RolePolicy,
    bootstrap_roles,
)
from hearth.security.relationships import (
    ACTOR_TYPES,
    DIRECTORY_TYPES,
    LINK_RULES,
    ROLE_RULE,
    LinkRule,
    care_links,
)
from hearth.security.roles import (
    BOOTSTRAP_ADMIN,
    PURPOSES,
    Capability,
    PatientScope,
    Role,
    RoleCatalog,
    View,
    default_catalog,
    role_from_json,
    role_to_json,
)
from hearth.security.scopes import ScopedPolicy, interaction_for, matches_query, scope_decision

__all__ = [
    "ACTOR_TYPES",
    "ALL_LABELS",
    "ALL_TYPES",
    "BOOTSTRAP_ADMIN",
    "BREAK_GLASS_ATTRIBUTE",
    "CHAIN_TYPES",
    "DIRECTORY_TYPES",
    "EMERGENCY_PURPOSE",
    "KNOWN_RESTRICTING",
    "LABEL_DOMAIN",
    "LINK_RULES",
    "PURPOSES",
    "REDACTED",
    "ROLE_RULE",
    "UNRECOGNISED",
    "AccessPolicy",
    "AccessProfile",
    "Capability",
    "ConsentDenial",
    "Decision",
    "DecisionPoint",
    "Delegation",
    "Denial",
    "Facts",
    "Grant",
    "LinkRule",
    "PatientReach",
    "PatientScope",
    "Reach",
    "Role",
    "View",
    "RoleCatalog",
    "RolePolicy",
    "ScopedPolicy",
    "SearchScope",
    "apply_masks",
    "bootstrap_roles",
    "carry_restricting",
    "care_links",
    "consent_denials",
    "default_catalog",
    "in_patient_compartment",
    "interaction_for",
    "masked_present",
    "masked_reads",
    "matches_query",
    "reference_key",
    "restore_masked",
    "restricting_labels",
    "role_from_json",
    "role_to_json",
    "scope_decision",
    "strip_redacted",
]
