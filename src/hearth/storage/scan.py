"""The integrity scanner's checks over stored rows (docs/design.md, "Integrity scanner").

``ScanRepository`` is reached only through ``SystemRepository.scanning()``: like the system
repository it never returns a resource, only findings that name rows by type, id, version and
``seq``. Each check reads a range of ``seq`` numbers in a few batched statements:

- every version in the range opens under its key and AAD, names its sealing key, and its MAC
  verifies (``KeyRing.check_versions``); a ``seq`` missing from the gap-free range is named;
- every resource the range touches has a current pointer naming its newest version, and every
  pointer in the range names a stored version;
- (rolling pass) the search index rows of every current version in the range are exactly what
  indexing that version's opened body gives now, and no index row in the range belongs to
  anything else;
- the audit chain after a signed checkpoint (``audit_span``).

The findings table (``integrity_finding``) holds one open row per damaged thing; a finding is
new only once, which is what keeps the scanner from alarming at every tick.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from hearth.audit import (
    ChainFinding,
    FindingKind,
    SignedHead,
    SignedPoint,
    checkpoint_message,
    genesis_hash,
)
from hearth.audit import verify_chain as verify_audit_chain
from hearth.crypto import KeyRing
from hearth.crypto.versions import VersionProblem
from hearth.fhir import jsonbody as fhir_json
from hearth.storage.repository import index_row
from hearth.storage.sql import scan as scan_sql
from hearth.storage.sql.store import VERSION_SEQ, SqlStore

if TYPE_CHECKING:
    from hearth.storage.system import SystemRepository

__all__ = [
    "AuditSpan",
    "FindingState",
    "ScanFinding",
    "ScanKind",
    "ScanRepository",
    "SliceResult",
    "StoredFinding",
]

#: The operator's wording of each problem ``KeyRing.check_versions`` reports.
PROBLEMS = {
    VersionProblem.SEAL: "sealed body does not open (edited body, id or version number)",
    VersionProblem.KEY_ID: "key_id column disagrees with the key that sealed the body",
    VersionProblem.TOMBSTONE_BODY: "a deletion carries a body",
    VersionProblem.MAC: "MAC does not match (edited MAC, time, deletion flag or sequence)",
    VersionProblem.UNREADABLE: "row cannot be read",
}


class ScanKind(enum.StrEnum):
    VERSION = "version"  # a stored version fails its seal or MAC check
    MISSING = "missing"  # a seq in the gap-free sequence has no row
    POINTER = "pointer"  # a current pointer does not name the newest version
    INDEX = "index"  # search index rows disagree with the current version
    AUDIT = "audit"  # an audit entry, checkpoint or the signed head
    TRAIL = (
        "trail"  # the whole trail: the outside anchor; versions and writes account for each other
    )


class FindingState(enum.StrEnum):
    OPEN = "open"
    REPAIRED = "repaired"  # rewritten from a backup by ``hearth integrity repair``
    CLEARED = "cleared"  # a later check found it healthy


@dataclass(frozen=True, slots=True)
class ScanFinding:
    """One damaged thing, named by type, id, version and ``seq``, never by content."""

    kind: ScanKind
    seq: int
    res_type: str | None
    res_id: str | None
    version: int | None
    problem: str
    #: For kind ``audit``: the chain finding's kind (edited, deleted, ...).
    detail: str = ""

    @property
    def key(self) -> str:
        """The de-duplication key: one open finding, and one alarm, per damaged thing."""
        match self.kind:
            case ScanKind.POINTER | ScanKind.INDEX if self.res_type is not None:
                return f"{self.kind.value}|{self.res_type}/{self.res_id}"
            case ScanKind.AUDIT | ScanKind.TRAIL:
                return f"{self.kind.value}|{self.seq}|{self.detail}"
            case _:
                return f"{self.kind.value}|{self.seq}"

    @property
    def subject(self) -> str:
        """The alarm's subject (``hearth.domain.Alarm``)."""
        if self.kind in (ScanKind.AUDIT, ScanKind.TRAIL):
            return "audit-chain"
        if self.res_type is not None:
            return f"{self.res_type}/{self.res_id}"
        return f"seq:{self.seq}"

    def __str__(self) -> str:
        if self.kind in (ScanKind.AUDIT, ScanKind.TRAIL):
            return f"audit entry {self.seq}: {self.detail}: {self.problem}"
        if self.res_type is None:
            where = "(unknown resource)"
        elif self.version is None:
            where = f"{self.res_type}/{self.res_id}"
        else:
            where = f"{self.res_type}/{self.res_id}/_history/{self.version}"
        return f"{self.kind.value} seq {self.seq} {where}: {self.problem}"


@dataclass(frozen=True, slots=True)
class StoredFinding:
    finding: ScanFinding
    state: FindingState
    first_found_us: int
    last_found_us: int
    closed_us: int | None
    closed_by: str | None


@dataclass(slots=True)
class SliceResult:
    """What checking the versions with ``after_seq < seq <= last_seq`` found."""

    after_seq: int
    last_seq: int
    read: int = 0
    findings: list[ScanFinding] = field(default_factory=list)
    #: Resources whose pointer (and, with ``index``, index rows) were checked.
    resources: set[tuple[str, str]] = field(default_factory=set)
    index: bool = False

    def checked_keys(self) -> set[str]:
        """Keys of per-resource findings this slice would have found again."""
        keys = {f"pointer|{t}/{i}" for t, i in self.resources}
        if self.index:
            keys |= {f"index|{t}/{i}" for t, i in self.resources}
        return keys


@dataclass(slots=True)
class AuditSpan:
    """What verifying audit entries ``after_seq < seq <= last_seq`` found."""

    after_seq: int
    last_seq: int
    entries: int = 0
    reached_head: bool = False
    head_seq: int = 0
    findings: list[ScanFinding] = field(default_factory=list)


def _audit_finding(f: ChainFinding, kind: ScanKind = ScanKind.AUDIT) -> ScanFinding:
    return ScanFinding(kind, f.seq, None, None, None, f.message, f.kind.value)


class ScanRepository:
    """The scanner's reads and its bookkeeping; see the module docstring."""

    def __init__(self, *, store: SqlStore, keyring: KeyRing, system: SystemRepository) -> None:
        self._store = store
        self._keys = keyring
        # The SystemRepository that made this (its audit chain helpers and anchor).
        self._system = system

    # -- versions ------------------------------------------------------------------------------
    def high_seq(self) -> int:
        with self._store.read() as conn:
            return self._store.peek_seq(conn, VERSION_SEQ)

    def check_slice(
        self, *, after_seq: int, upto_seq: int, limit: int, index: bool = False
    ) -> SliceResult:
        """Check up to ``limit`` versions after ``after_seq`` (at most to ``upto_seq``, which
        must not exceed the version counter); a missing ``seq`` in the range is a finding."""
        with self._store.snapshot() as conn:
            rows = scan_sql.version_tuples(
                conn, after_seq=after_seq, upto_seq=upto_seq, limit=limit
            )
            # The range this slice covers: to the last row read, or to ``upto_seq`` when the
            # batch was not full (every seq up to it was read, or is missing).
            last = upto_seq if len(rows) < limit else int(rows[-1][0])
            result = SliceResult(after_seq, last, index=index)
            self._check_rows(conn, rows, result, index=index)
        return result

    def check_seqs(self, seqs: Iterable[int]) -> list[ScanFinding]:
        """Check exactly these versions (after a repair): seal, MAC, pointer and index rows.
        A few statements per version: for the handful of rows a repair touches."""
        findings: list[ScanFinding] = []
        with self._store.snapshot() as conn:
            wanted = sorted(set(seqs))
            rows = {int(r[0]): r for r in scan_sql.version_tuples_by_seq(conn, wanted)}
            for seq in wanted:
                part = SliceResult(seq - 1, seq, index=True)
                self._check_rows(conn, [rows[seq]] if seq in rows else [], part, index=True)
                findings += part.findings
        return findings

    def _check_rows(
        self,
        conn: Connection,
        rows: Sequence[tuple[Any, ...]],
        result: SliceResult,
        *,
        index: bool,
    ) -> None:
        findings = result.findings
        result.read = len(rows)
        expected = result.after_seq + 1
        for row in rows:
            seq = int(row[0])
            findings.extend(self._missing(expected, seq))
            expected = seq + 1
        findings.extend(self._missing(expected, result.last_seq + 1))
        if index:
            self._check_index(conn, rows, result, result.after_seq, result.last_seq)
        else:
            self._check_versions(rows, result, keep=frozenset())
        self._check_pointers(conn, rows, result)
        # A wrong pointer makes the index (built from the current version) look wrong too;
        # the pointer is the finding to act on.
        bad = {(f.res_type, f.res_id) for f in findings if f.kind is ScanKind.POINTER}
        if bad:
            findings[:] = [
                f
                for f in findings
                if f.kind is not ScanKind.INDEX or (f.res_type, f.res_id) not in bad
            ]

    @staticmethod
    def _missing(first: int, stop: int) -> Iterator[ScanFinding]:
        for seq in range(first, stop):
            yield ScanFinding(ScanKind.MISSING, seq, None, None, None, "row is missing")

    def _check_versions(
        self, rows: Sequence[tuple[Any, ...]], result: SliceResult, *, keep: frozenset[int]
    ) -> dict[int, bytes]:
        problems, bodies = self._keys.check_versions(rows, keep=keep)
        if problems:
            by_seq = {int(r[0]): r for r in rows}
            for seq, problem in problems:
                row = by_seq[seq]
                result.findings.append(
                    ScanFinding(
                        ScanKind.VERSION,
                        seq,
                        _text(row[1]),
                        _text(row[2]),
                        _int(row[3]),
                        PROBLEMS[problem],
                    )
                )
        return bodies

    def _check_pointers(
        self, conn: Connection, rows: Sequence[tuple[Any, ...]], result: SliceResult
    ) -> None:
        """Every resource the slice touches has a pointer to its newest version; every pointer
        into the slice names a stored version of its own resource.

        One indexed range read (the pointers into the slice) settles most resources: a pointer
        into the slice must name the newest version the slice holds of its resource. Only
        resources whose pointer lies outside the slice are looked up; a pointer past the slice
        is checked when a later slice reaches it, one before it is stale."""
        a, b = result.after_seq, result.last_seq
        if b <= a:
            return
        by_seq = {int(r[0]): r for r in rows}
        newest: dict[tuple[str, str], tuple[int, int]] = {}
        for r in rows:
            res = (_text(r[1]) or "", _text(r[2]) or "")
            seq = int(r[0])
            top = newest.get(res)
            if top is None or seq > top[1]:
                newest[res] = (_int(r[3]) or 0, seq)
        in_range = scan_sql.pointers_in_range(conn, after_seq=a, upto_seq=b)
        pointed = {(p.res_type, p.res_id): p for p in in_range}
        result.resources |= set(newest) | set(pointed)
        suspects: dict[tuple[str, str], scan_sql.PointerRow] = {}
        for res, pointer in pointed.items():
            row = by_seq.get(pointer.seq)
            top = newest.get(res)
            if row is None:
                self._pointer(result, pointer, "current pointer names no stored version")
            elif (_text(row[1]), _text(row[2]), _int(row[3])) != (
                pointer.res_type,
                pointer.res_id,
                pointer.version,
            ):
                suspects[res] = pointer
            elif top is not None and top[1] > pointer.seq:
                self._pointer(
                    result, pointer, f"current pointer is not the newest version ({top[0]})"
                )
            elif bool(row[5]) != bool(pointer.deleted) or row[4] != pointer.ts_us:
                suspects[res] = pointer
        if suspects:
            # A pointer that disagrees with the row it names: most likely moved back to an
            # older version; say so if a newer one exists.
            stored_top = scan_sql.newest_versions_of(conn, suspects)
            for res, pointer in suspects.items():
                top = stored_top.get(res)
                if top is not None and top[1] > pointer.seq:
                    problem = f"current pointer is not the newest version ({top[0]})"
                else:
                    problem = "current pointer disagrees with the version it names"
                self._pointer(result, pointer, problem)
        outside = [res for res in newest if res not in pointed]
        found = scan_sql.current_pointers_of(conn, outside) if outside else {}
        for res in outside:
            version, seq = newest[res]
            current = found.get(res)
            if current is None:
                result.findings.append(
                    ScanFinding(
                        ScanKind.POINTER,
                        seq,
                        res[0],
                        res[1],
                        version,
                        "resource has no current pointer",
                    )
                )
            elif int(current.seq) < seq:
                self._pointer(
                    result, current, f"current pointer is not the newest version ({version})"
                )

    @staticmethod
    def _pointer(result: SliceResult, pointer: scan_sql.PointerRow, problem: str) -> None:
        result.findings.append(
            ScanFinding(
                ScanKind.POINTER,
                int(pointer.seq),
                pointer.res_type,
                pointer.res_id,
                int(pointer.version),
                problem,
            )
        )

    def _check_index(
        self,
        conn: Connection,
        rows: Sequence[tuple[Any, ...]],
        result: SliceResult,
        after_seq: int,
        upto_seq: int,
    ) -> None:
        """Recompute the index rows of every current, live version in the range from its opened
        body and compare them with the stored rows in the range, in both directions."""
        pointers = scan_sql.pointers_in_range(conn, after_seq=after_seq, upto_seq=upto_seq)
        live = {p.seq: p for p in pointers if not p.deleted}
        bodies = self._check_versions(rows, result, keep=frozenset(live))
        damaged = {f.seq for f in result.findings if f.kind is ScanKind.VERSION}
        stored = scan_sql.stored_index(conn, after_seq=after_seq, upto_seq=upto_seq)
        for seq, pointer in sorted(live.items()):
            result.resources.add((pointer.res_type, pointer.res_id))
            body = bodies.get(seq)
            if body is None:
                continue  # damaged or missing: a version finding names it already
            problem = self._index_problem(seq, pointer, body, stored)
            if problem is not None:
                result.findings.append(
                    ScanFinding(
                        ScanKind.INDEX,
                        seq,
                        pointer.res_type,
                        pointer.res_id,
                        pointer.version,
                        problem,
                    )
                )
        for seq in sorted(stored.seqs() - set(live) - damaged):
            res_type, res_id, _ts = stored.resources.get(seq, (None, None, 0))
            result.findings.append(
                ScanFinding(
                    ScanKind.INDEX,
                    seq,
                    res_type,
                    res_id,
                    None,
                    "index rows belong to no current version",
                )
            )

    def _index_problem(
        self, seq: int, pointer: scan_sql.PointerRow, body: bytes, stored: scan_sql.StoredIndex
    ) -> str | None:
        try:
            expected = index_row(
                self._keys,
                seq,
                pointer.res_type,
                pointer.res_id,
                pointer.ts_us,
                fhir_json.loads(body),
            )
        except Exception:  # noqa: BLE001 - a body the indexer refuses is itself a finding
            return "the current version cannot be indexed"
        if stored.resources.get(seq) != (pointer.res_type, pointer.res_id, pointer.ts_us):
            return "search_resource row is missing or disagrees"
        if stored.hashes.get(seq, set()) != expected.hashes:
            return "blind index rows (search_hash) disagree with the current version"
        if stored.refs.get(seq, set()) != expected.refs or stored.ref_types.get(
            seq, {pointer.res_type}
        ) != {pointer.res_type}:
            return "reference index rows (search_reference) disagree with the current version"
        if stored.patients.get(seq, set()) != expected.patients:
            return "compartment rows (search_compartment) disagree with the current version"
        if stored.links.get(seq, set()) != set(expected.links):
            return "care relationship rows (search_care_link) disagree with the current version"
        return None

    def beyond_counter(self, *, limit: int = 1000) -> list[ScanFinding]:
        """Rows numbered past the version counter: no Hearth writer made them (every writer
        takes its ``seq`` from the counter in the same transaction), so each is a finding."""
        with self._store.snapshot() as conn:
            high = self._store.peek_seq(conn, VERSION_SEQ)
            rows = scan_sql.version_tuples(conn, after_seq=high, upto_seq=2**62, limit=limit)
        return [
            ScanFinding(
                ScanKind.VERSION,
                int(r[0]),
                _text(r[1]),
                _text(r[2]),
                _int(r[3]),
                f"row numbered past the version counter ({high}): not written by Hearth",
            )
            for r in rows
        ]

    def newest_seqs(self, resources: Iterable[tuple[str, str]]) -> set[int]:
        """The ``seq`` of each resource's newest stored version."""
        with self._store.read() as conn:
            return {seq for _v, seq in scan_sql.newest_versions_of(conn, resources).values()}

    # -- whole-table checks, once per full pass ---------------------------------------------------
    def check_all_pointers(self) -> list[ScanFinding]:
        return [
            ScanFinding(ScanKind.POINTER, f.seq, f.res_type, f.res_id, f.version, f.problem)
            for f in self._system.check_current_pointers()
        ]

    # -- the audit chain --------------------------------------------------------------------------
    def audit_span(self, *, after_seq: int, limit: int) -> AuditSpan:
        """Verify audit entries from the last signed checkpoint at or before ``after_seq`` up
        to ``limit`` entries further (and the signed head when the span reaches it)."""
        store = self._store
        with store.snapshot() as conn:
            meta = store.meta(conn)
            every = int(meta.get("audit_checkpoint_every", 1000))
            head = store.audit_head(conn, for_update=False)
            head_seq = head.seq if head is not None else 0
            start = store.checkpoint_at_or_before(conn, min(after_seq, head_seq))
            findings: list[ChainFinding] = []
            if start is None:
                start_seq, start_hash = 0, genesis_hash(meta.get("instance_id", ""))
            else:
                start_seq, start_hash = start.seq, start.hash
                if not self._system.check_signature(
                    start.key_id, start.signature, checkpoint_message(start.seq, start.hash)
                ):
                    findings.append(
                        ChainFinding(start.seq, FindingKind.BAD_SIGNATURE, "checkpoint signature")
                    )
            upto = min(head_seq, start_seq + max(limit, every))
            reached = upto >= head_seq
            extra: list[ChainFinding] = []
            seen = [start_seq]

            def entries() -> Iterator[Any]:
                for row in store.iter_audit(conn, after_seq=start_seq, upto_seq=upto):
                    seen.append(row.seq)
                    yield self._system.stored_audit_entry(row, extra)

            signed_head = (
                SignedHead(head.seq, head.hash, head.version_seq, head.key_id, head.signature)
                if head is not None
                else None
            )
            findings += verify_audit_chain(
                entries(),
                genesis=start_hash,
                link=self._keys.audit_link,
                head=signed_head,
                checkpoints=[
                    SignedPoint(c.seq, c.hash, c.key_id, c.signature)
                    for c in store.checkpoints(conn, after_seq=start_seq, upto_seq=upto)
                ],
                checkpoint_every=every,
                version_seq=store.peek_seq(conn, VERSION_SEQ),
                check_signature=self._system.check_signature,
                start_seq=start_seq,
                partial=not reached,
            )
            findings += extra
        return AuditSpan(
            start_seq,
            upto if reached else max(seen),
            entries=len(seen) - 1,
            reached_head=reached,
            head_seq=head_seq,
            findings=[_audit_finding(f) for f in findings],
        )

    def audit_whole(self) -> list[ScanFinding]:
        """What only the whole trail can tell: the anchor outside the database, and versions
        and audited writes that do not account for each other (once per full pass)."""
        return [_audit_finding(f, ScanKind.TRAIL) for f in self._system.audit_cross_checks()]

    # -- cursors, lease, findings -----------------------------------------------------------------
    def state(self) -> dict[str, int]:
        with self._store.read() as conn:
            return scan_sql.scanner_state(conn)

    def set_state(self, values: dict[str, int]) -> None:
        with self._store.write() as conn:
            scan_sql.set_scanner_state(conn, values)

    def take_lease(self, *, now_us: int, until_us: int, holder: int) -> bool:
        with self._store.write() as conn:
            return scan_sql.take_lease(
                conn, "lease", now_us=now_us, until_us=until_us, holder=holder
            )

    def release_lease(self, *, holder: int) -> None:
        with self._store.write() as conn:
            scan_sql.release_lease(conn, "lease", holder=holder)

    def record_findings(
        self,
        findings: Sequence[ScanFinding],
        *,
        now_us: int,
        by: str,
        clear_ranges: Sequence[tuple[int, int]] = (),
        clear_keys: Iterable[str] = (),
        clear_audit: Sequence[tuple[int, int]] = (),
        clear_kinds: Iterable[ScanKind] = (),
    ) -> list[ScanFinding]:
        """Store ``findings`` and return those that are new (not already open).

        Open findings this run checked again and did not find are closed as ``cleared``: the
        version and missing findings with a ``seq`` in one of ``clear_ranges`` (``(after,
        upto]``), the per-resource findings named in ``clear_keys``, the audit findings with a
        ``seq`` in one of ``clear_audit``, and every finding of ``clear_kinds`` (the run checked
        all of that kind)."""
        unique: dict[str, ScanFinding] = {}
        for f in findings:
            unique.setdefault(f.key, f)
        new: list[ScanFinding] = []
        keys = set(clear_keys)
        kinds = {k.value for k in clear_kinds}
        with self._store.write() as conn:
            already = scan_sql.open_keys(conn, list(unique))
            for key, f in unique.items():
                if key in already:
                    scan_sql.touch_finding(conn, key, now_us=now_us)
                    continue
                scan_sql.insert_finding(
                    conn,
                    active_key=key,
                    kind=f.kind.value,
                    seq=f.seq,
                    res_type=f.res_type,
                    res_id=f.res_id,
                    version=f.version,
                    problem=f"{f.detail}: {f.problem}" if f.detail else f.problem,
                    now_us=now_us,
                )
                new.append(f)
            stale: list[str] = []
            for row in scan_sql.finding_rows(conn):
                key = row.active_key or ""
                if key in unique:
                    continue
                if (
                    row.kind in kinds
                    or key in keys
                    or (
                        row.kind in ("version", "missing")
                        and any(a < row.seq <= b for a, b in clear_ranges)
                    )
                    or (row.kind == "audit" and any(a < row.seq <= b for a, b in clear_audit))
                ):
                    stale.append(key)
            if stale:
                scan_sql.close_findings(
                    conn, stale, state=FindingState.CLEARED.value, now_us=now_us, by=by
                )
        return new

    def close(self, keys: Sequence[str], *, state: FindingState, now_us: int, by: str) -> int:
        with self._store.write() as conn:
            return scan_sql.close_findings(conn, keys, state=state.value, now_us=now_us, by=by)

    def findings(
        self, *, states: Sequence[FindingState] = (FindingState.OPEN,)
    ) -> list[StoredFinding]:
        with self._store.read() as conn:
            rows = scan_sql.finding_rows(conn, states=[s.value for s in states])
        out = []
        for r in rows:
            detail, problem = "", r.problem
            if r.kind in ("audit", "trail") and ": " in r.problem:
                detail, problem = r.problem.split(": ", 1)
            out.append(
                StoredFinding(
                    ScanFinding(
                        ScanKind(r.kind), r.seq, r.res_type, r.res_id, r.version, problem, detail
                    ),
                    FindingState(r.state),
                    r.first_found_us,
                    r.last_found_us,
                    r.closed_us,
                    r.closed_by,
                )
            )
        return out


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None
