"""One criterion per parameter value: index conditions and the exact check (search.html).

Each builder takes a parameter, its modifier and its comma-separated values (OR) and returns a
``Criterion`` whose ``sure``/``maybe`` conditions the repository runs in SQL and whose ``check``
it runs on opened resources where the index alone cannot decide. Error messages name the
parameter, never the value: a search value is PHI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import product
from typing import Any

from hearth.domain import HearthError, errors
from hearth.fhir.search.buckets import (
    DAY_US,
    NumberRegion,
    date_maybe_keys,
    date_sure_keys,
    number_maybe_keys,
    number_sure_keys,
)
from hearth.fhir.search.conditions import (
    ALL,
    NONE,
    Cond,
    Criterion,
    HasRef,
    IdIn,
    Keys,
    Not,
    RefTo,
    Updated,
    and_,
    or_,
)
from hearth.fhir.search.extract import Param, Quantity, Token, extract
from hearth.fhir.search.index import PREFIX_MAX, PRESENT, trigrams
from hearth.fhir.search.values import date_range, fold, parse_number, soundex

__all__ = [
    "PREFIXES",
    "Context",
    "build_criterion",
    "split_escaped",
    "unescape",
]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_MAX_KEYS = 4000


@dataclass(frozen=True, slots=True)
class Context:
    """What the planner needs from outside: the time (for ``ap``) and the server's base URL."""

    now_us: int
    base_url: str = ""


def _bad(param: str, what: str = "is not valid") -> HearthError:
    return HearthError(errors.BAD_SEARCH_VALUE, f"The value of search parameter '{param}' {what}.")


def _unsupported(param: str, modifier: str) -> HearthError:
    return HearthError(
        errors.UNSUPPORTED_MODIFIER,
        f"The modifier ':{modifier}' is not supported on search parameter '{param}'.",
    )


def split_escaped(value: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped with a backslash (search.html#escaping)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            current.append(value[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def _keys(param: Param, keys: Iterable[str]) -> Cond:
    found = frozenset(keys)
    if not found:
        return NONE
    if len(found) > _MAX_KEYS:
        raise HearthError(
            errors.SEARCH_TOO_COSTLY, f"Search parameter '{param.code}' is too broad."
        )
    return Keys(param.domains, found)


def _present(param: Param) -> Cond:
    has_key = Keys(param.domains, frozenset({PRESENT}))
    if param.type == "reference":  # a literal reference's row says it (index.index_resource)
        return or_(HasRef(param.code), has_key)
    return has_key


def _values(param: Param) -> Callable[[dict[str, Any]], list[Any]]:
    def get(resource: dict[str, Any]) -> list[Any]:
        return extract(param, resource)

    return get


def _negate(param: Param, c: Criterion) -> Criterion:
    """Not ``c``, among resources that have the parameter (ne, and :not on quantities)."""
    present = _present(param)
    check = None
    if c.check is not None:
        inner = c.check
        get = _values(param)

        def check(resource: dict[str, Any]) -> bool:
            return bool(get(resource)) and not inner(resource)

    return Criterion(and_(present, Not(c.maybe)), and_(present, Not(c.sure)), check, c.name)


def _or(name: str, parts: Sequence[Criterion]) -> Criterion:
    if len(parts) == 1:
        return parts[0]
    if all(p.exact for p in parts):
        return Criterion.exactly(or_(*(p.sure for p in parts)), name)
    checks = list(parts)

    def check(resource: dict[str, Any]) -> bool:
        for p in checks:
            if p.check is None:
                # An exact part has no check of its own; it is decided in SQL, so the row
                # reached this check only through an inexact part. Its verdict is "sure".
                continue
            if p.check(resource):
                return True
        return False

    # Rows surely matched by an exact part are in ``sure``; the check only sees the rest.
    return Criterion(
        or_(*(p.sure for p in parts)),
        or_(*(p.maybe for p in parts)),
        check,
        name,
    )


# ---------------------------------------------------------------------------- strings


def _string(param: Param, modifier: str, raw: str) -> Criterion:
    value = unescape(raw)
    get = _values(param)
    name = param.code
    if param.code == "phonetic" and modifier == "":
        return Criterion.exactly(_keys(param, {"s:" + soundex(value)}), name)
    if modifier == "exact":
        return Criterion.exactly(_keys(param, {"x:" + value}), name)
    q = fold(value)
    if modifier == "contains":
        if len(q) >= 3:
            grams = trigrams(q)
            maybe = or_(
                and_(*(_keys(param, {"3:" + g}) for g in sorted(grams))),
                _keys(param, {"3L"}),
            )
            sure = _keys(param, {"3:" + q}) if len(q) == 3 else NONE
        else:
            maybe, sure = _present(param), NONE

        def contains(resource: dict[str, Any]) -> bool:
            return any(q in fold(v) for v in get(resource) if isinstance(v, str))

        return Criterion(sure, maybe, contains, name)
    if modifier != "":
        raise _unsupported(param.code, modifier)
    if len(q) <= PREFIX_MAX:
        return Criterion.exactly(_keys(param, {"p:" + q}), name)

    def starts(resource: dict[str, Any]) -> bool:
        return any(fold(v).startswith(q) for v in get(resource) if isinstance(v, str))

    return Criterion(_keys(param, {"n:" + q}), _keys(param, {"p:" + q[:PREFIX_MAX]}), starts, name)


# ---------------------------------------------------------------------------- tokens


def _token_key(param: Param, raw: str) -> str:
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        return "c:" + unescape(parts[0])
    if len(parts) != 2:
        raise _bad(param.code)
    system, code = unescape(parts[0]), unescape(parts[1])
    if system == "" and code == "":
        raise _bad(param.code)
    if system == "":
        return "ns:" + code
    if code == "":
        return "sy:" + system
    return f"sc:{system}|{code}"


def _token(param: Param, modifier: str, raw: str) -> Criterion:
    name = param.code
    if modifier in ("", "not"):
        cond = _keys(param, {_token_key(param, raw)})
        return Criterion.exactly(Not(cond) if modifier == "not" else cond, name)
    if modifier == "of-type":
        parts = split_escaped(raw, "|")
        if len(parts) != 3 or not parts[2]:
            raise _bad(param.code, "must be system|code|value")
        key = "ot:" + "|".join(unescape(p) for p in parts)
        return Criterion.exactly(_keys(param, {key}), name)
    if modifier == "text":
        q = fold(unescape(raw))
        get = _values(param)

        def text(resource: dict[str, Any]) -> bool:
            for token in get(resource):
                for t in token.text if isinstance(token, Token) else ():
                    folded = fold(t)
                    if folded.startswith(q) or any(w.startswith(q) for w in folded.split()):
                        return True
            return False

        return Criterion(NONE, _present(param), text, name)
    raise _unsupported(param.code, modifier)


# ---------------------------------------------------------------------------- references


def _reference(param: Param, modifier: str, raw: str, ctx: Context) -> Criterion:
    value = unescape(raw)
    name = param.code
    if modifier == "identifier":
        parts = split_escaped(raw, "|")
        if len(parts) == 1:
            key = "i:*|" + unescape(parts[0])
        elif len(parts) == 2:
            key = f"i:{unescape(parts[0]) or '-'}|{unescape(parts[1])}"
        else:
            raise _bad(param.code)
        return Criterion.exactly(_keys(param, {key}), name)
    if modifier not in ("", "missing") and not modifier[:1].isupper():
        raise _unsupported(param.code, modifier)
    base = ctx.base_url.rstrip("/") + "/" if ctx.base_url else None
    if base and value.startswith(base):
        value = value[len(base) :]
    if "://" in value or value.startswith("urn:"):
        return Criterion.exactly(_keys(param, {"u:" + value}), name)
    parts = value.split("/")
    if modifier[:1].isupper():
        if len(parts) == 1:
            target: tuple[str | None, str] = (modifier, parts[0])
        elif len(parts) == 2 and parts[0] == modifier:
            target = (parts[0], parts[1])
        else:
            raise _bad(param.code)
    elif len(parts) == 1:
        target = (None, parts[0])
    elif len(parts) in (2, 4):
        target = (parts[0], parts[1])
    else:
        raise _bad(param.code)
    if not target[1]:
        raise _bad(param.code)
    return Criterion.exactly(RefTo(param.code, frozenset({target})), name)


# ---------------------------------------------------------------------------- dates

Pred = Callable[[int, int], bool]


def _date_parts(
    prefix: str, qlo: int, qhi: int, now_us: int
) -> tuple[Pred, tuple[int | None, int | None], tuple[int | None, int | None] | None]:
    """(predicate on a stored range, region it must overlap, region inside which it surely
    matches) for one prefix (search.html#prefix)."""
    if prefix == "eq":
        return (lambda lo, hi: qlo <= lo and hi <= qhi), (qlo, qhi), (qlo, qhi)
    if prefix in {"gt", "sa"}:
        if prefix == "gt":
            return (lambda lo, hi: hi > qhi), (qhi + 1, None), (qhi + 1, None)
        return (lambda lo, hi: lo > qhi), (qhi + 1, None), (qhi + 1, None)
    if prefix in {"lt", "eb"}:
        if prefix == "lt":
            return (lambda lo, hi: lo < qlo), (None, qlo - 1), (None, qlo - 1)
        return (lambda lo, hi: hi < qlo), (None, qlo - 1), (None, qlo - 1)
    if prefix == "ge":
        return (lambda lo, hi: hi > qhi or (qlo <= lo and hi <= qhi)), (qlo, None), (qlo, None)
    if prefix == "le":
        return (lambda lo, hi: lo < qlo or (qlo <= lo and hi <= qhi)), (None, qhi), (None, qhi)
    # ap: within 10% of the distance to now, and at least a day (search.html#prefix).
    slack = max(DAY_US, abs(now_us - qlo) // 10)
    alo, ahi = qlo - slack, qhi + slack
    return (lambda lo, hi: lo <= ahi and hi >= alo), (alo, ahi), (alo, ahi)


def _date(param: Param, modifier: str, raw: str, ctx: Context) -> Criterion:
    if modifier:
        raise _unsupported(param.code, modifier)
    prefix, text = _prefix(raw)
    try:
        qlo, qhi = date_range(text)
    except ValueError:
        raise _bad(param.code, "is not a valid date") from None
    if param.code == "_lastUpdated":
        return Criterion.exactly(_updated(prefix, qlo, qhi, ctx.now_us), param.code)
    negate = prefix == "ne"
    pred, region, sure_region = _date_parts("eq" if negate else prefix, qlo, qhi, ctx.now_us)
    get = _values(param)

    def check(resource: dict[str, Any]) -> bool:
        return any(pred(lo, hi) for lo, hi in get(resource))

    sure = _keys(param, ("d:" + k for k in date_sure_keys(*sure_region))) if sure_region else NONE
    maybe = _keys(param, ("d:" + k for k in date_maybe_keys(*region)))
    criterion = Criterion(sure, maybe, check, param.code)
    return _negate(param, criterion) if negate else criterion


def _updated(prefix: str, qlo: int, qhi: int, now_us: int) -> Cond:
    """``_lastUpdated`` on the clear write time: an instant, so every prefix is a range."""
    match prefix:
        case "eq":
            return Updated(qlo, qhi)
        case "ne":
            return Not(Updated(qlo, qhi))
        case "gt" | "sa":
            return Updated(qhi + 1, None)
        case "lt" | "eb":
            return Updated(None, qlo - 1)
        case "ge":
            return Updated(qlo, None)
        case "le":
            return Updated(None, qhi)
        case _:
            slack = max(DAY_US, abs(now_us - qlo) // 10)
            return Updated(qlo - slack, qhi + slack)


# ---------------------------------------------------------------------------- numbers


def _number_region(param: Param, prefix: str, text: str) -> tuple[NumberRegion, bool]:
    """The region a prefixed number selects, and whether it is negated (``ne``)."""
    try:
        x, half = parse_number(text)
    except ValueError:
        raise _bad(param.code, "is not a valid number") from None
    match prefix:
        case "eq" | "ne":
            return NumberRegion(x - half, False, x + half, True), prefix == "ne"
        case "gt" | "sa":
            return NumberRegion(x, True, None, False), False
        case "lt" | "eb":
            return NumberRegion(None, False, x, True), False
        case "ge":
            return NumberRegion(x, False, None, False), False
        case "le":
            return NumberRegion(None, False, x, False), False
        case _:
            slack = abs(x) / 10 if x else half
            return NumberRegion(x - slack, False, x + slack, False), False


def _number(param: Param, modifier: str, raw: str) -> Criterion:
    if modifier:
        raise _unsupported(param.code, modifier)
    prefix, text = _prefix(raw)
    region, negate = _number_region(param, prefix, text)
    get = _values(param)

    def check(resource: dict[str, Any]) -> bool:
        return any(region.holds(v) for v in get(resource) if isinstance(v, Decimal))

    criterion = Criterion(
        _keys(param, ("#:" + k for k in number_sure_keys(region))),
        _keys(param, ("#:" + k for k in number_maybe_keys(region))),
        check,
        param.code,
    )
    return _negate(param, criterion) if negate else criterion


def _parse_quantity(param: Param, raw: str) -> tuple[str, str, str | None, str | None]:
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        prefix, text = _prefix(parts[0])
        return prefix, text, None, None
    if len(parts) != 3:
        raise _bad(param.code, "must be number|system|code")
    prefix, text = _prefix(parts[0])
    return prefix, text, unescape(parts[1]) or None, unescape(parts[2]) or None


def _unit_matches(q: Quantity, system: str | None, code: str | None) -> bool:
    if code is None:
        return system is None or q.system == system
    if system is not None:
        return q.system == system and q.code == code
    return code in (q.code, q.unit)


def _quantity_region_holds(q: Quantity, region: NumberRegion) -> bool:
    if q.value is not None:
        return region.holds(q.value)
    return False


def _quantity(param: Param, modifier: str, raw: str) -> Criterion:
    if modifier:
        raise _unsupported(param.code, modifier)
    prefix, text, system, code = _parse_quantity(param, raw)
    region, negate = _number_region(param, prefix, text)
    if system is not None and code is not None:
        variant = f"sc:{system}|{code}"
    elif code is not None:
        variant = f"c:{code}"
    else:
        variant = ""
    get = _values(param)

    def check(resource: dict[str, Any]) -> bool:
        return any(
            _unit_matches(q, system, code) and _quantity_region_holds(q, region)
            for q in get(resource)
            if isinstance(q, Quantity)
        )

    sure = number_sure_keys(region) if system is None or code is not None else set()
    maybe = number_maybe_keys(region)
    criterion = Criterion(
        _keys(param, (f"q:{variant}:{k}" for k in sure)),
        _keys(param, (f"q:{variant}:{k}" for k in maybe)),
        check,
        param.code,
    )
    return _negate(param, criterion) if negate else criterion


# ---------------------------------------------------------------------------- uris


def _uri(param: Param, modifier: str, raw: str) -> Criterion:
    value = unescape(raw)
    name = param.code
    if modifier == "":
        return Criterion.exactly(_keys(param, {"u:" + value}), name)
    if modifier == "above":
        # Every value that is a path-segment prefix of the search value (search.html#uri).
        parts = value.split("/")
        prefixes = {"u:" + "/".join(parts[:n]) for n in range(1, len(parts) + 1)}
        return Criterion.exactly(_keys(param, prefixes), name)
    if modifier == "below":
        get = _values(param)
        stem = value.rstrip("/")

        def below(resource: dict[str, Any]) -> bool:
            return any(v == stem or v.startswith(stem + "/") for v in get(resource))

        return Criterion(_keys(param, {"u:" + value}), _present(param), below, name)
    raise _unsupported(param.code, modifier)


# ---------------------------------------------------------------------------- composites


def _component(param: Param, kind: str, raw: str, ctx: Context) -> ComponentParts:
    """Sure keys, maybe keys and a check on one component's values."""
    if kind == "token":
        key = _token_key(param, raw)
        if key.startswith(("c:", "sc:")):
            return {key}, {key}, lambda vs: True
        if key.startswith("ns:"):
            code = key[3:]
            return (
                set(),
                {"c:" + code},
                lambda vs: any(
                    isinstance(t, Token) and t.system is None and t.code == code for t in vs
                ),
            )
        raise _bad(param.code, "needs a code in each component")
    if kind == "quantity":
        return _component_quantity(param, raw)
    if kind == "number":
        prefix, text = _prefix(raw)
        region, negate = _number_region(param, prefix, text)
        if negate:
            raise _unsupported(param.code, "ne")
        sure = {"#:" + k for k in number_sure_keys(region)}
        maybe = {"#:" + k for k in number_maybe_keys(region)}
        return sure, maybe | sure, lambda vs: any(region.holds(v) for v in vs)
    if kind == "date":
        return _component_date(param, raw, ctx)
    if kind == "string":
        q = fold(unescape(raw))
        return (
            {"n:" + q},
            {"*"},
            lambda vs: any(fold(v).startswith(q) for v in vs if isinstance(v, str)),
        )
    if kind == "uri":
        v = unescape(raw)
        return {"u:" + v}, {"u:" + v}, lambda vs: True
    if kind == "reference":
        value = unescape(raw)
        parts = value.split("/")
        key = f"r:{parts[0]}/{parts[1]}" if len(parts) >= 2 else "r:" + value
        return {key}, {key}, lambda vs: True
    raise _bad(param.code)


ComponentParts = tuple[set[str], set[str], Callable[[list[Any]], bool]]


def _component_quantity(param: Param, raw: str) -> ComponentParts:
    prefix, text, system, code = _parse_quantity(param, raw)
    region, negate = _number_region(param, prefix, text)
    if negate:
        raise _unsupported(param.code, "ne")
    variant = f"sc:{system}|{code}" if system and code else ""
    sure = {f"q:{variant}:{k}" for k in number_sure_keys(region)}
    maybe = {f"q:{variant}:{k}" for k in number_maybe_keys(region)}
    if code is not None and system is None:
        sure = set()

    def check(vs: list[Any]) -> bool:
        return any(_unit_matches(q, system, code) and _quantity_region_holds(q, region) for q in vs)

    return sure, maybe | sure, check


def _component_date(param: Param, raw: str, ctx: Context) -> ComponentParts:
    prefix, text = _prefix(raw)
    if prefix == "ne":
        raise _unsupported(param.code, "ne")
    try:
        qlo, qhi = date_range(text)
    except ValueError:
        raise _bad(param.code, "is not a valid date") from None
    pred, region, sure_region = _date_parts(prefix, qlo, qhi, ctx.now_us)
    sure = {"d:" + k for k in date_sure_keys(*sure_region)} if sure_region else set()
    maybe = {"d:" + k for k in date_maybe_keys(*region)}
    return sure, maybe | sure, lambda vs: any(pred(lo, hi) for lo, hi in vs)


def _composite(param: Param, modifier: str, raw: str, ctx: Context) -> Criterion:
    if modifier:
        raise _unsupported(param.code, modifier)
    raws = split_escaped(raw, "$")
    if len(raws) != len(param.components):
        raise _bad(param.code, f"needs {len(param.components)} components separated by $")
    built = [_component(param, c.type, r, ctx) for c, r in zip(param.components, raws, strict=True)]
    sure = {"k:" + "$".join(combo) for combo in product(*(b[0] for b in built))}
    maybe = {"k:" + "$".join(combo) for combo in product(*(b[1] for b in built))}
    checks = [b[2] for b in built]
    get = _values(param)

    def check(resource: dict[str, Any]) -> bool:
        for parts in get(resource):
            if all(c(vs) for c, vs in zip(checks, parts, strict=True)):
                return True
        return False

    return Criterion(_keys(param, sure), _keys(param, maybe | sure), check, param.code)


# ---------------------------------------------------------------------------- entry point


def build_criterion(param: Param, modifier: str, values: Sequence[str], ctx: Context) -> Criterion:
    """The criterion for ``param[:modifier]=v1,v2,...`` (values OR together)."""
    if modifier == "missing":
        flags = {v.strip() for v in values}
        if flags == {"true"}:
            return Criterion.exactly(Not(_present(param)), param.code)
        if flags == {"false"}:
            return Criterion.exactly(_present(param), param.code)
        raise _bad(param.code, "must be true or false with :missing")
    if param.code == "_id":
        if modifier not in ("", "not"):
            raise _unsupported(param.code, modifier)
        ids = IdIn(frozenset(unescape(v) for v in values))
        return Criterion.exactly(Not(ids) if modifier == "not" else ids, param.code)
    parts: list[Criterion] = []
    for raw in values:
        if raw == "":
            continue
        match param.type:
            case "string":
                parts.append(_string(param, modifier, raw))
            case "token":
                parts.append(_token(param, modifier, raw))
            case "reference":
                parts.append(_reference(param, modifier, raw, ctx))
            case "date":
                parts.append(_date(param, modifier, raw, ctx))
            case "number":
                parts.append(_number(param, modifier, raw))
            case "quantity":
                parts.append(_quantity(param, modifier, raw))
            case "uri":
                parts.append(_uri(param, modifier, raw))
            case "composite":
                parts.append(_composite(param, modifier, raw, ctx))
            case _:
                raise HearthError(errors.UNKNOWN_SEARCH_PARAMETER)
    if not parts:
        return Criterion.exactly(ALL, param.code)
    if modifier == "not" and param.type == "token" and len(parts) > 1:
        # :not with several values excludes each of them (AND of the negations).
        return Criterion.exactly(and_(*(p.sure for p in parts)), param.code)
    return _or(param.code, parts)
