"""FHIR interactions on resources (R4 http.html): validate, then pass through the gate.

``RecordService`` holds the FHIR rules that sit above storage: what a create may contain, that
an update's body matches its URL, how a JSON Patch applies, which page of history comes next.
Every byte of PHI it touches comes from or goes to the ``RecordRepository`` it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hearth.domain import ID_PATTERN, Action, HearthError, Issue, StoredResource, errors
from hearth.fhir.bundle import BundleEntry
from hearth.fhir.definitions import RESOURCE_TYPES, is_resource_type
from hearth.fhir.patch import patch_change
from hearth.fhir.validation import validate_resource
from hearth.storage import RecordRepository

__all__ = ["HistoryPage", "RecordService", "check_id", "check_type"]

Validator = Callable[..., None]


def check_type(res_type: str) -> str:
    if not is_resource_type(res_type):
        # Only a known type's name is ever echoed: the URL segment itself could be anything.
        hint = _TYPES_BY_FOLDED.get(res_type.casefold())
        detail = (
            f"Unknown resource type; resource type names are case-sensitive (did you mean {hint}?)."
            if hint
            else None
        )
        raise HearthError(errors.UNKNOWN_RESOURCE_TYPE, detail)
    return res_type


_TYPES_BY_FOLDED = {name.casefold(): name for name in RESOURCE_TYPES}


def check_id(res_id: str) -> str:
    if not ID_PATTERN.fullmatch(res_id):
        raise HearthError(errors.BAD_ID)
    return res_id


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[BundleEntry]
    total: int | None
    next_before_seq: int | None


#: The HTTP method of each interaction that writes a version (R4 http.html#history: a history
#: entry's ``request`` is the interaction that created the version).
_METHOD_OF = {
    Action.CREATE: "POST",
    Action.UPDATE: "PUT",
    Action.PATCH: "PATCH",
    Action.DELETE: "DELETE",
}


def _entry(stored: StoredResource, written_by: Action | None) -> BundleEntry:
    if written_by is not None and written_by in _METHOD_OF:
        method = _METHOD_OF[written_by]
    elif stored.deleted:
        method = "DELETE"
    elif stored.version == 1:
        method = "POST"
    else:
        method = "PUT"
    return BundleEntry(
        stored.res_type,
        stored.res_id,
        stored.version,
        stored.last_updated,
        stored.resource,
        method,
    )


class RecordService:
    """The FHIR REST interactions for one principal, over the repository bound to them."""

    def __init__(self, repo: RecordRepository, *, validate: Validator = validate_resource) -> None:
        self._repo = repo
        self._validate = validate

    def _checked(self, res_type: str, resource: Mapping[str, Any]) -> dict[str, Any]:
        body_type = resource.get("resourceType")
        if body_type is None:
            raise HearthError(errors.MISSING_RESOURCE_TYPE)
        if body_type != res_type:
            raise HearthError(errors.TYPE_MISMATCH)
        self._validate(resource, resource_type=res_type)
        return dict(resource)

    @contextmanager
    def _audited(self, action: Action, res_type: str | None, res_id: str | None) -> Iterator[None]:
        """Audit a request refused before it reaches the gate (unknown type, bad id, invalid
        body). Only a type and an id that passed their checks are written to the audit entry:
        anything else came from the URL and could hold anything."""
        try:
            yield
        except HearthError as error:
            raise self.refuse(action, error, res_type, res_id) from None

    def refuse(
        self, action: Action, error: HearthError, res_type: str | None, res_id: str | None = None
    ) -> HearthError:
        """Audit a request refused before the gate and hand back the error: by this service,
        or by the adapter after authentication (a body it could not parse, a bad header)."""
        known_type = res_type if res_type is not None and is_resource_type(res_type) else None
        known_id = res_id if res_id is not None and ID_PATTERN.fullmatch(res_id) else None
        return self._repo.refused(action, error, res_type=known_type, res_id=known_id)

    def create(self, res_type: str, resource: Mapping[str, Any]) -> StoredResource:
        """Create (R4 http.html#create): any id in the body is ignored; the server assigns one."""
        with self._audited(Action.CREATE, res_type, None):
            check_type(res_type)
            body = self._checked(res_type, resource)
            body.pop("id", None)
        return self._repo.create(body)

    def read(self, res_type: str, res_id: str) -> StoredResource:
        with self._audited(Action.READ, res_type, res_id):
            check_type(res_type)
            check_id(res_id)
        return self._repo.read(res_type, res_id)

    def vread(self, res_type: str, res_id: str, version: str) -> StoredResource:
        with self._audited(Action.VREAD, res_type, res_id):
            check_type(res_type)
            check_id(res_id)
            if not version.isdigit() or int(version) < 1 or len(version) > 9:
                raise HearthError(errors.BAD_VERSION_ID)
        return self._repo.vread(res_type, res_id, int(version))

    def update(
        self,
        res_type: str,
        res_id: str,
        resource: Mapping[str, Any],
        *,
        if_match: int | None = None,
    ) -> tuple[StoredResource, bool]:
        """Update or update-as-create (R4 http.html#update): the body's id must match the URL."""
        with self._audited(Action.UPDATE, res_type, res_id):
            check_type(res_type)
            check_id(res_id)
            body = self._checked(res_type, resource)
            if "id" not in body:
                raise HearthError(
                    errors.ID_MISMATCH,
                    "The body has no id; an update must carry the id in the URL.",
                    issues=(Issue(errors.ID_MISMATCH, "The body has no id.", f"{res_type}.id"),),
                )
            if body.get("id") != res_id:
                raise HearthError(
                    errors.ID_MISMATCH,
                    issues=(Issue(errors.ID_MISMATCH, errors.ID_MISMATCH.title, f"{res_type}.id"),),
                )
        return self._repo.update(res_type, res_id, body, if_match=if_match)

    def patch(
        self,
        res_type: str,
        res_id: str,
        document: object,
        *,
        if_match: int | None = None,
        merge: bool = False,
    ) -> StoredResource:
        """JSON Patch (R4 http.html#patch), or with ``merge`` a JSON Merge Patch (RFC 7386, a
        partial resource, as fhirpy sends); the patched resource is validated before storing."""
        with self._audited(Action.PATCH, res_type, res_id):
            check_type(res_type)
            check_id(res_id)
            patched = patch_change(document, merge=merge)

        def change(current: dict[str, Any]) -> dict[str, Any]:
            return self._checked(res_type, patched(current))

        return self._repo.update_with(res_type, res_id, change, if_match=if_match)

    def delete(self, res_type: str, res_id: str) -> StoredResource | None:
        with self._audited(Action.DELETE, res_type, res_id):
            check_type(res_type)
            check_id(res_id)
        return self._repo.delete(res_type, res_id)

    def history(
        self,
        *,
        res_type: str | None,
        res_id: str | None,
        since: datetime | None,
        before_seq: int | None,
        count: int,
    ) -> HistoryPage:
        """Instance, type or system history, newest first (R4 http.html#history)."""
        with self._audited(Action.HISTORY, res_type, res_id):
            if res_type is not None:
                check_type(res_type)
            if res_id is not None:
                check_id(res_id)
        result = self._repo.history(
            res_type=res_type, res_id=res_id, since=since, before_seq=before_seq, count=count
        )
        written_by = result.written_by
        entries = [
            _entry(r, written_by.get((r.res_type, r.res_id, r.version))) for r in result.page
        ]
        return HistoryPage(entries, result.total, result.next_before_seq)
