"""The condition tree a search compiles to: pure data that the storage layer turns into SQL.

A search is an AND of *criteria* (one per parameter occurrence; R4 search.html#combining). Each
criterion carries two conditions over the index and, where the index cannot decide alone, a
check that runs on the opened resource:

- ``sure``: rows that certainly match (a subset of the true matches);
- ``maybe``: rows that could match (a superset);
- ``check``: the exact predicate, evaluated on the decrypted resource for rows in ``maybe`` but
  not in ``sure``. ``None`` means the index is exact and ``sure == maybe``.

The repository resolves every inexact criterion by opening at most the search's bound of
candidate rows; past the bound it refuses the search with ``SEARCH_TOO_COSTLY``
(docs/design.md, "Search over sealed data").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALL",
    "NONE",
    "All",
    "And",
    "Chain",
    "Cond",
    "Criterion",
    "Has",
    "HasRef",
    "IdIn",
    "Keys",
    "None_",
    "Not",
    "Or",
    "RefTo",
    "SubSearch",
    "Updated",
    "and_",
    "or_",
]

Check = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class All:
    """Every resource of the type."""


@dataclass(frozen=True, slots=True)
class None_:
    """No resource."""


ALL = All()
NONE = None_()


@dataclass(frozen=True, slots=True)
class Keys:
    """The resource has an index row whose key is ``blind(domain, k)`` for some ``domain`` in
    ``domains`` and ``k`` in ``keys`` (several domains: a parameter searched in other
    parameters' keys, alone or beside its own: ``Param.domains``)."""

    domains: tuple[str, ...]
    keys: frozenset[str]

    @property
    def width(self) -> int:
        """How many blind-index keys the condition names."""
        return len(self.domains) * len(self.keys)


@dataclass(frozen=True, slots=True)
class RefTo:
    """The resource's ``param`` references one of ``targets``: ``(type or None, id)``."""

    param: str
    targets: frozenset[tuple[str | None, str]]


@dataclass(frozen=True, slots=True)
class HasRef:
    """The resource's ``param`` holds a literal reference (``Type/id``), which has a row of its
    own in ``search_reference``. (Its "has a value" key exists only if some value of it is not
    a literal reference.)"""

    param: str


@dataclass(frozen=True, slots=True)
class IdIn:
    ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Updated:
    """``meta.lastUpdated`` (a clear column, microseconds) lies in [lo, hi]."""

    lo: int | None
    hi: int | None


@dataclass(frozen=True, slots=True)
class Not:
    part: Cond


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class SubSearch:
    """A search of another type, used by chains and ``_has``."""

    res_type: str
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """``param`` references a ``target_type`` resource matching ``inner`` (search.html#chaining)."""

    param: str
    target_type: str
    inner: SubSearch


@dataclass(frozen=True, slots=True)
class Has:
    """Some ``inner.res_type`` resource references this one through ``param`` and matches
    ``inner`` (search.html#has)."""

    param: str
    inner: SubSearch


Cond = All | None_ | Keys | RefTo | HasRef | IdIn | Updated | Not | And | Or | Chain | Has


@dataclass(frozen=True, slots=True)
class Criterion:
    sure: Cond
    maybe: Cond
    check: Check | None = field(default=None, compare=False)
    name: str = ""  # the parameter, for messages (never its value)
    #: ``(type, code)`` of every search parameter the criterion reads: its own, and those of
    #: its chains and ``_has`` levels (set by ``query.criterion_for``), so that the gate can
    #: refuse a search that reads an element the principal may not see
    reads: frozenset[tuple[str, str]] = frozenset()

    @property
    def exact(self) -> bool:
        return self.check is None

    @classmethod
    def exactly(
        cls, cond: Cond, name: str = "", reads: frozenset[tuple[str, str]] = frozenset()
    ) -> Criterion:
        return cls(cond, cond, None, name, reads)


def and_(*parts: Cond) -> Cond:
    flat: list[Cond] = []
    for part in parts:
        if isinstance(part, None_):
            return NONE
        if isinstance(part, All):
            continue
        flat.extend(part.parts if isinstance(part, And) else (part,))
    if not flat:
        return ALL
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def or_(*parts: Cond) -> Cond:
    flat: list[Cond] = []
    for part in parts:
        if isinstance(part, All):
            return ALL
        if isinstance(part, None_):
            continue
        flat.extend(part.parts if isinstance(part, Or) else (part,))
    if not flat:
        return NONE
    return flat[0] if len(flat) == 1 else Or(tuple(flat))
