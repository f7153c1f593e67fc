"""AuditEvent over FHIR REST, rendered from the audit chain (issue 5 item 8; FHIR-AE-01..06).

``GET AuditEvent/{id}``, ``GET AuditEvent?...`` (``POST AuditEvent/_search`` keeps PHI out of
URLs) and ``GET Patient/{id}/$disclosures?kind=accounting|access&since=&until=``. Each handler
authenticates like every FHIR route, calls ``AuditViews`` in one worker thread and renders a
resource or a searchset Bundle with opaque, principal-bound page links. These routes come before
the generic FHIR routes: AuditEvent is never a stored resource.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.domain import HearthError, Principal, errors
from hearth.fhir.search.shaping import searchset_bundle
from hearth.services.audit_views import AuditPage
from hearth.web.fhir import FhirApi
from hearth.web.requests import check_accept, parse_count, pretty, read_form_body
from hearth.web.responses import fhir_response
from hearth.wiring import Container

__all__ = ["audit_view_routes"]

_INSTANT = "%Y-%m-%dT%H:%M:%S.%fZ"


class AuditViewApi:
    def __init__(self, container: Container) -> None:
        self.c = container
        self.fhir = FhirApi(container)

    async def _principal(self, request: Request) -> Principal:
        check_accept(request)
        return await self.fhir.authenticate(request)

    def _bundle(
        self,
        request: Request,
        principal: Principal,
        page: AuditPage,
        state: dict[str, Any],
        url: str,
    ) -> dict[str, Any]:
        links = {"self": url}
        if page.next_before is not None:
            token = self.c.pages.issue(principal, {**state, "before": page.next_before})
            links["next"] = f"{url}?_page={token}"
        return searchset_bundle(
            base=self.fhir.base(request),
            matches=page.events,
            included=[],
            total=None,
            links=links,
            last_updated=datetime.now(UTC).strftime(_INSTANT),
        )

    def _paging(
        self, principal: Principal, params: list[tuple[str, str]], kind: str
    ) -> tuple[list[tuple[str, str]], int | None]:
        token = next((v for k, v in params if k == "_page"), None)
        if token is None:
            return params, None
        state = self.c.pages.open(principal, token)
        if state.get("kind") != kind:
            raise HearthError(errors.PAGE_LINK_INVALID, "The page link is for another list.")
        return [(str(k), str(v)) for k, v in state["params"]], int(state["before"])

    async def read(self, request: Request) -> Response:
        raw = request.path_params["id"]
        if not raw.isdigit() or len(raw) > 18:
            raise HearthError(errors.NOT_FOUND)
        principal = await self._principal(request)
        event = await run_in_threadpool(self.c.audit_views.read, principal, int(raw))
        return fhir_response(event, pretty=pretty(request))

    async def search(self, request: Request) -> Response:
        principal = await self._principal(request)
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            params += await read_form_body(request, self.c.settings.limits)
        params, before = self._paging(principal, params, "audit-search")
        count = parse_count(dict(params).get("_count"), self.c.settings.limits)
        search_params = [(k, v) for k, v in params if k != "_page"]
        url = f"{self.fhir.base(request)}/AuditEvent"

        def run() -> dict[str, Any]:
            page = self.c.audit_views.search(principal, search_params, count=count, before=before)
            state = {"kind": "audit-search", "params": [list(p) for p in search_params]}
            return self._bundle(request, principal, page, state, url)

        return fhir_response(await run_in_threadpool(run), pretty=pretty(request))

    async def disclosures(self, request: Request) -> Response:
        """``Patient/{id}/$disclosures``: the accounting of disclosures (164.528)."""
        principal = await self._principal(request)
        patient_id = request.path_params["id"]
        params = list(request.query_params.multi_items())
        allowed = {"kind", "since", "until", "_count", "_page", "_format", "_pretty"}
        unknown = sorted({k for k, _ in params} - allowed)
        if unknown:
            raise HearthError(
                errors.BAD_PARAMETER, f"Unsupported $disclosures parameter {unknown[0]}."
            )
        params, before = self._paging(principal, params, "disclosures")
        values = dict(params)
        count = parse_count(values.get("_count"), self.c.settings.limits)
        since = _date(values.get("since"), "since")
        until = _date(values.get("until"), "until")
        kind = values.get("kind", "accounting")
        url = f"{self.fhir.base(request)}/Patient/{patient_id}/$disclosures"

        def run() -> dict[str, Any]:
            page = self.c.audit_views.disclosures(
                principal,
                patient_id,
                since=since,
                until=until,
                kind=kind,
                count=count,
                before=before,
            )
            kept = [(k, v) for k, v in params if k != "_page"]
            state = {"kind": "disclosures", "params": [list(p) for p in kept]}
            return self._bundle(request, principal, page, state, url)

        return fhir_response(await run_in_threadpool(run), pretty=pretty(request))


def _date(raw: str | None, name: str) -> datetime | None:
    """A FHIR date or instant (a date means its first moment, UTC)."""
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise HearthError(errors.BAD_PARAMETER, f"{name} must be a FHIR date or instant.") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def audit_view_routes(container: Container) -> list[Route]:
    api = AuditViewApi(container)
    return [
        Route("/fhir/AuditEvent", api.search, methods=["GET"]),
        Route("/fhir/AuditEvent/_search", api.search, methods=["POST"]),
        Route("/fhir/AuditEvent/{id}", api.read, methods=["GET"]),
        Route("/fhir/Patient/{id}/$disclosures", api.disclosures, methods=["GET"]),
    ]
