"""Parsing a FHIR search request into a plan (R4 search.html).

``parse_search`` reads the parameters of ``GET [type]?...`` or ``POST [type]/_search`` as a list
of ``(name, value)`` pairs in the order given, and returns a ``SearchRequest``: the criteria
(AND of parameters, OR of comma-separated values), chains and ``_has``, includes, sort, page
size, summary and elements. It decides nothing about access and touches no data.

Unknown or unsupported parameters follow ``Prefer: handling`` (search.html#errors): under
``strict`` they are refused with an OperationOutcome naming the parameter; under ``lenient`` (the
default) they are ignored and listed in ``ignored`` so the searchset can say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache

from hearth.domain import HearthError, errors
from hearth.fhir import definitions
from hearth.fhir.search.conditions import (
    Chain,
    Criterion,
    Has,
    SubSearch,
    or_,
)
from hearth.fhir.search.criteria import Context, build_criterion, split_escaped
from hearth.fhir.search.extract import Param, indexed_params, param_for

__all__ = [
    "FORMAT_PARAMETERS",
    "RESULT_PARAMETERS",
    "capability_includes",
    "capability_params",
    "capability_revincludes",
    "Include",
    "SearchRequest",
    "SortKey",
    "parameters_read",
    "parse_search",
    "wildcard_includes",
]

#: Parameters that shape any answer's format, on every interaction (http.html#parameters).
FORMAT_PARAMETERS = frozenset({"_format", "_pretty"})
RESULT_PARAMETERS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_format",
        "_pretty",
        "_page",
    }
)
_UNSUPPORTED = frozenset(
    {"_contained", "_containedType", "_text", "_content", "_filter", "_query", "_list"}
)
_SUMMARIES = frozenset({"true", "false", "text", "data", "count"})
_TOTALS = frozenset({"none", "estimate", "accurate"})
_MAX_CHAIN = 3


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Source:param[:Target]`` or ``_revinclude`` (search.html#include)."""

    source_type: str
    param: str | None  # None for ``*``: every reference parameter
    target_type: str | None
    iterate: bool = False


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``_sort`` key; ``param`` is None for the clear ones (``_id``, ``_lastUpdated``)."""

    code: str
    descending: bool
    param: Param | None = None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    res_type: str
    criteria: tuple[Criterion, ...]
    count: int
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    sort: tuple[SortKey, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str = "accurate"
    ignored: tuple[str, ...] = ()
    #: the parameters that were applied, names only, for the response's self description
    applied: tuple[str, ...] = field(default=())
    #: the criteria as given, ``(name, value)``, for rules on what a principal may search by
    #: (``hearth.fhir.deidentify.search_refusal``); never logged
    terms: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def exact(self) -> bool:
        return all(c.exact for c in self.criteria)

    def sub(self) -> SubSearch:
        return SubSearch(self.res_type, self.criteria)


class _Refuse(Exception):
    """An unknown or unsupported parameter (refused under strict handling)."""

    def __init__(self, error: HearthError) -> None:
        self.error = error


def _unknown(name: str) -> _Refuse:
    return _Refuse(
        HearthError(
            errors.UNKNOWN_SEARCH_PARAMETER,
            f"Search parameter '{name}' is not known for this resource type.",
        )
    )


def _split_name(name: str) -> tuple[str, str, str | None]:
    """``code[:modifier][.chain]`` -> (code, modifier, rest of the chain)."""
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    return code, modifier, rest if dot else None


def criterion_for(
    res_type: str, name: str, values: Sequence[str], ctx: Context, depth: int = 0
) -> Criterion:
    """The criterion for one ``name=value`` pair on ``res_type``, chains and ``_has`` included."""
    if depth > _MAX_CHAIN:
        raise _Refuse(HearthError(errors.BAD_PARAMETER, "Chains are at most three deep."))
    if name.startswith("_has:"):
        parts = name.split(":", 3)
        if len(parts) != 4:
            raise _Refuse(HearthError(errors.BAD_PARAMETER, "_has needs _has:Type:param:name."))
        _, source, ref_code, has_rest = parts
        if not definitions.is_resource_type(source):
            raise _unknown(name)
        ref = param_for(source, ref_code)
        if ref is None or ref.type != "reference":
            raise _unknown(name)
        if ref.targets and res_type not in ref.targets:
            raise _unknown(name)
        inner = criterion_for(source, has_rest, values, ctx, depth + 1)
        cond = Has(ref_code, SubSearch(source, (inner,)))
        return Criterion.exactly(cond, name, frozenset({(source, ref_code)}) | inner.reads)
    code, modifier, rest = _split_name(name)
    param = param_for(res_type, code)
    if param is None:
        if code in _UNSUPPORTED or definitions.search_parameter(res_type, code) is not None:
            raise _Refuse(
                HearthError(
                    errors.UNKNOWN_SEARCH_PARAMETER,
                    f"Search parameter '{code}' is not supported by this server.",
                )
            )
        raise _unknown(code)
    if rest is None:
        built = build_criterion(param, modifier, _or_values(values), ctx)
        return replace(built, reads=frozenset({(res_type, code)}))
    if param.type != "reference":
        raise _unknown(name)
    targets = (modifier,) if modifier else param.targets
    chains = []
    reads = {(res_type, code)}
    for target in targets:
        inner_code = _split_name(rest)[0]
        if inner_code.startswith("_has") or param_for(target, inner_code) is None:
            continue
        inner = criterion_for(target, rest, values, ctx, depth + 1)
        chains.append(Chain(code, target, SubSearch(target, (inner,))))
        reads |= inner.reads
    if not chains:
        raise _unknown(name)
    return Criterion.exactly(or_(*chains), name, frozenset(reads))


def _or_values(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(split_escaped(value, ","))
    return out


def _includes(res_type: str, name: str, values: Sequence[str], reverse: bool) -> list[Include]:
    iterate = name.endswith((":iterate", ":recurse"))
    out = []
    for raw in values:
        for value in raw.split(","):
            if value == "*":
                out.append(Include(res_type, None, None, iterate))
                continue
            parts = value.split(":")
            if len(parts) not in (2, 3) or not definitions.is_resource_type(parts[0]):
                raise HearthError(errors.BAD_PARAMETER, f"{name} takes Type:param[:Target].")
            source, code = parts[0], parts[1]
            target = parts[2] if len(parts) == 3 else None
            if target is not None and not definitions.is_resource_type(target):
                raise HearthError(errors.BAD_PARAMETER, f"{name} names an unknown target type.")
            param = param_for(source, code) if code != "*" else None
            if code != "*" and (param is None or param.type != "reference"):
                raise HearthError(
                    errors.UNKNOWN_SEARCH_PARAMETER,
                    f"{name} names '{code}', which is not a reference parameter of that type.",
                )
            if not iterate and not reverse and source != res_type:
                raise HearthError(
                    errors.BAD_PARAMETER, "_include names a parameter of the searched type."
                )
            out.append(Include(source, None if code == "*" else code, target, iterate))
    return out


def _sort(res_type: str, values: Sequence[str]) -> list[SortKey]:
    out: list[SortKey] = []
    for raw in values:
        for entry in raw.split(","):
            item = entry.strip()
            if not item:
                continue
            descending = item.startswith("-")
            code = item.lstrip("-")
            if code in ("_id", "_lastUpdated"):
                out.append(SortKey(code, descending))
                continue
            param = param_for(res_type, code)
            if param is None or param.type == "composite":
                raise HearthError(
                    errors.UNKNOWN_SEARCH_PARAMETER,
                    f"_sort names '{code}', which cannot sort this resource type.",
                )
            out.append(SortKey(code, descending, param))
    return out


def parse_search(
    res_type: str,
    params: Sequence[tuple[str, str]],
    *,
    ctx: Context,
    default_count: int,
    max_count: int,
    strict: bool = False,
) -> SearchRequest:
    """Plan a search of ``res_type`` (search.html). Raises ``HearthError`` on a bad request."""
    grouped: dict[str, list[str]] = {}
    order: list[str] = []
    for name, value in params:
        if name not in grouped:
            order.append(name)
        grouped.setdefault(name, []).append(value)
    criteria: list[Criterion] = []
    includes: list[Include] = []
    revincludes: list[Include] = []
    sort: list[SortKey] = []
    ignored: list[str] = []
    applied: list[str] = []
    terms: list[tuple[str, str]] = []
    count = default_count
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total = "accurate"
    for name in order:
        values = grouped[name]
        base = name.split(":", 1)[0]
        if base in FORMAT_PARAMETERS or base == "_page":
            continue
        if base == "_count":
            raw = values[-1]
            if not raw.isdigit():
                raise HearthError(errors.BAD_PARAMETER, "_count must be a non-negative integer.")
            count = min(int(raw), max_count)
        elif base == "_sort":
            sort = _sort(res_type, values)
        elif base == "_include":
            includes += _includes(res_type, name, values, reverse=False)
        elif base == "_revinclude":
            revincludes += _includes(res_type, name, values, reverse=True)
        elif base == "_summary":
            if values[-1] not in _SUMMARIES:
                raise HearthError(
                    errors.BAD_PARAMETER, "_summary is true, text, data, count or false."
                )
            summary = None if values[-1] == "false" else values[-1]
        elif base == "_elements":
            elements = tuple(sorted({e.strip() for v in values for e in v.split(",") if e.strip()}))
        elif base == "_total":
            if values[-1] not in _TOTALS:
                raise HearthError(errors.BAD_PARAMETER, "_total is none, estimate or accurate.")
            total = values[-1]
        else:
            try:
                for value in values:  # a repeated parameter ANDs (search.html#combining)
                    criteria.append(criterion_for(res_type, name, [value], ctx))
                    terms.append((name, value))
            except _Refuse as refused:
                if strict:
                    raise refused.error from None
                ignored.append(name.split(".", 1)[0].split(":", 1)[0])
                continue
        applied.append(name)
    if count == 0:
        summary = "count"
    return SearchRequest(
        res_type=res_type,
        criteria=tuple(criteria),
        count=max(count, 1),
        includes=tuple(includes),
        revincludes=tuple(revincludes),
        sort=tuple(sort),
        summary=summary,
        elements=elements,
        total=total,
        ignored=tuple(ignored),
        applied=tuple(applied),
        terms=tuple(terms),
    )


def parameters_read(request: SearchRequest | SubSearch) -> list[tuple[str, str, str]]:
    """``(name, type, code)`` of every search parameter ``request`` reads, ``name`` as the
    client wrote it (never a value): each criterion's own, its chains' and ``_has`` levels'
    (``Criterion.reads``), and for a whole request its sort keys and named includes. An ``*``
    include names no parameter; ``wildcard_includes`` spells it out. For rules on what a
    principal may search by (docs/design.md, "Labels, masks, Consent")."""
    out = [(c.name, t, code) for c in request.criteria for t, code in sorted(c.reads)]
    if isinstance(request, SearchRequest):
        out += [
            (f"_sort={k.code}", k.param.res_type, k.param.code) for k in request.sort if k.param
        ]
        for key, found in (("_include", request.includes), ("_revinclude", request.revincludes)):
            out += [
                (f"{key}={i.source_type}:{i.param}", i.source_type, i.param)
                for i in found
                if i.param is not None
            ]
    return out


def wildcard_includes(includes: Sequence[Include]) -> list[Include]:
    """``includes`` with each ``*`` (every reference parameter of its source type) spelt out
    as one include per reference parameter, so that each can be judged on its own."""
    out: list[Include] = []
    for inc in includes:
        if inc.param is not None:
            out.append(inc)
            continue
        for code, param in indexed_params(inc.source_type).items():
            if param.type == "reference":
                out.append(replace(inc, param=code))
    return out


@cache
def capability_params(res_type: str) -> tuple[tuple[str, str, str], ...]:
    """(code, type, definition URL) of every parameter a type can be searched by, for the
    CapabilityStatement: exactly the ones ``parse_search`` accepts."""
    out = []
    for code, param in indexed_params(res_type).items():
        found = definitions.search_parameter(res_type, code)
        if found is not None:
            out.append((code, param.type, found.url))
    return tuple(out)


@cache
def capability_includes(res_type: str) -> tuple[str, ...]:
    """``_include`` values for a type: each of its reference parameters, and ``*``."""
    refs = [c for c, p in indexed_params(res_type).items() if p.type == "reference"]
    return (*(f"{res_type}:{c}" for c in refs), *(("*",) if refs else ()))


@cache
def capability_revincludes(res_type: str) -> tuple[str, ...]:
    """``_revinclude`` values that can point at ``res_type``."""
    out = []
    for source in sorted(definitions.resource_types()):
        for code, param in indexed_params(source).items():
            if param.type == "reference" and (not param.targets or res_type in param.targets):
                out.append(f"{source}:{code}")
    return tuple(out)
