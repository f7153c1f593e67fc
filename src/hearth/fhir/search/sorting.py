"""Sort values for ``_sort`` on a sealed field (search.html#sort).

Ascending order uses the lowest value a resource has for the parameter, descending the highest;
for dates, the start of the earliest range and the end of the latest. The repository sorts the
opened matches with these values, within its bound.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hearth.fhir.search.extract import Param, Quantity, Ref, Token, extract
from hearth.fhir.search.values import fold

__all__ = ["sort_value"]


def _one(kind: str, value: Any, descending: bool) -> Any:
    if kind in {"string", "uri"}:
        return fold(value) if isinstance(value, str) else None
    if kind == "token":
        return value.code if isinstance(value, Token) and value.code is not None else None
    if kind == "reference":
        if isinstance(value, Ref):
            return f"{value.type}/{value.id}" if value.id else value.url
        return None
    if kind == "date":
        return value[1] if descending else value[0]
    if kind == "number":
        return value if isinstance(value, Decimal) else None
    if kind == "quantity":
        return value.value if isinstance(value, Quantity) else None
    return None


def sort_value(param: Param, resource: dict[str, Any], *, descending: bool) -> Any:
    """The value ``resource`` sorts by on ``param``, or ``None`` when it has none."""
    found = [
        v
        for v in (_one(param.type, x, descending) for x in extract(param, resource))
        if v is not None
    ]
    if not found:
        return None
    return max(found) if descending else min(found)
