"""SQL access for the repository and the services: every statement Hearth runs lives here.

Nothing here decides, seals or audits; the repository (the gate) does that and calls these
functions inside the transactions it owns. All statements are parameterised (ASVS 1.2.4).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, NoResultFound, OperationalError
from sqlalchemy.sql.compiler import SQLCompiler

from hearth.domain import HearthError, errors
from hearth.storage.sql import tables as t
from hearth.storage.sql.engine import Database

__all__ = [
    "KEY_EPOCH",
    "KeyUse",
    "AuditHeadRow",
    "AuditRow",
    "CheckpointRow",
    "KeyRow",
    "SqlStore",
    "TokenRow",
    "VersionRow",
    "statement_sizes",
]

VERSION_SEQ = "version"
#: Audit actions whose success made exactly one resource version.
WRITE_ACTIONS = ("create", "update", "patch", "delete")
KEY_SEQ = "key"
#: ``instance_meta`` row counting key changes (rotate, retire, rewrap); see ``key_epoch``.
KEY_EPOCH = "key_epoch"
#: ``counter`` rows ``seals:<key id>``: messages each AES-GCM key has sealed (nonce budget).
_SEALS = "seals:"


@dataclass(frozen=True, slots=True)
class VersionRow:
    seq: int
    res_type: str
    res_id: str
    version: int
    ts_us: int
    deleted: bool
    key_id: int | None
    body: bytes | None
    mac_key_id: int
    mac: bytes


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    ts_us: int
    actor: str
    action: str
    outcome: str
    res_type: str | None
    res_id: str | None
    version: int | None
    patient: str | None
    detail_key_id: int | None
    body: bytes
    prev_hash: bytes
    hash: bytes
    #: The patients the entry names in its ``patients`` field (indexed in ``audit_patient``).
    patients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditHeadRow:
    seq: int
    hash: bytes
    version_seq: int
    key_id: int
    signature: bytes | None


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    seq: int
    ts_us: int
    hash: bytes
    key_id: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: int
    purpose: str
    state: str
    wrapped: bytes | None
    kek_id: str
    created_us: int
    rotated_us: int | None
    retired_us: int | None


@dataclass(frozen=True, slots=True)
class KeyUse:
    """What stored rows still need one key (``hearth keys retire`` refuses while any do)."""

    versions_sealed: int  # resource versions whose body it sealed
    versions_maced: int  # resource versions whose MAC it made
    audit_details: int  # audit entries whose detail it sealed


@dataclass(frozen=True, slots=True)
class TokenRow:
    token_id: str
    subject: str
    roles: str
    digest: bytes
    created_us: int
    expires_us: int | None
    revoked_us: int | None
    label: str


_V = t.resource_version
_C = t.resource_current
_A = t.audit_entry


class _Form(NamedTuple):
    """A statement compiled for one engine."""

    sql: str
    names: tuple[str, ...]
    positional: bool
    bound: dict[str, Any]


def statement_sizes(rows: int, largest: int) -> Iterator[int]:
    """How many rows each multi-row statement takes, for ``rows`` rows in all: ``largest`` while
    that many are left, then powers of two below it, so that a handful of statement texts serve
    every count."""
    size = largest
    while rows:
        while size > rows:
            size //= 2
        yield size
        rows -= size


#: Rows of one multi-row insert on SQLite (``_Hot.executemany``): a write group's members, at most.
SQLITE_MANY_ROWS = 64


class _Hot:
    """A statement every request runs, run on the driver's own cursor.

    SQLAlchemy's execution of a statement (connection wrapper, compiled-cache lookup,
    execution context, parameter and result processing) costs several times the statement
    itself on SQLite, and more than the client's side of a round trip on PostgreSQL; a read by
    id runs one of these, an audit append four, a version written two or three
    (docs/design.md, "The driver's cursor for the hot statements"). So the statement runs on
    the cursor of ``conn``'s own driver connection, inside its transaction, as SQLAlchemy's own
    compilation of ``statement`` for that engine: the two paths cannot drift apart. Its
    parameters need no processing (integers, strings, bytes, booleans and None, which every
    driver binds as SQLAlchemy would), and rows come back by column name, as ``row._mapping``
    does. A driver error is raised as SQLAlchemy's, without the parameters (they may hold PHI),
    so the callers' handling (``STORAGE_UNAVAILABLE``, ``CONFLICT``, ``AUDIT_FAILED``) is
    unchanged; a lost server connection is invalidated, as SQLAlchemy does, so the pool does
    not hand it out again."""

    __slots__ = ("_forms", "_many", "columns", "statement")

    def __init__(self, statement: Select[Any] | Insert | Update) -> None:
        self.statement = statement
        # SQLite texts of this insert for several rows a statement, by row count.
        self._many: dict[int, str] = {}
        self.columns = tuple(
            c.key for c in getattr(statement, "selected_columns", ()) if c.key is not None
        )
        # Per engine, compiled at its first use: the text, its parameter names (in order where
        # the driver's style is positional), whether it is, and the values the statement binds
        # itself.
        self._forms: dict[str, _Form] = {}

    def _form(self, dialect: Dialect) -> _Form:
        form = self._forms.get(dialect.name)
        if form is None:
            compiled = self.statement.compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)  # noqa: S101 - a statement compiles to one
            if compiled.positiontup is not None:
                names, positional = tuple(compiled.positiontup), True
            else:
                names, positional = tuple(compiled.params), False
            bound = {k: v for k, v in compiled.params.items() if v is not None}
            form = _Form(str(compiled), names, positional, bound)
            self._forms[dialect.name] = form  # the same in every thread: a race compiles twice
        return form

    def first(self, conn: Connection, params: dict[str, Any]) -> Mapping[Any, Any] | None:
        """The first row, its values by column name; None when there is none."""
        found = self._driver(conn, [params], fetch=True)
        return None if found is None else dict(zip(self.columns, found, strict=True))

    def execute(self, conn: Connection, params: dict[str, Any]) -> int:
        """Run it; the number of rows it changed (matched, on MariaDB, as SQLAlchemy's
        connections ask for)."""
        return int(self._driver(conn, [params]))

    def executemany(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run it for each of ``rows``. An insert on SQLite runs as multi-row statements of up
        to ``SQLITE_MANY_ROWS`` rows (then of powers of two), not once per row: sqlite3 lets go
        of the GIL at every execution, and a write group's leader had to win it back from the
        request threads each time (docs/design.md, "Write order and invariants"). They are
        ``INSERT OR ROLLBACK``, as the blind-index rows are (``search.insert_hashes``): the rows
        land on pages all over their tables' random-keyed indexes, and a multi-row statement
        that may fail halfway would make SQLite keep a statement journal of those pages. A
        conflict here is a bug or a lost race that fails the whole write anyway; it ends the
        transaction, and the connection is invalidated so that nothing runs after it outside
        one."""
        if not rows:
            return
        if (
            len(rows) == 1
            or conn.dialect.name != "sqlite"
            or not isinstance(self.statement, Insert)
        ):
            self._driver(conn, rows, many=True)
            return
        # 999 variables a statement: the limit of SQLite before 3.32.
        largest = min(SQLITE_MANY_ROWS, 999 // len(self._form(conn.dialect).names))
        done = 0
        for size in statement_sizes(len(rows), largest):
            self._driver(conn, rows[done : done + size], rows_per_statement=size)
            done += size

    def _many_sql(self, sql: str, rows: int) -> str:
        text = self._many.get(rows)
        if text is None:
            head, _, values = sql.rpartition(" VALUES ")
            if not (head.startswith("INSERT INTO ") and values.startswith("(")):
                raise ValueError("not the text of a one-row insert")
            head = head.replace("INSERT INTO ", "INSERT OR ROLLBACK INTO ", 1)
            text = self._many[rows] = f"{head} VALUES {', '.join([values] * rows)}"
        return text

    def _driver(
        self,
        conn: Connection,
        rows: Sequence[dict[str, Any]],
        *,
        many: bool = False,
        fetch: bool = False,
        rows_per_statement: int = 0,
    ) -> Any:
        """Run on the driver's cursor: the first row if ``fetch`` (sqlite3 steps to it in
        ``fetchone``, which can fail too), else the number of rows changed.

        A name missing from a row that the statement does not bind itself is a ``KeyError``,
        as on SQLAlchemy's path, never a NULL: an insert names every column, and a column's
        default would not apply."""
        dialect = conn.dialect
        sql, names, positional, bound = self._form(dialect)
        args: list[Any] = [
            tuple(row[n] if n in row else bound[n] for n in names)
            if positional
            else {n: row[n] if n in row else bound[n] for n in names}
            for row in rows
        ]
        if dialect.name != "sqlite" and not conn.in_transaction():
            # The driver begins a transaction implicitly: SQLAlchemy must know of it to commit
            # it (a read ending in the pool's ROLLBACK drops psycopg's prepared statements).
            conn.begin()
        if rows_per_statement:
            sql = self._many_sql(sql, rows_per_statement)
            args = [tuple(value for row in args for value in row)]
        raw = conn.connection
        cursor = raw.cursor()
        try:
            if many:
                cursor.executemany(sql, args)
            else:
                cursor.execute(sql, args[0])
            return cursor.fetchone() if fetch else cursor.rowcount
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, raw.dbapi_connection, cursor)
            if rows_per_statement and not getattr(raw.driver_connection, "in_transaction", True):
                # ``OR ROLLBACK`` has ended the transaction: a statement run next on this
                # connection would commit on its own. Invalidated, none can.
                lost = True
            if lost:
                with suppress(dialect.loaded_dbapi.Error):
                    cursor.close()  # before its connection closes (sqlite3 refuses after)
                conn.invalidate(exc)
            raise DBAPIError.instance(
                sql,
                args,
                exc,
                dialect.loaded_dbapi.Error,
                hide_parameters=True,
                connection_invalidated=lost,
                dialect=dialect,
            ) from exc
        finally:
            with suppress(dialect.loaded_dbapi.Error):
                cursor.close()


# Hot-path statements are built once: constructing SQLAlchemy expressions per call costs more
# than executing them on SQLite.
_NEXT_SEQ = select(t.counter.c.value).where(t.counter.c.name == bindparam("n")).with_for_update()
# Read by every audit commit (the version sequence its signed head pins).
_PEEK_SEQ = _Hot(select(t.counter.c.value).where(t.counter.c.name == bindparam("n")))
_SET_SEQ = update(t.counter).where(t.counter.c.name == bindparam("n")).values(value=bindparam("v"))
_CURRENT = _Hot(
    select(_V)
    .select_from(_C.join(_V, _V.c.seq == _C.c.seq))
    .where(_C.c.res_type == bindparam("t"), _C.c.res_id == bindparam("i"))
)
_CURRENT_VERSION = select(_C.c.version).where(
    _C.c.res_type == bindparam("t"), _C.c.res_id == bindparam("i")
)
_VERSION = _Hot(
    select(_V).where(
        _V.c.res_type == bindparam("t"),
        _V.c.res_id == bindparam("i"),
        _V.c.version == bindparam("v"),
    )
)
_INSERT_VERSION = _Hot(insert(_V))
_UPDATE_CURRENT = _Hot(
    update(_C)
    .where(_C.c.res_type == bindparam("t"), _C.c.res_id == bindparam("i"))
    .values(
        version=bindparam("b_version"),
        seq=bindparam("b_seq"),
        deleted=bindparam("b_deleted"),
        ts_us=bindparam("b_ts_us"),
    )
)
_INSERT_CURRENT = _Hot(insert(_C))


def _version_params(row: VersionRow) -> dict[str, Any]:
    """``row`` as the parameters of ``_INSERT_VERSION``."""
    return {
        "seq": row.seq,
        "res_type": row.res_type,
        "res_id": row.res_id,
        "version": row.version,
        "ts_us": row.ts_us,
        "deleted": row.deleted,
        "key_id": row.key_id,
        "body": row.body,
        "mac_key_id": row.mac_key_id,
        "mac": row.mac,
    }


def _current_values(row: VersionRow) -> dict[str, Any]:
    """What a ``resource_current`` row says of ``row``, its newest version."""
    return {"version": row.version, "seq": row.seq, "deleted": row.deleted, "ts_us": row.ts_us}


_HEAD_ROW = select(t.audit_head).where(t.audit_head.c.id == 1)
_AUDIT_HEAD = _Hot(_HEAD_ROW)
_AUDIT_HEAD_LOCKED = _Hot(_HEAD_ROW.with_for_update())
_SET_AUDIT_HEAD = _Hot(
    update(t.audit_head)
    .where(t.audit_head.c.id == 1)
    .values(
        seq=bindparam("b_seq"),
        hash=bindparam("b_hash"),
        version_seq=bindparam("b_version_seq"),
        key_id=bindparam("b_key_id"),
        signature=bindparam("b_signature"),
    )
)
_INSERT_AUDIT = _Hot(insert(_A))
_KEY_EPOCH = select(t.instance_meta.c.value).where(t.instance_meta.c.name == KEY_EPOCH)
_ADD_SEALS = (
    update(t.counter)
    .where(t.counter.c.name == bindparam("n"))
    .values(value=t.counter.c.value + bindparam("v"))
)
_TOKEN = select(t.api_token).where(t.api_token.c.token_id == bindparam("token_id"))


def _blob(value: object) -> bytes:
    """A binary column as bytes, whatever a damaged database holds there (SQLite will store
    text in a blob column): verification then reports the row, instead of failing on it."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b"" if value is None else str(value).encode("utf-8")


def _version(m: Mapping[Any, Any]) -> VersionRow:
    """A ``resource_version`` row, from SQLAlchemy's ``row._mapping`` or a driver row."""
    return VersionRow(
        seq=m["seq"],
        res_type=m["res_type"],
        res_id=m["res_id"],
        version=m["version"],
        ts_us=m["ts_us"],
        deleted=bool(m["deleted"]),
        key_id=m["key_id"],
        body=_blob(m["body"]) if m["body"] is not None else None,
        mac_key_id=m["mac_key_id"],
        mac=_blob(m["mac"]),
    )


# As long as SQLite's busy timeout (engine.py): a writer that waits longer reports the database
# unavailable rather than queueing for ever.
_WRITER_WAIT_SECONDS = 30.0


class SqlStore:
    """Statements over one database. Transactions are context managers yielding a Connection."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction, committed when the block ends without an exception.

        A unique-constraint violation (two writers racing for one id or version, which the
        writer lock should already prevent) is a conflict for the client, not a server error.
        """
        mutex = self.db.writer_mutex
        if mutex is not None and not mutex.acquire(timeout=_WRITER_WAIT_SECONDS):
            raise HearthError(errors.STORAGE_UNAVAILABLE)
        try:
            with self.db.write.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise HearthError(errors.STORAGE_UNAVAILABLE) from exc
        except IntegrityError as exc:
            raise HearthError(errors.CONFLICT) from exc
        finally:
            if mutex is not None:
                mutex.release()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads. On SQLite each statement is its own snapshot (autocommit);
        use ``snapshot`` when several statements must see the same state.

        On PostgreSQL the transaction ends with ``COMMIT`` when the block succeeds, as each of
        SQLite's autocommit statements does: psycopg drops every statement it has prepared on a
        connection at each ``ROLLBACK``, so reads that ended in one (SQLAlchemy's default on
        close) were planned afresh on every request and never reached PostgreSQL's cached
        generic plans (docs/benchmarks.md, "Access control"). A block that fails rolls back."""
        try:
            with self.db.read.connect() as conn:
                yield conn
                if conn.in_transaction():
                    conn.commit()
        except OperationalError as exc:
            raise HearthError(errors.STORAGE_UNAVAILABLE) from exc

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction in which every statement sees the same committed state."""
        try:
            with self.db.read.connect() as raw:
                if self.db.dialect == "sqlite":
                    raw.exec_driver_sql("BEGIN")
                    yield raw
                else:
                    yield raw.execution_options(isolation_level="REPEATABLE READ")
        except OperationalError as exc:
            raise HearthError(errors.STORAGE_UNAVAILABLE) from exc

    # -- counters -------------------------------------------------------------------------
    def lock_writers(self, conn: Connection) -> None:
        """Take the row lock on the version counter that every writer takes (see ``next_seq``).

        On SQLite the database lock taken by ``BEGIN IMMEDIATE`` already serialises writers.
        """
        if self.db.dialect != "sqlite":
            conn.execute(_NEXT_SEQ, {"n": VERSION_SEQ}).scalar_one()

    def next_seq(self, conn: Connection, name: str, n: int = 1) -> int:
        """Reserve ``n`` numbers of a gap-free sequence; returns the first.

        The row lock taken here is held until the transaction ends, which serialises writers
        and makes the sequence gap-free: a rolled-back transaction returns its numbers.
        """
        current = int(conn.execute(_NEXT_SEQ, {"n": name}).scalar_one())
        conn.execute(_SET_SEQ, {"n": name, "v": current + n})
        return current + 1

    def refresh_statistics(self) -> None:
        """Have PostgreSQL and MariaDB re-read the resource and index tables' statistics, after
        a bulk load made them stale: a planner that still thinks the index tables are empty
        picks scans over index lookups until autovacuum catches up. SQLite keeps no statistics
        unless asked (``ANALYZE``), and its queries are written for the planner without them,
        so it is left alone."""
        dialect = self.db.dialect
        if dialect == "sqlite":
            return
        index = sorted(name for name in t.metadata.tables if name.startswith("search_"))
        names = ["resource_current", "resource_version", *index]
        with self.db.write.begin() as conn:
            if dialect == "postgresql":
                conn.execute(text("ANALYZE " + ", ".join(names)))
            else:
                conn.execute(text("ANALYZE TABLE " + ", ".join(names))).fetchall()

    def set_seq(self, conn: Connection, name: str, value: int) -> None:
        """Set a sequence whose row lock this transaction holds (``next_seq`` took it)."""
        conn.execute(_SET_SEQ, {"n": name, "v": value})

    def peek_seq(self, conn: Connection, name: str) -> int:
        found = _PEEK_SEQ.first(conn, {"n": name})
        if found is None:
            raise NoResultFound("No row was found when one was required")
        return int(found["value"])

    def init_counters(self, conn: Connection) -> None:
        conn.execute(
            insert(t.counter),
            [
                {"name": VERSION_SEQ, "value": 0},
                {"name": KEY_SEQ, "value": 0},
            ],
        )

    # -- instance metadata ----------------------------------------------------------------
    def meta(self, conn: Connection) -> dict[str, str]:
        rows = conn.execute(select(t.instance_meta.c.name, t.instance_meta.c.value))
        return {name: value for name, value in rows}  # noqa: C416 - dict(rows) sees .keys()

    def set_meta(self, conn: Connection, name: str, value: str) -> None:
        done = conn.execute(
            update(t.instance_meta).where(t.instance_meta.c.name == name).values(value=value)
        )
        if done.rowcount == 0:
            conn.execute(insert(t.instance_meta).values(name=name, value=value))

    # -- keys -----------------------------------------------------------------------------
    def keys(self, conn: Connection) -> list[KeyRow]:
        rows = conn.execute(select(t.crypto_key).order_by(t.crypto_key.c.key_id))
        return [
            KeyRow(
                key_id=r.key_id,
                purpose=r.purpose,
                state=r.state,
                wrapped=bytes(r.wrapped) if r.wrapped is not None else None,
                kek_id=r.kek_id,
                created_us=r.created_us,
                rotated_us=r.rotated_us,
                retired_us=r.retired_us,
            )
            for r in rows
        ]

    def insert_key(self, conn: Connection, row: KeyRow) -> None:
        conn.execute(
            insert(t.crypto_key).values(
                key_id=row.key_id,
                purpose=row.purpose,
                state=row.state,
                wrapped=row.wrapped,
                kek_id=row.kek_id,
                created_us=row.created_us,
                rotated_us=row.rotated_us,
                retired_us=row.retired_us,
            )
        )

    def update_key(
        self,
        conn: Connection,
        key_id: int,
        *,
        state: str,
        wrapped: bytes | None,
        kek_id: str,
        rotated_us: int | None = None,
        retired_us: int | None = None,
    ) -> None:
        values: dict[str, object] = {"state": state, "wrapped": wrapped, "kek_id": kek_id}
        if rotated_us is not None:
            values["rotated_us"] = rotated_us
        if retired_us is not None:
            values["retired_us"] = retired_us
        conn.execute(update(t.crypto_key).where(t.crypto_key.c.key_id == key_id).values(values))

    def key_use(self, conn: Connection, key_id: int) -> KeyUse:
        """How many stored rows still need ``key_id`` (bodies, MACs, audit details)."""

        def count(table: Table, where: ColumnElement[bool]) -> int:
            return int(
                conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
            )

        return KeyUse(
            versions_sealed=count(_V, _V.c.key_id == key_id),
            versions_maced=count(_V, _V.c.mac_key_id == key_id),
            audit_details=count(_A, _A.c.detail_key_id == key_id),
        )

    def versions_using_key(
        self, conn: Connection, key_id: int, *, after_seq: int, limit: int
    ) -> list[VersionRow]:
        """Versions whose body ``key_id`` sealed or whose MAC it made, in ``seq`` order."""
        rows = conn.execute(
            select(_V)
            .where(or_(_V.c.key_id == key_id, _V.c.mac_key_id == key_id), _V.c.seq > after_seq)
            .order_by(_V.c.seq)
            .limit(limit)
        )
        return [_version(r._mapping) for r in rows]

    def rekey_version(
        self,
        conn: Connection,
        seq: int,
        *,
        key_id: int | None,
        body: bytes | None,
        mac_key_id: int,
        mac: bytes,
    ) -> None:
        """Re-seal and re-MAC one version in place (``hearth keys reseal``): the plaintext and
        every other column stay as they are."""
        conn.execute(
            update(_V)
            .where(_V.c.seq == seq)
            .values(key_id=key_id, body=body, mac_key_id=mac_key_id, mac=mac)
        )

    # -- the key epoch and the nonce budget ----------------------------------------------------
    def key_epoch(self, conn: Connection) -> int:
        """How many times the key set changed. Writers read it after taking the version
        counter's lock and reload their key ring when it moved (docs/design.md, "Keys")."""
        value = conn.execute(_KEY_EPOCH).scalar_one_or_none()
        return int(value) if value is not None else 0

    def bump_key_epoch(self, conn: Connection) -> int:
        """Count one change of the key set. Callers hold the key counter's row lock, which
        serialises every change of keys, so the read-increment-write cannot race."""
        epoch = self.key_epoch(conn) + 1
        self.set_meta(conn, KEY_EPOCH, str(epoch))
        return epoch

    def add_seal_counts(self, conn: Connection, counts: dict[int, int]) -> None:
        """Add messages sealed per key id (one atomic ``value = value + n`` per key)."""
        for key_id, n in counts.items():
            name = f"{_SEALS}{key_id}"
            done = conn.execute(_ADD_SEALS, {"n": name, "v": n})
            if done.rowcount == 0:
                conn.execute(insert(t.counter).values(name=name, value=n))

    def seal_counts(self, conn: Connection) -> dict[int, int]:
        rows = conn.execute(
            select(t.counter.c.name, t.counter.c.value).where(t.counter.c.name.like(f"{_SEALS}%"))
        )
        return {int(name.removeprefix(_SEALS)): int(value) for name, value in rows}

    # -- resource versions ----------------------------------------------------------------
    def current(self, conn: Connection, res_type: str, res_id: str) -> VersionRow | None:
        found = _CURRENT.first(conn, {"t": res_type, "i": res_id})
        return _version(found) if found is not None else None

    def current_version_number(self, conn: Connection, res_type: str, res_id: str) -> int | None:
        value = conn.execute(_CURRENT_VERSION, {"t": res_type, "i": res_id}).scalar_one_or_none()
        return None if value is None else int(value)

    def version(
        self, conn: Connection, res_type: str, res_id: str, version: int
    ) -> VersionRow | None:
        found = _VERSION.first(conn, {"t": res_type, "i": res_id, "v": version})
        return _version(found) if found is not None else None

    def versions(self, conn: Connection, seqs: Sequence[int]) -> list[VersionRow]:
        """The versions with these ``seq`` numbers, in no particular order."""
        out: list[VersionRow] = []
        wanted = sorted(set(seqs))
        for start in range(0, len(wanted), 500):
            rows = conn.execute(select(_V).where(_V.c.seq.in_(wanted[start : start + 500])))
            out.extend(_version(r._mapping) for r in rows)
        return out

    def insert_first_versions(self, conn: Connection, rows: Sequence[VersionRow]) -> None:
        """Store the first versions of new resources and their current rows: two statements
        for any number (the driver's ``executemany``), where ``insert_version`` takes two per
        version. None of the resources may have a current row yet."""
        if not rows:
            return
        _INSERT_VERSION.executemany(conn, [_version_params(row) for row in rows])
        _INSERT_CURRENT.executemany(
            conn,
            [
                {"res_type": row.res_type, "res_id": row.res_id, **_current_values(row)}
                for row in rows
            ],
        )

    def insert_version(self, conn: Connection, row: VersionRow, *, new: bool = False) -> None:
        """Store a version and point the current row at it; ``new`` says the resource has no
        current row yet (its first version), which saves a statement."""
        _INSERT_VERSION.execute(conn, _version_params(row))
        values = _current_values(row)
        if (
            new
            or _UPDATE_CURRENT.execute(
                conn,
                {"t": row.res_type, "i": row.res_id, **{f"b_{k}": v for k, v in values.items()}},
            )
            == 0
        ):
            _INSERT_CURRENT.execute(
                conn, {"res_type": row.res_type, "res_id": row.res_id, **values}
            )

    def history(
        self,
        conn: Connection,
        *,
        res_type: str | None,
        res_id: str | None,
        since_us: int | None,
        before_seq: int | None,
        limit: int,
        scope: ColumnElement[bool] | None = None,
    ) -> list[VersionRow]:
        """Versions newest first (FHIR R4 http.html#history), paged by ``seq``. ``scope`` is
        the principal's access condition on ``resource_version`` rows (the gate's)."""
        conditions = [] if scope is None else [scope]
        if res_type is not None:
            conditions.append(_V.c.res_type == res_type)
        if res_id is not None:
            conditions.append(_V.c.res_id == res_id)
        if since_us is not None:
            conditions.append(_V.c.ts_us >= since_us)
        if before_seq is not None:
            conditions.append(_V.c.seq < before_seq)
        # Within one resource, version order is seq order, and ordering by version lets the
        # (type, id, version) index answer without scanning every version of the type.
        order = _V.c.version.desc() if res_id is not None else _V.c.seq.desc()
        rows = conn.execute(
            select(_V).where(and_(true(), *conditions)).order_by(order).limit(limit)
        )
        return [_version(r._mapping) for r in rows]

    def write_actions(
        self, conn: Connection, versions: Sequence[tuple[str, str, int]]
    ) -> dict[tuple[str, str, int], str]:
        """The audited action (``create``, ``update``, ``patch``, ``delete``) of the write that
        made each of these versions, keyed by (type, id, version). Every stored version has
        exactly one such entry, written in the version's own transaction (``hearth integrity
        verify`` checks both directions), so history can tell which interaction made a version
        without a column of its own. One statement per page: each resource's versions are an
        ``IN`` list beside its type and id, which the (type, id, version) index answers."""
        by_resource: dict[tuple[str, str], list[int]] = {}
        for res_type, res_id, version in versions:
            by_resource.setdefault((res_type, res_id), []).append(version)
        if not by_resource:
            return {}
        rows = conn.execute(
            select(_A.c.res_type, _A.c.res_id, _A.c.version, _A.c.action).where(
                _A.c.outcome == "success",
                _A.c.action.in_(WRITE_ACTIONS),
                or_(
                    *(
                        and_(
                            _A.c.res_type == res_type,
                            _A.c.res_id == res_id,
                            _A.c.version.in_(sorted(set(numbers))),
                        )
                        for (res_type, res_id), numbers in by_resource.items()
                    )
                ),
            )
        )
        return {(r.res_type, r.res_id, int(r.version)): str(r.action) for r in rows}

    def count_history(
        self, conn: Connection, *, res_type: str | None, res_id: str | None, since_us: int | None
    ) -> int:
        conditions = []
        if res_type is not None:
            conditions.append(_V.c.res_type == res_type)
        if res_id is not None:
            conditions.append(_V.c.res_id == res_id)
        if since_us is not None:
            conditions.append(_V.c.ts_us >= since_us)
        return int(
            conn.execute(
                select(func.count()).select_from(_V).where(and_(true(), *conditions))
            ).scalar_one()
        )

    def iter_versions(
        self, conn: Connection, *, after_seq: int = 0, batch: int = 2000
    ) -> Iterator[VersionRow]:
        """Every version in ``seq`` order, in batches so memory stays bounded."""
        last = after_seq
        while True:
            rows = conn.execute(
                select(_V).where(_V.c.seq > last).order_by(_V.c.seq).limit(batch)
            ).all()
            if not rows:
                return
            for r in rows:
                yield _version(r._mapping)
            last = rows[-1].seq

    def current_pointers(self, conn: Connection) -> Iterator[tuple[str, str, int, int, bool]]:
        rows = conn.execute(
            select(_C.c.res_type, _C.c.res_id, _C.c.version, _C.c.seq, _C.c.deleted)
        )
        for r in rows:
            yield r.res_type, r.res_id, r.version, r.seq, bool(r.deleted)

    def max_versions(self, conn: Connection) -> Iterator[tuple[str, str, int, int]]:
        rows = conn.execute(
            select(_V.c.res_type, _V.c.res_id, func.max(_V.c.version), func.max(_V.c.seq)).group_by(
                _V.c.res_type, _V.c.res_id
            )
        )
        for r in rows:
            yield r[0], r[1], int(r[2]), int(r[3])

    # -- audit ----------------------------------------------------------------------------
    def audit_head(self, conn: Connection, *, for_update: bool) -> AuditHeadRow | None:
        # On SQLite the lock is the database's, which a writer holds from its BEGIN IMMEDIATE.
        row = (_AUDIT_HEAD_LOCKED if for_update else _AUDIT_HEAD).first(conn, {})
        if row is None:
            return None
        signature = bytes(row["signature"]) if row["signature"] is not None else None
        return AuditHeadRow(
            row["seq"], bytes(row["hash"]), row["version_seq"], row["key_id"], signature
        )

    def init_audit_head(self, conn: Connection, head: AuditHeadRow) -> None:
        conn.execute(
            insert(t.audit_head).values(
                id=1,
                seq=head.seq,
                hash=head.hash,
                version_seq=head.version_seq,
                key_id=head.key_id,
                signature=head.signature,
            )
        )

    def set_audit_head(self, conn: Connection, head: AuditHeadRow) -> None:
        _SET_AUDIT_HEAD.execute(
            conn,
            {
                "b_seq": head.seq,
                "b_hash": head.hash,
                "b_version_seq": head.version_seq,
                "b_key_id": head.key_id,
                "b_signature": head.signature,
            },
        )

    def insert_audit(self, conn: Connection, rows: Sequence[AuditRow]) -> None:
        values = [
            {
                "seq": r.seq,
                "ts_us": r.ts_us,
                "actor": r.actor,
                "action": r.action,
                "outcome": r.outcome,
                "res_type": r.res_type,
                "res_id": r.res_id,
                "version": r.version,
                "patient": r.patient,
                "detail_key_id": r.detail_key_id,
                "body": r.body,
                "prev_hash": r.prev_hash,
                "hash": r.hash,
            }
            for r in rows
        ]
        _INSERT_AUDIT.executemany(conn, values)
        listed = [{"patient_id": p, "seq": r.seq} for r in rows for p in sorted(set(r.patients))]
        if listed:
            conn.execute(insert(t.audit_patient), listed)

    def insert_checkpoint(self, conn: Connection, row: CheckpointRow) -> None:
        conn.execute(
            insert(t.audit_checkpoint).values(
                seq=row.seq,
                ts_us=row.ts_us,
                hash=row.hash,
                key_id=row.key_id,
                signature=row.signature,
            )
        )

    def checkpoints(
        self, conn: Connection, *, after_seq: int = 0, upto_seq: int | None = None
    ) -> list[CheckpointRow]:
        cp = t.audit_checkpoint
        query = select(cp).where(cp.c.seq > after_seq)
        if upto_seq is not None:
            query = query.where(cp.c.seq <= upto_seq)
        rows = conn.execute(query.order_by(cp.c.seq))
        return [
            CheckpointRow(r.seq, r.ts_us, bytes(r.hash), r.key_id, bytes(r.signature)) for r in rows
        ]

    def checkpoint_at_or_before(self, conn: Connection, seq: int) -> CheckpointRow | None:
        """The last checkpoint at or before ``seq``: where incremental verification resumes."""
        cp = t.audit_checkpoint
        r = conn.execute(
            select(cp).where(cp.c.seq <= seq).order_by(cp.c.seq.desc()).limit(1)
        ).first()
        if r is None:
            return None
        return CheckpointRow(r.seq, r.ts_us, bytes(r.hash), r.key_id, bytes(r.signature))

    def iter_audit(
        self,
        conn: Connection,
        *,
        batch: int = 5000,
        after_seq: int = 0,
        upto_seq: int | None = None,
    ) -> Iterator[AuditRow]:
        """Audit entries with ``after_seq < seq <= upto_seq`` in ``seq`` order, in batches."""
        last = after_seq
        while True:
            query = select(_A).where(_A.c.seq > last)
            if upto_seq is not None:
                query = query.where(_A.c.seq <= upto_seq)
            rows = conn.execute(query.order_by(_A.c.seq).limit(batch)).all()
            if not rows:
                return
            for r in rows:
                yield AuditRow(
                    seq=r.seq,
                    ts_us=r.ts_us,
                    actor=r.actor,
                    action=r.action,
                    outcome=r.outcome,
                    res_type=r.res_type,
                    res_id=r.res_id,
                    version=r.version,
                    patient=r.patient,
                    detail_key_id=r.detail_key_id,
                    body=_blob(r.body),
                    prev_hash=_blob(r.prev_hash),
                    hash=_blob(r.hash),
                )
            last = rows[-1].seq

    def versions_without_audit(self, conn: Connection, *, limit: int) -> list[VersionRow]:
        """Stored versions that no successful write's audit entry names (at most ``limit``)."""
        writes = (
            select(_A.c.seq)
            .where(
                _A.c.res_type == _V.c.res_type,
                _A.c.res_id == _V.c.res_id,
                _A.c.version == _V.c.version,
                _A.c.outcome == "success",
                _A.c.action.in_(WRITE_ACTIONS),
            )
            .exists()
        )
        rows = conn.execute(select(_V).where(~writes).order_by(_V.c.seq).limit(limit))
        return [_version(r._mapping) for r in rows]

    def audited_writes_without_version(
        self, conn: Connection, *, limit: int
    ) -> list[tuple[int, str, str, int]]:
        """Successful writes in the audit whose version is not stored: (seq, type, id, version)."""
        stored = (
            select(_V.c.seq)
            .where(
                _V.c.res_type == _A.c.res_type,
                _V.c.res_id == _A.c.res_id,
                _V.c.version == _A.c.version,
            )
            .exists()
        )
        rows = conn.execute(
            select(_A.c.seq, _A.c.res_type, _A.c.res_id, _A.c.version)
            .where(
                _A.c.outcome == "success",
                _A.c.action.in_(WRITE_ACTIONS),
                _A.c.version.is_not(None),
                ~stored,
            )
            .order_by(_A.c.seq)
            .limit(limit)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def count_audit(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(_A)).scalar_one())

    # -- bootstrap API tokens -------------------------------------------------------------
    def insert_token(self, conn: Connection, row: TokenRow) -> None:
        conn.execute(
            insert(t.api_token).values(
                token_id=row.token_id,
                subject=row.subject,
                roles=row.roles,
                digest=row.digest,
                created_us=row.created_us,
                expires_us=row.expires_us,
                revoked_us=row.revoked_us,
                label=row.label,
            )
        )

    def token(self, conn: Connection, token_id: str) -> TokenRow | None:
        r = conn.execute(_TOKEN, {"token_id": token_id}).first()
        if r is None:
            return None
        return TokenRow(
            r.token_id,
            r.subject,
            r.roles,
            bytes(r.digest),
            r.created_us,
            r.expires_us,
            r.revoked_us,
            r.label,
        )

    def revoke_tokens(self, conn: Connection, *, subject: str, now_us: int) -> int:
        done = conn.execute(
            update(t.api_token)
            .where(t.api_token.c.subject == subject, t.api_token.c.revoked_us.is_(None))
            .values(revoked_us=now_us)
        )
        return int(done.rowcount)

    # -- maintenance ------------------------------------------------------------------------
    def is_empty(self, conn: Connection) -> bool:
        return conn.execute(select(_V.c.seq).limit(1)).first() is None
