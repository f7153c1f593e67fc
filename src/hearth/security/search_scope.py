"""Search scope: the rows of one type a principal may see, stated so that SQL can enforce it.

``AccessPolicy.decide`` answers for one resource at a time; a search needs the answer for every
row at once, inside SQL, so that counts and paging are right (a filter applied after paging
would leave short pages and wrong totals). A policy that scopes access by patient implements
``SearchScopePolicy.search_scope``; the repository turns the ``SearchScope`` it returns into a SQL
predicate on the patient compartment table and applies it to the search, to every chained or
``_has`` sub-search and to included resources. A policy without ``search_scope`` is
unrestricted for searches of the types ``decide`` allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hearth.domain import Principal

__all__ = ["SearchScope", "SearchScopePolicy"]


@dataclass(frozen=True, slots=True)
class SearchScope:
    """``patients is None``: every row of the type; else only rows in the compartment of one of
    ``patients`` (compartmentdefinition-patient.html). An empty set allows nothing."""

    patients: frozenset[str] | None = None

    @classmethod
    def everything(cls) -> SearchScope:
        return cls(None)

    @classmethod
    def only(cls, patients: frozenset[str]) -> SearchScope:
        return cls(patients)


@runtime_checkable
class SearchScopePolicy(Protocol):
    def search_scope(self, principal: Principal, res_type: str) -> SearchScope: ...
