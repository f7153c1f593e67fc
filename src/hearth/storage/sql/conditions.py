"""Conditions shared by the SQL modules."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, tuple_
from sqlalchemy.sql.elements import ColumnClause

__all__ = ["pairs_in"]


def pairs_in(
    first: ColumnClause[str], second: ColumnClause[str], pairs: Iterable[tuple[str, str]]
) -> ColumnElement[bool]:
    """``(first, second) IN pairs``, in a form every engine answers from an index on the two
    columns. SQLite does not search an index for a row-value ``IN`` list: it scanned all of
    ``resource_current`` for each transaction bundle's lookup of its entries, 1,100,000 rows
    (docs/benchmarks.md). The two single-column lists let it search the index; the pairs keep
    the condition exact."""
    wanted = sorted(set(pairs))
    return and_(
        first.in_(sorted({a for a, _b in wanted})),
        second.in_(sorted({b for _a, b in wanted})),
        tuple_(first, second).in_(wanted),
    )
