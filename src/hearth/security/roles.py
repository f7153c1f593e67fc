"""Roles as data (issue 5 item 2; HIPAA 164.312(a)(1), 164.502(b); ASVS 8.1.1, 8.2.1).

A role is a set of permissions, stated as data that administrators edit:

- ``patients``: whose records it reaches: ``all``, ``linked`` (care relationships,
  ``hearth.security.relationships``), ``self`` (a patient user's own compartment) or ``none``;
- ``permissions``: SMART-style resource scopes (``user/Observation.rs?category=laboratory``,
  SMART App Launch 2.2) naming resource types x interactions, optionally narrowed by a granular
  search constraint;
- ``labels``: the restricting security labels it may see (``hearth.security.labels``);
- ``masks``: top-level elements it may neither read nor write, per type or ``*``;
- ``capabilities``: Hearth actions beyond FHIR interactions (audit views, break-the-glass,
  administration);
- ``purpose``: the purpose of use its accesses are recorded under (v3 ActReason), which also
  decides whether an access belongs in a patient's accounting of disclosures;
- ``delegated_only``: the role grants nothing without granted scopes (a backend service);
- ``view``: ``identified`` (the default) or ``deidentified``: every resource the role receives
  is rewritten under HIPAA Safe Harbor with keyed pseudonyms (``hearth.fhir.deidentify``), and
  it may only search (``.s``), by codes, quantities, numbers and years.

The defaults ship as a versioned data file (``data/roles.json``); an administrator's edit
replaces one role's definition (``hearth role set``), and every edit is audited. ``bootstrap-
admin`` is the instance's first credential, built in and not editable.
"""

from __future__ import annotations

import enum
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from hearth.domain import HearthError, SmartScope, errors
from hearth.domain.scopes import ScopeContext
from hearth.security.labels import ALL_LABELS, KNOWN_RESTRICTING
from hearth.security.relationships import DIRECTORY_TYPES

__all__ = [
    "BOOTSTRAP_ADMIN",
    "PURPOSES",
    "Capability",
    "PatientScope",
    "Role",
    "View",
    "RoleCatalog",
    "default_catalog",
    "role_from_json",
    "role_to_json",
]

BOOTSTRAP_ADMIN = "bootstrap-admin"

_NAME = re.compile(r"[a-z][a-z0-9-]{1,31}")
_ELEMENT = re.compile(r"[a-z][A-Za-z0-9]{0,63}(\[x\])?")
_TYPE = re.compile(r"\*|[A-Z][A-Za-z]{0,63}")

#: Purposes of use a role may record its accesses under (v3 ActReason). TREAT, ETREAT, HPAYMT
#: and HOPERAT (and their kinds) are treatment, payment and operations, which the accounting of
#: disclosures leaves out (164.528(a)(1)(i)); the others are listed in it.
PURPOSES: Mapping[str, str] = {
    "TREAT": "treatment",
    "ETREAT": "emergency treatment",
    "HPAYMT": "payment",
    "HOPERAT": "health care operations",
    "HSYSADMIN": "system administration",
    "PATRQT": "the patient's own request",
    "HRESCH": "research",
    "PUBHLTH": "public health",
    "HLEGAL": "legal",
    "HOVERSIGHT": "health oversight",
}


class PatientScope(enum.StrEnum):
    ALL = "all"
    LINKED = "linked"
    SELF = "self"
    NONE = "none"


class View(enum.StrEnum):
    """How the records a role reaches leave the gate."""

    IDENTIFIED = "identified"
    DEIDENTIFIED = "deidentified"


class Capability(enum.StrEnum):
    """Hearth's own actions, decided like FHIR interactions by the one decision point."""

    AUDIT_READ = "audit.read"  # AuditEvent read and search, access reports
    AUDIT_DISCLOSURES = "audit.disclosures"  # any patient's accounting of disclosures
    AUDIT_OWN = "audit.own"  # one's own accounting of disclosures (a patient, 164.528)
    BREAK_GLASS = "break-glass"  # declare an emergency
    BREAK_GLASS_REVIEW = "break-glass.review"  # close break-the-glass reviews
    ROLES_ADMIN = "roles.admin"  # edit roles; assign roles, links and care teams; approve
    LABELS_MANAGE = "labels.manage"  # remove restricting security labels


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str = ""
    patients: PatientScope = PatientScope.NONE
    permissions: tuple[SmartScope, ...] = ()
    labels: frozenset[str] = frozenset()
    masks: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    capabilities: frozenset[Capability] = frozenset()
    purpose: str = "TREAT"
    delegated_only: bool = False
    view: View = View.IDENTIFIED
    builtin: bool = False

    @property
    def deidentified(self) -> bool:
        return self.view is View.DEIDENTIFIED

    @property
    def clinical(self) -> bool:
        """Whether the role reaches any patient data (granting it to oneself needs a second
        administrator's approval)."""
        if self.patients is PatientScope.NONE:
            return False
        return any(p.resource_type not in DIRECTORY_TYPES for p in self.permissions)

    def masks_for(self, res_type: str) -> tuple[str, ...]:
        return tuple(sorted({*self.masks.get("*", ()), *self.masks.get(res_type, ())}))


def _invalid(message: str) -> HearthError:
    return HearthError(errors.ROLE_INVALID, message)


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(f"{what} must be a list of strings.")
    return list(value)


def role_from_json(name: str, raw: Mapping[str, Any]) -> Role:
    """Parse and validate one role definition; raise ``ROLE_INVALID`` naming what is wrong."""
    if not _NAME.fullmatch(name):
        raise _invalid("Role names are 2 to 32 characters: a-z, 0-9 and -, starting with a letter.")
    if not isinstance(raw, Mapping):
        raise _invalid("A role definition is a JSON object.")
    known = {
        "description",
        "patients",
        "permissions",
        "labels",
        "masks",
        "capabilities",
        "purpose",
        "delegated_only",
        "view",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _invalid(f"Unknown field {unknown[0]!r} in a role definition.")
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > 200:
        raise _invalid("description is a string of at most 200 characters.")
    try:
        patients = PatientScope(raw.get("patients", "none"))
    except ValueError:
        raise _invalid("patients is all, linked, self or none.") from None
    permissions = []
    for text in _strings(raw.get("permissions", []), "permissions"):
        scope = SmartScope.parse(text)  # raises INVALID_SCOPE on a malformed one
        if scope.context is ScopeContext.PATIENT:
            raise _invalid(
                "Role permissions use user/ or system/ scopes; patients: self limits a role "
                "to the user's own record."
            )
        permissions.append(scope)
    labels = frozenset(_strings(raw.get("labels", []), "labels"))
    bad = sorted(labels - KNOWN_RESTRICTING - {ALL_LABELS})
    if bad:
        raise _invalid(f"Unknown security label {bad[0]!r}.")
    masks_raw = raw.get("masks", {})
    if not isinstance(masks_raw, Mapping):
        raise _invalid("masks maps a resource type (or *) to element names.")
    masks: dict[str, tuple[str, ...]] = {}
    for res_type, elements in masks_raw.items():
        if not isinstance(res_type, str) or not _TYPE.fullmatch(res_type):
            raise _invalid("masks maps a resource type (or *) to element names.")
        names = _strings(elements, "masks")
        if not all(_ELEMENT.fullmatch(n) for n in names):
            raise _invalid("Masks name top-level elements, such as note or value[x].")
        masks[res_type] = tuple(sorted(set(names)))
    try:
        capabilities = frozenset(
            Capability(c) for c in _strings(raw.get("capabilities", []), "capabilities")
        )
    except ValueError:
        raise _invalid("Unknown capability in a role definition.") from None
    purpose = raw.get("purpose", "TREAT")
    if purpose not in PURPOSES:
        raise _invalid(f"purpose is one of {', '.join(PURPOSES)}.")
    delegated = raw.get("delegated_only", False)
    if not isinstance(delegated, bool):
        raise _invalid("delegated_only is true or false.")
    try:
        view = View(raw.get("view", "identified"))
    except ValueError:
        raise _invalid("view is identified or deidentified.") from None
    if view is View.DEIDENTIFIED and any(set(p.interactions) - {"s"} for p in permissions):
        raise _invalid(
            "A de-identified role only searches: its permissions end in .s (a pseudonym cannot "
            "be read back, and nothing is written through a de-identified view)."
        )
    if view is View.DEIDENTIFIED and (capabilities or labels):
        raise _invalid(
            "A de-identified role has no capabilities and sees no restricted label: audit "
            "views name real ids, and restricted records are not de-identified data."
        )
    return Role(
        name=name,
        description=description,
        patients=patients,
        permissions=tuple(permissions),
        labels=labels,
        masks=masks,
        capabilities=capabilities,
        purpose=str(purpose),
        delegated_only=delegated,
        view=view,
    )


def role_to_json(role: Role) -> dict[str, Any]:
    """The editable definition of ``role`` (what ``role_from_json`` reads back)."""
    return {
        "description": role.description,
        "patients": role.patients.value,
        "permissions": [str(p) for p in role.permissions],
        "labels": sorted(role.labels),
        "masks": {k: list(v) for k, v in sorted(role.masks.items())},
        "capabilities": sorted(c.value for c in role.capabilities),
        "purpose": role.purpose,
        "delegated_only": role.delegated_only,
        "view": role.view.value,
    }


def _bootstrap_admin() -> Role:
    """The instance's first credential (``hearth init``): every interaction on every record,
    every label and capability. Operators replace it with personal accounts holding named roles
    and then remove it (docs/operations.md)."""
    return Role(
        name=BOOTSTRAP_ADMIN,
        description="The instance's first credential: unrestricted. Replace it with named roles.",
        patients=PatientScope.ALL,
        permissions=(SmartScope.parse("system/*.cruds"),),
        labels=frozenset({ALL_LABELS}),
        capabilities=frozenset(Capability),
        purpose="HSYSADMIN",
        builtin=True,
    )


@dataclass(frozen=True, slots=True)
class RoleCatalog:
    """Every role an instance knows: the shipped defaults of ``version`` with administrators'
    edits applied (``edited`` names the roles whose definition is not the default)."""

    version: int
    roles: Mapping[str, Role]
    edited: frozenset[str] = frozenset()

    def get(self, name: str) -> Role | None:
        return self.roles.get(name)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.roles)

    def with_edits(self, edits: Mapping[str, Mapping[str, Any] | None]) -> RoleCatalog:
        """The catalog with stored edits applied: a definition replaces the role, None removes
        it. Built-in roles are never replaced."""
        roles = dict(self.roles)
        for name, definition in edits.items():
            if name in roles and roles[name].builtin:
                continue
            if definition is None:
                roles.pop(name, None)
            else:
                roles[name] = role_from_json(name, definition)
        return RoleCatalog(self.version, roles, frozenset(edits) - {BOOTSTRAP_ADMIN})

    def of(self, names: Iterable[str]) -> tuple[Role, ...]:
        """The roles named (unknown names grant nothing), in a stable order."""
        return tuple(self.roles[n] for n in sorted(set(names)) if n in self.roles)


def default_catalog() -> RoleCatalog:
    """The shipped default role set (``data/roles.json``), plus ``bootstrap-admin``."""
    raw = orjson.loads(
        importlib.resources.files("hearth.security").joinpath("data", "roles.json").read_bytes()
    )
    roles = {name: role_from_json(name, definition) for name, definition in raw["roles"].items()}
    roles[BOOTSTRAP_ADMIN] = _bootstrap_admin()
    return RoleCatalog(int(raw["version"]), roles)
