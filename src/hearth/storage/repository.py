"""The gate: every read and write of PHI passes through a repository bound to a principal.

A ``RecordRepository`` decides (through the access policy), seals and opens (through the key
ring), checks each version's MAC on the way out, and audits every call, success and failure. A
change and its audit entry commit in one transaction; a read's entry is group-committed and
durable before the read returns. Denials and failures are audited in their own transaction, so
they are recorded even though the change they refused rolls back.

Out-of-scope reads answer "not found" (Medplum, HAPI): a principal learns nothing about records
outside their reach, not even that they exist.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection

from hearth.audit import AuditRecord
from hearth.crypto import KeyRing, sealed_key_id
from hearth.domain import (
    Action,
    Clock,
    HearthError,
    IntegrityError,
    Outcome,
    Principal,
    Random,
    ResourceRef,
    StoredResource,
    errors,
)
from hearth.fhir import definitions
from hearth.fhir import jsonbody as fhir_json
from hearth.fhir.deidentify import Deidentifier, search_refusal
from hearth.fhir.search import (
    SearchRequest,
    SubSearch,
    parameters_read,
    read_elements,
    wildcard_includes,
)
from hearth.fhir.search.query import Include, SortKey
from hearth.security import (
    FACT_TYPES,
    LINK_RULES,
    Capability,
    Decision,
    Denial,
    apply_masks,
    carry_restricting,
    masked_present,
    masked_reads,
    restore_masked,
    strip_redacted,
)
from hearth.storage.access import AccessControl, compartment_patients
from hearth.storage.audit import AuditTrail
from hearth.storage.index_workers import (
    CHUNK,
    EntryFinder,
    Extracted,
    IndexWorkers,
    Unindexed,
    extract,
)
from hearth.storage.searching import Searcher, SearchPage
from hearth.storage.sql import access as access_sql
from hearth.storage.sql import scan as scan_sql
from hearth.storage.sql import search as search_sql
from hearth.storage.sql import tables as t
from hearth.storage.sql.store import VERSION_SEQ, SqlStore, VersionRow
from hearth.storage.write_groups import GroupMember, WriteGroups

__all__ = [
    "FACT_TYPES",
    "DisclosureObserver",
    "HistoryResult",
    "IntegrityObserver",
    "RecordRepository",
    "SearchBounds",
    "SelfLinkObserver",
    "SingleWrite",
    "WriteBatch",
    "from_us",
    "index_pages",
    "index_row",
    "run_write_group",
    "to_us",
]

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = logging.getLogger(__name__)

#: Called with the damaged row's identity when a stored version fails to open or verify.
IntegrityObserver = Callable[[str, str, int, int], None]
#: Called after a disclosure with the principal, the patients whose records it disclosed and
#: the resources as they left (snooping detection, ``hearth.services.monitor``).
DisclosureObserver = Callable[[Principal, frozenset[str], list[StoredResource]], None]
#: Called when a write that would have widened the principal's own access was refused, with the
#: principal, the interaction and the resource's type and id (``hearth.services.monitor``).
SelfLinkObserver = Callable[[Principal, Action, str, str], None]


def to_us(ts: datetime) -> int:
    delta = ts.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def instant(ts: datetime) -> str:
    """FHIR ``instant`` with microseconds, in UTC (R4 datatypes.html#instant)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def patient_of(res_type: str, res_id: str, resource: Mapping[str, Any] | None) -> str | None:
    """The id of the patient a resource is about, when it names one directly (for the audit)."""
    if res_type == "Patient":
        return res_id
    if not resource:
        return None
    for field in ("subject", "patient", "beneficiary"):
        value = resource.get(field)
        if isinstance(value, dict):
            reference = value.get("reference")
            if isinstance(reference, str) and reference.startswith("Patient/"):
                return reference.removeprefix("Patient/").split("/", 1)[0]
    return None


#: Types whose only facts are the care links their references state (``FACT_TYPES``, from
#: ``hearth.security.relationships``, are those and Consent and PractitionerRole).
_LINK_TYPES = frozenset(r.res_type for r in LINK_RULES)


@dataclass(frozen=True, slots=True)
class SearchBounds:
    """How many resources one search may open (to finish inexact criteria or sort on a sealed
    field) and include; see docs/design.md, "Search over sealed data"."""

    open: int = 1000
    include: int = 1000


def open_version(keys: KeyRing, row: VersionRow) -> bytes | None:
    """A stored version's plaintext body (None for a deletion), after opening its seal under
    the AAD of its type, id and version and checking its MAC; ``IntegrityError`` on any
    mismatch, including a deletion that carries a body or a version that lacks one."""
    body: bytes | None = None
    if not row.deleted:
        if row.body is None:
            raise IntegrityError()
        body = keys.open_resource(
            row.body, aad=ResourceRef(row.res_type, row.res_id).aad(row.version)
        )
    elif row.body is not None:
        raise IntegrityError()
    keys.verify_mac(
        row.mac,
        mac_key_id=row.mac_key_id,
        seq=row.seq,
        res_type=row.res_type,
        res_id=row.res_id,
        version=row.version,
        deleted=row.deleted,
        ts_us=row.ts_us,
        body=body,
    )
    return body


def index_row(
    keys: KeyRing, seq: int, res_type: str, res_id: str, ts_us: int, resource: dict[str, Any]
) -> search_sql.IndexRow:
    """The search index rows of one current version: blind keys, clear references, compartment."""
    return _blinded(keys, seq, res_type, res_id, ts_us, extract(res_type, resource))


def index_pages(
    keys: KeyRing, workers: IndexWorkers | None, pages: Iterable[list[Unindexed]]
) -> Iterator[list[search_sql.IndexRow]]:
    """The index rows of each page of versions, in order (a rebuild of the index). While the
    caller writes one page's rows, the workers find the next page's entries."""
    pending: tuple[EntryFinder, list[Unindexed]] | None = None
    for page in pages:
        finder = EntryFinder(workers)
        for item in page:
            finder.add(item)
        if pending is not None:
            yield _found_rows(keys, *pending)
        pending = (finder, page)
    if pending is not None:
        yield _found_rows(keys, *pending)


def _found_rows(
    keys: KeyRing, finder: EntryFinder, items: list[Unindexed]
) -> list[search_sql.IndexRow]:
    finder.finish()
    rows = []
    for i in items:
        assert i.found is not None  # noqa: S101 - finish found every item added
        rows.append(_blinded(keys, i.seq, i.res_type, i.res_id, i.ts_us, i.found))
    return rows


def _blinded(
    keys: KeyRing, seq: int, res_type: str, res_id: str, ts_us: int, found: Extracted
) -> search_sql.IndexRow:
    pairs, refs, patients, links = found
    return search_sql.IndexRow(
        seq=seq,
        res_type=res_type,
        res_id=res_id,
        ts_us=ts_us,
        hashes=keys.blind_many(pairs),
        refs=refs,
        patients=patients,
        links=links,
    )


class RecordRepository:
    """Resources, seen and changed by one principal. Build it only through ``wiring``."""

    def __init__(
        self,
        *,
        principal: Principal,
        policy: AccessControl,
        store: SqlStore,
        keyring: KeyRing,
        audit: AuditTrail,
        clock: Clock,
        random: Random,
        keys_current: Callable[[Connection], None],
        request_id: str | None = None,
        on_integrity_failure: IntegrityObserver | None = None,
        on_disclosure: DisclosureObserver | None = None,
        on_self_link: SelfLinkObserver | None = None,
        bounds: SearchBounds | None = None,
        index_workers: IndexWorkers | None = None,
        write_groups: WriteGroups[SingleWrite] | None = None,
    ) -> None:
        """``keys_current`` reloads the key ring inside a write transaction when keys changed
        (``hearth.storage.keys.LiveKeys.ensure_current``); ``index_workers`` find the index
        entries of a large batch's writes beside it (``hearth.storage.index_workers``);
        ``write_groups`` commit concurrent single writes together (``run_write_group``)."""
        self.principal = principal
        self._index_workers = index_workers
        self._write_groups = write_groups
        self.bounds = bounds or SearchBounds()
        self._policy = policy
        self._store = store
        self._keys = keyring
        self._keys_current = keys_current
        self._audit = audit
        self._clock = clock
        self._random = random
        self._request = request_id
        self._on_integrity_failure = on_integrity_failure
        self._on_disclosure = on_disclosure
        self._on_self_link = on_self_link
        # The principal's access facts and decisions for this request (hearth.storage.access).
        self.access = policy.bind(principal, lambda row: self._open_or_fail(Action.READ, row))
        # Inside a write batch the writer lock is held, so failures cannot be audited in a
        # transaction of their own until it ends; they wait here (see ``batch``).
        self._deferred: list[AuditRecord] | None = None

    # -- audit and decisions ----------------------------------------------------------------
    def _purpose(self) -> str:
        """The request's purpose of use: the profile's once it is resolved."""
        resolved = self.access.resolved
        return resolved.purpose if resolved is not None else self.principal.purpose_of_use

    def _record(
        self,
        action: Action | str,
        outcome: Outcome,
        *,
        res_type: str | None = None,
        res_id: str | None = None,
        version: int | None = None,
        patient: str | None = None,
        code: str | None = None,
        detail: bytes | None = None,
        purpose: str | None = None,
        patients: tuple[str, ...] = (),
    ) -> AuditRecord:
        p = self.principal
        return AuditRecord(
            ts=self._clock.now(),
            actor=p.subject,
            actor_kind=p.kind.value,
            action=str(action),
            outcome=outcome,
            res_type=res_type,
            res_id=res_id,
            version=version,
            patient=patient,
            purpose=purpose or self._purpose(),
            source=p.source,
            session=p.session,
            request=self._request,
            code=code,
            detail=detail,
            patients=patients,
        )

    def _fail(
        self,
        action: Action,
        error: HearthError,
        *,
        res_type: str | None,
        res_id: str | None = None,
        version: int | None = None,
        outcome: Outcome | None = None,
        detail: bytes | None = None,
        patient: str | None = None,
    ) -> HearthError:
        """Audit a refused or failed call in its own transaction, then hand back the error.
        ``patient``: the patient the refused content is about, when the caller knows it."""
        if outcome is None:
            outcome = {
                errors.FORBIDDEN.code: Outcome.DENIED,
                errors.NOT_FOUND.code: Outcome.NOT_FOUND,
                errors.GONE.code: Outcome.NOT_FOUND,
                errors.VERSION_NOT_FOUND.code: Outcome.NOT_FOUND,
                errors.MASKED_FIELD.code: Outcome.DENIED,
                errors.DEIDENTIFIED_VIEW.code: Outcome.DENIED,
                errors.MASKED_SEARCH.code: Outcome.DENIED,
                errors.ACCESS_THROTTLED.code: Outcome.DENIED,
                errors.BREAK_GLASS_NOT_ACTIVE.code: Outcome.DENIED,
                errors.SELF_LINK.code: Outcome.DENIED,
                errors.BREAK_GLASS_RELATIONSHIP.code: Outcome.DENIED,
            }.get(error.code.code, Outcome.INVALID if error.status < 500 else Outcome.ERROR)
        record = self._record(
            action,
            outcome,
            res_type=res_type,
            res_id=res_id,
            version=version,
            # A refused Patient read names the patient: their access report shows the attempt.
            patient=patient
            or (patient_of(res_type, res_id, None) if res_type and res_id else None),
            code=error.code.code,
            detail=detail,
        )
        if self._deferred is not None:
            self._deferred.append(record)
        else:
            self._audit.record(record)
        error.audited = True
        return error

    def refused(
        self, action: Action, error: HearthError, *, res_type: str | None, res_id: str | None = None
    ) -> HearthError:
        """Audit a request refused before it reached the gate (an invalid body, a bad id) and
        hand back the error: every call is audited, success and failure (HIPAA 164.312(b))."""
        if error.audited:
            return error
        return self._fail(action, error, res_type=res_type, res_id=res_id)

    def _check(
        self,
        action: Action,
        res_type: str,
        resource: Mapping[str, Any] | None = None,
        *,
        res_id: str | None = None,
        conn: Connection | None = None,
        instance: bool | None = None,
    ) -> Decision:
        """Ask the decision point; on deny, audit the denial and raise (403, or 404 when out of
        scope). ``resource`` None decides on the type alone, before anything is loaded."""
        try:
            decision = self.access.decide(
                action, res_type, resource, res_id=res_id, conn=conn, instance=instance
            )
        except HearthError as error:  # the principal's facts refuse it (throttled, bad grant)
            if error.code is errors.INTEGRITY_FAILED:
                raise  # already audited where the version was opened
            raise self._fail(action, error, res_type=res_type, res_id=res_id) from None
        if decision.allowed:
            return decision
        if decision.denial is Denial.OUT_OF_SCOPE and not action.is_write:
            hidden = HearthError(errors.NOT_FOUND)
            raise self._fail(
                action, hidden, res_type=res_type, res_id=res_id, outcome=Outcome.DENIED
            )
        raise self._fail(action, HearthError(errors.FORBIDDEN), res_type=res_type, res_id=res_id)

    def _within(self, conn: Connection, action: Action, res_type: str, res_id: str) -> None:
        """Refuse a resource outside the principal's scope before its body is fetched: as not
        found for reads (nothing leaks), forbidden for writes."""
        try:
            inside = self.access.in_scope(conn, res_type, res_id, action)
        except HearthError as error:
            raise self._fail(action, error, res_type=res_type, res_id=res_id) from None
        if inside:
            return
        if action.is_write:
            raise self._fail(
                action, HearthError(errors.FORBIDDEN), res_type=res_type, res_id=res_id
            )
        exists = access_sql.current_state(conn, res_type, res_id) is not None
        raise self._fail(
            action,
            HearthError(errors.NOT_FOUND),
            res_type=res_type,
            res_id=res_id,
            outcome=Outcome.DENIED if exists else Outcome.NOT_FOUND,
        )

    def _relationships(
        self,
        conn: Connection,
        action: Action,
        res_type: str,
        res_id: str,
        resource: Mapping[str, Any] | None,
        prior: Mapping[str, Any] | None,
    ) -> None:
        """Refuse a write that would widen the principal's own access, or that writes a
        relationship under a break-the-glass grant (docs/design.md, "Relationships are written
        by someone else"): audited as denied, and a self-link raises ``access.snooping``. The
        interaction was allowed already, so the principal's profile is resolved."""
        decision = self.access.decide_relationships(conn, res_type, res_id, resource, prior)
        if decision.allowed:
            return
        code = errors.BREAK_GLASS_RELATIONSHIP
        if decision.denial is Denial.SELF_LINK:
            code = errors.SELF_LINK
            if self._on_self_link is not None:
                # Raising an alarm only queues it, so it is safe with the writers' lock held. A
                # write group run again one write at a time may raise it twice: the repeat is
                # counted on the same alarm.
                self._on_self_link(self.principal, action, res_type, res_id)
        # The patient the relationship is about: their access report shows the attempt.
        about = patient_of(res_type, res_id, resource if resource is not None else prior)
        raise self._fail(action, HearthError(code), res_type=res_type, res_id=res_id, patient=about)

    def may(self, capability: Capability) -> Decision:
        """Whether the principal holds one of Hearth's own capabilities (audit views,
        break-the-glass, administration): the same decision point as every interaction."""
        try:
            return self.access.profile.allows(capability)
        except HearthError as error:
            return Decision.deny(Denial.FORBIDDEN, error.detail)

    @staticmethod
    def _masked(stored: StoredResource, decision: Decision) -> StoredResource:
        """The resource as it may leave: masked elements removed and marked REDACTED."""
        if not decision.masks or stored.resource is None:
            return stored
        return replace(stored, resource=apply_masks(stored.resource, decision.masks))

    # -- minimum necessary in searches -----------------------------------------------------------
    def _unmasked_search(
        self,
        request: SearchRequest | SubSearch,
        *,
        query_text: str = "",
        compartments: Iterable[str] = (),
        patient: str | None = None,
    ) -> None:
        """Refuse ``request`` with ``MASKED_SEARCH`` (403), audited as denied, before anything
        is read, if it reads an element the principal's roles mask (FHIR-SL-03). A search in
        ``patient``'s compartment (or ``$everything``) is audited against that Patient, so the
        refusal shows in the patient's access report.

        Which resources match, how many and in what order tells something of every element a
        criterion, a chain or ``_has`` level, a sort key or an include's reference reads
        (``read_elements``), so a role that may not read an element may not search by it
        either (``AccessProfile.search_masks``). The refusal names the parameter, never its
        value. (An ``*`` include names no element: ``_readable`` narrows it.) A search within
        one patient's compartment, of each type of ``compartments``, reads the references that
        put a resource of that type in a compartment (compartmentdefinition-patient.html).
        """
        if not self.access.profile.masks_anything:
            return
        refusal = None
        if any(not c.reads for c in request.criteria):
            refusal = "The search's criteria could not be checked."  # fail closed
        else:
            for name, read_type, code in parameters_read(request):
                if self._reads_masked(read_type, code):
                    refusal = f"'{name}' reads an element your role may not see."
                    break
        for res_type in compartments:
            if refusal is None and any(
                self._reads_masked(res_type, code)
                for code in definitions.patient_compartment(res_type)
            ):
                refusal = (
                    f"A search of a patient's {res_type} resources reads an element your role "
                    "may not see."
                )
        if refusal is not None:
            raise self._fail(
                Action.SEARCH,
                HearthError(errors.MASKED_SEARCH, refusal),
                res_type="Patient" if patient is not None else request.res_type,
                res_id=patient,
                detail=query_text.encode() if query_text else None,
            )

    def _narrowed(self, request: SearchRequest) -> SearchRequest:
        """``request`` with each ``*`` include narrowed to the reference parameters whose
        elements the principal may read (a named one that reads a masked element is refused
        by ``_unmasked_search``)."""
        if not self.access.profile.masks_anything or all(
            i.param is not None for i in (*request.includes, *request.revincludes)
        ):
            return request
        return replace(
            request,
            includes=self._readable(request.includes),
            revincludes=self._readable(request.revincludes),
        )

    def _reads_masked(self, res_type: str, code: str) -> bool:
        """Whether search parameter ``code`` of ``res_type`` reads an element the principal's
        search may not read (an unknown parameter does, fail closed)."""
        masks = self.access.profile.search_masks(res_type)
        if not masks:
            return False
        elements = read_elements(res_type, code)
        return elements is None or bool(masked_reads(elements, masks))

    def _readable(self, includes: tuple[Include, ...]) -> tuple[Include, ...]:
        """``includes`` with each ``*`` spelt out as the reference parameters that read no
        masked element."""
        return tuple(
            i
            for i in wildcard_includes(includes)
            if i.param is not None and not self._reads_masked(i.source_type, i.param)
        )

    def _disclosed(self, items: list[StoredResource]) -> tuple[str, ...]:
        """The patients whose records ``items`` are, and tell the snooping monitor."""
        patients: set[str] = set()
        for stored in items:
            found = compartment_patients(stored.res_type, stored.resource, stored.res_id)
            if found:
                patients.update(found)
        # A de-identified view cannot look a person up (``search_refusal``): what it receives
        # is not a patient's record, and does not count towards snooping thresholds.
        if self._on_disclosure is not None and items and not self.access.profile.deidentified:
            self._on_disclosure(self.principal, frozenset(patients), items)
        return tuple(sorted(patients))

    # -- the de-identified view ---------------------------------------------------------------
    def _not_deidentified(self, action: Action, res_type: str | None) -> None:
        """Refuse what a de-identified view cannot do (history, ``$everything``, batches): it
        receives search results only, rewritten by ``_deidentified``."""
        if self.access.profile.deidentified:
            raise self._fail(action, HearthError(errors.DEIDENTIFIED_VIEW), res_type=res_type)

    def _deidentified(self, items: list[StoredResource]) -> list[StoredResource]:
        """``items`` as a de-identified view receives them (``hearth.fhir.deidentify``), after
        they were audited under their real ids."""
        rewrite = Deidentifier(self._keys.pseudonym, self._clock.now().astimezone(UTC).year)
        out = []
        for s in items:
            body = rewrite.resource(s.resource) if s.resource is not None else None
            pseudonym = body["id"] if body else self._keys.pseudonym(s.res_type, s.res_id)
            out.append(replace(s, res_id=pseudonym, resource=body))
        return out

    # -- opening ------------------------------------------------------------------------------
    def _open(self, row: VersionRow) -> StoredResource:
        """Open a stored version and verify its MAC; raise ``IntegrityError`` on any mismatch."""
        try:
            body = open_version(self._keys, row)
        except IntegrityError:
            if self._on_integrity_failure is not None:
                self._on_integrity_failure(row.res_type, row.res_id, row.version, row.seq)
            raise
        resource = fhir_json.loads(body) if body is not None else None
        return StoredResource(
            row.res_type,
            row.res_id,
            row.version,
            row.seq,
            from_us(row.ts_us),
            row.deleted,
            resource,
        )

    def _open_or_fail(self, action: Action, row: VersionRow) -> StoredResource:
        try:
            return self._open(row)
        except IntegrityError as exc:
            raise self._fail(
                action, exc, res_type=row.res_type, res_id=row.res_id, version=row.version
            ) from None

    # -- reads ----------------------------------------------------------------------------------
    def read(self, res_type: str, res_id: str) -> StoredResource:
        """Read the current version (FHIR R4 http.html#read)."""
        self._check(Action.READ, res_type, res_id=res_id)
        with self._store.read() as conn:
            self._within(conn, Action.READ, res_type, res_id)
            row = self._store.current(conn, res_type, res_id)
        return self._disclose(Action.READ, res_type, res_id, row)

    def vread(self, res_type: str, res_id: str, version: int) -> StoredResource:
        """Read one version (FHIR R4 http.html#vread)."""
        self._check(Action.VREAD, res_type, res_id=res_id)
        with self._store.read() as conn:
            self._within(conn, Action.VREAD, res_type, res_id)
            row = self._store.version(conn, res_type, res_id, version)
        return self._disclose(Action.VREAD, res_type, res_id, row, version=version)

    def _disclose(
        self,
        action: Action,
        res_type: str,
        res_id: str,
        row: VersionRow | None,
        *,
        version: int | None = None,
    ) -> StoredResource:
        if row is None:
            code = errors.VERSION_NOT_FOUND if version is not None else errors.NOT_FOUND
            raise self._fail(action, HearthError(code), res_type=res_type, res_id=res_id)
        stored = self._open_or_fail(action, row)
        if stored.deleted:
            # A tombstone has no content to decide on: decide on the version it deleted, so
            # that "gone" is told only to someone who could have read the resource.
            self._check(action, res_type, self._last_content(stored), res_id=res_id)
            raise self._fail(
                action,
                HearthError(errors.GONE, headers={"ETag": stored.etag}),
                res_type=res_type,
                res_id=res_id,
                version=stored.version,
            )
        # The version's own content decides too: an older version may belong elsewhere.
        decision = self._check(action, res_type, stored.resource, res_id=res_id)
        stored = self._masked(stored, decision)
        self._disclosed([stored])
        self._audit.record(
            self._record(
                action,
                Outcome.SUCCESS,
                res_type=res_type,
                res_id=res_id,
                version=stored.version,
                patient=patient_of(res_type, res_id, stored.resource),
                purpose=decision.purpose,
            )
        )
        return stored

    def _last_content(self, tombstone: StoredResource) -> dict[str, Any] | None:
        """The content of the version a tombstone deleted (None if there is none)."""
        if tombstone.version < 2:
            return None
        with self._store.read() as conn:
            row = self._store.version(
                conn, tombstone.res_type, tombstone.res_id, tombstone.version - 1
            )
        if row is None:
            return None
        return self._open_or_fail(Action.READ, row).resource

    def history(
        self,
        *,
        res_type: str | None = None,
        res_id: str | None = None,
        since: datetime | None = None,
        before_seq: int | None = None,
        count: int = 50,
    ) -> HistoryResult:
        """Versions newest first (FHIR R4 http.html#history), ``count`` rows at a time.

        Rows the principal may not see are left out of the page without ending the paging; the
        total is given only for one resource's history and only when nothing was left out (a
        count would otherwise tell the caller about versions they may not see). A type's history
        is scoped in SQL by each resource's current version; each version (a tombstone by the
        content it deleted) is then decided on its own content (docs/design.md, "Access
        control"). System history needs unrestricted access.
        """
        instance = res_id is not None
        self._check(Action.HISTORY, res_type or "*", res_id=res_id)
        self._not_deidentified(Action.HISTORY, res_type)
        if res_type is None and not self.access.profile.unrestricted:
            raise self._fail(
                Action.HISTORY,
                HearthError(
                    errors.FORBIDDEN, "System history needs unrestricted access: ask for a type's."
                ),
                res_type=None,
            )
        since_us = to_us(since) if since is not None else None
        with self._store.snapshot() as conn:
            scope = None
            if instance and res_type is not None and res_id is not None:
                self._within(conn, Action.HISTORY, res_type, res_id)
            elif res_type is not None:
                scope = self.access.history_scope(res_type, t.resource_version)
            rows = self._store.history(
                conn,
                res_type=res_type,
                res_id=res_id,
                since_us=since_us,
                before_seq=before_seq,
                limit=count + 1,
                scope=scope,
            )
            # Counting a whole type's or the system's history costs a scan of it; FHIR makes
            # Bundle.total optional, so only an instance's history carries one.
            total = (
                self._store.count_history(conn, res_type=res_type, res_id=res_id, since_us=since_us)
                if res_id is not None
                else None
            )
            more = len(rows) > count
            rows = rows[:count]
            opened = [self._open_or_fail(Action.HISTORY, row) for row in rows]
            # A deletion is judged by the content it deleted: it tells the caller that record
            # existed. The same instance/type level as the call itself: a row of a type history
            # is judged as a search result (``s``), a row of an instance history as a read.
            judged = [
                replace(s, resource=self._last_content(s)) if s.deleted else s for s in opened
            ]
            decisions = self.access.decide_many(conn, Action.HISTORY, judged, instance=instance)
            written = self._store.write_actions(
                conn,
                [
                    (s.res_type, s.res_id, s.version)
                    for s, d in zip(opened, decisions, strict=True)
                    if d.allowed
                ],
            )
        page = [self._masked(s, d) for s, d in zip(opened, decisions, strict=True) if d.allowed]
        if len(page) < len(rows):
            total = None
        patients = self._disclosed(page)
        patient = patient_of(res_type, res_id, None) if res_type and res_id else None
        disclosed = [f"{s.res_type}/{s.res_id}/_history/{s.version}" for s in page]
        self._audit.record(
            self._record(
                Action.HISTORY,
                Outcome.SUCCESS,
                res_type=res_type,
                res_id=res_id,
                patient=patient,
                detail=orjson.dumps({"disclosed": disclosed}),
                patients=patients if len(patients) > 1 or patient is None else (),
            )
        )
        return HistoryResult(
            page,
            total,
            rows[-1].seq if more and rows else None,
            {key: Action(action) for key, action in written.items()},
        )

    # -- search -----------------------------------------------------------------------------------
    def _scope(self, res_type: str) -> object:
        """The principal's search scope for ``res_type`` as an exact condition (docs/design.md,
        "Access control": scoping in SQL)."""
        return self.access.scope(res_type)

    def _searcher(self, conn: Connection) -> Searcher:
        return Searcher(
            conn=conn,
            store=self._store,
            blind=self._keys.blind,
            open_row=lambda row: self._open_or_fail(Action.SEARCH, row),
            scope_for=self._scope,
            bound=self.bounds.open,
            include_bound=self.bounds.include,
        )

    def _allowed(
        self, page: list[StoredResource], conn: Connection | None = None
    ) -> list[StoredResource]:
        """The page as it may leave: each resource decided again (SQL scoped the rows; this is
        the same rule, per resource) and masked."""
        decisions = self.access.decide_many(conn, Action.SEARCH, page)
        return [self._masked(s, d) for s, d in zip(page, decisions, strict=True) if d.allowed]

    def search(
        self,
        request: SearchRequest,
        *,
        offset: int = 0,
        query_text: str = "",
        compartment: str | None = None,
    ) -> SearchPage:
        """Search (FHIR R4 search.html): one page of matches, includes and the total.

        ``compartment`` restricts the search to one patient's compartment
        (``Patient/123/Observation``). The audit entry's sealed detail holds the query and the
        resources disclosed, which are PHI.
        """
        res_type = request.res_type
        self._check(Action.SEARCH, res_type)
        deidentified = self.access.profile.deidentified
        if deidentified:
            refusal = search_refusal(
                res_type,
                request.terms,
                tuple((k.code, k.param.type if k.param else None) for k in request.sort),
                compartment,
                year=self._clock.now().astimezone(UTC).year,
            )
            if refusal is None and len(request.terms) != len(request.criteria):
                refusal = "The search's criteria could not be checked."  # fail closed
            if refusal is not None:
                raise self._fail(
                    Action.SEARCH,
                    HearthError(errors.DEIDENTIFIED_VIEW, refusal),
                    res_type=res_type,
                    detail=query_text.encode(),
                )
            if not request.sort:
                # Unsorted results come in write order, and the newest records would be the
                # last ones: a researcher who knows someone was seen today could find them.
                # Random ids carry no order.
                request = replace(request, sort=(SortKey("_id", descending=False),))
        self._unmasked_search(
            request,
            query_text=query_text,
            compartments=(res_type,) if compartment is not None else (),
            patient=compartment,
        )
        request = self._narrowed(request)
        extra = None
        if compartment is not None:
            extra = search_sql.InCompartment(frozenset({compartment}))
        try:
            with self._store.read() as conn:
                page = self._searcher(conn).run(request, offset=offset, extra=extra)
                page.matches = self._allowed(page.matches, conn)
                page.included = self._allowed(page.included, conn)
        except HearthError as error:
            if error.code is errors.INTEGRITY_FAILED:
                raise  # already audited where the version was opened
            raise self._fail(
                Action.SEARCH, error, res_type=res_type, detail=query_text.encode()
            ) from None
        self._audit_search(res_type, query_text, page, compartment)
        if deidentified:
            page.matches = self._deidentified(page.matches)
            page.included = self._deidentified(page.included)
        return page

    def everything(
        self,
        patient_id: str,
        *,
        types: list[str] | None,
        since: datetime | None,
        offset: int,
        count: int,
        query_text: str = "",
    ) -> SearchPage:
        """``Patient/[id]/$everything`` (R4 patient-operation-everything.html): the patient's
        compartment, oldest first, with the resources it references."""
        self._check(Action.SEARCH, "Patient", res_id=patient_id)
        self._check(Action.READ, "Patient", res_id=patient_id)
        self._not_deidentified(Action.SEARCH, "Patient")
        self._unmasked_search(
            SubSearch("Patient", ()),
            query_text=query_text,
            compartments=sorted(types if types is not None else definitions.resource_types()),
            patient=patient_id,
        )
        with self._store.read() as conn:
            self._within(conn, Action.READ, "Patient", patient_id)
            searcher = self._searcher(conn)
            page = searcher.compartment(
                patient_id,
                types=types,
                since_us=to_us(since) if since is not None else None,
                offset=offset,
                count=count,
            )
            filtered = types is not None or since is not None
            if (
                not page.matches
                and offset == 0
                and not (filtered and self._exists(conn, patient_id))
            ):
                raise self._fail(
                    Action.SEARCH,
                    HearthError(errors.NOT_FOUND),
                    res_type="Patient",
                    res_id=patient_id,
                )
            # Referenced resources outside the compartment obey _type and _since as well, and
            # are followed only through references the principal may read (a reference held in
            # a masked element is not followed: its target would tell what the element says).
            follow = (
                (lambda source_type, param: not self._reads_masked(source_type, param))
                if self.access.profile.masks_anything
                else None
            )
            page.included = [
                s
                for s in searcher.referenced(page.matches, follow=follow)
                if (types is None or s.res_type in types)
                and (since is None or s.last_updated >= since)
            ]
            page.matches = self._allowed(page.matches, conn)
            page.included = self._allowed(page.included, conn)
        self._audit_search("Patient", query_text, page, patient_id, operation="$everything")
        return page

    def _exists(self, conn: Connection, patient_id: str) -> bool:
        """Whether the Patient exists and is not deleted ($everything filtered to nothing)."""
        state = access_sql.current_state(conn, "Patient", patient_id)
        return state is not None and not state[1]

    def _audit_search(
        self,
        res_type: str,
        query_text: str,
        page: SearchPage,
        patient: str | None,
        operation: str | None = None,
    ) -> None:
        items = [*page.matches, *page.included]
        patients = self._disclosed(items)
        if patient is None and len(patients) == 1:
            patient = patients[0]
        disclosed = [f"{s.res_type}/{s.res_id}" for s in items]
        detail = orjson.dumps({"query": query_text, "operation": operation, "disclosed": disclosed})
        self._audit.record(
            self._record(
                Action.SEARCH,
                Outcome.SUCCESS,
                res_type=res_type,
                res_id=patient if operation else None,
                patient=patient,
                detail=detail,
                patients=patients if len(patients) > 1 or patients != (patient,) else (),
            )
        )

    # -- writes ---------------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[WriteBatch]:
        """Several writes in one transaction, all or nothing, with their audit entries.

        Successful writes are audited inside the transaction. A refusal or failure aborts the
        transaction; its audit entry is then written in a transaction of its own.
        """
        if self._deferred is not None:
            raise RuntimeError("write batches do not nest")
        deferred: list[AuditRecord] = []
        self._deferred = deferred
        batch: WriteBatch | None = None
        try:
            with self._store.write() as conn:
                # Take the writers' lock before reading anything: every read of a current
                # version inside the batch then sees the last committed write, so two writers
                # of one resource cannot both compute the same next version.
                self._store.lock_writers(conn)
                batch = WriteBatch(self, conn)
                yield batch
                batch.flush_versions()
                self._audit.append_in(conn, batch.audit_records)
                batch.flush_index()
        except Exception as exc:
            # Failures the gate refused are audited already; anything else is recorded here, so
            # that no failed write goes unaudited.
            if not (isinstance(exc, HearthError) and exc.audited):
                code = exc.code.code if isinstance(exc, HearthError) else errors.INTERNAL.code
                deferred.append(self._record("write", Outcome.ERROR, code=code))
            raise
        finally:
            self._deferred = None
            if batch is not None:
                batch.ended()
            for record in deferred:
                self._audit.record(record)

    def _single(self, op: Callable[[WriteBatch], T]) -> T:
        """One write in a transaction of its own, or in a group with concurrent ones."""
        if self._write_groups is None or self._deferred is not None:
            with self.batch() as batch:
                return op(batch)
        result: T = self._write_groups.submit(SingleWrite(self, op))
        return result

    def create(self, resource: dict[str, Any], *, res_id: str | None = None) -> StoredResource:
        return self._single(lambda batch: batch.create(resource, res_id=res_id))

    def update(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> tuple[StoredResource, bool]:
        return self._single(
            lambda batch: batch.update(res_type, res_id, resource, if_match=if_match)
        )

    def update_with(
        self,
        res_type: str,
        res_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        action: Action = Action.PATCH,
        if_match: int | None = None,
    ) -> StoredResource:
        return self._single(
            lambda batch: batch.update_with(
                res_type, res_id, change, action=action, if_match=if_match
            )
        )

    def delete(self, res_type: str, res_id: str) -> StoredResource | None:
        return self._single(lambda batch: batch.delete(res_type, res_id))

    def new_id(self) -> str:
        return str(uuid.UUID(bytes=self._random.token_bytes(16), version=4))


@dataclass(frozen=True, slots=True)
class HistoryResult:
    page: list[StoredResource]
    total: int | None
    next_before_seq: int | None
    #: The interaction that wrote each version of the page, by (type, id, version), from the
    #: write's audit entry (FHIR R4 history: ``Bundle.entry.request`` is that interaction).
    written_by: Mapping[tuple[str, str, int], Action]


class WriteBatch:
    """Writes inside one transaction of a ``RecordRepository``; see ``RecordRepository.batch``."""

    def __init__(
        self, repo: RecordRepository, conn: Connection, *, worker_chunk: int = CHUNK
    ) -> None:
        """``worker_chunk``: how many written versions go to an index worker at a time."""
        self._repo = repo
        self._conn = conn
        self.audit_records: list[AuditRecord] = []
        # Index rows wait here and are written in bulk before the batch commits, or before a
        # search inside the batch (conditional interactions) so that it sees the batch's writes.
        self._index: dict[tuple[str, str], search_sql.IndexRow | Unindexed | None] = {}
        # Resources whose first version this batch wrote and whose index rows are not flushed
        # yet: nothing of them is indexed, so flushing need not look for old rows to delete.
        self._fresh: set[tuple[str, str]] = set()
        # The version counter: its row lock is taken by the batch's first write and held to the
        # end, so later writes number their versions here and the counter is written once, at
        # the next flush (before the audit entries, which record it, and before any search).
        # A rolled-back batch returns its numbers: the sequence stays gap-free.
        self._seq: int | None = None
        self._seq_stored: int | None = None
        # Resources a loader said it will write and that had no version when it said so
        # (``expect``). The writers' lock is held for the whole batch, so only the batch's own
        # writes can change that; each write takes its resource out of the set.
        self._absent: set[tuple[str, str]] = set()
        # First versions of new resources, with their current rows, wait here and are written
        # together (``_write_first_versions``) before anything in the batch reads versions or
        # current rows: the batch's reads, searches and index flush all write them first.
        self._first: list[VersionRow] = []
        # With index workers, written versions wait here while their entries are found.
        self._workers = repo._index_workers
        self._finder = EntryFinder(self._workers, worker_chunk)
        # Versions appended so far, and whether one of them may change access facts (a care
        # team, a Consent): a write group tells from them what a refused member touched, and
        # where the group ends; the facts kept are dropped again when the transaction ends.
        self.writes = 0
        self.facts_changed = False

    def _write_first_versions(self) -> None:
        if self._first:
            pending, self._first = self._first, []
            self._repo._store.insert_first_versions(self._conn, pending)

    def expect(self, refs: Iterable[tuple[str, str]]) -> None:
        """A hint from a loader: the resources it is about to write. Their current versions
        are looked up in a few statements instead of one per write (``hearth import``)."""
        wanted = set(refs)
        self._write_first_versions()
        found = scan_sql.current_pointers_of(self._conn, wanted)
        self._absent = wanted.difference(found)

    def next_member(self, repo: RecordRepository) -> None:
        """Go on as ``repo``'s write, the next member of a write group (``run_write_group``).
        Its reads see what the members before it wrote: every read of a version or a current
        row writes the held-back first versions first, and a scope check of a resource written
        earlier in the batch writes the index rows first."""
        self._repo = repo

    def ended(self) -> None:
        """The transaction has ended, committed or not. If it wrote access facts, principals'
        facts gathered meanwhile on other connections could not see them: drop them again."""
        if self.facts_changed:
            self._repo.access.forget_facts()

    def flush_versions(self) -> None:
        """Write the held-back first versions and the version counter (inside this batch's
        transaction). The audit entries record the counter: it is written before them."""
        self._write_first_versions()
        seq = self._seq
        if seq is not None and seq != self._seq_stored:
            self._repo._store.set_seq(self._conn, VERSION_SEQ, seq)
            self._seq_stored = seq

    def flush_index(self) -> None:
        """Write the versions (``flush_versions``) and the pending index changes (inside this
        batch's transaction).

        The keys of versions whose entries a worker finds are blinded and inserted a task at
        a time, as each task is answered: the first task's rows go in while the worker still
        works on the last."""
        self.flush_versions()
        if not self._index:
            return
        pending, self._index = self._index, {}
        indexed = [key for key in pending if key not in self._fresh]
        self._fresh.difference_update(pending)
        old = search_sql.current_index_seqs(self._conn, indexed)
        search_sql.delete_index(self._conn, old)
        rows = [row for row in pending.values() if isinstance(row, search_sql.IndexRow)]
        search_sql.insert_hashes(self._conn, rows)
        keys = self._repo._keys
        for items in self._finder.found():
            found = []
            for item in items:
                if pending.get((item.res_type, item.res_id)) is not item:
                    # Replaced by a later write of the resource in this batch. Writes flush
                    # first (``_in_scope_current``), so this does not happen; if it ever did,
                    # the stale entries must not be indexed.
                    continue
                assert item.found is not None  # noqa: S101 - found() finds every item it yields
                found.append(
                    _blinded(keys, item.seq, item.res_type, item.res_id, item.ts_us, item.found)
                )
            search_sql.insert_hashes(self._conn, found)
            rows += found
        search_sql.insert_index(self._conn, rows, hashes=False)

    def find(self, sub: SubSearch, limit: int = 2) -> list[str]:
        """Ids of up to ``limit`` resources matching ``sub``, as this batch sees them (for
        conditional create, update, patch and delete and conditional references)."""
        repo = self._repo
        repo._check(Action.SEARCH, sub.res_type)
        repo._not_deidentified(Action.SEARCH, sub.res_type)
        repo._unmasked_search(sub)
        self.flush_index()
        return [res_id for _seq, res_id in repo._searcher(self._conn).matching_ids(sub, limit)]

    def current(self, res_type: str, res_id: str) -> StoredResource | None:
        """The current version as this batch sees it (for preconditions), or None. Nothing is
        disclosed: callers use it to decide, and ``read`` to return a resource."""
        return self._current(Action.READ, res_type, res_id)

    def read(self, res_type: str, res_id: str) -> StoredResource:
        """Read inside the batch (a GET entry of a transaction), decided, masked and audited
        like ``RecordRepository.read``."""
        repo = self._repo
        repo._check(Action.READ, res_type, res_id=res_id)
        current = self._in_scope_current(Action.READ, res_type, res_id)
        if current is None:
            raise repo._fail(
                Action.READ, HearthError(errors.NOT_FOUND), res_type=res_type, res_id=res_id
            )
        if current.deleted:
            raise repo._fail(
                Action.READ, HearthError(errors.GONE), res_type=res_type, res_id=res_id
            )
        decision = repo._check(
            Action.READ, res_type, current.resource, res_id=res_id, conn=self._conn
        )
        return self._read_out(current, decision)

    def search(self, request: SearchRequest, *, query_text: str = "") -> SearchPage:
        """Search inside the batch (a GET search entry of a transaction), scoped in SQL like
        ``RecordRepository.search`` and audited with the batch."""
        repo = self._repo
        repo._check(Action.SEARCH, request.res_type)
        repo._not_deidentified(Action.SEARCH, request.res_type)
        repo._unmasked_search(request, query_text=query_text)
        request = repo._narrowed(request)
        self.flush_index()
        page = repo._searcher(self._conn).run(request, offset=0)
        page.matches = repo._allowed(page.matches, self._conn)
        page.included = repo._allowed(page.included, self._conn)
        items = [*page.matches, *page.included]
        patients = repo._disclosed(items)
        disclosed = [f"{s.res_type}/{s.res_id}" for s in items]
        self.audit_records.append(
            repo._record(
                Action.SEARCH,
                Outcome.SUCCESS,
                res_type=request.res_type,
                patient=patients[0] if len(patients) == 1 else None,
                patients=patients if len(patients) > 1 else (),
                detail=orjson.dumps({"query": query_text, "disclosed": disclosed}),
            )
        )
        return page

    def _current(self, action: Action, res_type: str, res_id: str) -> StoredResource | None:
        repo = self._repo
        self._write_first_versions()
        row = repo._store.current(self._conn, res_type, res_id)
        return None if row is None else repo._open_or_fail(action, row)

    def _append(
        self,
        action: Action,
        res_type: str,
        res_id: str,
        version: int,
        resource: dict[str, Any] | None,
        prior: Mapping[str, Any] | None = None,
    ) -> StoredResource:
        """Append a version; ``prior`` is the content of the version it follows, if any."""
        repo = self._repo
        if repo.access.profile.deidentified:
            # Nothing is written through a de-identified view (its roles hold .s only; this
            # holds whatever roles say): a write could plant a real id and read its pseudonym.
            raise repo._fail(
                action, HearthError(errors.DEIDENTIFIED_VIEW), res_type=res_type, res_id=res_id
            )
        if res_type in FACT_TYPES:
            # Every write passes here (create, update, patch, delete, in or out of a bundle,
            # conditional or not), after ``_check`` allowed the interaction: it may still not
            # state a relationship that widens the principal's own access, nor any relationship
            # under a break-the-glass grant.
            repo._relationships(self._conn, action, res_type, res_id, resource, prior)
        self.writes += 1
        keys = repo._keys
        now = repo._clock.now()
        ts_us = to_us(now)
        if self._seq is None:
            seq = self._seq_stored = repo._store.next_seq(self._conn, VERSION_SEQ)
            # Holding the version counter's lock, which key changes take too: reload the key
            # ring if keys changed, so nothing is sealed under a key retired meanwhile
            # (docs/design.md). Keys cannot change again before this batch ends.
            repo._keys_current(self._conn)
        else:
            seq = self._seq + 1
        self._seq = seq
        body: bytes | None = None
        sealed: bytes | None = None
        if resource is not None:
            meta = {
                k: v
                for k, v in (resource.get("meta") or {}).items()
                if k not in ("versionId", "lastUpdated")
            }
            meta["versionId"] = str(version)
            meta["lastUpdated"] = instant(now)
            resource = {**resource, "id": res_id, "meta": meta}
            body = fhir_json.dumps(resource)
            sealed = keys.seal_resource(
                body, aad=ResourceRef(res_type, res_id).aad(version), random=repo._random
            )
        deleted = resource is None
        self._absent.discard((res_type, res_id))
        if version == 1:
            self._fresh.add((res_type, res_id))
        if res_type in FACT_TYPES and (
            resource is None or res_type not in _LINK_TYPES or _refers(resource) or _refers(prior)
        ):
            # It may change what principals act as, are linked to or are denied. (A version of
            # a link type without any reference, following none or one without any, states and
            # ends no care relationship.)
            repo.access.forget_facts()
            self.facts_changed = True
        ref = (res_type, res_id)
        if resource is None:
            self._index[ref] = None
        elif self._workers is None:
            self._index[ref] = index_row(keys, seq, res_type, res_id, ts_us, resource)
        else:
            # Found later from the sealed bytes, beside this batch's next writes. A copy: the
            # serialiser's buffer is far larger than the body (128 KiB for a 10 KB one), and
            # the batch keeps the body until its entries are found.
            assert body is not None  # noqa: S101 - set above for every resource
            item = Unindexed(seq, res_type, res_id, ts_us, bytes(memoryview(body)))
            self._index[ref] = item
            self._finder.add(item)
        mac_key_id, tag = keys.mac(
            seq=seq,
            res_type=res_type,
            res_id=res_id,
            version=version,
            deleted=deleted,
            ts_us=ts_us,
            body=body,
        )
        row = VersionRow(
            seq=seq,
            res_type=res_type,
            res_id=res_id,
            version=version,
            ts_us=ts_us,
            deleted=deleted,
            key_id=sealed_key_id(sealed) if sealed is not None else None,
            body=sealed,
            mac_key_id=mac_key_id,
            mac=tag,
        )
        if version == 1:
            self._first.append(row)
        else:
            self._write_first_versions()  # versions reach the table in sequence order
            repo._store.insert_version(self._conn, row)
        self.audit_records.append(
            repo._record(
                action,
                Outcome.SUCCESS,
                res_type=res_type,
                res_id=res_id,
                version=version,
                patient=patient_of(res_type, res_id, resource),
            )
        )
        return StoredResource(res_type, res_id, version, seq, from_us(ts_us), deleted, resource)

    def _guard(
        self,
        action: Action,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        stored: Mapping[str, Any] | None,
        masks: tuple[str, ...],
    ) -> dict[str, Any]:
        """What a write may store (minimum necessary, FHIR-SL-03): a body that sets an element
        the role may not see is refused; the stored version's masked elements are carried over,
        and so are its restricting labels unless the principal manages labels."""
        repo = self._repo
        resource = strip_redacted(resource)
        if masks and masked_present(resource, masks):
            raise repo._fail(
                action, HearthError(errors.MASKED_FIELD), res_type=res_type, res_id=res_id
            )
        if stored is None:
            return resource
        if masks:
            resource = restore_masked(resource, stored, masks)
        if not repo.may(Capability.LABELS_MANAGE).allowed:
            resource = carry_restricting(resource, stored)
        return resource

    def _returned(
        self, stored: StoredResource, write: Decision, masks: tuple[str, ...] = ()
    ) -> StoredResource:
        """The version a write stored (or found unchanged), as it goes back to the principal:
        a write's answer discloses it as a read does, so it is masked as a read of it would be,
        with the same ``REDACTED`` mark (FHIR-SL-03). The masks are those of the write's
        decision on the new content (``write``) and on the version it replaced (``masks``),
        and those of a read decision on the new content when the principal may read it (with
        several roles, the role that decides a read may mask more than the one that decided
        the write). Without masks anywhere in its roles, nothing is decided again."""
        repo = self._repo
        if stored.resource is None or not repo.access.profile.masks_anything:
            return stored
        hidden = {*write.masks, *masks}
        read = repo.access.decide(
            Action.READ, stored.res_type, stored.resource, res_id=stored.res_id, conn=self._conn
        )
        if read.allowed:
            hidden.update(read.masks)
        if not hidden:
            return stored
        return replace(stored, resource=apply_masks(stored.resource, sorted(hidden)))

    def matched(self, res_type: str, res_id: str) -> StoredResource | None:
        """The current version of the resource a conditional create's condition matched (R4
        http.html#ccreate: the answer is that resource), as it may leave: decided, masked and
        audited as a read of it. One the principal may not read (the condition searched their
        search scope, and a read may be granted on fewer rows) goes back without its body, as
        does a deletion; None when there is no such resource."""
        repo = self._repo
        current = self._current(Action.READ, res_type, res_id)
        if current is None or current.resource is None:
            return current
        decision = repo.access.decide(
            Action.READ, res_type, current.resource, res_id=res_id, conn=self._conn
        )
        if not decision.allowed:
            return replace(current, resource=None)
        return self._read_out(current, decision)

    def _read_out(self, current: StoredResource, decision: Decision) -> StoredResource:
        """``current`` as a read allowed by ``decision`` hands it out: masked, told to the
        snooping monitor, and audited with the batch."""
        repo = self._repo
        current = repo._masked(current, decision)
        repo._disclosed([current])
        self.audit_records.append(
            repo._record(
                Action.READ,
                Outcome.SUCCESS,
                res_type=current.res_type,
                res_id=current.res_id,
                version=current.version,
                patient=patient_of(current.res_type, current.res_id, current.resource),
                purpose=decision.purpose,
            )
        )
        return current

    def _in_scope_current(
        self, action: Action, res_type: str, res_id: str
    ) -> StoredResource | None:
        """The current version, refused before it is fetched when it exists outside the
        principal's scope; None when there is none."""
        repo = self._repo
        if (res_type, res_id) in self._absent:
            return None
        self._write_first_versions()
        state = access_sql.current_state(self._conn, res_type, res_id)
        if state is None:
            return None
        if not state[1]:  # not deleted: it must be within the principal's scope
            if (res_type, res_id) in self._index:
                self.flush_index()  # scope is decided on its index rows: this batch's own
            repo._within(self._conn, action, res_type, res_id)
        return self._current(action, res_type, res_id)

    def create(self, resource: dict[str, Any], *, res_id: str | None = None) -> StoredResource:
        """Create (FHIR R4 http.html#create): the server assigns a random id."""
        repo = self._repo
        res_type = str(resource["resourceType"])
        repo._check(Action.CREATE, res_type)
        new_id = res_id or repo.new_id()
        decision = repo._check(
            Action.CREATE, res_type, {**resource, "id": new_id}, res_id=new_id, conn=self._conn
        )
        resource = self._guard(Action.CREATE, res_type, new_id, resource, None, decision.masks)
        if res_id is not None and (res_type, res_id) not in self._absent:
            self._write_first_versions()
            exists = repo._store.current_version_number(self._conn, res_type, res_id)
        else:
            exists = None
        if exists:
            raise repo._fail(
                Action.CREATE, HearthError(errors.CONFLICT), res_type=res_type, res_id=res_id
            )
        return self._returned(self._append(Action.CREATE, res_type, new_id, 1, resource), decision)

    def update(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> tuple[StoredResource, bool]:
        """Update, or update-as-create with a client id (FHIR R4 http.html#update)."""
        stored, created = self._update(res_type, res_id, resource, if_match=if_match)
        return stored, bool(created)

    def update_if_changed(
        self, res_type: str, res_id: str, resource: dict[str, Any]
    ) -> tuple[StoredResource, bool | None]:
        """Update or update-as-create for loaders (``hearth import``): when the current version
        already holds this content (``meta.versionId`` and ``meta.lastUpdated`` aside), nothing
        is written and the second item is None, so loading a file again adds no versions."""
        return self._update(res_type, res_id, resource, if_match=None, skip_unchanged=True)

    def _update(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None,
        skip_unchanged: bool = False,
    ) -> tuple[StoredResource, bool | None]:
        repo = self._repo
        repo._check(Action.UPDATE, res_type, res_id=res_id)
        current = self._in_scope_current(Action.UPDATE, res_type, res_id)
        if if_match is not None and (current is None or current.version != if_match):
            raise repo._fail(
                Action.UPDATE,
                HearthError(errors.VERSION_CONFLICT),
                res_type=res_type,
                res_id=res_id,
            )
        if current is None:
            repo._check(Action.CREATE, res_type)
            decision = repo._check(
                Action.CREATE, res_type, resource, res_id=res_id, conn=self._conn
            )
            resource = self._guard(Action.CREATE, res_type, res_id, resource, None, decision.masks)
            # Decided as a create, audited as the interaction the client made (R4 http.html
            # #update: an update that creates is still an update), so history shows PUT.
            created = self._append(Action.UPDATE, res_type, res_id, 1, resource)
            return self._returned(created, decision), True
        masks: tuple[str, ...] = ()
        if current.resource is not None:
            old = repo._check(
                Action.UPDATE, res_type, current.resource, res_id=res_id, conn=self._conn
            )
            masks = old.masks
        resource = self._guard(Action.UPDATE, res_type, res_id, resource, current.resource, masks)
        new = repo._check(Action.UPDATE, res_type, resource, res_id=res_id, conn=self._conn)
        if skip_unchanged and _same_content(current.resource, resource):
            return self._returned(current, new, masks), None
        version = current.version + 1
        updated = self._append(Action.UPDATE, res_type, res_id, version, resource, current.resource)
        return self._returned(updated, new, masks), False

    def update_with(
        self,
        res_type: str,
        res_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        action: Action = Action.PATCH,
        if_match: int | None = None,
    ) -> StoredResource:
        """Read-modify-write under the writer lock (JSON Patch, FHIR R4 http.html#patch).

        ``change`` sees the resource as the principal may (masked elements removed), so a patch
        can neither read nor test a masked element; those are put back afterwards."""
        repo = self._repo
        repo._check(action, res_type, res_id=res_id)
        current = self._in_scope_current(action, res_type, res_id)
        if current is None:
            raise repo._fail(
                action, HearthError(errors.NOT_FOUND), res_type=res_type, res_id=res_id
            )
        if current.resource is None:
            raise repo._fail(action, HearthError(errors.GONE), res_type=res_type, res_id=res_id)
        if if_match is not None and current.version != if_match:
            raise repo._fail(
                action, HearthError(errors.VERSION_CONFLICT), res_type=res_type, res_id=res_id
            )
        decision = repo._check(action, res_type, current.resource, res_id=res_id, conn=self._conn)
        view = apply_masks(current.resource, decision.masks) if decision.masks else current.resource
        try:
            changed = change(view)
        except HearthError as error:
            raise repo._fail(action, error, res_type=res_type, res_id=res_id) from None
        changed = self._guard(action, res_type, res_id, changed, current.resource, decision.masks)
        new = repo._check(action, res_type, changed, res_id=res_id, conn=self._conn)
        patched = self._append(
            action, res_type, res_id, current.version + 1, changed, current.resource
        )
        return self._returned(patched, new, decision.masks)

    def delete(self, res_type: str, res_id: str) -> StoredResource | None:
        """Delete: append a tombstone version (FHIR R4 http.html#delete). Idempotent."""
        repo = self._repo
        repo._check(Action.DELETE, res_type, res_id=res_id)
        current = self._in_scope_current(Action.DELETE, res_type, res_id)
        if current is None or current.deleted:
            self.audit_records.append(
                repo._record(Action.DELETE, Outcome.NOT_FOUND, res_type=res_type, res_id=res_id)
            )
            return None
        repo._check(Action.DELETE, res_type, current.resource, res_id=res_id, conn=self._conn)
        stored = self._append(
            Action.DELETE, res_type, res_id, current.version + 1, None, current.resource
        )
        return replace(stored, resource=None)


# -- group commit for single writes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SingleWrite:
    """One create, update, patch or delete, queued for a write group by ``repo``."""

    repo: RecordRepository
    op: Callable[[WriteBatch], Any]


#: A write group hands its versions to an index worker a few at a time: its members arrive one
#: by one, and the leader goes on with the next while a worker finds the entries.
_GROUP_WORKER_CHUNK = 4


class _Regroup(Exception):
    """A member failed after it had written, or the group failed before its commit (an index
    flush, the audit append): nothing of it is stored, so each member runs again alone."""


class _Unanswerable(Exception):
    """The group failed where running its members again could not help or could do harm: it
    could not begin (the writers' lock is not to be had), or its commit failed, which may have
    made it durable all the same. The members that wrote fail with it, as each would have
    alone; ``answers`` are those that ran (none if it could not begin)."""

    def __init__(self, cause: BaseException, answers: list[Answer]) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause
        self.answers = answers


Answer = tuple[GroupMember[SingleWrite], Any, HearthError | None, list[AuditRecord]]


def run_write_group(members: list[GroupMember[SingleWrite]]) -> None:
    """Run ``members`` (each a single write of its own principal) in one transaction and
    answer each (``hearth.storage.write_groups``).

    Every member is decided, sealed, indexed and audited as its own write, in the order queued,
    as if each had its own transaction in that order: its reads see the versions written
    before it. A write that may change access facts (``FACT_TYPES``) ends its group: the members
    after it run in the next transaction, after its commit, since a principal's facts are read
    on connections of their own. A member refused before it wrote anything (a denial, a stale
    ``If-Match``, a missing resource) is answered with its error, its audit entry written after
    the group ends, and the others go on. A member failing after it wrote, or a failed index
    flush or audit append, rolls the group back and runs every member again alone, in a
    transaction of its own: a write never fails because another in its group did. A group that
    cannot begin fails every member; a failed commit fails the members that wrote (refused ones
    keep their refusal) and the rest go on in the next transaction (``_Unanswerable``).
    """
    while len(members) > 1:
        try:
            answers, members = _together(members)
        except _Regroup as regroup:
            # Only the exception's type: its text may quote SQL parameters.
            log.warning("a write group ran again one write at a time after %s", regroup)
            break
        except _Unanswerable as failed:
            log.error("a write group failed: %s", failed)
            if not failed.answers:  # it could not begin: alone, each would wait as long again
                for member in members:
                    _fail_member(member, failed.cause)
                return
            for member, _result, error, refused in failed.answers:
                if error is None:
                    _fail_member(member, failed.cause)
                else:  # refused before the commit, whatever became of it
                    member.finish(None, error, after=_audit_later(member.work.repo, refused))
            members = members[len(failed.answers) :]
            continue
        for member, result, error, refused in answers:
            member.finish(result, error, after=_audit_later(member.work.repo, refused))
    for member in members:
        member.run(_alone, member)


def _together(
    members: list[GroupMember[SingleWrite]],
) -> tuple[list[Answer], list[GroupMember[SingleWrite]]]:
    """Run members in one transaction up to the first that changes access facts; the answers
    of those run (once committed), and the members left for the next transaction."""
    first = members[0].work.repo
    answers: list[Answer] = []
    began = committing = False
    batch: WriteBatch | None = None
    try:
        with first._store.write() as conn:
            first._store.lock_writers(conn)
            began = True
            batch = WriteBatch(first, conn, worker_chunk=_GROUP_WORKER_CHUNK)
            for member in members:
                if answers:
                    batch.next_member(member.work.repo)
                answers.append(_member(batch, member))
                if batch.facts_changed:
                    break
            # The audit entries go in first: the last task of the index worker is still running.
            batch.flush_versions()
            first._audit.append_in(conn, batch.audit_records)
            batch.flush_index()
            committing = True
    except _Regroup:
        raise
    except Exception as exc:
        if not began or committing:
            raise _Unanswerable(exc, answers if committing else []) from exc
        raise _Regroup(type(exc).__name__) from exc
    finally:
        if batch is not None:
            batch.ended()
    return answers, members[len(answers) :]


def _member(batch: WriteBatch, member: GroupMember[SingleWrite]) -> Answer:
    """Run one member inside the group's transaction."""
    repo = member.work.repo
    refused: list[AuditRecord] = []
    repo._deferred = refused
    before = batch.writes
    try:
        result = member.run(member.work.op, batch)
    except HearthError as error:
        if batch.writes != before:
            raise _Regroup(type(error).__name__) from None
        if not error.audited:
            refused.append(repo._record("write", Outcome.ERROR, code=error.code.code))
            error.audited = True
        return (member, None, error, refused)
    finally:
        repo._deferred = None
    return (member, result, None, refused)


def _fail_member(member: GroupMember[SingleWrite], cause: BaseException) -> None:
    """Fail a member for a group failure with an error of its own (each caller raises its own
    object), audited as a failed write."""
    failure = HearthError(cause.code if isinstance(cause, HearthError) else errors.INTERNAL)
    failure.audited = True
    record = member.work.repo._record("write", Outcome.ERROR, code=failure.code.code)
    member.finish(error=failure, after=_audit_later(member.work.repo, [record]))


def _alone(member: GroupMember[SingleWrite]) -> None:
    """Run one member in a transaction of its own (``RecordRepository.batch``), in its caller's
    context, and answer it."""
    repo, op = member.work.repo, member.work.op
    try:
        with repo.batch() as batch:
            result = op(batch)
    except Exception as exc:  # noqa: BLE001 - handed to the member's caller, who raises it
        member.finish(error=exc)
    else:
        member.finish(result)


def _audit_later(repo: RecordRepository, records: list[AuditRecord]) -> Callable[[], None] | None:
    """The audit entries of a member refused inside a group, written by the member's caller
    once the group's transaction has ended (like ``RecordRepository.batch``)."""
    if not records:
        return None

    def write() -> None:
        for record in records:
            repo._audit.record(record)

    return write


def _refers(value: Any) -> bool:
    """Whether a resource holds a reference anywhere (conservatively: any ``reference`` key)."""
    if isinstance(value, dict):
        return "reference" in value or any(_refers(v) for v in value.values())
    if isinstance(value, list):
        return any(_refers(v) for v in value)
    return False


def _content(resource: Mapping[str, Any]) -> bytes:
    """A resource's content for comparison: keys sorted, the server's version stamps left out."""
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    plain = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        plain["meta"] = meta
    return fhir_json.dumps(plain, option=orjson.OPT_SORT_KEYS)


def _same_content(stored: Mapping[str, Any] | None, resource: Mapping[str, Any]) -> bool:
    return stored is not None and _content(stored) == _content(resource)
