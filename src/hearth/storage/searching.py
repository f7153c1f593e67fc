"""Running a planned search inside the gate: SQL narrows, the repository finishes, within bounds.

``Searcher`` works on one connection (a read transaction, or the write transaction of a batch
so that conditional interactions see the batch's own writes). It

1. resolves every chained and ``_has`` sub-search into an exact condition, innermost first;
2. resolves inexact criteria (sealed ranges, long prefixes, ``:contains``...): it selects the
   rows the index cannot decide, opens at most ``bound`` of them, runs each criterion's check on
   the decrypted resource, and replaces the criterion by the exact list of rows that passed.
   More than ``bound`` candidates is refused with ``SEARCH_TOO_COSTLY``, never answered wrongly;
3. counts, orders and pages in SQL, or, to sort on a sealed field, opens every match (again at
   most ``bound``) and sorts them in memory;
4. applies the policy's search scope (``hearth.security.SearchScope``) as a SQL predicate at
   every level, so that counts and pages only ever include rows the principal may see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, FromClause, literal, select
from sqlalchemy import or_ as or_sql

from hearth.domain import HearthError, StoredResource, errors
from hearth.fhir import definitions
from hearth.fhir.search import (
    And,
    Chain,
    Cond,
    Criterion,
    Has,
    IdIn,
    Include,
    Keys,
    Not,
    Or,
    RefTo,
    SearchRequest,
    SortKey,
    SubSearch,
    and_,
    or_,
    param_for,
    sort_value,
)
from hearth.storage.sql import search as sql
from hearth.storage.sql.access import InLinked
from hearth.storage.sql.conditions import pairs_in
from hearth.storage.sql.store import SqlStore, VersionRow

__all__ = ["SearchPage", "Searcher"]

Opener = Callable[[VersionRow], StoredResource]
Blind = Callable[[str, str], bytes]
ScopeFor = Callable[[str], object]  # res_type -> an exact condition (or ALL)


@dataclass(slots=True)
class SearchPage:
    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    offset: int = 0
    more: bool = False


class Searcher:
    def __init__(
        self,
        *,
        conn: Connection,
        store: SqlStore,
        blind: Blind,
        open_row: Opener,
        scope_for: ScopeFor,
        bound: int,
        include_bound: int,
    ) -> None:
        self._conn = conn
        self._store = store
        # A key is blinded once per search, however often its condition appears (sure, maybe,
        # the candidate query, the final query, the count).
        cache: dict[tuple[str, str], bytes] = {}

        def cached(domain: str, key: str) -> bytes:
            found = cache.get((domain, key))
            if found is None:
                found = cache[(domain, key)] = blind(domain, key)
            return found

        self._blind = cached
        self._open = open_row
        self._scope_for = scope_for
        self._bound = bound
        self._include_bound = include_bound
        self.opened = 0  # resources opened to finish inexact criteria (for tests and bench)

    # -- resolution ---------------------------------------------------------------------------
    def _exact_tree(self, cond: Cond) -> object:
        """``cond`` with every chain and ``_has`` replaced by its resolved form."""
        match cond:
            case Chain() | Has():
                return sql.Resolved(cond, self.resolve(cond.inner))
            case Not(part=part):
                return Not(self._exact_tree(part))  # type: ignore[arg-type]
            case And(parts=parts):
                return And(tuple(self._exact_tree(p) for p in parts))  # type: ignore[misc]
            case Or(parts=parts):
                return Or(tuple(self._exact_tree(p) for p in parts))  # type: ignore[misc]
            case _:
                return cond

    def _where(self, cond: object, root: FromClause, res_type: str) -> Any:
        return sql.compile_cond(cond, root, self._blind, res_type)

    def resolve(self, sub: SubSearch, extra: object = None) -> object:
        """An exact condition for ``sub``, scoped to what the principal may see."""
        scope = self._scope_for(sub.res_type)
        criteria = [
            Criterion(
                self._exact_tree(c.sure),  # type: ignore[arg-type]
                self._exact_tree(c.maybe),  # type: ignore[arg-type]
                c.check,
                c.name,
            )
            for c in sub.criteria
        ]
        parts: list[object] = [scope] if extra is None else [scope, extra]
        sure = and_(*parts, *(c.sure for c in criteria))  # type: ignore[arg-type]
        inexact = [c for c in criteria if not c.exact]
        if not inexact:
            return sure
        candidates = and_(
            *parts,  # type: ignore[arg-type]
            *(c.maybe for c in criteria),
            or_(*(and_(c.maybe, Not(c.sure)) for c in inexact)),
        )
        query, _root = self._query(sub.res_type, candidates)
        seqs = [int(s) for s in self._conn.execute(query.limit(self._bound + 1)).scalars()]
        if len(seqs) > self._bound:
            raise HearthError(
                errors.SEARCH_TOO_COSTLY,
                f"The search would open more than {self._bound} resources to finish "
                f"'{inexact[0].name}'; add a more selective parameter.",
            )
        passed: set[int] = set()
        for stored in self._open_seqs(seqs):
            resource = stored.resource or {}
            if all(c.check is not None and c.check(resource) for c in inexact):
                passed.add(stored.seq)
        return or_(sure, sql.SeqIn(frozenset(passed)))  # type: ignore[arg-type]

    def _alias(self) -> FromClause:
        return sql.ROOT

    def _query(self, res_type: str, cond: object) -> tuple[Any, FromClause]:
        root = self._alias()
        type_column: Any = root.c.res_type
        if _driven(cond) and self._conn.dialect.name == "sqlite":
            # A selective condition (a reference, an id, a short key list) should choose the
            # rows; an index on the type would otherwise tempt SQLite into scanning every row of
            # the type and testing each. Concatenating '' keeps the test but not the index.
            # Not on PostgreSQL: there it only hides the type's row count from the planner,
            # which then loops over every row of the type (docs/benchmarks.md, "Access control").
            type_column = type_column + literal("")
        query = select(root.c.seq).where(type_column == res_type, self._where(cond, root, res_type))
        return query, root

    def _open_seqs(self, seqs: Sequence[int]) -> list[StoredResource]:
        rows = {r.seq: r for r in self._store.versions(self._conn, seqs)}
        out = []
        for seq in seqs:
            row = rows.get(seq)
            if row is not None:
                self.opened += 1
                out.append(self._open(row))
        return out

    # -- the search ------------------------------------------------------------------------------
    def run(self, request: SearchRequest, *, offset: int, extra: object = None) -> SearchPage:
        cond = self._planned(request, self.resolve(request.sub(), extra), extra)
        query, root = self._query(request.res_type, cond)
        total = None
        want_total = request.total != "none"
        if request.summary == "count":
            return SearchPage([], [], sql.count_rows(self._conn, query), offset, False)
        sealed_sort = any(k.param is not None for k in request.sort)
        if sealed_sort:
            if want_total:
                total = sql.count_rows(self._conn, query)
            page, more = self._sorted_in_memory(request, query, offset)
        else:
            order = []
            for key in request.sort:
                column = root.c.res_id if key.code == "_id" else root.c.ts_us
                order.append(column.desc() if key.descending else column.asc())
            order.append(root.c.seq.asc())
            seqs = [
                int(s)
                for s in self._conn.execute(
                    query.order_by(*order).offset(offset).limit(request.count + 1)
                ).scalars()
            ]
            more = len(seqs) > request.count
            if want_total:
                # A first page that holds every match is the count: a selective search (an
                # identifier, one patient's observations) then runs one query, not two.
                whole = offset == 0 and not more
                total = len(seqs) if whole else sql.count_rows(self._conn, query)
            page = self._open_seqs(seqs[: request.count])
        included = self._includes(request, page)
        return SearchPage(page, included, total, offset, more)

    def _planned(self, request: SearchRequest, cond: object, extra: object) -> object:
        """``cond`` with care-relationship scoping in the form that suits this search
        (``InLinked``; docs/design.md, "Relationship scoping, in SQL").

        The probe form costs two index lookups per candidate row; the listed form costs the
        rows of every linked patient once. When the unscoped candidates outnumber
        ``_LIST_ABOVE`` times the linked patients, listing is cheaper. The candidates are
        estimated from the index alone, capped: the smallest number of index rows of one
        selective criterion (a reference or a few keys), each counted up to the cap without
        touching a resource; no selective criterion means every row of the type. The estimate
        only chooses a plan and is never returned."""
        probes = _probes(cond)
        if not probes:
            return cond
        cap = _LIST_ABOVE * max(p.panel for p in probes)
        parts: list[object] = [c.sure for c in request.criteria if c.exact]
        if extra is not None:
            parts.append(extra)
        if any(_one_patient(part, request.res_type) for part in parts):
            # One patient's records (a chart): probing them costs two lookups per row, and
            # listing the linked patients' rows only wins if this one patient holds more rows
            # than half the panel together. Chosen without estimating, one statement fewer.
            return cond
        # Ids and references first: they are small ranges, and one at or under the cap settles
        # it without counting a key's rows.
        for part in sorted(parts, key=_estimate_order):
            rows = self._rows_up_to(part, request.res_type, cap)
            if rows is not None and rows <= cap:
                return cond
        return _listed(cond)

    def _rows_up_to(self, cond: object, res_type: str, cap: int) -> int | None:
        """Index rows matching one selective criterion, counted up to ``cap + 1``; None when
        the criterion is not a single index range."""
        match cond:
            case IdIn(ids=ids):
                return len(ids)
            case Keys(domains=domains, keys=keys) if cond.width <= sql.CORRELATE_ABOVE:
                hashes = sorted(self._blind(d, k) for d in domains for k in keys)
                inner: Any = select(sql.H.c.seq).where(sql.H.c.hash.in_(hashes))
            case RefTo(param=param, targets=targets):
                typed = sorted((t, i) for t, i in targets if t is not None)
                untyped = sorted(i for t, i in targets if t is None)
                options = []
                if typed:
                    options.append(pairs_in(sql.X.c.target_type, sql.X.c.target_id, typed))
                if untyped:
                    options.append(sql.X.c.target_id.in_(untyped))
                inner = select(sql.X.c.seq).where(
                    sql.X.c.param == param, sql.X.c.res_type == res_type, or_sql(*options)
                )
            case _:
                return None
        return sql.count_rows(self._conn, inner.limit(cap + 1))

    def _sorted_in_memory(
        self, request: SearchRequest, query: Any, offset: int
    ) -> tuple[list[StoredResource], bool]:
        seqs = [int(s) for s in self._conn.execute(query.limit(self._bound + 1)).scalars()]
        if len(seqs) > self._bound:
            raise HearthError(
                errors.SEARCH_TOO_COSTLY,
                f"Sorting on a sealed field opens every match, and more than {self._bound} "
                "match; narrow the search or sort by _lastUpdated or _id.",
            )
        opened = self._open_seqs(seqs)
        for key in reversed(request.sort):
            opened.sort(key=_sort_key(key), reverse=key.descending)
        page = opened[offset : offset + request.count]
        return page, offset + request.count < len(opened)

    # -- includes -------------------------------------------------------------------------------
    def _scoped(self, seqs: Iterable[int]) -> list[int]:
        """Drop rows outside the principal's search scope (checked per type, in SQL)."""
        wanted = sorted(set(seqs))
        if not wanted:
            return []
        rows = self._conn.execute(
            select(sql.R.c.seq, sql.R.c.res_type).where(sql.R.c.seq.in_(wanted))
        )
        by_type: dict[str, list[int]] = {}
        for seq, res_type in rows:
            by_type.setdefault(res_type, []).append(int(seq))
        out: list[int] = []
        for res_type, group in by_type.items():
            scope = self._scope_for(res_type)
            cond = and_(scope, sql.SeqIn(frozenset(group)))  # type: ignore[arg-type]
            query, _root = self._query(res_type, cond)
            out.extend(int(s) for s in self._conn.execute(query).scalars())
        return out

    def _includes(self, request: SearchRequest, page: list[StoredResource]) -> list[StoredResource]:
        if not request.includes and not request.revincludes:
            return []
        seen = {s.seq for s in page}
        frontier = list(page)
        included: list[StoredResource] = []
        first = True
        for _round in range(4):  # the first pass, and up to three levels of :iterate
            found: set[int] = set()
            for inc in request.includes:
                if not first and not inc.iterate:
                    continue
                found.update(self._forward(inc, frontier))
            for inc in request.revincludes:
                if not first and not inc.iterate:
                    continue
                found.update(self._reverse(inc, frontier))
            found -= seen
            if not found:
                break
            room = self._include_bound - len(included)
            if room <= 0:
                break
            chosen = sorted(self._scoped(found))[:room]
            opened = [s for s in self._open_seqs(chosen) if not s.deleted]
            included.extend(opened)
            seen.update(chosen)
            frontier = opened
            first = False
            if not any(i.iterate for i in (*request.includes, *request.revincludes)):
                break
        return included

    def _forward(self, inc: Include, frontier: list[StoredResource]) -> list[int]:
        sources = [s.seq for s in frontier if s.res_type == inc.source_type]
        params = None if inc.param is None else [inc.param]
        targets = {
            (tt, ti)
            for _seq, _p, tt, ti in sql.references_from(self._conn, sources, params)
            if inc.target_type is None or tt == inc.target_type
        }
        return sql.current_seqs(self._conn, targets)

    def _reverse(self, inc: Include, frontier: list[StoredResource]) -> list[int]:
        targets = [(s.res_type, s.res_id) for s in frontier]
        if inc.target_type is not None:
            targets = [t for t in targets if t[0] == inc.target_type]
        params = None if inc.param is None else [inc.param]
        return sql.referencing(
            self._conn, targets, inc.source_type, params, self._include_bound + 1
        )

    # -- conditional interactions -----------------------------------------------------------
    def matching_ids(self, sub: SubSearch, limit: int = 2) -> list[tuple[int, str]]:
        """(seq, id) of up to ``limit`` resources matching ``sub`` (for conditional writes)."""
        cond = self.resolve(sub)
        query, root = self._query(sub.res_type, cond)
        query = query.add_columns(root.c.res_id).order_by(root.c.seq).limit(limit)
        return [(int(seq), str(res_id)) for seq, res_id in self._conn.execute(query)]

    def compartment(
        self,
        patient_id: str,
        *,
        types: Sequence[str] | None,
        since_us: int | None,
        offset: int,
        count: int,
    ) -> SearchPage:
        """One page of the patient's compartment, oldest first ($everything)."""
        root = self._alias()
        conds = [self._where(sql.InCompartment(frozenset({patient_id})), root, "Patient")]
        if types is not None:
            conds.append(root.c.res_type.in_(sorted(types)))
        if since_us is not None:
            conds.append(root.c.ts_us >= since_us)
        query = select(root.c.seq).where(*conds)
        rows = self._conn.execute(query.order_by(root.c.seq)).scalars()
        allowed = self._scoped(int(s) for s in rows)
        total = len(allowed)
        chosen = sorted(allowed)[offset : offset + count + 1]
        page = self._open_seqs(chosen[:count])
        return SearchPage(page, [], total, offset, len(chosen) > count)

    def referenced(
        self,
        page: list[StoredResource],
        *,
        follow: Callable[[str, str], bool] | None = None,
    ) -> list[StoredResource]:
        """Resources the page references that are outside any compartment ($everything);
        with ``follow``, only through the (source type, reference parameter) it accepts."""
        types = {s.seq: s.res_type for s in page}
        targets = {
            (tt, ti)
            for seq, param, tt, ti in sql.references_from(self._conn, list(types), None)
            if follow is None or follow(types[seq], param)
        }
        seqs = set(sql.current_seqs(self._conn, targets)) - {s.seq for s in page}
        chosen = sorted(self._scoped(seqs))[: self._include_bound]
        return [s for s in self._open_seqs(chosen) if not s.deleted]


#: List the linked patients' rows when the unscoped candidates outnumber this many times the
#: linked patients (a patient's compartment holds a few rows of each type; see _planned).
_LIST_ABOVE = 8


def _estimate_order(cond: object) -> int:
    return 0 if isinstance(cond, IdIn) else 1 if isinstance(cond, RefTo) else 2


def _one_patient(cond: object, res_type: str) -> bool:
    """Whether ``cond`` keeps a search within one patient's records: the compartment of one
    patient (``Patient/[id]/[type]``), or a reference to one Patient (``patient=[id]``,
    ``subject=Patient/[id]``). A plan hint only: an untyped id that names a Group instead
    costs time, never a wrong answer."""
    match cond:
        case sql.InCompartment(patients=patients):
            return len(patients) == 1
        case RefTo(param=code, targets=targets) if len(targets) == 1:
            ((target_type, _id),) = targets
            if target_type is not None:
                return target_type == "Patient"
            param = param_for(res_type, code)
            return (
                param is not None
                and "Patient" in param.targets
                and (code == "patient" or code in definitions.patient_compartment(res_type))
            )
        case _:
            return False


def _probes(cond: object) -> list[InLinked]:
    """The care-relationship probes in a condition tree."""
    match cond:
        case InLinked(probe=True):
            return [cond]
        case And(parts=parts) | Or(parts=parts):
            return [p for part in parts for p in _probes(part)]
        case Not(part=part):
            return _probes(part)
        case _:
            return []


def _listed(cond: object) -> object:
    """``cond`` with every care-relationship probe in its listed form."""
    match cond:
        case InLinked(probe=True):
            return replace(cond, probe=False)
        case And(parts=parts):
            return And(tuple(_listed(p) for p in parts))  # type: ignore[misc]
        case Or(parts=parts):
            return Or(tuple(_listed(p) for p in parts))  # type: ignore[misc]
        case Not(part=part):
            return Not(_listed(part))  # type: ignore[arg-type]
        case _:
            return cond


def _driven(cond: object) -> bool:
    """Whether ``cond`` is an AND with a part that picks few rows from an index of its own."""
    parts = cond.parts if isinstance(cond, And) else (cond,)
    for part in parts:
        if isinstance(part, RefTo | IdIn | sql.SeqIn | sql.InCompartment | sql.Resolved):
            return True
        if isinstance(part, Keys) and part.width <= sql.CORRELATE_ABOVE:
            return True
        if isinstance(part, Or) and all(_driven(p) for p in part.parts):
            return True
    return False


def _sort_key(key: SortKey) -> Callable[[StoredResource], Any]:
    def value(stored: StoredResource) -> Any:
        if key.code == "_id":
            return (0, stored.res_id)
        if key.code == "_lastUpdated":
            return (0, stored.last_updated)
        if key.param is None:  # pragma: no cover - only _id and _lastUpdated have none
            return (0, "")
        found = sort_value(key.param, stored.resource or {}, descending=key.descending)
        # Resources without a value sort last in either direction (search.html#sort).
        if found is None:
            return (1, "") if not key.descending else (-1, "")
        return (0, found)

    return value
