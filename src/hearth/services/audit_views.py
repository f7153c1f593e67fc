"""Audit you can examine (issue 5 item 8; HIPAA 164.312(b) "record and examine", 164.528,
HIP-AU-02, HIP-AOD-01..08, FHIR-AE-01..06).

- ``read`` and ``search``: ``AuditEvent`` resources rendered BALP-shaped from the chain
  (``hearth.audit.balp``) for holders of ``audit.read`` (auditors, privacy officers), searchable by
  user, patient, time, resource, action, outcome, interaction and purpose of use. Each entry read
  is checked against its own chain hash first: the chain stays the source of truth.
- ``disclosures``: one patient's accounting over up to six years (164.528(a)(1)). The accounting
  (``kind="accounting"``) lists the accesses that disclosed the patient's records for a purpose
  other than treatment, payment or operations and not at the patient's own request
  (164.528(a)(1)(i)-(ii)); the access report (``kind="access"``) lists every access, allowed or
  refused, with its purpose (who looked at this patient, HIP-AOD-08). A search, history page or
  ``$everything`` that disclosed several patients is found through its list of patients
  (``audit_patient``), so each of them gets it in their accounting. Auditors and privacy officers
  (``audit.disclosures``) may ask for any patient; a patient user (``audit.own``) for themselves,
  and then sees neither queries nor the other patients an access touched.

Every view is itself audited (``audit.read``, ``audit.search``, ``audit.disclosures``): audit
entries hold PHI (X-02), so looking at them is an access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from hearth.audit.balp import DISCLOSING_ACTIONS, audit_event, is_rest
from hearth.domain import Clock, HearthError, IntegrityError, Outcome, Principal, errors
from hearth.security import Capability, Decision
from hearth.services.access import access_record
from hearth.storage import to_us
from hearth.storage.access import AccessControl
from hearth.storage.access_admin import AccessStore, AuditQuery, AuditRow

__all__ = ["ACCOUNTING_WINDOW", "TPO_PURPOSES", "AuditPage", "AuditViews", "parse_audit_query"]

#: 164.528(a)(1): an accounting covers the six years before the request.
ACCOUNTING_WINDOW = timedelta(days=6 * 366)
#: Treatment, payment and health care operations (164.528(a)(1)(i)), and the patient's own
#: request (164.528(a)(1)(ii)): left out of the accounting, shown in the access report.
TPO_PURPOSES = frozenset({"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "HSYSADMIN", "PATRQT"})
_SCAN_LIMIT = 20_000
#: What the access report lists: every interaction with the patient's records, and emergency
#: declarations (not views of the audit trail itself).
RECORD_ACTIONS = DISCLOSING_ACTIONS | {"create", "update", "patch", "delete", "break-glass.declare"}
_ACTIONS_BY_CODE = {
    "C": frozenset({"create"}),
    "R": frozenset({"read", "vread", "history"}),
    "U": frozenset({"update", "patch"}),
    "D": frozenset({"delete"}),
}
_SUBTYPES = {
    "read": "read",
    "vread": "vread",
    "search-type": "search",
    "search-system": "search",
    "operation": "search",
    "history-instance": "history",
    "history-type": "history",
    "history-system": "history",
    "create": "create",
    "update": "update",
    "patch": "patch",
    "delete": "delete",
}
_OUTCOMES = {"0": {"success"}, "4": {"denied", "not-found", "invalid"}, "8": {"error"}}
_DATE = re.compile(r"(eq|ge|le|gt|lt)?(\d{4}(-\d{2}(-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?)")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    query: AuditQuery
    crud: str | None = None  # C/R/U/D/E
    outcomes: frozenset[str] | None = None
    purpose: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[dict[str, Any]]
    next_before: int | None  # the seq the next page starts below, if there is one


def _instant(text: str, *, end: bool) -> datetime:
    """A FHIR date or dateTime as the first (or last) instant it covers, in UTC."""
    if "T" in text:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    parts = [int(p) for p in text.split("-")]
    year, month, day = (
        parts[0],
        parts[1] if len(parts) > 1 else 1,
        parts[2] if len(parts) > 2 else 1,
    )
    start = datetime(year, month, day, tzinfo=UTC)
    if not end:
        return start
    if len(parts) == 1:
        stop = datetime(year + 1, 1, 1, tzinfo=UTC)
    elif len(parts) == 2:
        stop = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    else:
        stop = start + timedelta(days=1)
    return stop - timedelta(microseconds=1)


def parse_audit_query(params: Sequence[tuple[str, str]]) -> AuditFilter:
    """AuditEvent search parameters (R4 auditevent.html#search) -> a filter. Supported: ``date``
    (with eq/ge/le/gt/lt), ``agent`` and ``altid`` (a user id, or ``system|id``), ``patient``,
    ``entity`` (``Type/id``), ``entity-type`` (a resource type), ``action``, ``outcome``,
    ``subtype``, and Hearth's ``purpose`` (purposeOfEvent). Anything else is refused."""
    since: datetime | None = None
    until: datetime | None = None
    fields: dict[str, Any] = {}
    crud = purpose = None
    outcomes: frozenset[str] | None = None
    for name, value in params:
        if name in ("_count", "_page", "_format", "_pretty"):
            continue
        if name == "date":
            match = _DATE.fullmatch(value)
            if match is None:
                raise HearthError(errors.BAD_SEARCH_VALUE, "date is a FHIR date with a prefix.")
            prefix, text = match.group(1) or "eq", match.group(2)
            try:
                lo, hi = _instant(text, end=False), _instant(text, end=True)
            except ValueError:
                raise HearthError(errors.BAD_SEARCH_VALUE, "date is not a valid date.") from None
            if prefix in ("eq", "ge"):
                since = lo if since is None else max(since, lo)
            if prefix == "gt":
                since = hi if since is None else max(since, hi)
            if prefix in ("eq", "le"):
                until = hi if until is None else min(until, hi)
            if prefix == "lt":
                until = lo if until is None else min(until, lo)
        elif name in ("agent", "altid"):
            fields["actor"] = value.split("|", 1)[-1]
        elif name == "patient":
            fields["patient"] = value.removeprefix("Patient/")
        elif name == "entity":
            res_type, _, res_id = value.partition("/")
            fields["res_type"], fields["res_id"] = res_type, res_id or None
        elif name == "entity-type":
            fields["res_type"] = value
        elif name == "action":
            if value not in ("C", "R", "U", "D", "E"):
                raise HearthError(errors.BAD_SEARCH_VALUE, "action is C, R, U, D or E.")
            crud = value
            if value in _ACTIONS_BY_CODE:
                fields["actions"] = _ACTIONS_BY_CODE[value]
        elif name == "outcome":
            if value not in _OUTCOMES:
                raise HearthError(errors.BAD_SEARCH_VALUE, "outcome is 0, 4 or 8.")
            outcomes = frozenset(_OUTCOMES[value])
        elif name == "subtype":
            fields["actions"] = frozenset({_SUBTYPES.get(value.split("|", 1)[-1], value)})
        elif name == "purpose":
            purpose = value.split("|", 1)[-1]
        else:
            raise HearthError(
                errors.UNKNOWN_SEARCH_PARAMETER, f"AuditEvent is not searched by '{name}'."
            )
    return AuditFilter(
        AuditQuery(
            since_us=to_us(since) if since else None,
            until_us=to_us(until) if until else None,
            **fields,
        ),
        crud=crud,
        outcomes=outcomes,
        purpose=purpose,
    )


class AuditViews:
    def __init__(
        self, store: AccessStore, control: AccessControl, *, clock: Clock, site: str
    ) -> None:
        self._store = store
        self._control = control
        self._clock = clock
        self._site = site

    # -- decisions ---------------------------------------------------------------------------
    def _allows(self, principal: Principal, capability: Capability) -> Decision:
        return self._control.allows(principal, capability)

    def _refuse(self, principal: Principal, action: str, patient: str | None = None) -> HearthError:
        self._store.record(
            access_record(
                principal,
                action,
                self._clock.now(),
                outcome=Outcome.DENIED,
                patient=patient,
                code=errors.FORBIDDEN.code,
            )
        )
        return HearthError(errors.FORBIDDEN)

    # -- rendering ----------------------------------------------------------------------------
    def _entry(self, row: AuditRow) -> dict[str, Any]:
        """The entry's body after checking it against its chain hash (the source of truth)."""
        if not self._store.chained(row):
            raise IntegrityError()
        body = orjson.loads(row.body)
        if not isinstance(body, dict) or body.get("seq") != row.seq:
            raise IntegrityError()
        return body

    def _render(
        self,
        row: AuditRow,
        body: Mapping[str, Any],
        *,
        full: bool,
        patients_shown: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        detail = self._store.audit_detail(row) if full and body.get("sealed") else None
        return audit_event(
            body, chain_hash=row.hash, site=self._site, detail=detail, patients_shown=patients_shown
        )

    @staticmethod
    def _keeps(body: Mapping[str, Any], wanted: AuditFilter) -> bool:
        if wanted.outcomes is not None and body.get("outcome") not in wanted.outcomes:
            return False
        if wanted.purpose is not None and body.get("purpose") != wanted.purpose:
            return False
        if wanted.crud == "E":
            action = str(body.get("action"))
            return not is_rest(action) or action == "search"
        return True

    def _scan(
        self, wanted: AuditFilter, count: int, before: int | None
    ) -> tuple[list[tuple[AuditRow, dict[str, Any]]], int | None]:
        """Up to ``count`` matching entries below ``before``, newest first, and where the next
        page starts. SQL narrows by the indexed columns; purpose, outcome class and the E action
        are checked on the bodies, scanning at most ``_SCAN_LIMIT`` entries per page."""
        found: list[tuple[AuditRow, dict[str, Any]]] = []
        scanned = 0
        cursor = before
        while len(found) <= count and scanned < _SCAN_LIMIT:
            query = AuditQuery(**{**_fields(wanted.query), "before_seq": cursor})
            rows = self._store.audit_rows(query, limit=max(count * 2, 100))
            if not rows:
                break
            for row in rows:
                body = self._entry(row)
                if self._keeps(body, wanted):
                    found.append((row, body))
            scanned += len(rows)
            cursor = rows[-1].seq
        more = len(found) > count
        page = found[:count]
        if more:
            return page, page[-1][0].seq
        if scanned >= _SCAN_LIMIT and cursor is not None and found:
            return page, cursor  # more may follow: the caller pages on from where the scan stopped
        return page, None

    # -- the views --------------------------------------------------------------------------------
    def read(self, principal: Principal, seq: int) -> dict[str, Any]:
        """``GET AuditEvent/{id}``."""
        if not self._allows(principal, Capability.AUDIT_READ).allowed:
            raise self._refuse(principal, "audit.read")
        row = self._store.audit_row(seq)
        if row is None:
            raise HearthError(errors.NOT_FOUND)
        body = self._entry(row)
        self._store.record(
            access_record(
                principal,
                "audit.read",
                self._clock.now(),
                res_type="AuditEvent",
                res_id=str(seq),
                patient=body.get("patient"),
            )
        )
        return self._render(row, body, full=True)

    def search(
        self,
        principal: Principal,
        params: Sequence[tuple[str, str]],
        *,
        count: int,
        before: int | None = None,
    ) -> AuditPage:
        """``GET AuditEvent?...``, newest first."""
        if not self._allows(principal, Capability.AUDIT_READ).allowed:
            raise self._refuse(principal, "audit.search")
        wanted = parse_audit_query(params)
        page, next_before = self._scan(wanted, count, before)
        self._store.record(
            access_record(
                principal,
                "audit.search",
                self._clock.now(),
                res_type="AuditEvent",
                patient=wanted.query.patient,
                detail={"query": [list(p) for p in params], "seqs": [r.seq for r, _ in page]},
            )
        )
        return AuditPage([self._render(r, b, full=True) for r, b in page], next_before)

    def disclosures(
        self,
        principal: Principal,
        patient_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        kind: str = "accounting",
        count: int = 100,
        before: int | None = None,
    ) -> AuditPage:
        """``Patient/{id}/$disclosures``: the accounting of disclosures (or, ``kind="access"``,
        the report of every access) for one patient, newest first."""
        if kind not in ("accounting", "access"):
            raise HearthError(errors.BAD_PARAMETER, "kind is accounting or access.")
        full = self._allows(principal, Capability.AUDIT_DISCLOSURES).allowed
        if not full:
            own = self._store.link(principal.subject)
            if not (
                self._allows(principal, Capability.AUDIT_OWN).allowed
                and own is not None
                and own.patient_id == patient_id
            ):
                raise self._refuse(principal, "audit.disclosures", patient_id)
        now = self._clock.now()
        earliest = now - ACCOUNTING_WINDOW
        since = max(since or earliest, earliest)
        until = min(until or now, now)
        query = AuditQuery(
            patient=patient_id,
            actions=DISCLOSING_ACTIONS if kind == "accounting" else RECORD_ACTIONS,
            since_us=to_us(since),
            until_us=to_us(until),
        )
        wanted = AuditFilter(
            query, outcomes=frozenset({"success"}) if kind == "accounting" else None
        )
        found: list[tuple[AuditRow, dict[str, Any]]] = []
        cursor = before
        next_before: int | None = None
        while True:
            page, next_before = self._scan(wanted, count - len(found), cursor)
            found.extend(
                (r, b)
                for r, b in page
                if kind == "access" or str(b.get("purpose")) not in TPO_PURPOSES
            )
            if next_before is None or len(found) >= count:
                break
            cursor = next_before
        self._store.record(
            access_record(
                principal,
                "audit.disclosures",
                now,
                res_type="Patient",
                res_id=patient_id,
                patient=patient_id,
                detail={"kind": kind, "since": since.isoformat(), "until": until.isoformat()},
            )
        )
        shown = None if full else [patient_id]
        events = [self._render(r, b, full=full, patients_shown=shown) for r, b in found]
        return AuditPage(events, next_before)


def _fields(query: AuditQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in query.__dataclass_fields__}
