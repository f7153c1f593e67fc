"""FHIR search as a use case (R4 search.html): plan, run through the gate, page, render.

Search values are PHI, so they never appear in a URL this server writes: the ``self`` and
``next`` links carry only an opaque page token (``hearth.services.paging.PageTokens``): sealed,
bound to the principal, expiring. ``POST [type]/_search`` with a form body keeps them out of the
first request's URL too, and is the documented, preferred way to search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from hearth.domain import Clock, HearthError, Principal, errors
from hearth.fhir.search import Context, SearchRequest, parse_search
from hearth.fhir.search.shaping import searchset_bundle, shape
from hearth.fhir.search.values import to_us
from hearth.services.paging import PageTokens
from hearth.services.records import check_id, check_type
from hearth.settings import Limits
from hearth.storage import RecordRepository, SearchPage

__all__ = ["SearchService", "SearchQuery"]

_INSTANT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What the adapter parsed: the type, the parameters in order, and how to treat unknowns."""

    res_type: str
    params: Sequence[tuple[str, str]]
    strict: bool = False
    compartment: str | None = None  # a Patient id for Patient/[id]/[type] searches
    page_token: str | None = None


def _outcome(ignored: Sequence[str]) -> dict[str, Any] | None:
    if not ignored:
        return None
    names = ", ".join(sorted(set(ignored)))
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "warning",
                "code": "not-supported",
                "diagnostics": f"Search parameters ignored (Prefer: handling=lenient): {names}.",
            }
        ],
    }


class SearchService:
    def __init__(
        self,
        repo: RecordRepository,
        *,
        pages: PageTokens,
        limits: Limits,
        clock: Clock,
    ) -> None:
        self._repo = repo
        self._pages = pages
        self._limits = limits
        self._clock = clock

    @property
    def principal(self) -> Principal:
        return self._repo.principal

    def plan(self, query: SearchQuery, base: str) -> SearchRequest:
        check_type(query.res_type)
        return parse_search(
            query.res_type,
            query.params,
            ctx=Context(now_us=to_us(self._clock.now()), base_url=base),
            default_count=self._limits.default_page_size,
            max_count=self._limits.max_page_size,
            strict=query.strict,
        )

    def search(self, query: SearchQuery, *, base: str, url: str) -> dict[str, Any]:
        """A searchset Bundle for ``query`` (or for the page its token names)."""
        offset = 0
        if query.page_token is not None:
            state = self._pages.open(self.principal, query.page_token)
            if state.get("kind") != "search" or state.get("type") != query.res_type:
                raise HearthError(errors.PAGE_LINK_INVALID, "The page link is for another search.")
            query = SearchQuery(
                query.res_type,
                [(str(k), str(v)) for k, v in state["params"]],
                bool(state.get("strict")),
                state.get("compartment"),
            )
            offset = int(state["offset"])
        if query.compartment is not None:
            check_id(query.compartment)
        request = self.plan(query, base)
        page = self._repo.search(
            request,
            offset=offset,
            query_text=urlencode(list(query.params)),
            compartment=query.compartment,
        )
        return self.render(query, request, page, base=base, url=url)

    def _link(self, query: SearchQuery, offset: int, url: str) -> str:
        token = self._pages.issue(
            self.principal,
            {
                "kind": "search",
                "type": query.res_type,
                "params": [list(p) for p in query.params],
                "strict": query.strict,
                "compartment": query.compartment,
                "offset": offset,
            },
        )
        return f"{url}?_page={token}"

    def render(
        self,
        query: SearchQuery,
        request: SearchRequest,
        page: SearchPage,
        *,
        base: str,
        url: str | None = None,
    ) -> dict[str, Any]:
        """The searchset Bundle for one page of ``query``."""
        url = url or f"{base}/{query.res_type}"
        links = {"self": self._link(query, page.offset, url)}
        if page.more:
            links["next"] = self._link(query, page.offset + request.count, url)
        if page.offset > 0:
            links["previous"] = self._link(query, max(0, page.offset - request.count), url)
        matches = [
            shape(s.resource, summary=request.summary, elements=request.elements)
            for s in page.matches
            if s.resource is not None
        ]
        included = [
            shape(s.resource, summary=request.summary, elements=())
            for s in page.included
            if s.resource is not None
        ]
        return searchset_bundle(
            base=base,
            matches=matches,
            included=included,
            total=page.total,
            links=links,
            last_updated=self._clock.now().astimezone(UTC).strftime(_INSTANT),
            outcome=_outcome(request.ignored),
        )

    def everything(
        self,
        patient_id: str,
        *,
        types: list[str] | None,
        since: datetime | None,
        count: int | None,
        page_token: str | None,
        base: str,
        url: str,
    ) -> dict[str, Any]:
        """``Patient/[id]/$everything`` (patient-operation-everything.html), paged."""
        check_id(patient_id)
        offset = 0
        if page_token is not None:
            state = self._pages.open(self.principal, page_token)
            if state.get("kind") != "everything" or state.get("id") != patient_id:
                raise HearthError(errors.PAGE_LINK_INVALID, "The page link is for another request.")
            types = state.get("types")
            since = datetime.fromisoformat(state["since"]) if state.get("since") else None
            count = int(state["count"])
            offset = int(state["offset"])
        for res_type in types or ():
            check_type(res_type)
        size = min(count or self._limits.default_page_size, self._limits.max_page_size)
        page = self._repo.everything(
            patient_id,
            types=types,
            since=since,
            offset=offset,
            count=size,
            query_text=urlencode({"_type": ",".join(types or []), "_count": size}),
        )

        def link(at: int) -> str:
            token = self._pages.issue(
                self.principal,
                {
                    "kind": "everything",
                    "id": patient_id,
                    "types": types,
                    "since": since.isoformat() if since else None,
                    "count": size,
                    "offset": at,
                },
            )
            return f"{url}?_page={token}"

        links = {"self": link(offset)}
        if page.more:
            links["next"] = link(offset + size)
        return searchset_bundle(
            base=base,
            matches=[s.resource for s in page.matches if s.resource is not None],
            included=[s.resource for s in page.included if s.resource is not None],
            total=page.total,
            links=links,
            last_updated=self._clock.now().astimezone(UTC).strftime(_INSTANT),
        )
