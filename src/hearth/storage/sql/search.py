"""SQL for the search indexes: maintenance on write and the compilation of search conditions.

The pure planner (``hearth.fhir.search``) describes a search as a tree of conditions over the
index; this module turns that tree into SQLAlchemy Core over ``search_resource`` and the three
index tables, with every blind key already computed by the caller (the repository owns the key
ring). Statements are parameterised and portable across SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.exc import IntegrityError

from hearth.fhir.search.conditions import (
    All,
    And,
    Chain,
    Has,
    HasRef,
    IdIn,
    Keys,
    None_,
    Not,
    Or,
    RefTo,
    Updated,
)
from hearth.storage.sql import tables as t
from hearth.storage.sql.access import ScopePredicate
from hearth.storage.sql.conditions import pairs_in
from hearth.storage.sql.store import statement_sizes

__all__ = [
    "ROOT",
    "IndexRow",
    "InCompartment",
    "SeqIn",
    "compile_cond",
    "delete_index",
    "insert_hashes",
    "insert_index",
]

R = t.search_resource
H = t.search_hash
X = t.search_reference
P = t.search_compartment
L = t.search_care_link

Blind = Callable[[str, str], bytes]

#: The alias of ``search_resource`` a search selects from. One object shared by every statement
#: (Core elements are immutable), so that the SQL of a principal's scope predicates, the same on
#: every request, is built once and reused (``_scope_sql``).
ROOT = R.alias("r")


@dataclass(frozen=True, slots=True)
class SeqIn:
    """Rows whose current version is one of ``seqs`` (resolved inexact criteria)."""

    seqs: frozenset[int]


@dataclass(frozen=True, slots=True)
class InCompartment:
    """Rows in the compartment of one of ``patients`` (access scoping, $everything)."""

    patients: frozenset[str]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A chain or ``_has`` whose inner search has been resolved to an exact condition."""

    node: Chain | Has
    inner: object  # an exact condition tree (Cond | SeqIn | InCompartment | ...)


@dataclass(slots=True)
class IndexRow:
    """Everything the index holds about one current version."""

    seq: int
    res_type: str
    res_id: str
    ts_us: int
    hashes: set[bytes] = field(default_factory=set)
    refs: set[tuple[str, str, str]] = field(default_factory=set)
    patients: set[str] = field(default_factory=set)
    #: (actor type, actor id, patient id): the care relationships it states (search_care_link).
    links: frozenset[tuple[str, str, str]] = frozenset()


# ---------------------------------------------------------------------------- maintenance


def current_index_seqs(conn: Connection, keys: Sequence[tuple[str, str]]) -> list[int]:
    """The index ``seq`` of each (type, id) that is currently indexed."""
    if not keys:
        return []
    out: list[int] = []
    for start in range(0, len(keys), 400):
        chunk = keys[start : start + 400]
        rows = conn.execute(
            select(R.c.seq).where(pairs_in(R.c.res_type, R.c.res_id, chunk))
        ).scalars()
        out.extend(int(s) for s in rows)
    return out


def delete_index(conn: Connection, seqs: Sequence[int]) -> None:
    for start in range(0, len(seqs), 400):
        chunk = list(seqs[start : start + 400])
        for table in (H, X, P, L, R):
            conn.execute(delete(table).where(table.c.seq.in_(chunk)))


def insert_index(conn: Connection, rows: Sequence[IndexRow], *, hashes: bool = True) -> None:
    """The index rows of ``rows``; with ``hashes=False`` all but ``search_hash`` (a bulk load
    stages those, ``hearth.storage.sql.index_load``; a write batch inserts them as the index
    workers answer, ``insert_hashes``)."""
    if not rows:
        return
    conn.execute(
        insert(R),
        [
            {"seq": r.seq, "res_type": r.res_type, "res_id": r.res_id, "ts_us": r.ts_us}
            for r in rows
        ],
    )
    if hashes:
        insert_hashes(conn, rows)
    refs = [
        {"seq": r.seq, "param": p, "target_type": tt, "target_id": ti, "res_type": r.res_type}
        for r in rows
        for p, tt, ti in r.refs
    ]
    if refs:
        conn.execute(insert(X), refs)
    patients = [{"patient_id": p, "seq": r.seq} for r in rows for p in r.patients]
    if patients:
        conn.execute(insert(P), patients)
    links = [
        {"patient_id": patient, "actor_type": at, "actor_id": ai, "seq": r.seq}
        for r in rows
        for at, ai, patient in r.links
    ]
    if links:
        conn.execute(insert(L), links)


#: On SQLite, ``search_hash`` rows go in this many to an ``INSERT`` statement (with a statement
#: of each power of two below it for the rest): a few statements per write group instead of one
#: execution per row, each of which let go of the GIL and had to win it back.
SQLITE_HASH_ROWS = 256


def insert_hashes(conn: Connection, rows: Sequence[IndexRow]) -> None:
    """The ``search_hash`` rows of ``rows`` (``insert_index`` writes the others)."""
    keys = [(h, r.seq) for r in rows for h in r.hashes]
    if not keys:
        return
    if conn.dialect.name == "sqlite":
        _insert_hashes_sqlite(conn, keys)
        return
    # The driver's executemany directly, without SQLAlchemy's per-row parameter processing
    # (bytes and integers need none): psycopg pipelines the rows, PyMySQL rewrites them into
    # multi-row statements.
    conn.exec_driver_sql("INSERT INTO search_hash (hash, seq) VALUES (%s, %s)", keys)


def _insert_hashes_sqlite(conn: Connection, keys: list[tuple[bytes, int]]) -> None:
    """``keys`` in multi-row statements of ``SQLITE_HASH_ROWS`` rows, then of powers of two.

    ``OR ROLLBACK``: a statement that writes many rows and may fail halfway makes SQLite keep a
    statement journal, the prior image of every page it changes, and with one Patient's keys on
    a hundred pages that journal spills to a file. A conflict here would be a bug, and fails
    the whole batch anyway; so it rolls back the transaction and no statement journal is kept
    (docs/benchmarks.md, "Multi-row inserts of blind keys")."""
    done = 0
    for size in statement_sizes(len(keys), SQLITE_HASH_ROWS):
        chunk = keys[done : done + size]
        try:
            conn.exec_driver_sql(_sqlite_hash_insert(size), tuple(v for key in chunk for v in key))
        except IntegrityError:
            # SQLite has rolled the transaction back: a statement run next on this connection
            # would commit on its own. It is invalidated, so that none can.
            conn.invalidate()
            raise
        done += size


@cache
def _sqlite_hash_insert(rows: int) -> str:
    marks = ",".join(["(?, ?)"] * rows)  # placeholders only: the values are bound
    return f"INSERT OR ROLLBACK INTO search_hash (hash, seq) VALUES {marks}"  # noqa: S608


def clear_index(conn: Connection) -> None:
    for table in (H, X, P, L, R):
        conn.execute(delete(table))


# ---------------------------------------------------------------------------- compilation


#: Above this many keys a condition is checked row by row (a correlated EXISTS on the ``seq``
#: index) instead of being expanded into the set of every row that has one of the keys: wide key
#: sets are date and number ranges, which match many rows on their own and are best applied to
#: the few rows a selective condition (a reference, an identifier) has already chosen.
CORRELATE_ABOVE = 16


def _keys(
    cond: Keys, seq: ColumnElement[int], blind: Blind, correlate: bool = False
) -> ColumnElement[bool]:
    hashes = sorted(blind(domain, k) for domain in cond.domains for k in cond.keys)
    if correlate or len(hashes) > CORRELATE_ABOVE:
        inner = H.alias()
        return exists().where(inner.c.seq == seq, _hash_is(inner.c.hash, hashes))
    return seq.in_(select(H.c.seq).where(_hash_is(H.c.hash, hashes)))


def _hash_is(column: ColumnElement[bytes], hashes: list[bytes]) -> ColumnElement[bool]:
    if len(hashes) == 1:
        return column == hashes[0]
    # One expanding parameter for the list: a range's hundred keys are not each coerced into
    # an expression of their own.
    return column.in_(bindparam(None, hashes, expanding=True, type_=column.type))


def _ref(cond: RefTo, root: FromClause, res_type: str) -> ColumnElement[bool]:
    typed = [(tt, ti) for tt, ti in cond.targets if tt is not None]
    untyped = [ti for tt, ti in cond.targets if tt is None]
    options: list[ColumnElement[bool]] = []
    if typed:
        options.append(pairs_in(X.c.target_type, X.c.target_id, typed))
    if untyped:
        options.append(X.c.target_id.in_(untyped))
    return root.c.seq.in_(
        select(X.c.seq).where(X.c.param == cond.param, X.c.res_type == res_type, or_(*options))
    )


#: Conditions that choose few rows from an index of their own: beside one of them, a key
#: condition is checked per chosen row rather than expanded into every row that has the key.
_DRIVERS = (RefTo, IdIn, SeqIn, InCompartment)


def compile_cond(
    cond: object, root: FromClause, blind: Blind, res_type: str, *, correlate: bool = False
) -> ColumnElement[bool]:
    """SQL for ``cond`` over ``root`` (an alias of ``search_resource`` holding ``res_type``
    rows). Subqueries name the type as a literal rather than correlating with ``root``, so that
    every engine runs them once, from their own index, instead of once per row; except key
    conditions ANDed with a driver (``_DRIVERS``: a reference, ids): those are correlated
    probes of the ``(seq, hash)`` index, because a common key (a LOINC code held by an eighth of
    all observations) would otherwise be read in full for the few rows one patient has."""

    def part(c: object) -> ColumnElement[bool]:
        return compile_cond(c, root, blind, res_type, correlate=correlate)

    match cond:
        case All():
            return true()
        case None_():
            return false()
        case Keys():
            return _keys(cond, root.c.seq, blind, correlate)
        case RefTo():
            return _ref(cond, root, res_type)
        case HasRef(param=code):
            # Per row, on the key's prefix (seq, param): a reference parameter's rows are too
            # many to list (every Observation's subject). An alias of its own: inside a chain or
            # a _has, whose query reads search_reference too, the table itself would be
            # correlated away.
            ref = X.alias()
            return exists().where(ref.c.seq == root.c.seq, ref.c.param == code)
        case IdIn(ids=ids):
            return root.c.res_id.in_(sorted(ids))
        case Updated(lo=lo, hi=hi):
            parts = []
            if lo is not None:
                parts.append(root.c.ts_us >= lo)
            if hi is not None:
                parts.append(root.c.ts_us <= hi)
            return and_(true(), *parts)
        case Not(part=inner):
            return not_(part(inner))
        case And(parts=parts):
            if not correlate and any(isinstance(p, _DRIVERS) for p in parts):
                correlate = True
            return and_(*(part(p) for p in parts))
        case Or(parts=parts):
            return or_(*(part(p) for p in parts))
        case SeqIn(seqs=seqs):
            return root.c.seq.in_(sorted(seqs)) if seqs else false()
        case InCompartment(patients=patients):
            if not patients:
                return false()
            return root.c.seq.in_(select(P.c.seq).where(P.c.patient_id.in_(sorted(patients))))
        case ScopePredicate():  # access scoping (hearth.storage.access)
            return _scope_sql(cond) if root is ROOT else cond.where(root)
        case Resolved(node=Chain() as chain, inner=inner):
            target = R.alias()
            return root.c.seq.in_(
                select(X.c.seq)
                .select_from(
                    X.join(
                        target,
                        and_(
                            target.c.res_type == X.c.target_type,
                            target.c.res_id == X.c.target_id,
                        ),
                    )
                )
                .where(
                    X.c.param == chain.param,
                    X.c.target_type == chain.target_type,
                    X.c.res_type == res_type,
                    target.c.res_type == chain.target_type,
                    compile_cond(inner, target, blind, chain.target_type),
                )
            )
        case Resolved(node=Has() as has, inner=inner):
            source = R.alias()
            return root.c.res_id.in_(
                select(X.c.target_id)
                .select_from(X.join(source, source.c.seq == X.c.seq))
                .where(
                    X.c.param == has.param,
                    X.c.res_type == has.inner.res_type,
                    X.c.target_type == res_type,
                    source.c.res_type == has.inner.res_type,
                    compile_cond(inner, source, blind, has.inner.res_type),
                )
            )
        case _:
            raise TypeError(f"cannot compile {type(cond).__name__}")


@lru_cache(maxsize=1024)
def _scope_sql(predicate: ScopePredicate) -> ColumnElement[bool]:
    """A scope predicate's condition on ``ROOT``, built once per predicate (a principal's
    predicates are equal from one request to the next: hearth.storage.access keeps them)."""
    return predicate.where(ROOT)


def select_seqs(res_type: str, where: ColumnElement[bool]) -> tuple[Select[tuple[int]], FromClause]:
    root = R.alias("r")
    return select(root.c.seq).where(root.c.res_type == res_type, where), root


def count_rows(conn: Connection, query: Select[tuple[int]]) -> int:
    return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def references_from(
    conn: Connection, seqs: Iterable[int], params: Sequence[str] | None
) -> list[tuple[int, str, str, str]]:
    """(seq, param, target type, target id) of the references held by ``seqs``."""
    chunk = sorted(set(seqs))
    if not chunk:
        return []
    query = select(X.c.seq, X.c.param, X.c.target_type, X.c.target_id).where(X.c.seq.in_(chunk))
    if params is not None:
        query = query.where(X.c.param.in_(params))
    return [(int(a), b, c, d) for a, b, c, d in conn.execute(query)]


def referencing(
    conn: Connection,
    targets: Iterable[tuple[str, str]],
    source_type: str,
    params: Sequence[str] | None,
    limit: int,
) -> list[int]:
    """Seqs of ``source_type`` resources whose ``params`` reference one of ``targets``."""
    wanted = sorted(set(targets))
    if not wanted:
        return []
    query = (
        select(X.c.seq)
        .where(
            pairs_in(X.c.target_type, X.c.target_id, wanted),
            X.c.res_type == source_type,
        )
        .distinct()
        .limit(limit)
    )
    if params is not None:
        query = query.where(X.c.param.in_(params))
    return [int(s) for s in conn.execute(query).scalars()]


def current_seqs(conn: Connection, refs: Iterable[tuple[str, str]]) -> list[int]:
    wanted = sorted(set(refs))
    if not wanted:
        return []
    return [
        int(s)
        for s in conn.execute(
            select(R.c.seq).where(pairs_in(R.c.res_type, R.c.res_id, wanted))
        ).scalars()
    ]
