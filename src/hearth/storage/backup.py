"""Backup and restore at the storage level: a consistent snapshot streamed table by table, and
rows loaded into an empty database of any engine (docs/design.md, "Backup and restore").

What a backup holds, per table (``plan``):

- **append** tables grow only at the end of a gap-free sequence: ``resource_version`` (the
  version sequence) and ``audit_entry``, ``audit_checkpoint``, ``audit_patient`` (the audit
  sequence). A full backup takes rows ``1..high``; an incremental the rows after the previous
  backup's high-water mark.
- **whole** tables are small and mutable (users, credentials, roles, keys' wrapped metadata,
  OAuth clients, alarms, counters, instance metadata): every backup holds all their rows.
- **derived** tables (``resource_current`` and the search indexes) are rebuilt on restore from
  the versions, and **ephemeral** ones (console sessions) are never backed up: a restored
  database starts with nobody signed in.

Reading: :func:`open_snapshot` opens one read transaction (SQLite: a deferred ``BEGIN`` on a WAL
database; PostgreSQL and MariaDB: ``REPEATABLE READ``, whose first read fixes the snapshot), and
:meth:`SnapshotReader.rows` pages through a table by its key (keyset pagination, ``batch`` rows at
a time), so memory stays bounded whatever the table's size and writers never wait.

Writing: :class:`RestoreDatabase` creates the schema with Alembic at the backup's revision,
loads rows in ONE transaction, derives what is derived, checks every version (sealed body and
MAC) and recomputes the Merkle root, and commits only if the caller accepts the result.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Connection,
    MetaData,
    Select,
    Table,
    and_,
    bindparam,
    column,
    delete,
    func,
    insert,
    inspect,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from hearth.audit import AuditRecord, head_message
from hearth.backupfmt import MerkleBuilder
from hearth.crypto import KeyEncryptionKey, KeyRing
from hearth.domain import HearthError, IntegrityError, Random, ResourceRef, errors
from hearth.storage.audit import AuditTrail
from hearth.storage.index_workers import IndexWorkers, Unindexed
from hearth.storage.keys import wrapped_keys
from hearth.storage.repository import index_pages, open_version
from hearth.storage.sql import search as search_sql
from hearth.storage.sql import tables as t
from hearth.storage.sql.engine import Database, open_database
from hearth.storage.sql.index_load import IndexBulkLoad
from hearth.storage.sql.migrate import head_revision, upgrade
from hearth.storage.sql.store import VERSION_SEQ, WRITE_ACTIONS, AuditHeadRow, SqlStore

__all__ = [
    "APPEND_TABLES",
    "DERIVED_TABLES",
    "EPHEMERAL_TABLES",
    "BackupState",
    "LoadResult",
    "Loader",
    "Marks",
    "RestoreDatabase",
    "SnapshotReader",
    "TablePlan",
    "backup_plan",
    "open_snapshot",
]

#: table -> the sequence it follows ("version" or "audit"); its column is ``seq``.
APPEND_TABLES: dict[str, str] = {
    "resource_version": "version",
    "audit_entry": "audit",
    "audit_checkpoint": "audit",
    "audit_patient": "audit",
}
#: Rebuilt on restore: the current pointers, and every search index table (``search_*``, which
#: ``hearth reindex`` rebuilds from the versions), whatever index tables later migrations add.
DERIVED_TABLES = frozenset({"resource_current"})
DERIVED_PREFIX = "search_"
EPHEMERAL_TABLES = frozenset({"web_session"})
#: Blind-index tokens a restore remembers while it rebuilds the indexes (about 200 bytes each):
#: in a population most keys repeat (94% of them in the benchmark's), and each costs an HMAC.
BLIND_MEMO = 200_000

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class TablePlan:
    """How one table is backed up: ``sequence`` is None for whole tables."""

    table: Table
    sequence: str | None

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.table.columns]

    def order(self) -> list[Any]:
        """The keyset order: ``seq`` first for append tables (their index), else the key."""
        keys = list(self.table.primary_key.columns)
        if self.sequence is not None:
            seq = self.table.c.seq
            return [seq, *(c for c in keys if c is not seq)]
        return keys


def is_derived(name: str) -> bool:
    return name in DERIVED_TABLES or name.startswith(DERIVED_PREFIX)


def backup_plan() -> list[TablePlan]:
    """Every table of the schema that a backup holds, the versions table first. A table added
    by a later migration is backed up whole unless it is listed here as something else."""
    plans = [TablePlan(t.metadata.tables[name], kind) for name, kind in APPEND_TABLES.items()]
    for name in sorted(t.metadata.tables):
        if name in APPEND_TABLES or is_derived(name) or name in EPHEMERAL_TABLES:
            continue
        plans.append(TablePlan(t.metadata.tables[name], None))
    return plans


@dataclass(frozen=True, slots=True)
class Marks:
    """High-water marks of the append sequences in one snapshot."""

    version: int
    audit: int


def _after(order: Sequence[Any], last: Sequence[Any]) -> ColumnElement[bool]:
    """``(c0, c1, ...) > (v0, v1, ...)`` spelled out, which every engine plans as a range."""
    terms = []
    for i, col in enumerate(order):
        equal = [order[j] == last[j] for j in range(i)]
        terms.append(and_(*equal, col > last[i]))
    return or_(*terms)


class SnapshotReader:
    """Reads inside one snapshot transaction (see :func:`open_snapshot`)."""

    def __init__(self, conn: Connection, engine: str, *, batch: int = 1000) -> None:
        self.conn = conn
        self.engine = engine
        self.batch = batch

    def marks(self) -> Marks:
        version = self.conn.execute(
            select(t.counter.c.value).where(t.counter.c.name == VERSION_SEQ)
        ).scalar_one()
        audit = self.conn.execute(
            select(t.audit_head.c.seq).where(t.audit_head.c.id == 1)
        ).scalar_one()
        return Marks(int(version), int(audit))

    def schema_version(self) -> str:
        found = self.conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        return str(found)

    def instance_id(self) -> str:
        found = self.conn.execute(
            select(t.instance_meta.c.value).where(t.instance_meta.c.name == "instance_id")
        ).scalar_one_or_none()
        return str(found or "")

    def _where(self, plan: TablePlan, after: int | None, upto: int | None) -> list[Any]:
        where: list[Any] = []
        if plan.sequence is not None:
            if after is not None:
                where.append(plan.table.c.seq > after)
            if upto is not None:
                where.append(plan.table.c.seq <= upto)
        return where

    def count(self, plan: TablePlan, *, after: int | None = None, upto: int | None = None) -> int:
        query = select(func.count()).select_from(plan.table).where(*self._where(plan, after, upto))
        return int(self.conn.execute(query).scalar_one())

    def rows(
        self, plan: TablePlan, *, after: int | None = None, upto: int | None = None
    ) -> Iterator[Row]:
        """The table's rows in key order (``seq`` order for append tables), ``batch`` at a time;
        for append tables only those with ``after < seq <= upto``."""
        for page in self.pages(plan, after=after, upto=upto):
            yield from page

    def pages(
        self, plan: TablePlan, *, after: int | None = None, upto: int | None = None
    ) -> Iterator[list[Row]]:
        """:meth:`rows` a page (at most ``batch`` rows) at a time, read through the driver's
        own cursor inside the snapshot's transaction: each page's SQL is compiled once per
        table, and rows are the driver's tuples, converted only where SQLAlchemy would have
        converted them (booleans that SQLite and MariaDB return as integers). This is the
        backup's hot path: SQLAlchemy's result rows cost about 6 microseconds a row more."""
        order = plan.order()
        positions = [list(plan.table.columns).index(c) for c in order]
        where = self._where(plan, after, upto)
        keys: list[Any] = [bindparam(f"k{i}") for i in range(len(order))]
        first = self._compile(select(plan.table).where(*where).order_by(*order))
        # Later pages start after the last key read, which already lies after ``after``: the
        # two lower bounds together let SQLite range over the index from ``after`` and filter
        # up to the page, re-reading every earlier row on every page (at 1,100,000 versions a
        # page took 95 ms instead of 0.6 ms, and a full backup grew with the square of its size).
        following = self._compile(
            select(plan.table)
            .where(*self._where(plan, None, upto), _after(order, keys))
            .order_by(*order)
        )
        dialect = self.conn.dialect
        convert = [
            (i, proc)
            for i, c in enumerate(plan.table.columns)
            if (proc := c.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
        ]
        cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            last: Row | None = None
            while True:
                if last is None:
                    sql, args = first({})
                else:
                    sql, args = following({f"k{i}": last[p] for i, p in enumerate(positions)})
                cursor.execute(sql, args)
                # Every driver here returns a list of tuples.
                page = cast("list[Row]", cursor.fetchall())
                if not page:
                    return
                if convert:
                    page = [_converted(r, convert) for r in page]
                yield page
                last = page[-1]
        finally:
            cursor.close()

    def _compile(self, query: Select[Any]) -> Callable[[dict[str, Any]], tuple[str, Any]]:
        """``query`` with a page's LIMIT, compiled once for this connection's dialect; the
        returned function gives the SQL and the driver's parameters for given bound values."""
        dialect = self.conn.dialect
        compiled = query.limit(self.batch).compile(dialect=dialect)
        sql = compiled.string
        order = compiled.positiontup if dialect.positional else None

        def statement(values: dict[str, Any]) -> tuple[str, Any]:
            params = compiled.construct_params(values)
            if order is None:
                return sql, params
            return sql, tuple(params[name] for name in order)

        return statement


def _converted(row: Row, convert: Sequence[tuple[int, Callable[[Any], Any]]]) -> Row:
    values = list(row)
    for i, proc in convert:
        values[i] = proc(values[i])
    return tuple(values)


def engine_name(db: Database) -> str:
    backend = db.url.get_backend_name()
    return "mariadb" if backend in ("mysql", "mariadb") else backend


@contextmanager
def open_snapshot(store: SqlStore, *, batch: int = 1000) -> Iterator[SnapshotReader]:
    """One consistent, read-only view of the whole database while writers go on."""
    with store.snapshot() as conn:
        yield SnapshotReader(conn, engine_name(store.db), batch=batch)


class BackupState:
    """What the instance remembers about its backups, in ``instance_meta`` (apart from the
    targets): per target, the newest backup id stored there (the chain head a verifier expects,
    so a rolled-back target is noticed), and the last drill's figures, which the compliance
    report reads."""

    DRILL = "backup.drill"

    @staticmethod
    def head_key(target: str) -> str:
        """Per target: runs may go to different targets (``--target``)."""
        return f"backup.head.{target[:48]}"

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def get(self, name: str) -> str | None:
        with self._store.read() as conn:
            return self._store.meta(conn).get(name)

    def set(self, name: str, value: str) -> None:
        with self._store.write() as conn:
            self._store.set_meta(conn, name, value)


# ------------------------------------------------------------------------------------ restore


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load ended with, for the caller to accept (commit) or refuse (roll back)."""

    versions: int
    last_seq: int
    root: str
    rows: dict[str, int]
    indexed: int


class RestoreDatabase:
    """A database to restore into: must be empty unless ``force``."""

    def __init__(self, url: str) -> None:
        self.db = open_database(url, pool_size=2)
        self.store = SqlStore(self.db)

    @property
    def engine(self) -> str:
        return engine_name(self.db)

    def close(self) -> None:
        self.db.dispose()

    def _tables(self) -> list[str]:
        with self.db.write.connect() as conn:
            return list(inspect(conn).get_table_names())

    def is_empty(self) -> bool:
        """No table holds a row (an empty schema left by a failed restore counts as empty)."""
        names = self._tables()
        with self.db.write.connect() as conn:
            for name in names:
                if name == "alembic_version":
                    continue
                probe = select(text("1")).select_from(table(name)).limit(1)
                if conn.execute(probe).first() is not None:
                    return False
        return True

    def drop_everything(self) -> None:
        """Remove every table (``--force``, or the empty schema of a failed restore)."""
        reflected = MetaData()
        with self.db.write.begin() as conn:
            reflected.reflect(conn)
            reflected.drop_all(conn)

    def create_schema(self, revision: str) -> None:
        upgrade(self.db, revision)

    def upgrade_to_head(self) -> None:
        upgrade(self.db, "head")

    @staticmethod
    def at_head(revision: str) -> bool:
        """Whether ``revision`` is this Hearth's newest schema revision."""
        return revision == head_revision()

    def refresh_statistics(self) -> None:
        """After the load: the planner's statistics of the bulk-loaded tables (PostgreSQL,
        MariaDB; ``SqlStore.refresh_statistics``)."""
        self.store.refresh_statistics()

    def newest_change_us(self) -> int | None:
        """The write time of the newest restored version (what a drill's RPO is measured to)."""
        with self.db.write.connect() as conn:
            found = conn.execute(select(func.max(t.resource_version.c.ts_us))).scalar_one_or_none()
        return None if found is None else int(found)

    @contextmanager
    def loading(self) -> Iterator[Loader]:
        """One transaction for the whole load; it commits when the block ends normally."""
        try:
            with self.db.write.begin() as conn:
                yield Loader(conn, self.store)
        except HearthError:
            raise
        except Exception as exc:
            raise HearthError(
                errors.STORAGE_UNAVAILABLE,
                f"The restore could not write to the target database ({type(exc).__name__}).",
            ) from exc


@contextmanager
def _fewer_collections(threshold: int = 20_000) -> Iterator[None]:
    """Fewer runs of the cycle collector while the indexes are rebuilt: each resource's index
    allocates hundreds of short-lived objects that reference counting frees, and at the default
    threshold (a young collection every 700 allocations) the collector took a fifth of the
    rebuild. Objects alive before are frozen out of its scans; all is put back afterwards."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


class Loader:
    """Inserts rows and finishes the restore inside the load transaction."""

    def __init__(self, conn: Connection, store: SqlStore) -> None:
        self.conn = conn
        self._store = store
        self.rows: dict[str, int] = {}

    def insert(self, name: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        if not rows:
            return
        target = table(name, *(column(c) for c in columns))
        self.conn.execute(insert(target), [dict(zip(columns, r, strict=True)) for r in rows])
        self.rows[name] = self.rows.get(name, 0) + len(rows)

    def clear(self, name: str) -> None:
        """Empty a whole table loaded by an earlier backup of the chain (the newest wins)."""
        self.conn.execute(delete(table(name)))
        self.rows.pop(name, None)

    # -- point in time ------------------------------------------------------------------------
    def cut_at(self, seq: int) -> None:
        """Keep versions ``1..seq`` and the audit entries written before version ``seq + 1``
        (writes carry their audit entry in their own transaction, so that entry marks the
        moment); the audit head is signed again over the new end of the chain."""
        v, a = t.resource_version, t.audit_entry
        following = self.conn.execute(
            select(v.c.res_type, v.c.res_id, v.c.version).where(v.c.seq == seq + 1)
        ).first()
        if following is None:
            return
        audit_cut = self.conn.execute(
            select(func.min(a.c.seq)).where(
                a.c.res_type == following.res_type,
                a.c.res_id == following.res_id,
                a.c.version == following.version,
                a.c.action.in_(WRITE_ACTIONS),
            )
        ).scalar_one_or_none()
        self.conn.execute(delete(v).where(v.c.seq > seq))
        if audit_cut is not None:
            for tbl in (t.audit_entry, t.audit_checkpoint, t.audit_patient):
                self.conn.execute(delete(tbl).where(tbl.c.seq >= audit_cut))
        self.conn.execute(
            update(t.counter).where(t.counter.c.name == VERSION_SEQ).values(value=seq)
        )
        # The integrity scanner's cursors may point past the cut: it starts over.
        self.conn.execute(delete(t.scanner_state))

    def resign_audit_head(self, keyring: KeyRing) -> None:
        """Point the signed audit head at the last entry present (after a cut)."""
        a = t.audit_entry
        last = self.conn.execute(
            select(a.c.seq, a.c.hash).order_by(a.c.seq.desc()).limit(1)
        ).first()
        head = self._store.audit_head(self.conn, for_update=True)
        if head is None or last is None or int(last.seq) == head.seq:
            return
        version_seq = int(
            self.conn.execute(
                select(t.counter.c.value).where(t.counter.c.name == VERSION_SEQ)
            ).scalar_one()
        )
        seq, digest = int(last.seq), bytes(last.hash)
        key_id, signature = keyring.sign(head_message(seq, digest, version_seq))
        self._store.set_audit_head(
            self.conn, AuditHeadRow(seq, digest, version_seq, key_id, signature)
        )

    # -- derived state ------------------------------------------------------------------------
    def derive_current(self) -> None:
        """``resource_current``: each resource's newest version."""
        v, c = t.resource_version, t.resource_current
        newest = (
            select(func.max(v.c.seq).label("seq")).group_by(v.c.res_type, v.c.res_id).subquery()
        )
        rows = select(v.c.res_type, v.c.res_id, v.c.version, v.c.seq, v.c.deleted, v.c.ts_us).join(
            newest, v.c.seq == newest.c.seq
        )
        self.conn.execute(
            insert(c).from_select(
                ["res_type", "res_id", "version", "seq", "deleted", "ts_us"], rows
            )
        )

    def fix_identity_columns(self) -> None:
        """PostgreSQL's serial sequences do not move when rows carry explicit ids."""
        if self.conn.dialect.name != "postgresql":
            return
        for tbl in t.metadata.tables.values():
            col = tbl.autoincrement_column
            if col is None or is_derived(tbl.name) or tbl.name in EPHEMERAL_TABLES:
                continue
            self.conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{tbl.name}', '{col.name}'), "  # noqa: S608
                    f"COALESCE((SELECT MAX({col.name}) FROM {tbl.name}), 0) + 1, false)"
                )
            )

    def keyring(self, kek: KeyEncryptionKey) -> KeyRing:
        """The restored keys, owned by this restore: its blind-index tokens are remembered
        (``BLIND_MEMO`` at most) while the indexes are rebuilt, since most keys repeat."""
        return KeyRing(wrapped_keys(self._store.keys(self.conn)), kek, blind_memo=BLIND_MEMO)

    def check_versions(
        self, keyring: KeyRing, on_row: Callable[[int], None] | None = None
    ) -> tuple[int, int, str]:
        """Open every version and verify its MAC; recompute the Merkle root over (seq, MAC).
        Returns (versions, last seq, root hex); raises ``IntegrityError`` naming the row."""
        tree = MerkleBuilder()
        last = 0
        for row in self._store.iter_versions(self.conn):
            if row.seq != last + 1:
                raise IntegrityError(f"Version seq {last + 1} is missing after the restore.")
            try:
                open_version(keyring, row)
            except IntegrityError:
                raise IntegrityError(
                    f"Restored version seq {row.seq} ({row.res_type}/{row.res_id} version "
                    f"{row.version}) failed its seal or MAC check."
                ) from None
            tree.add(row.seq, row.mac)
            last = row.seq
            if on_row is not None:
                on_row(row.seq)
        return tree.leaves, last, tree.root().hex()

    def reindex(self, keyring: KeyRing, batch: int = 2000, *, workers: IndexWorkers | None) -> int:
        """Rebuild the search indexes from the current versions (keyset pages by seq), as a
        bulk load (``hearth.storage.sql.index_load``): blind keys staged and sorted, secondary
        indexes built at the end where the engine's DDL is transactional."""
        search_sql.clear_index(self.conn)
        load = IndexBulkLoad(self.conn)
        load.start()
        with _fewer_collections():
            done = self._index_pages(keyring, load, batch, workers)
        load.finish()
        return done

    def _index_pages(
        self,
        keyring: KeyRing,
        load: IndexBulkLoad,
        batch: int,
        workers: IndexWorkers | None,
    ) -> int:
        done = 0
        for rows in index_pages(keyring, workers, self._opened_pages(keyring, batch)):
            load.add(rows)
            done += len(rows)
        return done

    def _opened_pages(self, keyring: KeyRing, batch: int) -> Iterator[list[Unindexed]]:
        """The current versions, opened, a keyset page by ``seq`` at a time."""
        c = t.resource_current
        last = 0
        while True:
            seqs = [
                int(s)
                for s in self.conn.execute(
                    select(c.c.seq)
                    .where(c.c.seq > last, c.c.deleted.is_(False))
                    .order_by(c.c.seq)
                    .limit(batch)
                ).scalars()
            ]
            if not seqs:
                return
            page = []
            for row in self._store.versions(self.conn, seqs):
                aad = ResourceRef(row.res_type, row.res_id).aad(row.version)
                body = keyring.open_resource(row.body or b"", aad=aad)
                page.append(Unindexed(row.seq, row.res_type, row.res_id, row.ts_us, body))
            yield page
            last = seqs[-1]

    def audit(self, keyring: KeyRing, random: Random, records: Sequence[AuditRecord]) -> None:
        """Append entries to the restored database's own audit chain, in this transaction."""
        meta = self._store.meta(self.conn)
        every = int(meta.get("audit_checkpoint_every", 1000))
        AuditTrail(self._store, keyring, random, checkpoint_every=every).append_in(
            self.conn, records
        )
