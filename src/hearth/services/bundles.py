"""Batch and transaction Bundles and conditional interactions (R4 http.html#transaction,
http.html#cond-update, #ccreate, #cdelete, #patch).

A transaction runs in one ``RecordRepository.batch()``: one database transaction on every engine,
so it is all or nothing; its audit entries commit with it, and a failure is audited after the
rollback. Conditional interactions search inside that same transaction (the batch flushes its
index first), so a condition sees the writes made before it in the Bundle. A batch runs each
entry in a transaction of its own and reports each entry's outcome.

Conditions are ordinary searches: ``Practitioner?identifier=...`` is planned by
``hearth.fhir.search`` and answered by the index, with the same bounds and access scoping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from hearth.domain import HearthError, Issue, StoredResource, errors
from hearth.fhir.outcome import operation_outcome
from hearth.fhir.patch import patch_change
from hearth.fhir.search import (
    FORMAT_PARAMETERS,
    RESULT_PARAMETERS,
    Context,
    SubSearch,
    parse_search,
)
from hearth.fhir.search.values import to_us
from hearth.fhir.transaction import (
    BundleRequest,
    bundle_response,
    parse_bundle,
    placeholder_key,
    rewrite_references,
    transaction_order,
)
from hearth.fhir.validation import validate_resource
from hearth.services.records import check_id, check_type
from hearth.services.search import SearchQuery, SearchService
from hearth.storage import RecordRepository, WriteBatch

__all__ = ["BundleService", "Written"]

_INSTANT = "%Y-%m-%dT%H:%M:%S.%fZ"
#: Conditional delete removes every match (CapabilityStatement conditionalDelete=multiple), up
#: to this many; more is refused with 412 rather than deleting an unbounded set.
MAX_CONDITIONAL_DELETE = 100
_REASONS = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified"}


@dataclass(frozen=True, slots=True)
class Written:
    """The outcome of one write: the version stored (or found), and the HTTP status."""

    stored: StoredResource | None
    status: int


def _status(code: int) -> str:
    return f"{code} {_REASONS.get(code, '')}".strip()


def _instant(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(_INSTANT)


class BundleService:
    def __init__(
        self,
        repo: RecordRepository,
        *,
        search: SearchService,
        max_entries: int,
        now: Callable[[], datetime],
    ) -> None:
        self._repo = repo
        self._search = search
        self._max_entries = max_entries
        self._now = now

    # -- conditions ----------------------------------------------------------------------------
    def _condition(self, res_type: str, params: Sequence[tuple[str, str]]) -> SubSearch:
        """The search a conditional URL names; strict, so an unknown parameter cannot widen it.

        Only criteria: a result parameter (``_count``, ``_sort``, ``_summary``, ...) or a blank
        value would leave a condition that matches every resource of the type, so a
        conditional create would return an unrelated record and an update overwrite one."""
        wanted = [(k, v) for k, v in params if k not in FORMAT_PARAMETERS]
        if not wanted:
            raise HearthError(errors.BAD_PARAMETER, "A condition needs at least one parameter.")
        if any(k in RESULT_PARAMETERS for k, _v in wanted):
            raise HearthError(
                errors.BAD_PARAMETER,
                "A condition holds search criteria only, not result parameters such as _count, "
                "_sort or _summary.",
            )
        if any(not v for _k, v in wanted):
            raise HearthError(errors.BAD_PARAMETER, "Every parameter of a condition needs a value.")
        request = parse_search(
            res_type,
            wanted,
            ctx=Context(now_us=to_us(self._now())),
            default_count=2,
            max_count=2,
            strict=True,
        )
        return request.sub()

    def _matches(
        self, batch: WriteBatch, res_type: str, params: Sequence[tuple[str, str]], limit: int = 2
    ) -> list[str]:
        return batch.find(self._condition(res_type, params), limit)

    def _validated(self, res_type: str, resource: Mapping[str, Any]) -> dict[str, Any]:
        if resource.get("resourceType") != res_type:
            raise HearthError(errors.TYPE_MISMATCH)
        validate_resource(resource, resource_type=res_type)
        return dict(resource)

    # -- conditional interactions (one resource) ------------------------------------------------
    def create_in(
        self,
        batch: WriteBatch,
        res_type: str,
        resource: Mapping[str, Any],
        *,
        if_none_exist: Sequence[tuple[str, str]] | None,
        res_id: str | None = None,
    ) -> Written:
        """Create, or with ``If-None-Exist`` return the one match (http.html#ccreate)."""
        if if_none_exist:
            found = self._matches(batch, res_type, if_none_exist)
            if len(found) > 1:
                raise HearthError(errors.MULTIPLE_MATCHES)
            if found:
                # Undecided and unmasked: without its body. A caller that returns the match
                # reads it (``WriteBatch.matched``); ``hearth import`` only counts it.
                current = batch.current(res_type, found[0])
                return Written(replace(current, resource=None) if current else None, 200)
        body = self._validated(res_type, resource)
        body.pop("id", None)
        return Written(batch.create(body, res_id=res_id), 201)

    def update_in(
        self,
        batch: WriteBatch,
        res_type: str,
        resource: Mapping[str, Any],
        *,
        res_id: str | None,
        condition: Sequence[tuple[str, str]] | None,
        if_match: int | None = None,
        if_none_match: str | None = None,
    ) -> Written:
        """Update, update-as-create, or conditional update (http.html#cond-update)."""
        if res_id is None:
            found = self._matches(batch, res_type, condition or ())
            if len(found) > 1:
                raise HearthError(errors.MULTIPLE_MATCHES)
            body_id = resource.get("id")
            if found:
                res_id = found[0]
                if body_id is not None and body_id != res_id:
                    raise HearthError(errors.ID_MISMATCH)
            elif isinstance(body_id, str):
                res_id = check_id(body_id)
            else:
                res_id = self._repo.new_id()
        elif resource.get("id") != res_id:
            raise HearthError(
                errors.ID_MISMATCH,
                issues=(Issue(errors.ID_MISMATCH, errors.ID_MISMATCH.title, f"{res_type}.id"),),
            )
        if if_none_match is not None and if_none_match.strip() == "*":
            current = batch.current(res_type, res_id)
            if current is not None and not current.deleted:
                raise HearthError(errors.PRECONDITION_FAILED)
        body = self._validated(res_type, {**resource, "id": res_id})
        stored, created = batch.update(res_type, res_id, body, if_match=if_match)
        return Written(stored, 201 if created else 200)

    def load_in(
        self, batch: WriteBatch, res_type: str, resource: Mapping[str, Any], *, res_id: str
    ) -> Written:
        """Write a loaded resource under the id the file gives it (``hearth import``): 201 when
        created, 200 when updated, 304 when the stored version already holds this content (then
        nothing is written, so loading a file again adds no versions)."""
        res_id = check_id(res_id)
        body = self._validated(res_type, {**resource, "id": res_id})
        stored, created = batch.update_if_changed(res_type, res_id, body)
        return Written(stored, 304 if created is None else 201 if created else 200)

    def patch_in(
        self,
        batch: WriteBatch,
        res_type: str,
        document: object,
        *,
        res_id: str | None,
        condition: Sequence[tuple[str, str]] | None,
        if_match: int | None = None,
        merge: bool = False,
    ) -> Written:
        """JSON Patch, or with ``merge`` JSON Merge Patch, by id or by condition
        (http.html#patch)."""
        patched = patch_change(document, merge=merge)
        if res_id is None:
            found = self._matches(batch, res_type, condition or ())
            if len(found) > 1:
                raise HearthError(errors.MULTIPLE_MATCHES)
            if not found:
                raise HearthError(errors.NOT_FOUND)
            res_id = found[0]

        def change(current: dict[str, Any]) -> dict[str, Any]:
            return self._validated(res_type, patched(current))

        return Written(batch.update_with(res_type, res_id, change, if_match=if_match), 200)

    def delete_in(
        self,
        batch: WriteBatch,
        res_type: str,
        *,
        res_id: str | None,
        condition: Sequence[tuple[str, str]] | None,
    ) -> list[StoredResource]:
        """Delete by id, or every match of a condition (http.html#cdelete, ``multiple``)."""
        if res_id is not None:
            deleted = batch.delete(res_type, res_id)
            return [deleted] if deleted is not None else []
        found = self._matches(batch, res_type, condition or (), MAX_CONDITIONAL_DELETE + 1)
        if len(found) > MAX_CONDITIONAL_DELETE:
            raise HearthError(
                errors.MULTIPLE_MATCHES,
                f"The condition matches more than {MAX_CONDITIONAL_DELETE} resources.",
            )
        out = []
        for match in found:
            deleted = batch.delete(res_type, match)
            if deleted is not None:
                out.append(deleted)
        return out

    # -- single REST interactions ----------------------------------------------------------------
    def conditional_create(
        self, res_type: str, resource: Mapping[str, Any], if_none_exist: Sequence[tuple[str, str]]
    ) -> Written:
        check_type(res_type)
        with self._repo.batch() as batch:
            written = self.create_in(batch, res_type, resource, if_none_exist=if_none_exist)
            if written.status == 200 and written.stored is not None:
                # The match goes back to the client: decided, masked and audited as a read.
                return Written(batch.matched(res_type, written.stored.res_id), 200)
            return written

    def conditional_update(
        self,
        res_type: str,
        condition: Sequence[tuple[str, str]],
        resource: Mapping[str, Any],
        *,
        if_match: int | None = None,
    ) -> Written:
        check_type(res_type)
        with self._repo.batch() as batch:
            return self.update_in(
                batch, res_type, resource, res_id=None, condition=condition, if_match=if_match
            )

    def conditional_patch(
        self,
        res_type: str,
        condition: Sequence[tuple[str, str]],
        document: object,
        *,
        if_match: int | None = None,
        merge: bool = False,
    ) -> Written:
        """``PATCH [type]?[search]`` (http.html#patch): the formats instance PATCH takes."""
        check_type(res_type)
        with self._repo.batch() as batch:
            return self.patch_in(
                batch,
                res_type,
                document,
                res_id=None,
                condition=condition,
                if_match=if_match,
                merge=merge,
            )

    def conditional_delete(self, res_type: str, condition: Sequence[tuple[str, str]]) -> int:
        check_type(res_type)
        with self._repo.batch() as batch:
            return len(self.delete_in(batch, res_type, res_id=None, condition=condition))

    # -- bundles ---------------------------------------------------------------------------------
    def process(
        self, bundle: Mapping[str, Any], *, base: str, representation: bool
    ) -> dict[str, Any]:
        """Run a ``batch`` or ``transaction`` Bundle; return its ``*-response`` Bundle."""
        kind, requests = parse_bundle(bundle, max_entries=self._max_entries)
        if kind == "transaction":
            entries = self._transaction(requests, base=base, representation=representation)
        else:
            entries = self._batch(requests, base=base, representation=representation)
        return bundle_response(kind, entries, last_updated=_instant(self._now()))

    def _transaction(
        self, requests: list[BundleRequest], *, base: str, representation: bool
    ) -> list[dict[str, Any]]:
        results: dict[int, dict[str, Any]] = {}
        current: BundleRequest | None = None
        try:
            with self._repo.batch() as batch:
                run = _Run(self, batch, base=base, representation=representation)
                run.assign_ids(requests)
                for request in transaction_order(requests):
                    current = request
                    results[request.index] = run.entry(request)
        except HearthError as error:
            raise _at_entry(error, current) from None
        return [results[r.index] for r in requests]

    def _batch(
        self, requests: list[BundleRequest], *, base: str, representation: bool
    ) -> list[dict[str, Any]]:
        out = []
        for request in requests:
            try:
                with self._repo.batch() as batch:
                    run = _Run(self, batch, base=base, representation=representation)
                    run.assign_ids([request])
                    out.append(run.entry(request))
            except HearthError as error:
                out.append(
                    {
                        "response": {
                            "status": str(error.status),
                            "outcome": operation_outcome(error),
                        }
                    }
                )
        return out


def _at_entry(error: HearthError, request: BundleRequest | None) -> HearthError:
    if request is None:
        return error
    where = f"Bundle.entry[{request.index}]"
    issues = error.issues or (Issue(error.code, error.detail, where),)
    issues = tuple(Issue(i.code, i.diagnostics, i.expression or where, i.severity) for i in issues)
    return HearthError(error.code, f"Bundle entry {request.index}: {error.detail}", issues=issues)


class _Run:
    """One Bundle's processing inside one write batch."""

    def __init__(
        self, service: BundleService, batch: WriteBatch, *, base: str, representation: bool
    ) -> None:
        self.s = service
        self.batch = batch
        self.base = base
        self.representation = representation
        self.refs: dict[str, str] = {}  # placeholder_key(fullUrl) -> Type/id
        self.entries: set[str] = set()  # placeholder_key of every entry's fullUrl
        self.ids: dict[int, str] = {}  # entry index -> id assigned for a POST
        self.existing: dict[int, StoredResource | None] = {}  # POST matched by ifNoneExist
        self.conditional: dict[str, str] = {}

    def assign_ids(self, requests: list[BundleRequest]) -> None:
        """Give each POST its id (or its ifNoneExist match) and map every fullUrl first, so any
        entry may reference any other (http.html#trules)."""
        self.entries = {placeholder_key(r.full_url) for r in requests if r.full_url}
        for r in requests:
            target: str | None = None
            if r.method == "POST":
                if r.if_none_exist:
                    found = self.s._matches(self.batch, r.res_type, r.if_none_exist)
                    if len(found) > 1:
                        raise _at_entry(HearthError(errors.MULTIPLE_MATCHES), r)
                    if found:
                        self.existing[r.index] = self.batch.current(r.res_type, found[0])
                        target = found[0]
                if target is None:
                    target = self.s._repo.new_id()
                self.ids[r.index] = target
            elif r.method == "PUT" and r.res_id is not None:
                target = r.res_id
            if target is not None and r.full_url:
                self.refs[placeholder_key(r.full_url)] = f"{r.res_type}/{target}"
                if r.full_url.startswith(self.base + "/"):
                    self.refs[r.full_url[len(self.base) + 1 :]] = f"{r.res_type}/{target}"
        # What the entries will write, looked up together instead of one entry at a time.
        self.batch.expect(
            [(r.res_type, self.ids[r.index]) for r in requests if r.index in self.ids]
            + [(r.res_type, r.res_id) for r in requests if r.method == "PUT" and r.res_id]
        )

    def _resolve(self, reference: str) -> str | None:
        key = placeholder_key(reference)
        if key in self.refs:
            return self.refs[key]
        if "?" in reference and not reference.startswith(("http:", "https:", "urn:")):
            if reference not in self.conditional:
                res_type, _, query = reference.partition("?")
                check_type(res_type)
                from urllib.parse import parse_qsl

                found = self.s._matches(
                    self.batch, res_type, parse_qsl(query, keep_blank_values=True)
                )
                if len(found) > 1:
                    raise HearthError(errors.MULTIPLE_MATCHES)
                if not found:
                    raise HearthError(errors.UNRESOLVED_REFERENCE)
                self.conditional[reference] = f"{res_type}/{found[0]}"
            return self.conditional[reference]
        return None

    def _response(self, written: Written, *, include: bool = True) -> dict[str, Any]:
        stored = written.stored
        entry: dict[str, Any] = {}
        response: dict[str, Any] = {"status": _status(written.status)}
        if stored is not None:
            entry["fullUrl"] = f"{self.base}/{stored.res_type}/{stored.res_id}"
            if include and self.representation and stored.resource is not None:
                entry["resource"] = stored.resource
            response["location"] = f"{stored.res_type}/{stored.res_id}/_history/{stored.version}"
            response["etag"] = stored.etag
            response["lastModified"] = _instant(stored.last_updated)
        entry["response"] = response
        return entry

    def entry(self, r: BundleRequest) -> dict[str, Any]:
        resource = (
            rewrite_references(r.resource, self._resolve, entries=self.entries)
            if r.resource is not None
            else None
        )
        match r.method:
            case "POST":
                assert resource is not None  # noqa: S101 - parse_bundle guarantees it
                if r.index in self.existing:
                    # Its body goes back only with return=representation: only then is it
                    # decided, masked and audited as a read (``WriteBatch.matched``).
                    match = (
                        self.batch.matched(r.res_type, self.ids[r.index])
                        if self.representation
                        else self.existing[r.index]
                    )
                    return self._response(Written(match, 200))
                written = self.s.create_in(
                    self.batch, r.res_type, resource, if_none_exist=None, res_id=self.ids[r.index]
                )
                return self._response(written)
            case "PUT":
                assert resource is not None  # noqa: S101 - parse_bundle guarantees it
                written = self.s.update_in(
                    self.batch,
                    r.res_type,
                    resource,
                    res_id=r.res_id,
                    condition=r.condition,
                    if_match=r.if_match,
                    if_none_match=r.if_none_match,
                )
                if r.full_url and written.stored is not None:
                    self.refs[placeholder_key(r.full_url)] = f"{r.res_type}/{written.stored.res_id}"
                return self._response(written)
            case "PATCH":
                written = self.s.patch_in(
                    self.batch,
                    r.res_type,
                    r.patch,
                    res_id=r.res_id,
                    condition=r.condition,
                    if_match=r.if_match,
                )
                return self._response(written)
            case "DELETE":
                self.s.delete_in(self.batch, r.res_type, res_id=r.res_id, condition=r.condition)
                return {"response": {"status": _status(204)}}
            case _:
                return self._get(r)

    def _get(self, r: BundleRequest) -> dict[str, Any]:
        if r.res_id is None:
            params = list(r.condition or ())
            query = SearchQuery(r.res_type, params, strict=True)
            request = self.s._search.plan(query, self.base)
            page = self.batch.search(request, query_text=f"{r.res_type}?(bundle entry)")
            searchset = self.s._search.render(query, request, page, base=self.base)
            return {"resource": searchset, "response": {"status": _status(200)}}
        stored = self.batch.read(r.res_type, r.res_id)
        if r.version is not None and str(stored.version) != r.version:
            raise HearthError(errors.VERSION_NOT_FOUND)
        if r.if_none_match is not None and r.if_none_match.strip() == stored.etag:
            return {"response": {"status": _status(304), "etag": stored.etag}}
        if r.if_modified_since is not None:
            try:
                since = datetime.fromisoformat(r.if_modified_since.replace("Z", "+00:00"))
            except ValueError:
                raise HearthError(errors.BAD_PARAMETER, "ifModifiedSince is an instant.") from None
            if since.tzinfo is not None and stored.last_updated <= since:
                return {"response": {"status": _status(304), "etag": stored.etag}}
        return {
            "fullUrl": f"{self.base}/{r.res_type}/{stored.res_id}",
            "resource": stored.resource,
            "response": {
                "status": _status(200),
                "etag": stored.etag,
                "lastModified": _instant(stored.last_updated),
            },
        }
