"""Rewriting damaged version rows with their original bytes (``hearth integrity repair``).

The invariant (docs/design.md, "Repair from a backup"): a resource version is immutable, and
its ``seq`` is its identity; the MAC binds ``seq``, type, id, version, time, deletion flag and
the plaintext. A row may therefore be rewritten only

- when its current stored form fails the seal or MAC check (or is missing) — an intact row is
  never touched, whatever a backup says about it;
- with a copy, for the same ``seq``, that itself passes the seal and MAC check under this
  instance's keys — so the rewritten row holds exactly the version that was written, and the
  repair creates no version, changes no counter and rewrites no history.

What is derived from versions (the current pointer, the search index rows) is recomputed for the
resources touched, from their newest version, and only if that version verifies. Everything
happens in one write transaction under the writers' lock, with an ``integrity.repair`` audit
entry per row rewritten in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, update

from hearth.audit import AuditRecord
from hearth.crypto import KeyRing
from hearth.domain import Outcome
from hearth.fhir import jsonbody as fhir_json
from hearth.storage.audit import AuditTrail
from hearth.storage.repository import index_row
from hearth.storage.sql import scan as scan_sql
from hearth.storage.sql import search as search_sql
from hearth.storage.sql import tables as t
from hearth.storage.sql.store import SqlStore

__all__ = ["VERSION_COLUMNS", "RestoreItem", "RestoreResult", "restore_versions"]

_V = t.resource_version
_C = t.resource_current
#: A stored version row as repair exchanges it, in this order.
VERSION_COLUMNS = (
    "seq",
    "res_type",
    "res_id",
    "version",
    "ts_us",
    "deleted",
    "key_id",
    "body",
    "mac_key_id",
    "mac",
)


@dataclass(frozen=True, slots=True)
class RestoreItem:
    """What became of one row: ``restored``, ``intact`` (not touched), ``refused``."""

    seq: int
    res_type: str | None
    res_id: str | None
    version: int | None
    outcome: str
    reason: str = ""


@dataclass(slots=True)
class RestoreResult:
    items: list[RestoreItem] = field(default_factory=list)
    #: Resources whose current pointer was set to their newest verified version.
    pointers: list[tuple[str, str]] = field(default_factory=list)
    #: Resources whose search index rows were rebuilt.
    reindexed: list[tuple[str, str]] = field(default_factory=list)
    #: Resources whose pointer was left alone because their newest version does not verify.
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    #: Seqs whose index rows belonged to no live current version and were dropped.
    stray_index: list[int] = field(default_factory=list)


def _values(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(VERSION_COLUMNS, row, strict=True))


def restore_versions(
    *,
    store: SqlStore,
    keys: KeyRing,
    audit: AuditTrail,
    record: Callable[..., AuditRecord],
    copies: Mapping[int, tuple[Any, ...]],
    resources: Iterable[tuple[str, str]] = (),
    stray_index: Iterable[int] = (),
    dry_run: bool,
) -> RestoreResult:
    """Rewrite each damaged row named in ``copies`` (``seq`` -> the backup's row) with the
    copy, then recompute pointers and index rows of the resources touched and of
    ``resources``, and drop the index rows of ``stray_index`` seqs that no live current
    version owns. With ``dry_run`` nothing is written; the result says what would be."""
    result = RestoreResult()
    touched: set[tuple[str, str]] = set(resources)
    entries: list[AuditRecord] = []
    with store.write() as conn:
        store.lock_writers(conn)
        current = {int(r[0]): r for r in scan_sql.version_tuples_by_seq(conn, list(copies))}
        for seq in sorted(copies):
            copy = tuple(copies[seq])
            name = (copy[1], copy[2], copy[3])
            problems, _ = keys.check_versions([copy])
            if int(copy[0]) != seq or problems:
                result.items.append(
                    RestoreItem(
                        seq,
                        *name,
                        "refused",
                        "the backup's copy does not pass its seal and MAC check under this "
                        "instance's keys",
                    )
                )
                continue
            row = current.get(seq)
            if row is not None and not keys.check_versions([row])[0]:
                result.items.append(RestoreItem(seq, *name, "intact"))
                continue
            if row is not None:
                touched.add((str(row[1]), str(row[2])))
            touched.add((copy[1], copy[2]))
            if not dry_run:
                values = _values(copy)
                if row is None:
                    conn.execute(insert(_V).values(**values))
                else:
                    conn.execute(update(_V).where(_V.c.seq == seq).values(**values))
                entries.append(
                    record(
                        action="integrity.repair",
                        outcome=Outcome.SUCCESS,
                        res_type=copy[1],
                        res_id=copy[2],
                        version=int(copy[3]),
                    )
                )
            result.items.append(RestoreItem(seq, *name, "restored"))
        _derived(conn, keys, touched, result, dry_run=dry_run)
        stray = set(stray_index) - {
            p.seq for p in scan_sql.pointers_of_seqs(conn, stray_index) if not p.deleted
        }
        if stray and not dry_run:
            search_sql.delete_index(conn, sorted(stray))
        result.stray_index = sorted(stray)
        if not dry_run:
            entries += [
                record(
                    action="integrity.repair",
                    outcome=Outcome.SUCCESS,
                    res_type=res_type,
                    res_id=res_id,
                    version=None,
                )
                for res_type, res_id in result.pointers
            ]
            audit.append_in(conn, entries)
    return result


def _derived(
    conn: Connection,
    keys: KeyRing,
    resources: set[tuple[str, str]],
    result: RestoreResult,
    *,
    dry_run: bool,
) -> None:
    """Point each resource at its newest version and rebuild its index rows, if that version
    verifies; otherwise leave both alone and say so."""
    if not resources:
        return
    newest = scan_sql.newest_versions_of(conn, resources)
    pointers = scan_sql.current_pointers_of(conn, resources)
    rows = {
        int(r[0]): r for r in scan_sql.version_tuples_by_seq(conn, [s for _v, s in newest.values()])
    }
    live = set(rows)
    problems, bodies = keys.check_versions(list(rows.values()), keep=live)
    damaged = {seq for seq, _p in problems}
    index_rows: list[search_sql.IndexRow] = []
    reindex: list[tuple[str, str]] = []
    for res in sorted(resources):
        top = newest.get(res)
        if top is None or top[1] in damaged or top[1] not in rows:
            result.unresolved.append(res)
            continue
        row = rows[top[1]]
        deleted, ts_us = bool(row[5]), int(row[4])
        pointer = pointers.get(res)
        wanted = {"version": top[0], "seq": top[1], "deleted": deleted, "ts_us": ts_us}
        if pointer is None or (
            int(pointer.version),
            int(pointer.seq),
            bool(pointer.deleted),
            int(pointer.ts_us),
        ) != (top[0], top[1], deleted, ts_us):
            result.pointers.append(res)
            if not dry_run:
                if pointer is None:
                    conn.execute(insert(_C).values(res_type=res[0], res_id=res[1], **wanted))
                else:
                    conn.execute(
                        update(_C)
                        .where(_C.c.res_type == res[0], _C.c.res_id == res[1])
                        .values(**wanted)
                    )
        reindex.append(res)
        if not deleted:
            resource = fhir_json.loads(bodies[top[1]])
            index_rows.append(index_row(keys, top[1], res[0], res[1], ts_us, resource))
    result.reindexed = reindex
    if dry_run or not reindex:
        return
    search_sql.delete_index(conn, search_sql.current_index_seqs(conn, reindex))
    # Rows of the touched seqs that name no resource (stray rows) go too.
    search_sql.delete_index(conn, [r.seq for r in index_rows])
    search_sql.insert_index(conn, index_rows)
