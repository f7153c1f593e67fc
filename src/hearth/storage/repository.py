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

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection

from hearth.audit import AuditRecord
from hearth.crypto import KeyRing
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
from hearth.fhir import jsonbody as fhir_json
from hearth.fhir.search import ALL, SearchRequest, SubSearch, index_resource
from hearth.security import AccessPolicy, Decision, Denial, SearchScopePolicy
from hearth.storage.audit import AuditTrail
from hearth.storage.searching import Searcher, SearchPage
from hearth.storage.sql import search as search_sql
from hearth.storage.sql.store import VERSION_SEQ, SqlStore, VersionRow

__all__ = [
    "HistoryResult",
    "IntegrityObserver",
    "RecordRepository",
    "SearchBounds",
    "WriteBatch",
    "from_us",
    "index_row",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Called with the damaged row's identity when a stored version fails to open or verify.
IntegrityObserver = Callable[[str, str, int, int], None]


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


@dataclass(frozen=True, slots=True)
class SearchBounds:
    """How many resources one search may open (to finish inexact criteria or sort on a sealed
    field) and include; see docs/design.md, "Search over sealed data"."""

    open: int = 1000
    include: int = 1000


def index_row(
    keys: KeyRing, seq: int, res_type: str, res_id: str, ts_us: int, resource: dict[str, Any]
) -> search_sql.IndexRow:
    """The search index rows of one current version: blind keys, clear references, compartment."""
    entries = index_resource(resource)
    return search_sql.IndexRow(
        seq=seq,
        res_type=res_type,
        res_id=res_id,
        ts_us=ts_us,
        hashes=keys.blind_many(entries.keys),
        refs=entries.refs,
        patients=entries.patients,
    )


class RecordRepository:
    """Resources, seen and changed by one principal. Build it only through ``wiring``."""

    def __init__(
        self,
        *,
        principal: Principal,
        policy: AccessPolicy,
        store: SqlStore,
        keyring: KeyRing,
        audit: AuditTrail,
        clock: Clock,
        random: Random,
        request_id: str | None = None,
        on_integrity_failure: IntegrityObserver | None = None,
        bounds: SearchBounds | None = None,
    ) -> None:
        self.principal = principal
        self.bounds = bounds or SearchBounds()
        self._policy = policy
        self._store = store
        self._keys = keyring
        self._audit = audit
        self._clock = clock
        self._random = random
        self._request = request_id
        self._on_integrity_failure = on_integrity_failure
        # Inside a write batch the writer lock is held, so failures cannot be audited in a
        # transaction of their own until it ends; they wait here (see ``batch``).
        self._deferred: list[AuditRecord] | None = None

    # -- audit and decisions ----------------------------------------------------------------
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
            purpose=p.purpose_of_use,
            source=p.source,
            session=p.session,
            request=self._request,
            code=code,
            detail=detail,
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
    ) -> HearthError:
        """Audit a refused or failed call in its own transaction, then hand back the error."""
        if outcome is None:
            outcome = {
                errors.FORBIDDEN.code: Outcome.DENIED,
                errors.NOT_FOUND.code: Outcome.NOT_FOUND,
                errors.GONE.code: Outcome.NOT_FOUND,
                errors.VERSION_NOT_FOUND.code: Outcome.NOT_FOUND,
            }.get(error.code.code, Outcome.INVALID if error.status < 500 else Outcome.ERROR)
        record = self._record(
            action,
            outcome,
            res_type=res_type,
            res_id=res_id,
            version=version,
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
    ) -> None:
        """Ask the policy; on deny, audit the denial and raise (403, or 404 when out of scope)."""
        decision: Decision = self._policy.decide(
            self.principal, action, res_type, resource, res_id=res_id
        )
        if decision.allowed:
            return
        if decision.denial is Denial.OUT_OF_SCOPE and not action.is_write:
            error = HearthError(errors.NOT_FOUND)
            raise self._fail(
                action, error, res_type=res_type, res_id=res_id, outcome=Outcome.DENIED
            )
        raise self._fail(action, HearthError(errors.FORBIDDEN), res_type=res_type, res_id=res_id)

    # -- opening ------------------------------------------------------------------------------
    def _open(self, row: VersionRow) -> StoredResource:
        """Open a stored version and verify its MAC; raise ``IntegrityError`` on any mismatch."""
        body: bytes | None = None
        try:
            if not row.deleted:
                if row.body is None:
                    raise IntegrityError()
                body = self._keys.open(
                    row.body, aad=ResourceRef(row.res_type, row.res_id).aad(row.version)
                )
            self._keys.verify_mac(
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
            row = self._store.current(conn, res_type, res_id)
        return self._disclose(Action.READ, res_type, res_id, row)

    def vread(self, res_type: str, res_id: str, version: int) -> StoredResource:
        """Read one version (FHIR R4 http.html#vread)."""
        self._check(Action.VREAD, res_type, res_id=res_id)
        with self._store.read() as conn:
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
        self._check(action, res_type, stored.resource, res_id=res_id)
        self._audit.record(
            self._record(
                action,
                Outcome.SUCCESS,
                res_type=res_type,
                res_id=res_id,
                version=stored.version,
                patient=patient_of(res_type, res_id, stored.resource),
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

        Rows the policy does not allow are left out of the page without ending the paging; the
        total is given only for one resource's history and only when nothing was left out (a
        count would otherwise tell the caller about versions they may not see).
        """
        self._check(Action.HISTORY, res_type or "*", res_id=res_id)
        since_us = to_us(since) if since is not None else None
        with self._store.snapshot() as conn:
            rows = self._store.history(
                conn,
                res_type=res_type,
                res_id=res_id,
                since_us=since_us,
                before_seq=before_seq,
                limit=count + 1,
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
        page: list[StoredResource] = []
        for row in rows:
            stored = self._open_or_fail(Action.HISTORY, row)
            # The same instance/type level as the call itself: a row of a type history is
            # judged as a search result (``s``), a row of an instance history as a read (``r``).
            content = stored.resource if not stored.deleted else self._last_content(stored)
            decision = self._policy.decide(
                self.principal, Action.HISTORY, row.res_type, content, res_id=res_id
            )
            if decision.allowed:
                page.append(stored)
        if len(page) < len(rows):
            total = None
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
            )
        )
        return HistoryResult(page, total, rows[-1].seq if more and rows else None)

    # -- search -----------------------------------------------------------------------------------
    def _scope(self, res_type: str) -> object:
        """The policy's search scope for ``res_type`` as an exact condition (docs/design.md)."""
        policy = self._policy
        if not isinstance(policy, SearchScopePolicy):
            return ALL
        scope = policy.search_scope(self.principal, res_type)
        if scope.patients is None:
            return ALL
        return search_sql.InCompartment(scope.patients)

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

    def _allowed(self, page: list[StoredResource]) -> list[StoredResource]:
        out = []
        for stored in page:
            decision = self._policy.decide(
                self.principal, Action.SEARCH, stored.res_type, stored.resource
            )
            if decision.allowed:
                out.append(stored)
        return out

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
        extra = None
        if compartment is not None:
            extra = search_sql.InCompartment(frozenset({compartment}))
        try:
            with self._store.read() as conn:
                page = self._searcher(conn).run(request, offset=offset, extra=extra)
        except HearthError as error:
            if error.code is errors.INTEGRITY_FAILED:
                raise  # already audited where the version was opened
            raise self._fail(
                Action.SEARCH, error, res_type=res_type, detail=query_text.encode()
            ) from None
        page.matches = self._allowed(page.matches)
        page.included = self._allowed(page.included)
        self._audit_search(res_type, query_text, page, compartment)
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
        with self._store.read() as conn:
            searcher = self._searcher(conn)
            page = searcher.compartment(
                patient_id,
                types=types,
                since_us=to_us(since) if since is not None else None,
                offset=offset,
                count=count,
            )
            if not page.matches and offset == 0:
                raise self._fail(
                    Action.SEARCH,
                    HearthError(errors.NOT_FOUND),
                    res_type="Patient",
                    res_id=patient_id,
                )
            page.included = searcher.referenced(page.matches)
        page.matches = self._allowed(page.matches)
        page.included = self._allowed(page.included)
        self._audit_search("Patient", query_text, page, patient_id, operation="$everything")
        return page

    def _audit_search(
        self,
        res_type: str,
        query_text: str,
        page: SearchPage,
        patient: str | None,
        operation: str | None = None,
    ) -> None:
        disclosed = [f"{s.res_type}/{s.res_id}" for s in (*page.matches, *page.included)]
        detail = orjson.dumps({"query": query_text, "operation": operation, "disclosed": disclosed})
        self._audit.record(
            self._record(
                Action.SEARCH,
                Outcome.SUCCESS,
                res_type=res_type,
                res_id=patient if operation else None,
                patient=patient,
                detail=detail,
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
        try:
            with self._store.write() as conn:
                # Take the writers' lock before reading anything: every read of a current
                # version inside the batch then sees the last committed write, so two writers
                # of one resource cannot both compute the same next version.
                self._store.lock_writers(conn)
                batch = WriteBatch(self, conn)
                yield batch
                batch.flush_index()
                self._audit.append_in(conn, batch.audit_records)
        except Exception as exc:
            # Failures the gate refused are audited already; anything else is recorded here, so
            # that no failed write goes unaudited.
            if not (isinstance(exc, HearthError) and exc.audited):
                code = exc.code.code if isinstance(exc, HearthError) else errors.INTERNAL.code
                deferred.append(self._record("write", Outcome.ERROR, code=code))
            raise
        finally:
            self._deferred = None
            for record in deferred:
                self._audit.record(record)

    def create(self, resource: dict[str, Any], *, res_id: str | None = None) -> StoredResource:
        with self.batch() as batch:
            return batch.create(resource, res_id=res_id)

    def update(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> tuple[StoredResource, bool]:
        with self.batch() as batch:
            return batch.update(res_type, res_id, resource, if_match=if_match)

    def update_with(
        self,
        res_type: str,
        res_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        action: Action = Action.PATCH,
        if_match: int | None = None,
    ) -> StoredResource:
        with self.batch() as batch:
            return batch.update_with(res_type, res_id, change, action=action, if_match=if_match)

    def delete(self, res_type: str, res_id: str) -> StoredResource | None:
        with self.batch() as batch:
            return batch.delete(res_type, res_id)

    def new_id(self) -> str:
        return str(uuid.UUID(bytes=self._random.token_bytes(16), version=4))


@dataclass(frozen=True, slots=True)
class HistoryResult:
    page: list[StoredResource]
    total: int | None
    next_before_seq: int | None


class WriteBatch:
    """Writes inside one transaction of a ``RecordRepository``; see ``RecordRepository.batch``."""

    def __init__(self, repo: RecordRepository, conn: Connection) -> None:
        self._repo = repo
        self._conn = conn
        self.audit_records: list[AuditRecord] = []
        # Index rows wait here and are written in bulk before the batch commits, or before a
        # search inside the batch (conditional interactions) so that it sees the batch's writes.
        self._index: dict[tuple[str, str], search_sql.IndexRow | None] = {}

    def flush_index(self) -> None:
        """Write the pending index changes (inside this batch's transaction)."""
        if not self._index:
            return
        pending, self._index = self._index, {}
        old = search_sql.current_index_seqs(self._conn, list(pending))
        search_sql.delete_index(self._conn, old)
        search_sql.insert_index(self._conn, [row for row in pending.values() if row is not None])

    def find(self, sub: SubSearch, limit: int = 2) -> list[str]:
        """Ids of up to ``limit`` resources matching ``sub``, as this batch sees them (for
        conditional create, update, patch and delete and conditional references)."""
        repo = self._repo
        repo._check(Action.SEARCH, sub.res_type)
        self.flush_index()
        return [res_id for _seq, res_id in repo._searcher(self._conn).matching_ids(sub, limit)]

    def current(self, res_type: str, res_id: str) -> StoredResource | None:
        """The current version as this batch sees it (for preconditions), or None. Nothing is
        disclosed: callers use it to decide, and ``read`` to return a resource."""
        return self._current(Action.READ, res_type, res_id)

    def read(self, res_type: str, res_id: str) -> StoredResource:
        """Read inside the batch (a GET entry of a transaction), decided and audited."""
        repo = self._repo
        repo._check(Action.READ, res_type, res_id=res_id)
        current = self._current(Action.READ, res_type, res_id)
        if current is None:
            raise repo._fail(
                Action.READ, HearthError(errors.NOT_FOUND), res_type=res_type, res_id=res_id
            )
        if current.deleted:
            raise repo._fail(
                Action.READ, HearthError(errors.GONE), res_type=res_type, res_id=res_id
            )
        repo._check(Action.READ, res_type, current.resource, res_id=res_id)
        self.audit_records.append(
            repo._record(
                Action.READ,
                Outcome.SUCCESS,
                res_type=res_type,
                res_id=res_id,
                version=current.version,
                patient=patient_of(res_type, res_id, current.resource),
            )
        )
        return current

    def search(self, request: SearchRequest, *, query_text: str = "") -> SearchPage:
        """Search inside the batch (a GET search entry of a transaction), audited with it."""
        repo = self._repo
        repo._check(Action.SEARCH, request.res_type)
        self.flush_index()
        page = repo._searcher(self._conn).run(request, offset=0)
        page.matches = repo._allowed(page.matches)
        page.included = repo._allowed(page.included)
        disclosed = [f"{s.res_type}/{s.res_id}" for s in (*page.matches, *page.included)]
        self.audit_records.append(
            repo._record(
                Action.SEARCH,
                Outcome.SUCCESS,
                res_type=request.res_type,
                detail=orjson.dumps({"query": query_text, "disclosed": disclosed}),
            )
        )
        return page

    def _current(self, action: Action, res_type: str, res_id: str) -> StoredResource | None:
        repo = self._repo
        row = repo._store.current(self._conn, res_type, res_id)
        return None if row is None else repo._open_or_fail(action, row)

    def _append(
        self,
        action: Action,
        res_type: str,
        res_id: str,
        version: int,
        resource: dict[str, Any] | None,
    ) -> StoredResource:
        repo = self._repo
        keys = repo._keys
        now = repo._clock.now()
        ts_us = to_us(now)
        seq = repo._store.next_seq(self._conn, VERSION_SEQ)
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
            sealed = keys.seal(
                body, aad=ResourceRef(res_type, res_id).aad(version), random=repo._random
            )
        deleted = resource is None
        self._index[(res_type, res_id)] = (
            None if resource is None else index_row(keys, seq, res_type, res_id, ts_us, resource)
        )
        tag = keys.mac(
            seq=seq,
            res_type=res_type,
            res_id=res_id,
            version=version,
            deleted=deleted,
            ts_us=ts_us,
            body=body,
        )
        repo._store.insert_version(
            self._conn,
            VersionRow(
                seq=seq,
                res_type=res_type,
                res_id=res_id,
                version=version,
                ts_us=ts_us,
                deleted=deleted,
                key_id=keys.data_key_id if sealed is not None else None,
                body=sealed,
                mac_key_id=keys.mac_key_id,
                mac=tag,
            ),
        )
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

    def create(self, resource: dict[str, Any], *, res_id: str | None = None) -> StoredResource:
        """Create (FHIR R4 http.html#create): the server assigns a random id."""
        repo = self._repo
        res_type = str(resource["resourceType"])
        repo._check(Action.CREATE, res_type, resource)
        new_id = res_id or repo.new_id()
        if res_id is not None and repo._store.current_version_number(self._conn, res_type, res_id):
            raise repo._fail(
                Action.CREATE, HearthError(errors.CONFLICT), res_type=res_type, res_id=res_id
            )
        return self._append(Action.CREATE, res_type, new_id, 1, resource)

    def update(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> tuple[StoredResource, bool]:
        """Update, or update-as-create with a client id (FHIR R4 http.html#update)."""
        repo = self._repo
        repo._check(Action.UPDATE, res_type, res_id=res_id)
        current = self._current(Action.UPDATE, res_type, res_id)
        if if_match is not None and (current is None or current.version != if_match):
            raise repo._fail(
                Action.UPDATE,
                HearthError(errors.VERSION_CONFLICT),
                res_type=res_type,
                res_id=res_id,
            )
        if current is None:
            repo._check(Action.CREATE, res_type, resource, res_id=res_id)
            return self._append(Action.CREATE, res_type, res_id, 1, resource), True
        if current.resource is not None:
            repo._check(Action.UPDATE, res_type, current.resource, res_id=res_id)
        repo._check(Action.UPDATE, res_type, resource, res_id=res_id)
        return self._append(Action.UPDATE, res_type, res_id, current.version + 1, resource), False

    def update_with(
        self,
        res_type: str,
        res_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        action: Action = Action.PATCH,
        if_match: int | None = None,
    ) -> StoredResource:
        """Read-modify-write under the writer lock (JSON Patch, FHIR R4 http.html#patch)."""
        repo = self._repo
        repo._check(action, res_type, res_id=res_id)
        current = self._current(action, res_type, res_id)
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
        repo._check(action, res_type, current.resource, res_id=res_id)
        try:
            changed = change(current.resource)
        except HearthError as error:
            raise repo._fail(action, error, res_type=res_type, res_id=res_id) from None
        repo._check(action, res_type, changed, res_id=res_id)
        return self._append(action, res_type, res_id, current.version + 1, changed)

    def delete(self, res_type: str, res_id: str) -> StoredResource | None:
        """Delete: append a tombstone version (FHIR R4 http.html#delete). Idempotent."""
        repo = self._repo
        repo._check(Action.DELETE, res_type, res_id=res_id)
        current = self._current(Action.DELETE, res_type, res_id)
        if current is None or current.deleted:
            self.audit_records.append(
                repo._record(Action.DELETE, Outcome.NOT_FOUND, res_type=res_type, res_id=res_id)
            )
            return None
        repo._check(Action.DELETE, res_type, current.resource, res_id=res_id)
        stored = self._append(Action.DELETE, res_type, res_id, current.version + 1, None)
        return replace(stored, resource=None)
