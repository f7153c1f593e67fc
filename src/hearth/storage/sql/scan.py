"""SQL for the integrity scanner: reading versions in bulk, pointers, index rows, its cursors and
its findings (docs/design.md, "Integrity scanner").

The version read is the scanner's hot path: it goes through the driver's own cursor and returns
plain tuples, one statement per batch of thousands of rows, because SQLAlchemy's per-row
processing would cost more than verifying the row. Every other statement here is per batch too,
never per row. Nothing here decides or verifies; ``hearth.storage.scan`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, insert, select, update

from hearth.storage.sql import tables as t
from hearth.storage.sql.conditions import pairs_in

__all__ = [
    "FindingRow",
    "PointerRow",
    "StoredIndex",
    "clear_finding",
    "close_findings",
    "current_pointers_of",
    "finding_rows",
    "insert_finding",
    "newest_versions_of",
    "open_keys",
    "pointers_in_range",
    "pointers_of_seqs",
    "release_lease",
    "scanner_state",
    "set_scanner_state",
    "stored_index",
    "take_lease",
    "touch_finding",
    "version_tuples",
    "version_tuples_by_seq",
]

_V = t.resource_version
_C = t.resource_current
_F = t.integrity_finding
_S = t.scanner_state
_COLUMNS = "seq, res_type, res_id, version, ts_us, deleted, key_id, body, mac_key_id, mac"
#: How many keys one ``IN`` list holds (well inside every engine's parameter limit).
_CHUNK = 400


def _bytes(value: object) -> object:
    """A binary column as bytes when the driver hands back another buffer type; anything else
    (a text value in a blob column of a damaged SQLite file) is left for the checker to name."""
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def _raw(conn: Connection, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (written with ``?`` marks) on the driver's cursor inside ``conn``'s
    transaction and return plain tuples."""
    if conn.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, tuple(params))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return [r if type(r) is tuple else tuple(r) for r in rows]


def _normalise(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = rows
    for n, row in enumerate(rows):
        body, mac = row[7], row[9]
        if (body is not None and type(body) is not bytes) or type(mac) is not bytes:
            if out is rows:
                out = list(rows)
            out[n] = (*row[:7], _bytes(body), *row[8:9], _bytes(mac))
    return out


def version_tuples(
    conn: Connection, *, after_seq: int, upto_seq: int, limit: int
) -> list[tuple[Any, ...]]:
    """Versions with ``after_seq < seq <= upto_seq`` in ``seq`` order, at most ``limit``, as
    ``(seq, res_type, res_id, version, ts_us, deleted, key_id, body, mac_key_id, mac)``."""
    # The statement starts the transaction through SQLAlchemy first, so the driver's cursor
    # below runs inside it (and at its isolation level).
    conn.execute(select(func.count()).select_from(_S))
    rows = _raw(
        conn,
        f"SELECT {_COLUMNS} FROM resource_version WHERE seq > ? AND seq <= ? "  # noqa: S608
        "ORDER BY seq LIMIT ?",
        (after_seq, upto_seq, limit),
    )
    return _normalise(rows)


def version_tuples_by_seq(conn: Connection, seqs: Iterable[int]) -> list[tuple[Any, ...]]:
    """The versions with these ``seq`` numbers (those that exist), in ``seq`` order."""
    wanted = sorted(set(seqs))
    out: list[tuple[Any, ...]] = []
    conn.execute(select(func.count()).select_from(_S))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        out.extend(
            _raw(
                conn,
                f"SELECT {_COLUMNS} FROM resource_version WHERE seq IN ({marks})",  # noqa: S608
                chunk,
            )
        )
    out.sort(key=lambda r: int(r[0]))
    return _normalise(out)


class PointerRow(NamedTuple):
    """A ``resource_current`` row as the driver returns it (``deleted`` may be 0/1)."""

    res_type: str
    res_id: str
    version: int
    seq: int
    deleted: bool
    ts_us: int


_pointer = PointerRow._make


_POINTER_COLUMNS = (_C.c.res_type, _C.c.res_id, _C.c.version, _C.c.seq, _C.c.deleted, _C.c.ts_us)


def pointers_in_range(conn: Connection, *, after_seq: int, upto_seq: int) -> list[PointerRow]:
    """Current pointers naming a ``seq`` in ``(after_seq, upto_seq]``."""
    rows = _raw(
        conn,
        "SELECT res_type, res_id, version, seq, deleted, ts_us FROM resource_current "
        "WHERE seq > ? AND seq <= ?",
        (after_seq, upto_seq),
    )
    return [_pointer(r) for r in rows]


def pointers_of_seqs(conn: Connection, seqs: Iterable[int]) -> list[PointerRow]:
    """Current pointers naming one of ``seqs``."""
    wanted = sorted(set(seqs))
    out: list[PointerRow] = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        out.extend(
            _pointer(r) for r in conn.execute(select(*_POINTER_COLUMNS).where(_C.c.seq.in_(chunk)))
        )
    return out


def current_pointers_of(
    conn: Connection, resources: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], PointerRow]:
    wanted = sorted(set(resources))
    out: dict[tuple[str, str], PointerRow] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = conn.execute(
            select(*_POINTER_COLUMNS).where(pairs_in(_C.c.res_type, _C.c.res_id, chunk))
        )
        for r in rows:
            p = _pointer(r)
            out[(p.res_type, p.res_id)] = p
    return out


def newest_versions_of(
    conn: Connection, resources: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int]]:
    """``(highest version, highest seq)`` stored for each resource that has any version."""
    wanted = sorted(set(resources))
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = conn.execute(
            select(_V.c.res_type, _V.c.res_id, func.max(_V.c.version), func.max(_V.c.seq))
            .where(pairs_in(_V.c.res_type, _V.c.res_id, chunk))
            .group_by(_V.c.res_type, _V.c.res_id)
        )
        for r in rows:
            out[(r[0], r[1])] = (int(r[2]), int(r[3]))
    return out


@dataclass(slots=True)
class StoredIndex:
    """What the search tables hold for the ``seq`` values of one range."""

    resources: dict[int, tuple[str, str, int]]  # seq -> (type, id, ts_us)
    hashes: dict[int, set[bytes]]
    refs: dict[int, set[tuple[str, str, str]]]  # seq -> {(param, target type, target id)}
    ref_types: dict[int, set[str]]  # seq -> the res_type column of its reference rows
    patients: dict[int, set[str]]
    links: dict[int, set[tuple[str, str, str]]]  # seq -> {(actor type, actor id, patient)}

    def seqs(self) -> set[int]:
        return (
            set(self.resources)
            | set(self.hashes)
            | set(self.refs)
            | set(self.patients)
            | set(self.links)
        )


def stored_index(conn: Connection, *, after_seq: int, upto_seq: int) -> StoredIndex:
    """Every index row whose ``seq`` is in ``(after_seq, upto_seq]``, one statement a table."""
    r, x, p = t.search_resource, t.search_reference, t.search_compartment
    index = StoredIndex({}, {}, {}, {}, {}, {})
    for seq, res_type, res_id, ts_us in conn.execute(
        select(r.c.seq, r.c.res_type, r.c.res_id, r.c.ts_us).where(
            r.c.seq > after_seq, r.c.seq <= upto_seq
        )
    ):
        index.resources[int(seq)] = (res_type, res_id, int(ts_us))
    for seq, value in _raw(
        conn, "SELECT seq, hash FROM search_hash WHERE seq > ? AND seq <= ?", (after_seq, upto_seq)
    ):
        index.hashes.setdefault(int(seq), set()).add(bytes(value))
    for seq, param, target_type, target_id, res_type in conn.execute(
        select(x.c.seq, x.c.param, x.c.target_type, x.c.target_id, x.c.res_type).where(
            x.c.seq > after_seq, x.c.seq <= upto_seq
        )
    ):
        index.refs.setdefault(int(seq), set()).add((param, target_type, target_id))
        index.ref_types.setdefault(int(seq), set()).add(res_type)
    for seq, patient in conn.execute(
        select(p.c.seq, p.c.patient_id).where(p.c.seq > after_seq, p.c.seq <= upto_seq)
    ):
        index.patients.setdefault(int(seq), set()).add(patient)
    link = t.search_care_link
    for seq, actor_type, actor_id, patient in conn.execute(
        select(link.c.seq, link.c.actor_type, link.c.actor_id, link.c.patient_id).where(
            link.c.seq > after_seq, link.c.seq <= upto_seq
        )
    ):
        index.links.setdefault(int(seq), set()).add((actor_type, actor_id, patient))
    return index


# -- the scanner's cursors and its lease ------------------------------------------------------


def scanner_state(conn: Connection) -> dict[str, int]:
    return {name: int(value) for name, value in conn.execute(select(_S.c.name, _S.c.value))}


def set_scanner_state(conn: Connection, values: dict[str, int]) -> None:
    for name, value in values.items():
        done = conn.execute(update(_S).where(_S.c.name == name).values(value=value))
        if done.rowcount == 0:
            conn.execute(insert(_S).values(name=name, value=value))


def take_lease(conn: Connection, name: str, *, now_us: int, until_us: int, holder: int) -> bool:
    """Take or renew the lease row ``name`` (its value is the expiry in µs, the holder's id is
    in ``name.holder``) so that of several processes of one instance one scans at a time.

    A compare-and-set on the old expiry: two processes that read the same expired lease both
    try, and the database lets exactly one update match. True if this holder has it now."""
    holder_name = f"{name}.holder"
    state = scanner_state(conn)
    if name not in state:
        set_scanner_state(conn, {name: until_us, holder_name: holder})
        return True
    if state[name] > now_us and state.get(holder_name) != holder:
        return False
    done = conn.execute(
        update(_S).where(_S.c.name == name, _S.c.value == state[name]).values(value=until_us)
    )
    if done.rowcount == 0:
        return False
    set_scanner_state(conn, {holder_name: holder})
    return True


def release_lease(conn: Connection, name: str, *, holder: int) -> None:
    """Give the lease up, unless another holder took it over meanwhile (this one's expired)."""
    if scanner_state(conn).get(f"{name}.holder") == holder:
        conn.execute(update(_S).where(_S.c.name == name).values(value=0))


# -- findings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FindingRow:
    finding_id: int
    active_key: str | None
    kind: str
    seq: int
    res_type: str | None
    res_id: str | None
    version: int | None
    problem: str
    state: str
    first_found_us: int
    last_found_us: int
    closed_us: int | None
    closed_by: str | None


def _finding(r: Any) -> FindingRow:
    return FindingRow(
        r.finding_id,
        r.active_key,
        r.kind,
        int(r.seq),
        r.res_type,
        r.res_id,
        r.version,
        r.problem,
        r.state,
        int(r.first_found_us),
        int(r.last_found_us),
        r.closed_us,
        r.closed_by,
    )


def finding_rows(
    conn: Connection, *, states: Sequence[str] = ("open",), kinds: Sequence[str] | None = None
) -> list[FindingRow]:
    query = select(_F).where(_F.c.state.in_(list(states)))
    if kinds is not None:
        query = query.where(_F.c.kind.in_(list(kinds)))
    return [_finding(r) for r in conn.execute(query.order_by(_F.c.finding_id))]


def open_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """Which of these active keys have an open finding."""
    found: set[str] = set()
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found.update(
            conn.execute(select(_F.c.active_key).where(_F.c.active_key.in_(chunk))).scalars()
        )
    return found


def insert_finding(
    conn: Connection,
    *,
    active_key: str,
    kind: str,
    seq: int,
    res_type: str | None,
    res_id: str | None,
    version: int | None,
    problem: str,
    now_us: int,
) -> None:
    conn.execute(
        insert(_F).values(
            active_key=active_key,
            kind=kind,
            seq=seq,
            res_type=res_type,
            res_id=res_id,
            version=version,
            problem=problem[:256],
            state="open",
            first_found_us=now_us,
            last_found_us=now_us,
        )
    )


def touch_finding(conn: Connection, active_key: str, *, now_us: int) -> None:
    conn.execute(update(_F).where(_F.c.active_key == active_key).values(last_found_us=now_us))


def clear_finding(conn: Connection, active_key: str, *, state: str, now_us: int, by: str) -> bool:
    """Close the open finding with this key (``cleared`` or ``repaired``); True if one was."""
    done = conn.execute(
        update(_F)
        .where(_F.c.active_key == active_key)
        .values(active_key=None, state=state, closed_us=now_us, closed_by=by[:128])
    )
    return bool(done.rowcount)


def close_findings(
    conn: Connection, keys: Sequence[str], *, state: str, now_us: int, by: str
) -> int:
    closed = 0
    for start in range(0, len(keys), _CHUNK):
        chunk = list(keys[start : start + _CHUNK])
        done = conn.execute(
            update(_F)
            .where(_F.c.active_key.in_(chunk))
            .values(active_key=None, state=state, closed_us=now_us, closed_by=by[:128])
        )
        closed += int(done.rowcount)
    return closed
