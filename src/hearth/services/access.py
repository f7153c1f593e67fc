"""Access administration (issue 5 item 9; HIPAA 164.308(a)(4)(ii)(B)-(C), HIP-AD-04).

Administrators edit roles (roles are data), assign roles to users, link users to the FHIR
resource they are (a ``Practitioner`` for clinicians, a ``Patient`` for patient users) and put
practitioners on patients' care teams. Each change is decided by the one decision point (the
``roles.admin`` capability) and audited in the transaction that makes it.

Two-person rule: an administrator cannot give *themselves* clinical access alone. A change that
would (a clinical role for oneself, an edit that makes a role one holds clinical, linking oneself
to a Practitioner or Patient while holding a clinical role, putting one's own Practitioner on a
care team) is stored as a pending request; another administrator, who is neither the requester
nor the user it benefits, approves or rejects it. Requests expire after three days. The command
line acts as the host operator (``system:cli``), a party distinct from every user.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from hearth.audit import AuditRecord
from hearth.domain import Clock, HearthError, Outcome, Principal, Random, errors
from hearth.fhir import definitions as fhir_definitions
from hearth.fhir.search.values import fold
from hearth.security import (
    BOOTSTRAP_ADMIN,
    Capability,
    Decision,
    PatientScope,
    Role,
    RoleCatalog,
    role_from_json,
    role_to_json,
)
from hearth.services.users import UserService
from hearth.storage import RecordRepository, from_us, to_us
from hearth.storage.access import AccessControl, RoleStore
from hearth.storage.access_admin import AccessStore, LinkRow, RequestRow, RoleRow

__all__ = [
    "FAMILY_DOMAIN",
    "AccessAdmin",
    "AdminResult",
    "LinkInfo",
    "PendingRequest",
    "access_record",
    "family_key",
]

#: The blind-index domain of family names compared by the snooping monitor.
FAMILY_DOMAIN = "access/v1/family"
_REQUEST_TTL = timedelta(days=3)

SystemRecords = Callable[[str], RecordRepository]


def access_record(
    principal: Principal,
    action: str,
    now: datetime,
    *,
    outcome: Outcome = Outcome.SUCCESS,
    res_type: str | None = None,
    res_id: str | None = None,
    patient: str | None = None,
    purpose: str | None = None,
    code: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """An audit entry for an access-control event, by ``principal``. ``detail`` is sealed."""
    return AuditRecord(
        ts=now,
        actor=principal.subject,
        actor_kind=principal.kind.value,
        action=action,
        outcome=outcome,
        res_type=res_type,
        res_id=res_id,
        patient=patient,
        purpose=purpose or principal.purpose_of_use,
        source=principal.source,
        session=principal.session,
        code=code,
        detail=orjson.dumps(detail, option=orjson.OPT_SORT_KEYS) if detail is not None else None,
    )


def family_key(blind: Callable[[str, str], bytes], resource: Mapping[str, Any]) -> bytes | None:
    """The keyed hash of a person's (first) family name, folded, or None without one."""
    for name in resource.get("name") or ():
        if isinstance(name, dict) and isinstance(name.get("family"), str) and name["family"]:
            return blind(FAMILY_DOMAIN, fold(name["family"]))
    return None


@dataclass(frozen=True, slots=True)
class AdminResult:
    """A change applied at once, or waiting for a second administrator (``request_id``)."""

    applied: bool
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class PendingRequest:
    request_id: str
    kind: str
    target: str
    payload: dict[str, Any]
    requested_by: str
    requested: datetime
    expires: datetime
    status: str
    decided_by: str | None


@dataclass(frozen=True, slots=True)
class LinkInfo:
    user_id: str
    practitioner: str | None
    patient: str | None


class AccessAdmin:
    def __init__(
        self,
        store: AccessStore,
        control: AccessControl,
        roles: RoleStore,
        users: UserService,
        system_records: SystemRecords,
        *,
        clock: Clock,
        random: Random,
    ) -> None:
        self._store = store
        self._control = control
        self._roles = roles
        self._users = users
        self._system_records = system_records
        self._clock = clock
        self._random = random

    # -- decisions ---------------------------------------------------------------------------
    def allows(self, principal: Principal, capability: Capability) -> Decision:
        return self._control.allows(principal, capability)

    def _require(self, principal: Principal, capability: Capability, action: str) -> None:
        decision = self.allows(principal, capability)
        if not decision.allowed:
            self._store.record(
                access_record(
                    principal,
                    action,
                    self._clock.now(),
                    outcome=Outcome.DENIED,
                    code=errors.FORBIDDEN.code,
                )
            )
            raise HearthError(errors.FORBIDDEN)

    def record(
        self,
        principal: Principal,
        action: str,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        code: str | None = None,
        res_type: str | None = None,
        res_id: str | None = None,
    ) -> None:
        """Audit an access-control event that another service carried out (lifting a snooping
        pause) or that the adapter refused before it reached this one."""
        self._store.record(
            access_record(
                principal,
                action,
                self._clock.now(),
                outcome=outcome,
                code=code,
                res_type=res_type,
                res_id=res_id,
            )
        )

    def refuse(self, principal: Principal, action: str, error: HearthError) -> HearthError:
        """Audit a change refused by the adapter (a token where a console session with a recent
        step-up is required, or no recent step-up) and return the error to raise."""
        self.record(principal, action, outcome=Outcome.DENIED, code=error.code.code)
        return error

    @property
    def catalog(self) -> RoleCatalog:
        return self._roles.catalog()

    def _clinical_roles(self, names: frozenset[str]) -> frozenset[str]:
        catalog = self.catalog
        return frozenset(n for n in names if (r := catalog.get(n)) is not None and r.clinical)

    def _holds_clinical(self, user_id: str) -> bool:
        info = self._users.by_id(user_id)
        return info is not None and bool(self._clinical_roles(info.roles))

    # -- roles ----------------------------------------------------------------------------------
    def role(self, name: str) -> Role:
        role = self.catalog.get(name)
        if role is None:
            raise HearthError(errors.UNKNOWN_ROLE)
        return role

    def roles(self) -> list[Role]:
        catalog = self.catalog
        return [catalog.roles[n] for n in sorted(catalog.roles)]

    def set_role(
        self, principal: Principal, name: str, definition: Mapping[str, Any]
    ) -> AdminResult:
        """Create or replace a role's definition (validated first). Making a role one holds
        clinical needs a second administrator."""
        self._require(principal, Capability.ROLES_ADMIN, "access.role-set")
        if name == BOOTSTRAP_ADMIN:
            raise HearthError(errors.ROLE_BUILTIN)
        new = role_from_json(name, definition)
        _check_masks(new.masks)
        canonical = role_to_json(new)
        old = self.catalog.get(name)
        holds = self._holds(principal, name)
        if holds and new.clinical and (old is None or role_to_json(old) != canonical):
            return self._ask(principal, "role.set", name, {"name": name, "definition": canonical})
        self._apply_role(principal, name, canonical)
        return AdminResult(True)

    def _holds(self, principal: Principal, role: str) -> bool:
        if role in principal.roles:
            return True
        info = self._users.by_id(principal.subject)
        return info is not None and role in info.roles

    def _apply_role(
        self, principal: Principal, name: str, definition: Mapping[str, Any] | None
    ) -> None:
        now = self._clock.now()
        record = access_record(
            principal,
            "access.role-set" if definition is not None else "access.role-delete",
            now,
            res_type="Role",
            res_id=name,
            detail={"name": name, "definition": definition},
        )
        self._store.save_role(
            RoleRow(
                name=name,
                definition=orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
                if definition is not None
                else None,
                deleted=definition is None,
                revision=0,
                updated_us=to_us(now),
                updated_by=principal.subject,
            ),
            [record],
        )
        self._roles.invalidate()

    def delete_role(self, principal: Principal, name: str) -> None:
        self._require(principal, Capability.ROLES_ADMIN, "access.role-delete")
        if name == BOOTSTRAP_ADMIN:
            raise HearthError(errors.ROLE_BUILTIN)
        self.role(name)
        self._apply_role(principal, name, None)

    def reset_role(self, principal: Principal, name: str) -> AdminResult:
        """Back to the shipped default definition (or gone, for a role that has none)."""
        self._require(principal, Capability.ROLES_ADMIN, "access.role-reset")
        default = self._roles.defaults.get(name)
        if name == BOOTSTRAP_ADMIN:
            raise HearthError(errors.ROLE_BUILTIN)
        if default is not None and default.clinical and self._holds(principal, name):
            current = self.catalog.get(name)
            if current is None or role_to_json(current) != role_to_json(default):
                return self._ask(principal, "role.reset", name, {"name": name})
        self._reset(principal, name)
        return AdminResult(True)

    def _reset(self, principal: Principal, name: str) -> None:
        now = self._clock.now()
        self._store.drop_role_edit(
            name,
            [access_record(principal, "access.role-reset", now, res_type="Role", res_id=name)],
        )
        self._roles.invalidate()

    # -- users' roles -----------------------------------------------------------------------------
    def assign_roles(
        self, principal: Principal, username: str, roles: frozenset[str]
    ) -> AdminResult:
        """Replace a user's roles. Giving oneself a clinical role needs a second administrator."""
        self._require(principal, Capability.ROLES_ADMIN, "access.user-roles")
        info = self._users.get(username)
        gained = self._clinical_roles(roles) - info.roles
        if info.user_id == principal.subject and gained:
            payload = {"username": info.username, "roles": sorted(roles)}
            return self._ask(principal, "user.roles", info.user_id, payload)
        self._users.set_roles(username, roles, by=principal.subject)
        return AdminResult(True)

    # -- links --------------------------------------------------------------------------------
    def link(self, user_id: str) -> LinkInfo | None:
        row = self._store.link(user_id)
        if row is None:
            return None
        return LinkInfo(row.user_id, row.practitioner_id, row.patient_id)

    def links(self) -> list[LinkInfo]:
        return [LinkInfo(r.user_id, r.practitioner_id, r.patient_id) for r in self._store.links()]

    def link_user(
        self,
        principal: Principal,
        username: str,
        *,
        practitioner: str | None,
        patient: str | None,
    ) -> AdminResult:
        """Link a user to the Practitioner they work as and/or the Patient they are (None
        clears). Linking oneself while holding a clinical role needs a second administrator."""
        self._require(principal, Capability.ROLES_ADMIN, "access.link")
        info = self._users.get(username)
        for res_type, res_id in (("Practitioner", practitioner), ("Patient", patient)):
            if res_id is not None and not self._store.resource_exists(res_type, res_id):
                raise HearthError(errors.LINK_INVALID)
        payload = {"username": info.username, "practitioner": practitioner, "patient": patient}
        if info.user_id == principal.subject and self._holds_clinical(info.user_id):
            return self._ask(principal, "user.link", info.user_id, payload)
        self._apply_link(principal, info.user_id, practitioner, patient)
        return AdminResult(True)

    def _apply_link(
        self, principal: Principal, user_id: str, practitioner: str | None, patient: str | None
    ) -> None:
        key = None
        repo = self._system_records("access-link")
        # The person's family name, as a keyed hash, for the same-surname check (snooping).
        for res_type, res_id in (("Practitioner", practitioner), ("Patient", patient)):
            if res_id is not None and key is None:
                stored = repo.read(res_type, res_id)
                key = family_key(self._store.blind, stored.resource or {})
        now = self._clock.now()
        self._store.save_link(
            LinkRow(user_id, practitioner, patient, key, to_us(now), principal.subject),
            [
                access_record(
                    principal,
                    "access.link",
                    now,
                    res_type="User",
                    res_id=user_id,
                    detail={"practitioner": practitioner, "patient": patient},
                )
            ],
        )
        self._roles.invalidate()  # the gate's cached facts of this user (its actors) are stale

    # -- care teams -----------------------------------------------------------------------------
    def assign_care_team(
        self, principal: Principal, *, practitioner: str, patient: str
    ) -> AdminResult:
        """Put a Practitioner on a Patient's care team (a new active CareTeam). An administrator
        who is that Practitioner needs a second administrator."""
        self._require(principal, Capability.ROLES_ADMIN, "access.care-team")
        for res_type, res_id in (("Practitioner", practitioner), ("Patient", patient)):
            if not self._store.resource_exists(res_type, res_id):
                raise HearthError(errors.LINK_INVALID)
        own = self._store.link(principal.subject)
        payload = {"practitioner": practitioner, "patient": patient}
        if own is not None and own.practitioner_id == practitioner:
            return self._ask(principal, "care-team", practitioner, payload)
        self._apply_care_team(principal, practitioner, patient)
        return AdminResult(True)

    def _apply_care_team(self, principal: Principal, practitioner: str, patient: str) -> str:
        # Written through the loud system path: the administrator has no clinical access and
        # sees nothing of the record; their own entry below names what they did.
        repo = self._system_records("care-team")
        stored = repo.create(
            {
                "resourceType": "CareTeam",
                "status": "active",
                "name": "Assigned by an administrator",
                "subject": {"reference": f"Patient/{patient}"},
                "participant": [{"member": {"reference": f"Practitioner/{practitioner}"}}],
            }
        )
        self._store.record(
            access_record(
                principal,
                "access.care-team",
                self._clock.now(),
                res_type="CareTeam",
                res_id=stored.res_id,
                patient=patient,
                detail={"practitioner": practitioner},
            )
        )
        return stored.res_id

    # -- the two-person rule ----------------------------------------------------------------------
    def _ask(
        self, principal: Principal, kind: str, target: str, payload: Mapping[str, Any]
    ) -> AdminResult:
        now = self._clock.now()
        request_id = "req_" + base64.b32encode(self._random.token_bytes(15)).decode().lower()
        body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        self._store.create_request(
            RequestRow(
                request_id=request_id,
                kind=kind,
                target=target,
                payload=body,
                requested_by=principal.subject,
                requested_us=to_us(now),
                expires_us=to_us(now + _REQUEST_TTL),
                status="pending",
            ),
            [
                access_record(
                    principal,
                    "access.request",
                    now,
                    res_type="AccessRequest",
                    res_id=request_id,
                    detail={"kind": kind, **payload},
                )
            ],
        )
        return AdminResult(False, request_id)

    def requests(
        self, principal: Principal, status: str | None = "pending"
    ) -> list[PendingRequest]:
        self._require(principal, Capability.ROLES_ADMIN, "access.requests")
        return [
            PendingRequest(
                r.request_id,
                r.kind,
                r.target,
                orjson.loads(r.payload),
                r.requested_by,
                from_us(r.requested_us),
                from_us(r.expires_us),
                "expired" if r.status == "pending" and r.expires_us <= self._now_us() else r.status,
                r.decided_by,
            )
            for r in self._store.requests(status)
        ]

    def _now_us(self) -> int:
        return to_us(self._clock.now())

    def decide(self, principal: Principal, request_id: str, *, approve: bool) -> None:
        """Approve (and apply) or reject a pending request. The requester and the user it
        benefits may do neither."""
        self._require(principal, Capability.ROLES_ADMIN, "access.approve")
        row = self._store.request(request_id)
        if row is None or row.status != "pending" or row.expires_us <= self._now_us():
            raise HearthError(errors.APPROVAL_NOT_FOUND)
        payload = orjson.loads(row.payload)
        beneficiary = self._beneficiary(row, payload)
        if principal.subject in (row.requested_by, beneficiary):
            self._store.record(
                access_record(
                    principal,
                    "access.approve",
                    self._clock.now(),
                    outcome=Outcome.DENIED,
                    res_type="AccessRequest",
                    res_id=request_id,
                    code=errors.APPROVAL_SELF.code,
                )
            )
            raise HearthError(errors.APPROVAL_SELF)
        status = "approved" if approve else "rejected"
        record = access_record(
            principal,
            "access.approve" if approve else "access.reject",
            self._clock.now(),
            res_type="AccessRequest",
            res_id=request_id,
            detail={"kind": row.kind, "requested_by": row.requested_by},
        )
        done = self._store.decide_request(
            request_id, status, principal.subject, self._now_us(), [record]
        )
        if not done:
            raise HearthError(errors.APPROVAL_NOT_FOUND)
        if approve:
            self._carry_out(principal, row, payload)

    def _beneficiary(self, row: RequestRow, payload: Mapping[str, Any]) -> str:
        if row.kind in ("user.roles", "user.link"):
            return row.target
        if row.kind == "care-team":
            return row.requested_by
        return row.requested_by  # a role edit benefits whoever holds it: the requester

    def _carry_out(self, approver: Principal, row: RequestRow, payload: Mapping[str, Any]) -> None:
        match row.kind:
            case "user.roles":
                self._users.set_roles(
                    str(payload["username"]), frozenset(payload["roles"]), by=approver.subject
                )
            case "role.set":
                self._apply_role(approver, str(payload["name"]), payload["definition"])
            case "role.reset":
                self._reset(approver, str(payload["name"]))
            case "user.link":
                self._apply_link(approver, row.target, payload["practitioner"], payload["patient"])
            case "care-team":
                self._apply_care_team(approver, payload["practitioner"], payload["patient"])
            case _:  # pragma: no cover - kinds are written by this module only
                raise HearthError(errors.APPROVAL_NOT_FOUND)


def scope_label(role: Role) -> str:
    """How a role's patient reach reads in listings."""
    return {
        PatientScope.ALL: "every patient",
        PatientScope.LINKED: "patients linked by care relationships",
        PatientScope.SELF: "the user's own record",
        PatientScope.NONE: "no patient records",
    }[role.patients]


def _check_masks(masks: Mapping[str, tuple[str, ...]]) -> None:
    """Every mask names a top-level element its resource type has (for ``*``, one that some
    resource type has), as R4 names it: ``value[x]``, not ``value`` or ``valueQuantity``. A
    misspelt mask would hide nothing, silently."""
    for res_type, names in sorted(masks.items()):
        if res_type == "*":
            types = [fhir_definitions.type_definition(t) for t in fhir_definitions.resource_types()]
        elif fhir_definitions.is_resource_type(res_type):
            types = [fhir_definitions.type_definition(res_type)]
        else:
            raise HearthError(
                errors.ROLE_INVALID, f"Masks name a resource type: {res_type!r} is not one."
            )
        for name in names:
            if not any(t is not None and name in t.elements for t in types):
                where = "any resource type" if res_type == "*" else res_type
                raise HearthError(
                    errors.ROLE_INVALID,
                    f"Mask {name!r} is not an element of {where} (a choice is named value[x]).",
                )
