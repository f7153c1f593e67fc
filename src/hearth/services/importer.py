"""Bulk loading: ``hearth import FILE.ndjson|bundle.json`` with bounded memory.

- NDJSON (FHIR Bulk Data, one resource per line) is read line by line. A resource with an ``id``
  is stored under that id (update-as-create), so ``Type/id`` references between the files of an
  export stay valid and a re-import updates rather than duplicates; one without gets a new id.
- A Bundle (``transaction``, ``batch`` or ``collection``) is read twice with a streaming JSON
  parser (ijson), one entry at a time: the first pass maps every ``fullUrl`` to the id it will
  get (and resolves ``ifNoneExist`` conditions), the second writes. Memory grows with the number
  of entries (a few dozen bytes each), never with the size of the file.

Resources are written through the repository gate, ``chunk`` at a time in one transaction each:
validated, sealed, indexed and audited like any other write. An import is a loader, not a
transaction: each chunk is all or nothing, and the report says how far it got.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

import ijson

from hearth.domain import HearthError, errors
from hearth.fhir.definitions import is_resource_type
from hearth.fhir.jsonbody import parse_json_body
from hearth.fhir.transaction import rewrite_references
from hearth.services.bundles import BundleService
from hearth.services.progress import NullProgress, Progress
from hearth.storage import RecordRepository, WriteBatch

__all__ = ["ImportReport", "ImportService"]

_MAX_LINE = 16 * 1024 * 1024


@dataclass(slots=True)
class ImportReport:
    resources: int = 0  # written (created or updated)
    existing: int = 0  # matched by ifNoneExist: not written again
    entries: int = 0  # read from the file


class _Counting(io.RawIOBase):
    """A read-only stream that reports how many bytes were read (for the progress bar)."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._on_read(len(data))
        return len(data)


@dataclass(frozen=True, slots=True)
class _Planned:
    target: str | None  # "Type/id" the entry writes, or None
    existing: bool  # an ifNoneExist matched: nothing to write


class ImportService:
    def __init__(self, repo: RecordRepository, bundles: BundleService, *, chunk: int = 500) -> None:
        self._repo = repo
        self._bundles = bundles
        self._chunk = chunk

    # -- entry points -----------------------------------------------------------------------------
    def import_path(self, path: Path, progress: Progress | None = None) -> ImportReport:
        """Import ``path``: ``.ndjson``/``.jsonl`` line by line, anything else as a Bundle."""
        progress = progress or NullProgress()
        size = path.stat().st_size
        if path.suffix.lower() in (".ndjson", ".jsonl"):
            progress.start(f"Importing {path.name}", size)
            try:
                with path.open("rb") as raw:
                    return self.import_ndjson(io.BufferedReader(_Counting(raw, progress.advance)))
            finally:
                progress.finish()
        progress.start(f"Reading {path.name}", size)
        try:
            with path.open("rb") as raw:
                plan, refs = self._plan(io.BufferedReader(_Counting(raw, progress.advance)))
        finally:
            progress.finish()
        progress.start(f"Importing {path.name}", size)
        try:
            with path.open("rb") as raw:
                stream = io.BufferedReader(_Counting(raw, progress.advance))
                return self._write_bundle(stream, plan, refs)
        finally:
            progress.finish()

    def import_ndjson(self, stream: IO[bytes]) -> ImportReport:
        report = ImportReport()
        chunk: list[dict[str, Any]] = []
        for number, line in enumerate(_lines(stream), start=1):
            if not line.strip():
                continue
            try:
                resource = parse_json_body(line)
            except HearthError:
                raise HearthError(
                    errors.BAD_IMPORT, f"Line {number} is not a JSON object."
                ) from None
            chunk.append(resource)
            report.entries += 1
            if len(chunk) >= self._chunk:
                self._write_plain(chunk, report)
                chunk = []
        if chunk:
            self._write_plain(chunk, report)
        return report

    # -- NDJSON ---------------------------------------------------------------------------------
    def _write_plain(self, resources: list[dict[str, Any]], report: ImportReport) -> None:
        with self._repo.batch() as batch:
            for resource in resources:
                self._put(batch, resource, resource.get("id"))
                report.resources += 1

    def _put(self, batch: WriteBatch, resource: dict[str, Any], res_id: Any) -> None:
        res_type = resource.get("resourceType")
        if not isinstance(res_type, str) or not is_resource_type(res_type):
            raise HearthError(errors.BAD_IMPORT, "A resource has no known resourceType.")
        if isinstance(res_id, str):
            self._bundles.update_in(batch, res_type, resource, res_id=res_id, condition=None)
        else:
            self._bundles.create_in(batch, res_type, resource, if_none_exist=None)

    # -- Bundles --------------------------------------------------------------------------------
    def _plan(self, stream: IO[bytes]) -> tuple[list[_Planned], dict[str, str]]:
        """First pass: the id each entry will have, so references can be rewritten as entries
        stream past, whatever their order in the file."""
        plan: list[_Planned] = []
        refs: dict[str, str] = {}
        conditions: dict[tuple[str, str], str] = {}
        for entry in _entries(stream):
            resource = entry.get("resource")
            request = entry.get("request") or {}
            method = request.get("method", "PUT" if _has_id(resource) else "POST")
            if not isinstance(resource, dict) or method not in ("POST", "PUT"):
                raise HearthError(
                    errors.BAD_IMPORT, "An imported Bundle holds only POST and PUT entries."
                )
            res_type = str(resource.get("resourceType"))
            existing = False
            if method == "PUT" and _has_id(resource):
                res_id = str(resource["id"])
            elif isinstance(request.get("ifNoneExist"), str):
                key = (res_type, request["ifNoneExist"])
                if key in conditions:
                    res_id, existing = conditions[key], True
                else:
                    found = self._find(res_type, request["ifNoneExist"])
                    existing = found is not None
                    res_id = found or self._repo.new_id()
                    conditions[key] = res_id
            else:
                res_id = self._repo.new_id()
            target = f"{res_type}/{res_id}"
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                refs[full_url] = target
            plan.append(_Planned(target, existing))
        return plan, refs

    def _find(self, res_type: str, condition: str) -> str | None:
        params = parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)
        with self._repo.batch() as batch:
            found = self._bundles._matches(batch, res_type, params)
        if len(found) > 1:
            raise HearthError(errors.MULTIPLE_MATCHES)
        return found[0] if found else None

    def _write_bundle(
        self, stream: IO[bytes], plan: list[_Planned], refs: dict[str, str]
    ) -> ImportReport:
        report = ImportReport()
        conditional: dict[str, str] = {}
        pending: list[tuple[dict[str, Any], str]] = []

        def resolve(reference: str) -> str | None:
            if reference in refs:
                return refs[reference]
            if "?" in reference and not reference.startswith(("http:", "https:", "urn:")):
                if reference not in conditional:
                    res_type, _, query = reference.partition("?")
                    found = self._find(res_type, query) if is_resource_type(res_type) else None
                    if found is None:
                        raise HearthError(errors.UNRESOLVED_REFERENCE)
                    conditional[reference] = f"{res_type}/{found}"
                return conditional[reference]
            return None

        def flush() -> None:
            with self._repo.batch() as batch:
                for resource, target in pending:
                    res_type, res_id = target.split("/", 1)
                    self._bundles.update_in(
                        batch, res_type, {**resource, "id": res_id}, res_id=res_id, condition=None
                    )
            report.resources += len(pending)
            pending.clear()

        for planned, entry in zip(plan, _entries(stream), strict=True):
            report.entries += 1
            if planned.existing or planned.target is None:
                report.existing += 1
                continue
            resource = rewrite_references(entry["resource"], resolve)
            pending.append((resource, planned.target))
            if len(pending) >= self._chunk:
                flush()
        if pending:
            flush()
        return report


def _has_id(resource: Any) -> bool:
    return isinstance(resource, dict) and isinstance(resource.get("id"), str)


def _entries(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """Each ``Bundle.entry`` in turn, parsed on its own (decimals kept as written)."""
    try:
        for entry in ijson.items(stream, "entry.item", use_float=False):
            if not isinstance(entry, dict):
                raise HearthError(errors.BAD_IMPORT, "A Bundle entry is not an object.")
            yield _plain(entry)
    except ijson.JSONError:
        raise HearthError(errors.BAD_IMPORT, "The file is not valid JSON.") from None


def _plain(value: Any) -> Any:
    """ijson gives Decimals; FHIR decimals keep their literal (hearth.fhir.jsonbody)."""
    from decimal import Decimal

    from hearth.fhir.jsonbody import FhirDecimal

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return FhirDecimal(str(value))
    return value


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        line = stream.readline(_MAX_LINE + 1)
        if not line:
            return
        if len(line) > _MAX_LINE:
            raise HearthError(errors.BAD_IMPORT, "A line is longer than 16 MiB.")
        yield line
