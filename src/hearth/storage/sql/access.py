"""SQL for access control: the relationship subquery, the scope predicates the searcher compiles,
and the statements over the access tables (roles, links, requests, break-the-glass, audit
patients). Nothing here decides; ``hearth.storage.access`` and the services do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
    or_,
    select,
    tuple_,
    union_all,
    update,
)

from hearth.storage.sql import tables as t
from hearth.storage.sql.conditions import pairs_in
from hearth.storage.sql.store import AuditRow

__all__ = [
    "AuditQuery",
    "BreakGlassRow",
    "InLinked",
    "Labelled",
    "count_linked",
    "LinkRow",
    "RequestRow",
    "RoleRow",
    "ScopePredicate",
]

R = t.search_resource
H = t.search_hash
X = t.search_reference
P = t.search_compartment
L = t.search_care_link


class ScopePredicate(ABC):
    """A condition the searcher compiles by calling ``where`` (see ``search.compile_cond``)."""

    __slots__ = ()

    @abstractmethod
    def where(self, root: FromClause) -> ColumnElement[bool]:
        """The condition on the rows of ``root`` (a ``search_resource`` alias)."""


def _acting(actors: Sequence[tuple[str, str]]) -> ColumnElement[bool]:
    """``search_care_link`` rows of one of ``actors``. The id list alone lets every engine use
    the index; the pairs make it exact (ids are random, but a client may reuse one across types)."""
    return and_(
        L.c.actor_id.in_(sorted({actor_id for _type, actor_id in actors})),
        tuple_(L.c.actor_type, L.c.actor_id).in_(sorted(actors)),
    )


def linked_patients(actors: Sequence[tuple[str, str]]) -> Select[tuple[str]]:
    """Ids of the patients linked to one of ``actors`` (hearth.security.relationships)."""
    return select(L.c.patient_id).where(_acting(actors)).distinct()


@dataclass(frozen=True, slots=True)
class InLinked(ScopePredicate):
    """Rows in the compartment of a patient linked to one of ``actors``.

    Two forms, one per kind of planner (docs/benchmarks.md, "Access control"):

    - ``probe`` (SQLite): a correlated probe per candidate row, its compartment patients (by
      seq) and then their links (by patient), two index lookups; a page stops after its first
      matches and a count costs the unscoped count plus the probes, whatever the size of the
      clinician's panel. SQLite lists an uncorrelated ``IN`` once per statement by walking every
      row of every linked patient, and re-lists one nested in a correlated subquery per row.
    - otherwise (PostgreSQL, MariaDB): an uncorrelated semi-join on the rows of the linked
      patients, which those planners hash once or drive from, by their statistics; given the
      correlated form, PostgreSQL underestimates the candidate rows and loops over all of them.
    """

    actors: tuple[tuple[str, str], ...]
    probe: bool = True
    #: How many patients are linked (``count_linked``): the searcher's plan compares it with the
    #: unscoped candidates to choose the form (``hearth.storage.searching``).
    panel: int = 0

    def where(self, root: FromClause) -> ColumnElement[bool]:
        if not self.actors:
            return false()
        if not self.probe:
            return root.c.seq.in_(
                select(P.c.seq)
                .select_from(P.join(L, L.c.patient_id == P.c.patient_id))
                .where(_acting(self.actors))
            )
        link = exists(
            select(L.c.patient_id).where(
                L.c.patient_id == P.c.patient_id,
                or_(*(and_(L.c.actor_type == t, L.c.actor_id == i) for t, i in self.actors)),
            )
        )
        return exists(select(P.c.patient_id).where(P.c.seq == root.c.seq, link))


@dataclass(frozen=True, slots=True)
class Labelled(ScopePredicate):
    """Rows carrying one of the blind label keys ``hashes``.

    Always the uncorrelated set of labelled rows, never a probe per row and label: a role lacks
    dozens of labels (every sensitivity code), and a correlated check of each key on each
    candidate row made a physician's count over 75,000 Observations cost millions of index
    probes, while the rows that carry a restricting label are few (docs/benchmarks.md)."""

    hashes: tuple[bytes, ...]
    #: PostgreSQL and MariaDB: a correlated ``EXISTS``, which they plan as an anti-join from
    #: the rows the search already chose; the uncorrelated set made PostgreSQL scan every row
    #: of ``search_resource`` to apply it as a filter.
    correlated: bool = False

    def where(self, root: FromClause) -> ColumnElement[bool]:
        if not self.hashes:
            return false()
        if self.correlated:
            inner = H.alias()
            return exists().where(inner.c.seq == root.c.seq, inner.c.hash.in_(self.hashes))
        return root.c.seq.in_(select(H.c.seq).where(H.c.hash.in_(self.hashes)))


def linked_ids(conn: Connection, actors: Sequence[tuple[str, str]], *, limit: int) -> list[str]:
    """Ids of up to ``limit`` patients linked to one of ``actors`` (one index range)."""
    if not actors:
        return []
    return [str(p) for p in conn.execute(linked_patients(actors).limit(limit)).scalars()]


def count_linked(conn: Connection, actors: Sequence[tuple[str, str]]) -> int:
    """How many patients are linked to one of ``actors`` (one index range)."""
    if not actors:
        return 0
    query = select(func.count()).select_from(linked_patients(actors).subquery())
    return int(conn.execute(query).scalar_one())


def linked_among(
    conn: Connection, patients: Iterable[str], actors: Sequence[tuple[str, str]]
) -> frozenset[str]:
    """Which of ``patients`` are linked to one of ``actors``."""
    wanted = sorted(set(patients))
    if not wanted or not actors:
        return frozenset()
    query = select(L.c.patient_id).where(L.c.patient_id.in_(wanted), _acting(actors)).distinct()
    return frozenset(str(p) for p in conn.execute(query).scalars())


def reference_targets(
    conn: Connection, seqs: Iterable[int], param: str
) -> list[tuple[int, str, str]]:
    """(seq, target type, target id) of ``param`` references held by ``seqs``."""
    chunk = sorted(set(seqs))
    if not chunk:
        return []
    rows = conn.execute(
        select(X.c.seq, X.c.target_type, X.c.target_id).where(
            X.c.seq.in_(chunk), X.c.param == param
        )
    )
    return [(int(s), str(tt), str(ti)) for s, tt, ti in rows]


def referencing_current(
    conn: Connection,
    res_type: str,
    param: str,
    targets: Sequence[tuple[str, str]],
    dead: frozenset[bytes] = frozenset(),
) -> list[tuple[int, str]]:
    """(seq, id) of current ``res_type`` resources whose ``param`` references one of
    ``targets``, leaving out those carrying one of the ``dead`` blind keys."""
    if not targets:
        return []
    query = (
        select(R.c.seq, R.c.res_id)
        .select_from(R.join(X, X.c.seq == R.c.seq))
        .where(
            X.c.res_type == res_type,
            X.c.param == param,
            pairs_in(X.c.target_type, X.c.target_id, targets),
        )
        .distinct()
    )
    if dead:
        query = query.where(R.c.seq.not_in(select(H.c.seq).where(H.c.hash.in_(sorted(dead)))))
    return [(int(s), str(i)) for s, i in conn.execute(query)]


_C = t.resource_current
# Built once: loaders ask this for every record they write.
_CURRENT_STATE = select(_C.c.version, _C.c.deleted).where(
    _C.c.res_type == bindparam("t"), _C.c.res_id == bindparam("i")
)


def current_state(conn: Connection, res_type: str, res_id: str) -> tuple[int, bool] | None:
    """(version, deleted) of a resource's current version, without its body; None if none."""
    row = conn.execute(_CURRENT_STATE, {"t": res_type, "i": res_id}).first()
    return None if row is None else (int(row[0]), bool(row[1]))


def in_compartments_of(patients: Iterable[str]) -> Select[tuple[int]]:
    return select(P.c.seq).where(P.c.patient_id.in_(sorted(set(patients))))


# ---------------------------------------------------------------------------- role edits


@dataclass(frozen=True, slots=True)
class RoleRow:
    name: str
    definition: bytes | None
    deleted: bool
    revision: int
    updated_us: int
    updated_by: str


def role_rows(conn: Connection) -> list[RoleRow]:
    rows = conn.execute(select(t.access_role).order_by(t.access_role.c.name))
    return [
        RoleRow(
            r.name,
            bytes(r.definition) if r.definition is not None else None,
            bool(r.deleted),
            int(r.revision),
            int(r.updated_us),
            r.updated_by,
        )
        for r in rows
    ]


def save_role(conn: Connection, row: RoleRow) -> None:
    done = conn.execute(
        update(t.access_role)
        .where(t.access_role.c.name == row.name)
        .values(
            definition=row.definition,
            deleted=row.deleted,
            revision=t.access_role.c.revision + 1,
            updated_us=row.updated_us,
            updated_by=row.updated_by,
        )
    )
    if done.rowcount == 0:
        conn.execute(
            insert(t.access_role).values(
                name=row.name,
                definition=row.definition,
                deleted=row.deleted,
                revision=1,
                updated_us=row.updated_us,
                updated_by=row.updated_by,
            )
        )


def drop_role_edit(conn: Connection, name: str) -> int:
    return int(conn.execute(delete(t.access_role).where(t.access_role.c.name == name)).rowcount)


# ---------------------------------------------------------------------------- user links


@dataclass(frozen=True, slots=True)
class LinkRow:
    user_id: str
    practitioner_id: str | None
    patient_id: str | None
    family_key: bytes | None
    updated_us: int
    updated_by: str


def link_of(conn: Connection, user_id: str) -> LinkRow | None:
    row = conn.execute(select(t.access_link).where(t.access_link.c.user_id == user_id)).first()
    if row is None:
        return None
    return LinkRow(
        row.user_id,
        row.practitioner_id,
        row.patient_id,
        bytes(row.family_key) if row.family_key is not None else None,
        int(row.updated_us),
        row.updated_by,
    )


def links(conn: Connection) -> list[LinkRow]:
    rows = conn.execute(select(t.access_link).order_by(t.access_link.c.user_id))
    return [
        LinkRow(
            r.user_id,
            r.practitioner_id,
            r.patient_id,
            bytes(r.family_key) if r.family_key is not None else None,
            int(r.updated_us),
            r.updated_by,
        )
        for r in rows
    ]


def save_link(conn: Connection, row: LinkRow) -> None:
    conn.execute(delete(t.access_link).where(t.access_link.c.user_id == row.user_id))
    if row.practitioner_id is None and row.patient_id is None:
        return
    conn.execute(
        insert(t.access_link).values(
            user_id=row.user_id,
            practitioner_id=row.practitioner_id,
            patient_id=row.patient_id,
            family_key=row.family_key,
            updated_us=row.updated_us,
            updated_by=row.updated_by,
        )
    )


def users_linked_to_patient(conn: Connection, patient_id: str) -> list[str]:
    return [
        str(u)
        for u in conn.execute(
            select(t.access_link.c.user_id).where(t.access_link.c.patient_id == patient_id)
        ).scalars()
    ]


# ---------------------------------------------------------------------------- snooping pauses


def save_resume(conn: Connection, user_id: str, now_us: int, by: str) -> None:
    """Record that ``user_id``'s snooping pause was lifted at ``now_us`` (the latest one counts)."""
    conn.execute(delete(t.access_resume).where(t.access_resume.c.user_id == user_id))
    conn.execute(insert(t.access_resume).values(user_id=user_id, resumed_us=now_us, resumed_by=by))


def resumed_us(conn: Connection, user_id: str) -> int | None:
    """When ``user_id``'s pause was last lifted, or None."""
    found = conn.execute(
        select(t.access_resume.c.resumed_us).where(t.access_resume.c.user_id == user_id)
    ).scalar()
    return None if found is None else int(found)


# ---------------------------------------------------------------------------- approvals


@dataclass(frozen=True, slots=True)
class RequestRow:
    request_id: str
    kind: str
    target: str
    payload: bytes
    requested_by: str
    requested_us: int
    expires_us: int
    status: str
    decided_by: str | None = None
    decided_us: int | None = None


def _request(r: object) -> RequestRow:
    m = r._mapping  # type: ignore[attr-defined]
    return RequestRow(
        m["request_id"],
        m["kind"],
        m["target"],
        bytes(m["payload"]),
        m["requested_by"],
        int(m["requested_us"]),
        int(m["expires_us"]),
        m["status"],
        m["decided_by"],
        None if m["decided_us"] is None else int(m["decided_us"]),
    )


def insert_request(conn: Connection, row: RequestRow) -> None:
    conn.execute(
        insert(t.access_request).values(
            request_id=row.request_id,
            kind=row.kind,
            target=row.target,
            payload=row.payload,
            requested_by=row.requested_by,
            requested_us=row.requested_us,
            expires_us=row.expires_us,
            status=row.status,
        )
    )


def request(conn: Connection, request_id: str, *, for_update: bool = False) -> RequestRow | None:
    query = select(t.access_request).where(t.access_request.c.request_id == request_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    return _request(row) if row is not None else None


def requests(conn: Connection, status: str | None) -> list[RequestRow]:
    query = select(t.access_request).order_by(t.access_request.c.requested_us)
    if status is not None:
        query = query.where(t.access_request.c.status == status)
    return [_request(r) for r in conn.execute(query)]


def decide_request(conn: Connection, request_id: str, status: str, by: str, now_us: int) -> bool:
    """Close a pending request; False if it was no longer pending (compare-and-set)."""
    done = conn.execute(
        update(t.access_request)
        .where(t.access_request.c.request_id == request_id, t.access_request.c.status == "pending")
        .values(status=status, decided_by=by, decided_us=now_us)
    )
    return bool(done.rowcount == 1)


# ---------------------------------------------------------------------------- break-the-glass


@dataclass(frozen=True, slots=True)
class BreakGlassRow:
    grant_id: str
    user_id: str
    patient_id: str
    purpose: str
    reason: bytes
    created_us: int
    expires_us: int
    ended_us: int | None = None
    review_status: str = "open"
    reviewed_by: str | None = None
    reviewed_us: int | None = None
    finding: str | None = None
    note: bytes | None = None


def _grant(r: object) -> BreakGlassRow:
    m = r._mapping  # type: ignore[attr-defined]
    return BreakGlassRow(
        m["grant_id"],
        m["user_id"],
        m["patient_id"],
        m["purpose"],
        bytes(m["reason"]),
        int(m["created_us"]),
        int(m["expires_us"]),
        None if m["ended_us"] is None else int(m["ended_us"]),
        m["review_status"],
        m["reviewed_by"],
        None if m["reviewed_us"] is None else int(m["reviewed_us"]),
        m["finding"],
        bytes(m["note"]) if m["note"] is not None else None,
    )


def insert_grant(conn: Connection, row: BreakGlassRow) -> None:
    conn.execute(
        insert(t.access_break_glass).values(
            grant_id=row.grant_id,
            user_id=row.user_id,
            patient_id=row.patient_id,
            purpose=row.purpose,
            reason=row.reason,
            created_us=row.created_us,
            expires_us=row.expires_us,
            review_status=row.review_status,
        )
    )


def grant(conn: Connection, grant_id: str) -> BreakGlassRow | None:
    row = conn.execute(
        select(t.access_break_glass).where(t.access_break_glass.c.grant_id == grant_id)
    ).first()
    return _grant(row) if row is not None else None


def grants(
    conn: Connection,
    *,
    review_status: str | None = None,
    user_id: str | None = None,
    patient_id: str | None = None,
    since_us: int | None = None,
) -> list[BreakGlassRow]:
    g = t.access_break_glass
    query = select(g).order_by(g.c.created_us)
    if review_status is not None:
        query = query.where(g.c.review_status == review_status)
    if user_id is not None:
        query = query.where(g.c.user_id == user_id)
    if patient_id is not None:
        query = query.where(g.c.patient_id == patient_id)
    if since_us is not None:
        query = query.where(g.c.created_us >= since_us)
    return [_grant(r) for r in conn.execute(query)]


def end_grant(conn: Connection, grant_id: str, now_us: int) -> bool:
    g = t.access_break_glass
    done = conn.execute(
        update(g).where(g.c.grant_id == grant_id, g.c.ended_us.is_(None)).values(ended_us=now_us)
    )
    return bool(done.rowcount == 1)


def sealed_grant_parts(conn: Connection) -> list[tuple[str, str, bytes]]:
    """``(grant id, "reason" or "note", sealed bytes)`` of every grant (key management)."""
    g = t.access_break_glass
    out: list[tuple[str, str, bytes]] = []
    for grant_id, reason, note in conn.execute(select(g.c.grant_id, g.c.reason, g.c.note)):
        out.append((grant_id, "reason", bytes(reason)))
        if note is not None:
            out.append((grant_id, "note", bytes(note)))
    return out


def replace_grant_part(
    conn: Connection, grant_id: str, part: str, *, old: bytes, new: bytes
) -> bool:
    """Swap a re-sealed reason or note in (``hearth keys reseal``), if it is unchanged."""
    g = t.access_break_glass
    column = g.c.reason if part == "reason" else g.c.note
    done = conn.execute(
        update(g).where(g.c.grant_id == grant_id, column == old).values({column.name: new})
    )
    return bool(done.rowcount == 1)


def review_grant(
    conn: Connection, grant_id: str, *, by: str, now_us: int, finding: str, note: bytes | None
) -> bool:
    """Close a review; False if it was already closed (compare-and-set)."""
    g = t.access_break_glass
    done = conn.execute(
        update(g)
        .where(g.c.grant_id == grant_id, g.c.review_status == "open")
        .values(
            review_status="closed", reviewed_by=by, reviewed_us=now_us, finding=finding, note=note
        )
    )
    return bool(done.rowcount == 1)


# ---------------------------------------------------------------------------- audit patients


def audit_seqs_for_patient(patient_id: str, since_us: int, until_us: int) -> Select[tuple[int]]:
    """Seqs of audit entries about ``patient_id`` (its own column or its patient list)."""
    a = t.audit_entry
    direct = select(a.c.seq).where(
        a.c.patient == patient_id, a.c.ts_us >= since_us, a.c.ts_us <= until_us
    )
    listed = (
        select(t.audit_patient.c.seq)
        .select_from(t.audit_patient.join(a, a.c.seq == t.audit_patient.c.seq))
        .where(
            t.audit_patient.c.patient_id == patient_id, a.c.ts_us >= since_us, a.c.ts_us <= until_us
        )
    )
    return select(union_all(direct, listed).subquery().c.seq)


def any_of(conditions: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    return or_(*conditions) if conditions else false()


# ---------------------------------------------------------------------------- audit views


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters over the audit chain's query columns (HIP-AU-02: by user, patient, time,
    action). Every filter given must hold; ``patient`` matches an entry's own patient column
    or its list of patients (``audit_patient``)."""

    actor: str | None = None
    patient: str | None = None
    res_type: str | None = None
    res_id: str | None = None
    actions: frozenset[str] | None = None
    outcome: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    before_seq: int | None = None


def audit_rows(conn: Connection, query: AuditQuery, limit: int) -> list[AuditRow]:
    """Matching entries, newest first, at most ``limit``."""
    a = t.audit_entry
    conditions: list[ColumnElement[bool]] = []
    if query.actor is not None:
        conditions.append(a.c.actor == query.actor)
    if query.patient is not None:
        listed = select(t.audit_patient.c.seq).where(t.audit_patient.c.patient_id == query.patient)
        conditions.append(or_(a.c.patient == query.patient, a.c.seq.in_(listed)))
    if query.res_type is not None:
        conditions.append(a.c.res_type == query.res_type)
    if query.res_id is not None:
        conditions.append(a.c.res_id == query.res_id)
    if query.actions is not None:
        conditions.append(a.c.action.in_(sorted(query.actions)))
    if query.outcome is not None:
        conditions.append(a.c.outcome == query.outcome)
    if query.since_us is not None:
        conditions.append(a.c.ts_us >= query.since_us)
    if query.until_us is not None:
        conditions.append(a.c.ts_us <= query.until_us)
    if query.before_seq is not None:
        conditions.append(a.c.seq < query.before_seq)
    rows = conn.execute(select(a).where(*conditions).order_by(a.c.seq.desc()).limit(limit))
    return [_audit_row(r) for r in rows]


def audit_row(conn: Connection, seq: int) -> AuditRow | None:
    row = conn.execute(select(t.audit_entry).where(t.audit_entry.c.seq == seq)).first()
    return _audit_row(row) if row is not None else None


def _audit_row(r: object) -> AuditRow:
    m = r._mapping  # type: ignore[attr-defined]
    return AuditRow(
        seq=int(m["seq"]),
        ts_us=int(m["ts_us"]),
        actor=m["actor"],
        action=m["action"],
        outcome=m["outcome"],
        res_type=m["res_type"],
        res_id=m["res_id"],
        version=m["version"],
        patient=m["patient"],
        detail_key_id=m["detail_key_id"],
        body=bytes(m["body"]),
        prev_hash=bytes(m["prev_hash"]),
        hash=bytes(m["hash"]),
    )
