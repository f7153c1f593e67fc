"""The system repository: unrestricted access for initialisation, key management and scans.

It is deliberately loud: built only by ``wiring.Container.system_repository`` with a stated
purpose, every operation it performs on data is audited under a ``system:`` principal, and it
never returns a resource to an adapter, only findings, counts and identifiers.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection

from hearth.audit import (
    AuditRecord,
    ChainFinding,
    FindingKind,
    SignedHead,
    SignedPoint,
    StoredEntry,
    genesis_hash,
    head_message,
    verify_chain,
)
from hearth.crypto import KeyEncryptionKey, KeyPurpose, KeyRing, sealed_key_id
from hearth.domain import Clock, HearthError, IntegrityError, Outcome, Random, ResourceRef, errors
from hearth.storage.anchor import AnchorFile
from hearth.storage.audit import AuditTrail
from hearth.storage.index_workers import IndexWorkers, Unindexed
from hearth.storage.key_admin import create_key
from hearth.storage.keys import wrapped_keys
from hearth.storage.repair import RestoreResult, restore_versions
from hearth.storage.repository import from_us, index_pages, open_version, to_us
from hearth.storage.scan import ScanRepository
from hearth.storage.sql import search as search_sql
from hearth.storage.sql.store import (
    VERSION_SEQ,
    AuditHeadRow,
    AuditRow,
    SqlStore,
    VersionRow,
)

__all__ = [
    "CHECKPOINT_META",
    "DEFAULT_CHECKPOINT_EVERY",
    "SystemRepository",
    "VersionFinding",
    "initialise_store",
]


#: Instance metadata naming the audit checkpoint interval fixed at ``hearth init``.
CHECKPOINT_META = "audit_checkpoint_every"
DEFAULT_CHECKPOINT_EVERY = 1000


def _iso(ts_us: int) -> str:
    return from_us(ts_us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stored_entry(row: AuditRow, extra: list[ChainFinding]) -> StoredEntry:
    """The verifier's view of a row: every query column is checked against the body, and the
    key id beside a sealed detail against the key id inside it."""
    try:
        sealed = orjson.loads(row.body).get("sealed")
        inside = sealed_key_id(base64.b64decode(sealed)) if isinstance(sealed, str) else None
    except (ValueError, AttributeError, IntegrityError, orjson.JSONDecodeError):
        inside = -1  # the body is damaged; the chain check names it
    if inside not in (-1, row.detail_key_id):
        extra.append(ChainFinding(row.seq, FindingKind.EDITED, "column 'detail_key_id' disagrees"))
    return StoredEntry(
        row.seq,
        row.body,
        row.prev_hash,
        row.hash,
        {
            "actor": row.actor,
            "action": row.action,
            "outcome": row.outcome,
            "type": row.res_type,
            "id": row.res_id,
            "version": row.version,
            "patient": row.patient,
            "ts": _iso(row.ts_us),
        },
    )


@dataclass(frozen=True, slots=True)
class VersionFinding:
    """A damaged or missing version, named so an operator can find and repair it."""

    seq: int
    res_type: str | None
    res_id: str | None
    version: int | None
    problem: str

    def __str__(self) -> str:
        where = (
            f"{self.res_type}/{self.res_id}/_history/{self.version}"
            if self.res_type
            else "(unknown resource)"
        )
        return f"version seq {self.seq} {where}: {self.problem}"


def initialise_store(
    store: SqlStore,
    kek: KeyEncryptionKey,
    *,
    instance_id: str,
    clock: Clock,
    random: Random,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
) -> None:
    """Seed a freshly migrated database: counters, one key per purpose, and the audit chain's
    genesis head, signed like every later head (an unsigned head is always a finding)."""
    now_us = to_us(clock.now())
    with store.write() as conn:
        if store.meta(conn):
            raise HearthError(errors.BAD_PARAMETER, "This database already holds an instance.")
        store.init_counters(conn)
        for purpose in KeyPurpose:
            create_key(store, conn, kek, purpose, now_us=now_us, random=random)
        store.bump_key_epoch(conn)
        store.set_meta(conn, "instance_id", instance_id)
        store.set_meta(conn, "created_us", str(now_us))
        store.set_meta(conn, CHECKPOINT_META, str(checkpoint_every))
        genesis = genesis_hash(instance_id)
        ring = KeyRing(wrapped_keys(store.keys(conn)), kek)
        key_id, signature = ring.sign(head_message(0, genesis, 0))
        store.init_audit_head(conn, AuditHeadRow(0, genesis, 0, key_id, signature))


class SystemRepository:
    """Unrestricted operations, each audited under ``system:<purpose>``."""

    def __init__(
        self,
        *,
        purpose: str,
        store: SqlStore,
        keyring: KeyRing,
        audit: AuditTrail,
        clock: Clock,
        random: Random,
        operator: str | None = None,
        anchor: AnchorFile | None = None,
        index_workers: IndexWorkers | None = None,
    ) -> None:
        self.actor = f"system:{purpose}"
        self._index_workers = index_workers
        self._operator = operator
        self._anchor = anchor
        self._store = store
        self._keys = keyring
        self._audit = audit
        self._clock = clock
        self._random = random

    def record(
        self,
        action: str,
        outcome: Outcome,
        *,
        code: str | None = None,
        res_type: str | None = None,
        res_id: str | None = None,
        version: int | None = None,
    ) -> None:
        """Audit one system operation (group-committed, durable on return)."""
        self._audit.record(
            AuditRecord(
                ts=self._clock.now(),
                actor=self.actor,
                actor_kind="system",
                action=action,
                outcome=outcome,
                res_type=res_type,
                res_id=res_id,
                version=version,
                session=self._operator,
                code=code,
            )
        )

    # -- integrity ------------------------------------------------------------------------
    def version_count(self) -> int:
        with self._store.snapshot() as conn:
            return self._store.peek_seq(conn, VERSION_SEQ)

    def scan_versions(
        self, *, after_seq: int = 0, on_row: Callable[[int], None] | None = None
    ) -> Iterator[VersionFinding]:
        """Open every version after ``after_seq`` and check its MAC and place in the sequence."""
        with self._store.snapshot() as conn:
            high = self._store.peek_seq(conn, VERSION_SEQ)
            expected = after_seq + 1
            per_resource: dict[tuple[str, str], int] = {}
            for row in self._store.iter_versions(conn, after_seq=after_seq):
                if on_row is not None:
                    on_row(row.seq)
                if row.seq > expected:
                    for missing in range(expected, row.seq):
                        yield VersionFinding(missing, None, None, None, "row is missing")
                expected = row.seq + 1
                try:
                    problem = self._check_version(row)
                except Exception as exc:  # noqa: BLE001 - a hostile row must not stop the scan
                    problem = f"row cannot be read ({type(exc).__name__})"
                if problem is not None:
                    yield VersionFinding(row.seq, row.res_type, row.res_id, row.version, problem)
                    if problem.startswith(("sealed body", "row cannot")):
                        continue
                key = (row.res_type, row.res_id)
                previous = per_resource.get(key, 0)
                if after_seq == 0 and row.version != previous + 1:
                    yield VersionFinding(
                        row.seq,
                        row.res_type,
                        row.res_id,
                        row.version,
                        f"version number follows {previous}",
                    )
                per_resource[key] = row.version
            if expected <= high:
                for missing in range(expected, high + 1):
                    yield VersionFinding(missing, None, None, None, "row is missing")

    def _check_version(self, row: VersionRow) -> str | None:
        """What is wrong with one stored version, or None: it opens under its AAD, its key id
        column names the key that sealed it, and its MAC verifies."""
        body: bytes | None = None
        if not row.deleted:
            try:
                if row.body is None:
                    raise IntegrityError()
                body = self._keys.open_resource(
                    row.body, aad=ResourceRef(row.res_type, row.res_id).aad(row.version)
                )
            except IntegrityError:
                return "sealed body does not open (edited body, id or version number)"
            if row.key_id != sealed_key_id(row.body):
                return "key_id column disagrees with the key that sealed the body"
        elif row.body is not None or row.key_id is not None:
            return "a deletion carries a body"
        try:
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
            return "MAC does not match (edited MAC, time, deletion flag or sequence)"
        return None

    def check_current_pointers(self) -> Iterator[VersionFinding]:
        """Every resource's current pointer names its newest version, and nothing else."""
        with self._store.snapshot() as conn:
            newest = {(t, i): (v, s) for t, i, v, s in self._store.max_versions(conn)}
            for res_type, res_id, version, seq, _deleted in self._store.current_pointers(conn):
                expected = newest.pop((res_type, res_id), None)
                if expected is None:
                    yield VersionFinding(
                        seq, res_type, res_id, version, "current pointer names no stored version"
                    )
                elif expected != (version, seq):
                    yield VersionFinding(
                        seq,
                        res_type,
                        res_id,
                        version,
                        f"current pointer is not the newest version ({expected[0]})",
                    )
            for (res_type, res_id), (version, seq) in newest.items():
                yield VersionFinding(
                    seq, res_type, res_id, version, "resource has no current pointer"
                )

    def verify_audit_chain(
        self,
        *,
        on_entry: Callable[[int], None] | None = None,
        use_anchor: bool = True,
    ) -> Iterator[ChainFinding]:
        """Verify the chain, its signed head and checkpoints, the anchor kept outside the
        database (unless ``use_anchor`` is false), and that the audit and the stored versions
        account for each other."""
        extra: list[ChainFinding] = []
        anchor = self._anchor.read() if self._anchor is not None and use_anchor else None
        with self._store.snapshot() as conn:
            meta = self._store.meta(conn)
            head = self._store.audit_head(conn, for_update=False)
            checkpoints = self._store.checkpoints(conn)
            version_seq = self._store.peek_seq(conn, VERSION_SEQ)
            signed_head = (
                SignedHead(head.seq, head.hash, head.version_seq, head.key_id, head.signature)
                if head is not None
                else None
            )
            entries = (_stored_entry(r, extra) for r in self._store.iter_audit(conn))
            yield from verify_chain(
                entries,
                genesis=genesis_hash(meta.get("instance_id", "")),
                link=self._keys.audit_link,
                head=signed_head,
                checkpoints=[
                    SignedPoint(c.seq, c.hash, c.key_id, c.signature) for c in checkpoints
                ],
                checkpoint_every=int(meta.get(CHECKPOINT_META, DEFAULT_CHECKPOINT_EVERY)),
                version_seq=version_seq,
                check_signature=self.check_signature,
                anchor=anchor,
                on_entry=on_entry,
            )
            yield from extra
            yield from self._unaccounted_writes(conn)

    def reset_anchor(self, reason: str) -> tuple[SignedHead | None, SignedHead]:
        """Move the outside anchor to this database's head after a deliberate restore.

        The audit writer only ever moves the anchor forward along the chain, so a database
        restored from a backup (or rolled back by an attacker) stays flagged until an operator
        says it was deliberate. This is that statement: the chain must verify on its own
        (signatures, checkpoints, links, versions accounted for); the reset is an audit entry
        naming the previous anchor and the reason; then the anchor names the new head.
        Returns the previous anchor (None if there was none) and the new one.
        """
        if self._anchor is None:
            raise HearthError(errors.BAD_PARAMETER, "This instance keeps no audit anchor.")
        if not reason.strip():
            raise HearthError(errors.BAD_PARAMETER, "Say why the anchor is reset (--reason).")
        findings = list(self.verify_audit_chain(use_anchor=False))
        if findings:
            self.record("audit.anchor_reset", Outcome.DENIED, code=errors.AUDIT_CHAIN_BROKEN.code)
            raise HearthError(
                errors.AUDIT_CHAIN_BROKEN,
                f"The audit chain in this database does not verify on its own ({findings[0]}); "
                "the anchor is kept.",
            )
        previous = self._anchor.read()
        detail = orjson.dumps(
            {
                "previous_anchor": (
                    {"seq": previous.seq, "hash": previous.hash.hex()} if previous else None
                ),
                "reason": reason.strip(),
            }
        )
        self._audit.record(
            AuditRecord(
                ts=self._clock.now(),
                actor=self.actor,
                actor_kind="system",
                action="audit.anchor_reset",
                outcome=Outcome.SUCCESS,
                session=self._operator,
                detail=detail,
            )
        )
        with self._store.read() as conn:
            head = self._store.audit_head(conn, for_update=False)
        if head is None or head.signature is None:
            raise HearthError(errors.AUDIT_FAILED, "The audit chain has no signed head.")
        new = SignedHead(head.seq, head.hash, head.version_seq, head.key_id, head.signature)
        self._anchor.write(new)
        return previous, new

    def stored_audit_entry(self, row: AuditRow, extra: list[ChainFinding]) -> StoredEntry:
        """The verifier's view of one audit row (for incremental verification)."""
        return _stored_entry(row, extra)

    def audit_cross_checks(self) -> Iterator[ChainFinding]:
        """The whole-trail checks that incremental verification of the chain cannot make:
        the anchor outside the database lies on the chain, and stored versions and audited
        writes account for each other."""
        anchor = self._anchor.read() if self._anchor is not None else None
        with self._store.snapshot() as conn:
            if anchor is not None:
                yield from self._anchor_findings(conn, anchor)
            yield from self._unaccounted_writes(conn)

    def _anchor_findings(self, conn: Connection, anchor: SignedHead) -> Iterator[ChainFinding]:
        if not self.check_signature(
            anchor.key_id,
            anchor.signature or b"",
            head_message(anchor.seq, anchor.hash, anchor.version_seq),
        ):
            yield ChainFinding(
                anchor.seq, FindingKind.BAD_SIGNATURE, "the outside anchor is forged"
            )
            return
        if anchor.seq == 0:
            return
        rows = list(self._store.iter_audit(conn, after_seq=anchor.seq - 1, upto_seq=anchor.seq))
        if not rows:
            yield ChainFinding(
                anchor.seq,
                FindingKind.TRUNCATED,
                f"entry {anchor.seq}, which the anchor kept outside the database names, is gone "
                "(the database was rolled back)",
            )
        elif rows[0].hash != anchor.hash:
            yield ChainFinding(
                anchor.seq, FindingKind.CHECKPOINT_MISMATCH, "differs from the outside anchor"
            )

    def restore_versions(
        self,
        copies: Mapping[int, tuple[Any, ...]],
        *,
        resources: Iterable[tuple[str, str]] = (),
        stray_index: Iterable[int] = (),
        dry_run: bool,
    ) -> RestoreResult:
        """Rewrite damaged version rows with verified copies of their original bytes, and
        recompute what derives from them (``hearth.storage.repair``); audited in the same
        transaction as ``integrity.repair`` under this repository's actor."""

        def record(**fields: Any) -> AuditRecord:
            return AuditRecord(
                ts=self._clock.now(),
                actor=self.actor,
                actor_kind="system",
                session=self._operator,
                **fields,
            )

        return restore_versions(
            store=self._store,
            keys=self._keys,
            audit=self._audit,
            record=record,
            copies=copies,
            resources=resources,
            stray_index=stray_index,
            dry_run=dry_run,
        )

    def scanning(self) -> ScanRepository:
        """The integrity scanner's checks and bookkeeping (``hearth.storage.scan``)."""
        return ScanRepository(store=self._store, keyring=self._keys, system=self)

    def _unaccounted_writes(self, conn: Connection, limit: int = 1000) -> Iterator[ChainFinding]:
        """Every stored version must have the audit entry of the write that made it, and every
        audited write its version: removing either side, even consistently, is found."""
        for row in self._store.versions_without_audit(conn, limit=limit):
            yield ChainFinding(
                0,
                FindingKind.DELETED,
                f"no audit entry records writing {row.res_type}/{row.res_id} version "
                f"{row.version} (seq {row.seq})",
            )
        for seq, res_type, res_id, version in self._store.audited_writes_without_version(
            conn, limit=limit
        ):
            yield ChainFinding(
                seq,
                FindingKind.VERSIONS_MISMATCH,
                f"records writing {res_type}/{res_id} version {version}, which is not stored",
            )

    def audit_length(self) -> int:
        with self._store.snapshot() as conn:
            head = self._store.audit_head(conn, for_update=False)
        return head.seq if head is not None else 0

    def check_signature(self, key_id: int, signature: bytes, message: bytes) -> bool:
        try:
            self._keys.verifier(key_id).verify(signature, message)
        except IntegrityError:
            return False
        return True

    # -- search indexes ---------------------------------------------------------------------
    def _opened(
        self, conn: Connection, seqs: list[int], on_row: Callable[[int], None] | None
    ) -> list[Unindexed]:
        """The versions ``seqs``, opened and MAC-checked: a damaged one raises."""
        out = []
        for row in self._store.versions(conn, seqs):
            body = open_version(self._keys, row)
            if body is None:  # a current pointer named a deletion
                raise IntegrityError()
            out.append(Unindexed(row.seq, row.res_type, row.res_id, row.ts_us, body))
            if on_row is not None:
                on_row(row.seq)
        return out

    def reindex(self, *, batch: int = 500, on_row: Callable[[int], None] | None = None) -> int:
        """Rebuild every search index table from the sealed current versions (``hearth
        reindex``): after a restore, an upgrade that adds parameters, or a blind-key change.

        Each version is opened and MAC-checked first; a damaged one stops the rebuild with
        ``IntegrityError`` rather than indexing what cannot be trusted. Returns the number of
        resources indexed. Runs in one transaction, so searches see the old index or the new.
        """
        done = 0
        with self._store.write() as conn:
            search_sql.clear_index(conn)
            pointers = [
                seq
                for _t, _i, _v, seq, deleted in self._store.current_pointers(conn)
                if not deleted
            ]
            pages = (
                self._opened(conn, pointers[start : start + batch], on_row)
                for start in range(0, len(pointers), batch)
            )
            for rows in index_pages(self._keys, self._index_workers, pages):
                search_sql.insert_index(conn, rows)
                done += len(rows)
        # Every index row is new: so are the planner's statistics of them (PostgreSQL, MariaDB).
        self._store.refresh_statistics()
        self.record("search.reindex", Outcome.SUCCESS)
        return done
