"""Break-the-glass: emergency access (HIPAA 164.312(a)(2)(ii), HIP-AC-03, X-07).

A user whose role may break the glass (the ``break-glass`` capability: physicians and nurses by
default) and who is denied a patient's record declares an emergency: after step-up
authentication (a second factor within ``[sessions] step_up_minutes``, checked by the console
before it calls ``declare``), with a reason and a purpose of use (``ETREAT``). The grant is
patient-scoped and time-boxed (``[access] break_glass_minutes``, 60 by default). While it lasts,
a request that invokes it (header ``X-Hearth-Break-Glass: <grant id>``, or an OAuth access
token's ``hearth_break_glass`` claim, see ``held`` and ``hearth.security.breakglass``) reaches
that patient's record beyond care relationships, labels and Consents, within the user's role
permissions, and every access is audited with purpose ``ETREAT``. The privacy officer is
alarmed at once (``access.break_glass``); each grant enters a review queue that someone other
than the user closes with a finding.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from hearth.domain import (
    Alarm,
    AlarmKind,
    AlarmRaiser,
    Clock,
    HearthError,
    Outcome,
    Principal,
    PrincipalKind,
    Random,
    Severity,
    errors,
)
from hearth.security import EMERGENCY_PURPOSE, Capability
from hearth.security.breakglass import GRANT_ID, invoking
from hearth.services.access import access_record
from hearth.storage import from_us, to_us
from hearth.storage.access import AccessControl
from hearth.storage.access_admin import AccessStore, AuditQuery, BreakGlassRow

__all__ = [
    "BREAK_GLASS_HEADER",
    "EMERGENCY_PURPOSES",
    "FINDINGS",
    "BreakGlassGrant",
    "BreakGlassService",
    "grant_document",
    "invoking",
]

#: The request header that invokes a break-the-glass grant on a FHIR request.
BREAK_GLASS_HEADER = "x-hearth-break-glass"
#: Purposes of use an emergency may be declared under (v3 ActReason). ETREAT, "emergency
#: treatment", is the one the brief names; BTG's status is unconfirmed (X-07) and not offered.
EMERGENCY_PURPOSES = frozenset({EMERGENCY_PURPOSE})
#: How a review ends.
FINDINGS = ("justified", "unjustified", "needs-follow-up")
_MIN_REASON = 10
_MAX_REASON = 2000
_MAX_MINUTES = 240


@dataclass(frozen=True, slots=True)
class BreakGlassGrant:
    """A grant as the review queue shows it. ``reason`` and ``note`` are free text (PHI)."""

    grant_id: str
    user_id: str
    patient_id: str
    purpose: str
    reason: str
    created: datetime
    expires: datetime
    ended: datetime | None
    active: bool
    review_status: str
    reviewed_by: str | None
    reviewed: datetime | None
    finding: str | None
    note: str | None
    accesses: int  # audit entries recorded under the grant


class BreakGlassService:
    def __init__(
        self,
        store: AccessStore,
        control: AccessControl,
        alarms: AlarmRaiser,
        *,
        clock: Clock,
        random: Random,
        minutes: int = 60,
    ) -> None:
        self._store = store
        self._control = control
        self._alarms = alarms
        self._clock = clock
        self._random = random
        self.minutes = minutes

    def _refuse(self, principal: Principal, action: str, error: HearthError) -> HearthError:
        self._store.record(
            access_record(
                principal,
                action,
                self._clock.now(),
                outcome=Outcome.DENIED,
                code=error.code.code,
                purpose=EMERGENCY_PURPOSE,
            )
        )
        return error

    def may_declare(self, principal: Principal) -> bool:
        return self._control.allows(principal, Capability.BREAK_GLASS).allowed

    def declare(
        self,
        principal: Principal,
        patient_id: str,
        *,
        reason: str,
        purpose: str = EMERGENCY_PURPOSE,
        minutes: int | None = None,
    ) -> BreakGlassGrant:
        """Declare an emergency for one patient. The caller has checked step-up
        authentication (``hearth.web.auth.require_user(step_up=True)``)."""
        action = "break-glass.declare"
        if principal.kind is not PrincipalKind.USER or principal.scopes is not None:
            raise self._refuse(principal, action, HearthError(errors.FORBIDDEN))
        if not self.may_declare(principal):
            raise self._refuse(principal, action, HearthError(errors.FORBIDDEN))
        reason = reason.strip()
        if not _MIN_REASON <= len(reason) <= _MAX_REASON or purpose not in EMERGENCY_PURPOSES:
            raise HearthError(errors.BREAK_GLASS_REASON)
        length = min(max(minutes or self.minutes, 1), _MAX_MINUTES)
        if not self._store.resource_exists("Patient", patient_id):
            # The user is about to see this record anyway, so saying it does not exist leaks
            # nothing; it stops a grant that could never be used.
            raise self._refuse(principal, action, HearthError(errors.NOT_FOUND))
        now = self._clock.now()
        grant_id = "btg_" + base64.b32encode(self._random.token_bytes(15)).decode().lower()
        expires = now + timedelta(minutes=length)
        row = BreakGlassRow(
            grant_id=grant_id,
            user_id=principal.subject,
            patient_id=patient_id,
            purpose=purpose,
            reason=b"",
            created_us=to_us(now),
            expires_us=to_us(expires),
        )
        record = access_record(
            principal,
            action,
            now,
            res_type="Patient",
            res_id=patient_id,
            patient=patient_id,
            purpose=purpose,
            detail={"grant": grant_id, "reason": reason, "minutes": length},
        )
        self._store.create_grant(row, reason, [record])
        # Alarm names the grant, the user and the patient by id; never the reason (free text).
        self._alarms.raise_alarm(
            Alarm(
                AlarmKind.ACCESS_BREAK_GLASS,
                Severity.CRITICAL,
                f"break-glass:{grant_id}",
                "Emergency access to a patient's record was declared; it must be reviewed.",
                {
                    "grant": grant_id,
                    "user": principal.subject,
                    "patient": f"Patient/{patient_id}",
                    "expires": expires.isoformat(),
                },
            )
        )
        return self._load(grant_id)

    def end(self, principal: Principal, grant_id: str) -> None:
        """End one's own grant before it expires."""
        row = self._store.grant(grant_id)
        if row is None or row.user_id != principal.subject:
            raise HearthError(errors.BREAK_GLASS_NOT_ACTIVE)
        now = self._clock.now()
        record = access_record(
            principal,
            "break-glass.end",
            now,
            res_type="Patient",
            res_id=row.patient_id,
            patient=row.patient_id,
            purpose=row.purpose,
            detail={"grant": grant_id},
        )
        if not self._store.end_grant(grant_id, to_us(now), [record]):
            raise HearthError(errors.BREAK_GLASS_NOT_ACTIVE)

    def held(
        self, principal: Principal, grant_id: str, *, client_id: str, record: bool = True
    ) -> tuple[str, datetime]:
        """The patient id and end of ``grant_id`` if it is the user's own active grant, for an
        OAuth access token that will carry it (``hearth_break_glass``) and must not outlive it;
        refused with ``HRT-1105`` otherwise. The reason stays sealed. Audited
        (``break-glass.token``, naming the grant and the client); with ``record`` False only a
        refusal is (the consent page, before the token endpoint checks again)."""
        action = "break-glass.token"
        row = self._store.grant(grant_id) if GRANT_ID.fullmatch(grant_id) else None
        now = self._clock.now()
        if (
            row is None
            or principal.kind is not PrincipalKind.USER
            or row.user_id != principal.subject
            or not self._active(row, to_us(now))
        ):
            raise self._refuse(principal, action, HearthError(errors.BREAK_GLASS_NOT_ACTIVE))
        if record:
            self._store.record(
                access_record(
                    principal,
                    action,
                    now,
                    res_type="Patient",
                    res_id=row.patient_id,
                    patient=row.patient_id,
                    purpose=row.purpose,
                    detail={"grant": grant_id, "client": client_id},
                )
            )
        return row.patient_id, from_us(row.expires_us)

    def mine(self, principal: Principal) -> list[BreakGlassGrant]:
        """The user's own grants that are still active."""
        now_us = to_us(self._clock.now())
        rows = self._store.grants(
            user_id=principal.subject, since_us=now_us - _MAX_MINUTES * 60_000_000
        )
        return [self._view(r, accesses=False) for r in rows if self._active(r, now_us)]

    # -- the review queue -----------------------------------------------------------------------
    def _require(self, principal: Principal, capability: Capability, action: str) -> None:
        if not self._control.allows(principal, capability).allowed:
            raise self._refuse(principal, action, HearthError(errors.FORBIDDEN))

    def queue(
        self, principal: Principal, *, status: str | None = "open", patient_id: str | None = None
    ) -> list[BreakGlassGrant]:
        """Grants for review (``status`` open or closed, None for all): privacy officers and
        auditors. Reading the queue is audited: it shows reasons, which are PHI."""
        if not (
            self._control.allows(principal, Capability.BREAK_GLASS_REVIEW).allowed
            or self._control.allows(principal, Capability.AUDIT_READ).allowed
        ):
            raise self._refuse(principal, "break-glass.queue", HearthError(errors.FORBIDDEN))
        rows = self._store.grants(review_status=status, patient_id=patient_id)
        self._store.record(
            access_record(
                principal,
                "break-glass.queue",
                self._clock.now(),
                patient=patient_id,
                detail={"status": status, "grants": [r.grant_id for r in rows]},
            )
        )
        return [self._view(r) for r in rows]

    def get(self, principal: Principal, grant_id: str) -> BreakGlassGrant:
        for grant in self.queue(principal, status=None):
            if grant.grant_id == grant_id:
                return grant
        raise HearthError(errors.NOT_FOUND)

    def review(
        self, principal: Principal, grant_id: str, *, finding: str, note: str | None = None
    ) -> BreakGlassGrant:
        """Close a grant's review with a finding; never by the user who broke the glass."""
        self._require(principal, Capability.BREAK_GLASS_REVIEW, "break-glass.review")
        if finding not in FINDINGS:
            raise HearthError(errors.BAD_PARAMETER, f"finding is one of {', '.join(FINDINGS)}.")
        row = self._store.grant(grant_id)
        if row is None:
            raise HearthError(errors.NOT_FOUND)
        if row.user_id == principal.subject:
            raise self._refuse(principal, "break-glass.review", HearthError(errors.REVIEW_OWN))
        now = self._clock.now()
        record = access_record(
            principal,
            "break-glass.review",
            now,
            res_type="Patient",
            res_id=row.patient_id,
            patient=row.patient_id,
            detail={"grant": grant_id, "finding": finding, "note": note},
        )
        closed = self._store.review_grant(
            grant_id,
            by=principal.subject,
            now_us=to_us(now),
            finding=finding,
            note=note,
            records=[record],
        )
        if not closed:
            raise HearthError(errors.REVIEW_CLOSED)
        return self._load(grant_id)

    # -- views ------------------------------------------------------------------------------------
    def _load(self, grant_id: str) -> BreakGlassGrant:
        found = self._store.grant(grant_id)
        if found is None:  # pragma: no cover - read back right after it was written
            raise HearthError(errors.NOT_FOUND)
        return self._view(found)

    @staticmethod
    def _active(row: BreakGlassRow, now_us: int) -> bool:
        return row.ended_us is None and row.created_us <= now_us < row.expires_us

    def _accesses(self, row: BreakGlassRow) -> int:
        """Audit entries the user wrote under the grant (purpose ETREAT, within its window)."""
        until = min(row.expires_us, row.ended_us or row.expires_us)
        rows = self._store.audit_rows(
            AuditQuery(actor=row.user_id, since_us=row.created_us, until_us=until), limit=10_000
        )
        count = 0
        for entry in rows:
            body = orjson.loads(entry.body)
            if body.get("purpose") == row.purpose and not str(body["action"]).startswith(
                "break-glass."
            ):
                count += 1
        return count

    def _view(self, row: BreakGlassRow, *, accesses: bool = True) -> BreakGlassGrant:
        now_us = to_us(self._clock.now())
        return BreakGlassGrant(
            grant_id=row.grant_id,
            user_id=row.user_id,
            patient_id=row.patient_id,
            purpose=row.purpose,
            reason=self._store.reason(row),
            created=from_us(row.created_us),
            expires=from_us(row.expires_us),
            ended=from_us(row.ended_us) if row.ended_us is not None else None,
            active=self._active(row, now_us),
            review_status=row.review_status,
            reviewed_by=row.reviewed_by,
            reviewed=from_us(row.reviewed_us) if row.reviewed_us is not None else None,
            finding=row.finding,
            note=self._store.note(row),
            accesses=self._accesses(row) if accesses else 0,
        )


def grant_document(grant: BreakGlassGrant) -> dict[str, object]:
    """A grant as JSON (the API and ``hearth access break-glass --json``)."""
    return {
        "grant_id": grant.grant_id,
        "user_id": grant.user_id,
        "patient": f"Patient/{grant.patient_id}",
        "purpose": grant.purpose,
        "reason": grant.reason,
        "created": grant.created.isoformat(),
        "expires": grant.expires.isoformat(),
        "ended": grant.ended.isoformat() if grant.ended else None,
        "active": grant.active,
        "review_status": grant.review_status,
        "reviewed_by": grant.reviewed_by,
        "reviewed": grant.reviewed.isoformat() if grant.reviewed else None,
        "finding": grant.finding,
        "note": grant.note,
        "accesses": grant.accesses,
    }
