"""Bulk loading: ``hearth import FILE.ndjson|bundle.json`` with bounded memory.

- NDJSON (FHIR Bulk Data, one resource per line) is read line by line, from a file or a pipe.
- A Bundle (``transaction``, ``batch`` or ``collection``) is read twice with a streaming JSON
  parser (ijson), one entry at a time: the first pass maps every ``fullUrl`` to the id it will
  get (and resolves ``ifNoneExist`` conditions), the second writes. Memory grows with the number
  of entries (a few dozen bytes each), never with the size of the file.

Resources are written through the repository gate, a chunk at a time (at most ``chunk``
resources and about 4 MiB of input) in one transaction each: validated, sealed, indexed and
audited like any other write. An import is a loader, not a transaction.

Loading a file again does not duplicate it (docs/design.md "Bulk import"). Each record is keyed,
in this order, by the ``id`` it carries (NDJSON; Bundle ``PUT`` entries), by its Bundle entry's
``ifNoneExist``, by its ``urn:uuid:`` ``fullUrl`` (the UUID becomes the id: a random UUID, never
derived from PHI), or by its first ``identifier`` with a system and a value (a conditional
create). A record with an id is written with update-as-create, and skipped when the stored
version already holds the same content; a conditional one is skipped when it matches. A record
with none of these keys is created, and counted as ``unkeyed``: importing it again creates it
again, and the report says so.

The first bad record stops the import. The error names its place (``Line 17``,
``Bundle.entry[3]``) and what is wrong with it by element path, never by value, and everything
before it is imported, so fixing that record and importing the file again completes the load.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import parse_qsl

import ijson

from hearth.domain import HearthError, errors
from hearth.fhir.definitions import is_resource_type
from hearth.fhir.jsonbody import parse_json_body
from hearth.fhir.search import param_for
from hearth.fhir.transaction import placeholder_key, rewrite_references
from hearth.services.bundles import BundleService
from hearth.services.progress import NullProgress, Progress
from hearth.storage import RecordRepository, WriteBatch

__all__ = ["ImportReport", "ImportService"]

_MAX_LINE = 16 * 1024 * 1024
#: A chunk is written once it holds this much input, however few resources that is, so memory
#: stays bounded when the resources are large (attachments, long narratives).
CHUNK_BYTES = 4 * 1024 * 1024
_UUID_PREFIX = "urn:uuid:"

P = TypeVar("P")


@dataclass(slots=True)
class ImportReport:
    entries: int = 0  # records read from the file
    resources: int = 0  # written: created or updated
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # the stored version already held this content: nothing written
    existing: int = 0  # matched by ifNoneExist or by identifier: nothing written
    unkeyed: int = 0  # created with no id, urn:uuid fullUrl or identifier to match again

    def add(self, other: ImportReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def count(self, status: int, *, conditional: bool = False) -> None:
        """Tally one write's HTTP-style status (``BundleService.load_in`` / ``create_in``)."""
        if status == 201:
            self.created += 1
            self.resources += 1
        elif status == 304:
            self.unchanged += 1
        elif conditional:  # 200 from a conditional create: the match, not written
            self.existing += 1
        else:
            self.updated += 1
            self.resources += 1


class _Counting(io.RawIOBase):
    """A read-only stream that counts the bytes read (for the progress bar and chunk sizes)."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_read = on_read
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.total += len(data)
        self._on_read(len(data))
        return len(data)


@dataclass(frozen=True, slots=True)
class _Planned:
    target: str  # "Type/id" the entry writes
    existing: bool  # an ifNoneExist or identifier condition matched: nothing to write
    keyed: bool  # a re-import finds the same target


class _Chunks(Generic[P]):
    """Records waiting to be written, flushed in one transaction each.

    When a record fails, its chunk rolls back; the records before it in that chunk are written
    again in a transaction of their own, so that everything before the bad record is in, and the
    error names the record's place."""

    def __init__(
        self,
        repo: RecordRepository,
        write: Callable[[WriteBatch, P, ImportReport], None],
        place: Callable[[int], str],
        report: ImportReport,
        limit: int,
        target: Callable[[P], tuple[str, str] | None],
    ) -> None:
        self._repo = repo
        self._write = write
        self._place = place
        self._target = target
        self._report = report
        self._limit = limit
        self._items: list[tuple[int, P]] = []
        self._bytes = 0

    def add(self, position: int, payload: P, size: int) -> None:
        self._items.append((position, payload))
        self._bytes += size
        if len(self._items) >= self._limit or self._bytes >= CHUNK_BYTES:
            self.flush()

    def flush(self) -> None:
        items, self._items, self._bytes = self._items, [], 0
        if items:
            self._commit(items)

    def fail(self, position: int, exc: HearthError) -> HearthError:
        """The error for a bad record found before writing: what came before it is written."""
        self.flush()
        return located(exc, self._place(position), self._report)

    def _commit(self, items: list[tuple[int, P]]) -> None:
        tally = ImportReport()
        failed: int | None = None
        try:
            with self._repo.batch() as batch:
                batch.expect(t for t in (self._target(p) for _n, p in items) if t is not None)
                for index, (_position, payload) in enumerate(items):
                    failed = index
                    self._write(batch, payload, tally)
                failed = None
        except HearthError as exc:
            if failed is None:  # the commit itself failed: no single record to blame
                raise located(exc, f"{self._place(items[0][0])} or after", self._report) from None
            if failed:
                self._commit(items[:failed])
            raise located(exc, self._place(items[failed][0]), self._report) from None
        self._report.add(tally)


def located(exc: HearthError, place: str, report: ImportReport) -> HearthError:
    """``exc`` with the bad record's place and how far the import got (no values: element
    paths from the issues only, docs/design.md "Bulk import")."""
    paths = sorted({i.expression for i in exc.issues if i.expression})[:5]
    where = f" at {', '.join(paths)}" if paths else ""
    done = report.resources + report.unchanged + report.existing
    return HearthError(
        exc.code,
        f"{place}: {exc.detail.rstrip('.')}{where}. Everything before it is imported ({done} "
        f"record{'' if done == 1 else 's'}), nothing after it; fix it and import the file again "
        "(what is imported already is matched, not duplicated).",
        issues=exc.issues,
    )


class ImportService:
    def __init__(self, repo: RecordRepository, bundles: BundleService, *, chunk: int = 500) -> None:
        self._repo = repo
        self._bundles = bundles
        self._chunk = chunk

    # -- entry points -----------------------------------------------------------------------------
    def import_path(self, path: Path, progress: Progress | None = None) -> ImportReport:
        """Import ``path``: ``.ndjson``/``.jsonl`` line by line, anything else as a Bundle."""
        progress = progress or NullProgress()
        size = path.stat().st_size or None  # a named pipe has no size
        if path.suffix.lower() in (".ndjson", ".jsonl"):
            with path.open("rb") as raw:
                return self.import_ndjson(raw, progress, label=path.name, size=size)
        if not path.is_file():
            raise HearthError(
                errors.BAD_IMPORT,
                "A file not named .ndjson or .jsonl is read as a Bundle, and a Bundle is read "
                "twice, so it must be a file, not a pipe.",
            )
        progress.start(f"Reading {path.name}", size)
        try:
            with path.open("rb") as raw:
                plan, refs = self._plan(io.BufferedReader(_Counting(raw, progress.advance)))
        finally:
            progress.finish()
        progress.start(f"Importing {path.name}", size)
        try:
            with path.open("rb") as raw:
                counting = _Counting(raw, progress.advance)
                return self._write_bundle(io.BufferedReader(counting), counting, plan, refs)
        finally:
            progress.finish()

    def import_ndjson(
        self,
        raw: IO[bytes],
        progress: Progress | None = None,
        *,
        label: str = "standard input",
        size: int | None = None,
    ) -> ImportReport:
        """Import NDJSON from a stream (a file, a pipe, standard input), line by line."""
        progress = progress or NullProgress()
        progress.start(f"Importing {label}", size)
        try:
            return self._ndjson(io.BufferedReader(_Counting(raw, progress.advance)))
        finally:
            progress.finish()

    # -- NDJSON ---------------------------------------------------------------------------------
    def _ndjson(self, stream: IO[bytes]) -> ImportReport:
        report = ImportReport()
        chunks: _Chunks[dict[str, Any]] = _Chunks(
            self._repo, self._put, lambda n: f"Line {n}", report, self._chunk, _keyed_target
        )
        number = 0
        for number, line in enumerate(_lines(stream), start=1):
            if line is None:
                raise chunks.fail(number, HearthError(errors.BAD_IMPORT, "Longer than 16 MiB."))
            if not line.strip():
                continue
            report.entries += 1
            try:
                resource = parse_json_body(line)
            except HearthError as exc:
                raise chunks.fail(number, HearthError(errors.BAD_IMPORT, _not_json(exc))) from None
            chunks.add(number, resource, len(line))
        chunks.flush()
        return report

    def _put(self, batch: WriteBatch, resource: dict[str, Any], tally: ImportReport) -> None:
        res_type = resource.get("resourceType")
        if not isinstance(res_type, str) or not is_resource_type(res_type):
            raise HearthError(errors.BAD_IMPORT, "No known resourceType.")
        res_id = resource.get("id")
        if isinstance(res_id, str):
            tally.count(self._bundles.load_in(batch, res_type, resource, res_id=res_id).status)
            return
        condition = identifier_condition(res_type, resource)
        if condition is None:
            tally.unkeyed += 1
        written = self._bundles.create_in(batch, res_type, resource, if_none_exist=condition)
        tally.count(written.status, conditional=True)

    # -- Bundles --------------------------------------------------------------------------------
    def _plan(self, stream: IO[bytes]) -> tuple[list[_Planned], dict[str, str]]:
        """First pass: the id each entry will have, so references can be rewritten as entries
        stream past, whatever their order in the file."""
        plan: list[_Planned] = []
        refs: dict[str, str] = {}
        conditions: dict[tuple[str, str], str] = {}
        for index, entry in enumerate(_entries(stream)):
            try:
                planned = self._plan_entry(entry, conditions)
            except HearthError as exc:
                raise located(exc, f"Bundle.entry[{index}]", ImportReport()) from None
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str):
                refs[placeholder_key(full_url)] = planned.target
            plan.append(planned)
        return plan, refs

    def _plan_entry(
        self, entry: dict[str, Any], conditions: dict[tuple[str, str], str]
    ) -> _Planned:
        resource = entry.get("resource")
        request = entry.get("request") or {}
        method = request.get("method", "PUT" if _has_id(resource) else "POST")
        if not isinstance(resource, dict) or method not in ("POST", "PUT"):
            raise HearthError(
                errors.BAD_IMPORT, "An imported Bundle holds only POST and PUT entries."
            )
        res_type = resource.get("resourceType")
        if not isinstance(res_type, str) or not is_resource_type(res_type):
            raise HearthError(errors.BAD_IMPORT, "No known resourceType.")
        if method == "PUT" and _has_id(resource):
            return _Planned(f"{res_type}/{resource['id']}", existing=False, keyed=True)
        params: list[tuple[str, str]] | None = None
        if isinstance(request.get("ifNoneExist"), str):
            query = request["ifNoneExist"].split("?", 1)[-1]
            params = parse_qsl(query, keep_blank_values=True)
        else:
            from_url = _uuid_of(entry.get("fullUrl"))
            if from_url is not None:
                return _Planned(f"{res_type}/{from_url}", existing=False, keyed=True)
            params = identifier_condition(res_type, resource)
        if params is None:
            return _Planned(f"{res_type}/{self._repo.new_id()}", existing=False, keyed=False)
        key = (res_type, repr(sorted(params)))
        if key in conditions:
            return _Planned(f"{res_type}/{conditions[key]}", existing=True, keyed=True)
        found = self._find(res_type, params)
        conditions[key] = found or self._repo.new_id()
        return _Planned(f"{res_type}/{conditions[key]}", existing=found is not None, keyed=True)

    def _find(self, res_type: str, params: Sequence[tuple[str, str]]) -> str | None:
        with self._repo.batch() as batch:
            found = self._bundles._matches(batch, res_type, params)
        if len(found) > 1:
            raise HearthError(errors.MULTIPLE_MATCHES)
        return found[0] if found else None

    def _write_bundle(
        self,
        stream: IO[bytes],
        counting: _Counting,
        plan: list[_Planned],
        refs: dict[str, str],
    ) -> ImportReport:
        report = ImportReport()
        conditional: dict[str, str] = {}

        def resolve(reference: str) -> str | None:
            key = placeholder_key(reference)
            if key in refs:
                return refs[key]
            if "?" in reference and not reference.startswith(("http:", "https:", "urn:")):
                if reference not in conditional:
                    res_type, _, query = reference.partition("?")
                    found = (
                        self._find(res_type, parse_qsl(query, keep_blank_values=True))
                        if is_resource_type(res_type)
                        else None
                    )
                    if found is None:
                        raise HearthError(errors.UNRESOLVED_REFERENCE)
                    conditional[reference] = f"{res_type}/{found}"
                return conditional[reference]
            return None

        def write(
            batch: WriteBatch, item: tuple[dict[str, Any], _Planned], tally: ImportReport
        ) -> None:
            resource, planned = item
            res_type, res_id = _split_target(planned.target)
            if not planned.keyed:
                tally.unkeyed += 1
            tally.count(self._bundles.load_in(batch, res_type, resource, res_id=res_id).status)

        chunks: _Chunks[tuple[dict[str, Any], _Planned]] = _Chunks(
            self._repo,
            write,
            lambda i: f"Bundle.entry[{i}]",
            report,
            self._chunk,
            lambda item: _split_target(item[1].target),
        )
        read = counting.total
        for index, (planned, entry) in enumerate(zip(plan, _entries(stream), strict=True)):
            report.entries += 1
            if planned.existing:
                report.existing += 1
                continue
            try:
                resource = rewrite_references(entry["resource"], resolve, entries=refs.keys())
            except HearthError as exc:
                raise chunks.fail(index, exc) from None
            chunks.add(index, (resource, planned), counting.total - read)
            read = counting.total
        chunks.flush()
        return report


def _not_json(exc: HearthError) -> str:
    """What is wrong with an NDJSON line that ``parse_json_body`` refused (no content)."""
    if exc.code is errors.MISSING_RESOURCE_TYPE:
        return "A JSON object without a resourceType."
    prefix = errors.MALFORMED_JSON.title.rstrip(".")  # "The request body is not valid JSON"
    if exc.detail.startswith(prefix):  # with the column where the parser stopped, if it said
        return "Not valid JSON" + exc.detail[len(prefix) :].replace("(line 1, column", "(column")
    return exc.detail  # not an object, a repeated key, nesting or array limits: no content


def _keyed_target(resource: dict[str, Any]) -> tuple[str, str] | None:
    """Where an NDJSON record with its own id will be written (``_put``); None otherwise."""
    res_type, res_id = resource.get("resourceType"), resource.get("id")
    if isinstance(res_type, str) and isinstance(res_id, str):
        return res_type, res_id
    return None


def _split_target(target: str) -> tuple[str, str]:
    res_type, res_id = target.split("/", 1)
    return res_type, res_id


def identifier_condition(res_type: str, resource: dict[str, Any]) -> list[tuple[str, str]] | None:
    """``identifier=system|value`` of the first identifier that has both, if ``res_type`` is
    searchable by identifier; the values escaped (search.html#escaping)."""
    if param_for(res_type, "identifier") is None:
        return None
    found = resource.get("identifier")
    for ident in found if isinstance(found, list) else [found]:
        if not isinstance(ident, dict):
            continue
        system, value = ident.get("system"), ident.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value:
            return [("identifier", f"{_escape(system)}|{_escape(value)}")]
    return None


def _escape(value: str) -> str:
    for ch in ("\\", ",", "|", "$"):
        value = value.replace(ch, "\\" + ch)
    return value


def _uuid_of(full_url: Any) -> str | None:
    """The UUID of a ``urn:uuid:`` fullUrl, in canonical form, or None."""
    if not isinstance(full_url, str) or not full_url.lower().startswith(_UUID_PREFIX):
        return None
    try:
        return str(uuid.UUID(full_url[len(_UUID_PREFIX) :]))
    except ValueError:
        return None


def _has_id(resource: Any) -> bool:
    return isinstance(resource, dict) and isinstance(resource.get("id"), str)


def _entries(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """Each ``Bundle.entry`` in turn, parsed on its own (decimals kept as written)."""
    index = 0
    try:
        for entry in ijson.items(stream, "entry.item", use_float=False):
            if not isinstance(entry, dict):
                raise HearthError(errors.BAD_IMPORT, f"Bundle.entry[{index}] is not an object.")
            yield _plain(entry)
            index += 1
    except ijson.JSONError:
        # ijson's message quotes the text it choked on, which may be PHI: not repeated.
        raise HearthError(
            errors.BAD_IMPORT,
            f"The file is not valid JSON at or after Bundle.entry[{index}]. (It was read as a "
            "Bundle, since its name does not end in .ndjson or .jsonl.)",
        ) from None


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


def _lines(stream: IO[bytes]) -> Iterator[bytes | None]:
    """Each line; None for one longer than 16 MiB (the rest of it is skipped)."""
    while True:
        line = stream.readline(_MAX_LINE + 1)
        if not line:
            return
        if len(line) > _MAX_LINE:
            yield None
            return
        yield line
