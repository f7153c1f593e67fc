"""FHIR R4 REST routes (http.html). Each handler parses, calls one service, renders.

Authentication, the service call and nothing else run in one worker thread per request, so a
request costs one thread hop. Every handler that touches PHI goes through ``RecordService``,
which only reaches data through the repository bound to the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth import __version__
from hearth.domain import Action, HearthError, Principal, StoredResource, errors
from hearth.fhir.bundle import history_bundle, http_date
from hearth.fhir.capability import ServerFeatures, capability_statement
from hearth.fhir.definitions import RESOURCE_TYPES
from hearth.fhir.outcome import informational_outcome
from hearth.fhir.search import (
    FORMAT_PARAMETERS,
    capability_includes,
    capability_params,
    capability_revincludes,
)
from hearth.services.breakglass import BREAK_GLASS_HEADER, invoking
from hearth.services.bundles import BundleService
from hearth.services.disclosure import DisclosurePool
from hearth.services.oauth import Endpoints, oauth_uris
from hearth.services.records import RecordService, check_type
from hearth.services.search import SearchQuery
from hearth.settings import Settings
from hearth.web.requests import (
    check_accept,
    client_address,
    content_type,
    parse_count,
    parse_if_match,
    parse_instant,
    peer_certificate,
    prefer_handling,
    prefer_return,
    pretty,
    read_form_body,
    read_json_body,
)
from hearth.web.responses import fhir_response
from hearth.wiring import Container

__all__ = ["bearer_principal", "fhir_base", "fhir_routes"]

#: JSON Patch (RFC 6902, R4 http.html#patch), and JSON Merge Patch (RFC 7386) for clients such
#: as fhirpy that send a partial resource: told apart by shape (an array or an object).
PATCH_TYPES = frozenset(
    {"application/json-patch+json", "application/merge-patch+json", "application/json"}
)

T = TypeVar("T")


def _no_operation(request: Request) -> None:
    """Refuse a path that names an operation (``$name``) where a type or an id belongs:
    ``/fhir/$export``, ``Patient/$validate``, ``Patient/1/$meta``. The routes of the operations
    this server has (``Patient/[id]/$everything``) come first, so what lands here is one it does
    not have; said so rather than called a bad id or an unknown type."""
    if any(str(value).startswith("$") for value in request.path_params.values()):
        raise HearthError(errors.UNKNOWN_OPERATION)


def fhir_base(c: Container, request: Request) -> str:
    """The FHIR base URL: the configured public one, else this request's origin + ``/fhir``
    (the audience OAuth access tokens are issued for)."""
    configured = c.settings.public_base_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/") + "/fhir"


def bearer_principal(c: Container, request: Request) -> Principal:
    """Who is calling with ``Authorization: Bearer``: a bootstrap API token or an OAuth access
    token (RFC 6750 sec. 2.1), for the FHIR API and for every other API that takes tokens.

    A client certificate on the connection is checked first (refused outright when it is
    expired, revoked or unmapped); a certificate-bound token is accepted only with it.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if header and scheme.lower() != "bearer":
        try:  # audit the failure as any other missing token, then say what to send
            c.authenticator.authenticate_bearer(None, source=client_address(request))
        except HearthError as error:
            raise HearthError(
                errors.UNAUTHENTICATED,
                "Send the token as 'Authorization: Bearer <token>'.",
                headers=error.headers,
            ) from None
    source = client_address(request)
    der = peer_certificate(request)
    cert = c.certificates.check(der, source=source) if der is not None else None
    return c.authenticator.authenticate_bearer(
        token.strip() if scheme.lower() == "bearer" else None,
        source=source,
        endpoints=Endpoints(fhir_base(c, request)),
        certificate=cert.thumbprint if cert is not None else None,
    )


def reads_here(dialect: str, settings: Settings) -> bool:
    """Whether reads by id run on the event loop's thread (``DisclosurePool.run_here``): only
    when nothing they touch is across a network, the embedded SQLite database with counters in
    memory (no Redis) and keys unwrapped locally (no KMS). On a database server, with Redis or
    with a KMS a read may wait on round trips, which must not hold the loop."""
    return dialect == "sqlite" and settings.redis_url is None and settings.keys.kind != "kms"


class FhirApi:
    def __init__(self, container: Container) -> None:
        self.c = container
        self.limits = container.settings.limits
        self.pool = DisclosurePool()
        self.reads_here = reads_here(container.db.dialect, container.settings)
        # Requests other than reads by id now in a worker thread (writes, searches, history,
        # bundles); only the event loop's thread changes it.
        self._others = 0

    # -- plumbing ---------------------------------------------------------------------------
    def base(self, request: Request) -> str:
        return fhir_base(self.c, request)

    def _principal(self, request: Request) -> Principal:
        # Emergency access is invoked per request, by naming one's break-the-glass grant in the
        # header, or by a token that carries it (already on the principal; both must agree).
        principal = bearer_principal(self.c, request)
        return invoking(principal, request.headers.get(BREAK_GLASS_HEADER))

    async def authenticate(self, request: Request) -> Principal:
        """Who is calling; done before a body is even read, so anonymous callers learn nothing.
        In a worker thread of the pool: one wake-up of the loop, and a refusal's audit entry
        is durable before the 401 goes out."""
        check_accept(request)
        return await self.pool.run(lambda: self._principal(request))

    async def call(
        self,
        request: Request,
        work: Callable[[RecordService, Principal], T],
        *,
        principal: Principal | None = None,
        short: bool = False,
    ) -> T:
        """Run ``work`` with the caller's service (authenticating first if not yet done), in one
        worker thread; ``short`` work (a read by id) on the loop's thread where ``reads_here``."""
        check_accept(request)
        request_id = request.scope.get("state", {}).get("request_id")

        def run() -> T:
            who = principal or self._principal(request)
            return work(self.c.records(who, request_id=request_id), who)

        if short:
            if self.reads_here and not self._loop_would_wait():
                return await self.pool.run_here(run)
            return await self.pool.run(run)
        return await self.offload(run)

    def _loop_would_wait(self) -> bool:
        """Whether a read by id should go to a worker thread, like any other request: while
        other requests are in worker threads (a write, a search or a bundle holding the GIL in
        turns with the loop would leave reads queued on the loop behind one another: the tail
        grows, docs/benchmarks.md), while the key ring's periodic look at the database is due
        (it may reload keys or write seal counts, which takes the writer lock), or while every
        read connection is taken."""
        return self._others > 0 or self.c.db.reads_busy() or self.c.live_keys.refresh_due()

    async def parse_audited(
        self,
        request: Request,
        principal: Principal,
        action: Action,
        res_type: str,
        res_id: str | None,
        parse: Callable[[], Awaitable[T]],
    ) -> T:
        """Parse what a request carries; a refusal (unknown type, a body that is not FHIR JSON,
        a bad precondition header) is audited like any other failed call."""
        try:
            return await parse()
        except HearthError as error:
            refused = error
        request_id = request.scope.get("state", {}).get("request_id")

        def run() -> HearthError:
            service = self.c.records(principal, request_id=request_id)
            return service.refuse(action, refused, res_type, res_id)

        raise await self.offload(run)

    async def offload(self, run: Callable[[], T]) -> T:
        """Run ``run`` in a worker thread. The thread returns as soon as the work is done; the
        response waits here, off any thread, until the audit entries of what it discloses are
        durable, and the request is woken once for both (``hearth.services.disclosure``)."""
        self._others += 1
        try:
            return await self.pool.run(run)
        finally:
            self._others -= 1

    def resource_response(
        self,
        request: Request,
        stored: StoredResource,
        *,
        status: int = 200,
        location: bool = False,
    ) -> Response:
        headers = {
            "ETag": stored.etag,
            "Last-Modified": http_date(stored.last_updated),
        }
        if location:
            headers["Location"] = (
                f"{self.base(request)}/{stored.res_type}/{stored.res_id}/_history/{stored.version}"
            )
        preference = prefer_return(request) if request.method != "GET" else "representation"
        if preference == "minimal":
            return fhir_response(None, status=status, headers=headers)
        if preference == "OperationOutcome":
            body = informational_outcome("The interaction succeeded.")
            return fhir_response(body, status=status, headers=headers, pretty=pretty(request))
        return fhir_response(
            stored.resource, status=status, headers=headers, pretty=pretty(request)
        )

    # -- metadata -------------------------------------------------------------------------------
    async def base_url_get(self, request: Request) -> Response:
        """``GET [base]``: not an interaction; say where to start instead of a bare 405."""
        raise HearthError(
            errors.METHOD_NOT_ALLOWED,
            "This is the FHIR base URL: GET metadata describes the server, GET [type] searches.",
        )

    async def metadata(self, request: Request) -> Response:
        """The CapabilityStatement (R4 http.html#capabilities); needs no authentication."""
        check_accept(request)
        statement = capability_statement(
            base_url=self.base(request),
            software_version=__version__,
            resource_types=RESOURCE_TYPES,
            features=ServerFeatures(
                type_interactions=("create", "history-type"),
                system_interactions=("history-system", "transaction", "batch"),
                conditional_create=True,
                conditional_update=True,
                conditional_delete="multiple",
                search_params=capability_params,
                search_includes=capability_includes,
                search_revincludes=capability_revincludes,
                resource_operations={
                    "Patient": {
                        "everything": "http://hl7.org/fhir/OperationDefinition/Patient-everything"
                    }
                },
                security_description=(
                    "Every request needs a bearer token: an OAuth 2 / SMART access token (see "
                    ".well-known/smart-configuration) or an API token. PHI is sealed at rest and "
                    "every access is audited."
                ),
                oauth_urls=oauth_uris(Endpoints(self.base(request))),
            ),
            date=datetime.now(UTC),
        )
        # Discovery is public: any origin may read it (SMART-PK-06; nothing sensitive in it).
        return fhir_response(
            statement, pretty=pretty(request), headers={"Access-Control-Allow-Origin": "*"}
        )

    # -- instance level -------------------------------------------------------------------------
    async def read(self, request: Request) -> Response:
        _no_operation(request)
        res_type, res_id = request.path_params["type"], request.path_params["id"]
        stored = await self.call(request, lambda svc, _p: svc.read(res_type, res_id), short=True)
        return self.resource_response(request, stored)

    async def vread(self, request: Request) -> Response:
        p = request.path_params
        stored = await self.call(
            request, lambda svc, _p: svc.vread(p["type"], p["id"], p["vid"]), short=True
        )
        return self.resource_response(request, stored)

    async def update(self, request: Request) -> Response:
        res_type, res_id = request.path_params["type"], request.path_params["id"]
        principal = await self.authenticate(request)

        async def parse() -> tuple[Any, int | None]:
            check_type(res_type)
            return await read_json_body(request, self.limits), parse_if_match(request)

        body, if_match = await self.parse_audited(
            request, principal, Action.UPDATE, res_type, res_id, parse
        )
        stored, created = await self.call(
            request,
            lambda svc, _p: svc.update(res_type, res_id, body, if_match=if_match),
            principal=principal,
        )
        return self.resource_response(
            request, stored, status=201 if created else 200, location=created
        )

    async def patch(self, request: Request) -> Response:
        res_type, res_id = request.path_params["type"], request.path_params["id"]
        principal = await self.authenticate(request)

        async def parse() -> tuple[Any, bool, int | None]:
            check_type(res_type)
            document = await read_json_body(
                request, self.limits, media_types=PATCH_TYPES, resource=False
            )
            merge = content_type(request) != "application/json-patch+json"
            return document, merge, parse_if_match(request)

        document, merge, if_match = await self.parse_audited(
            request, principal, Action.PATCH, res_type, res_id, parse
        )
        stored = await self.call(
            request,
            lambda svc, _p: svc.patch(res_type, res_id, document, if_match=if_match, merge=merge),
            principal=principal,
        )
        return self.resource_response(request, stored)

    async def delete(self, request: Request) -> Response:
        res_type, res_id = request.path_params["type"], request.path_params["id"]
        stored = await self.call(request, lambda svc, _p: svc.delete(res_type, res_id))
        headers = {"ETag": stored.etag} if stored is not None else {}
        return fhir_response(None, status=204, headers=headers)

    # -- type level -------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        _no_operation(request)
        res_type = request.path_params["type"]
        principal = await self.authenticate(request)

        async def parse() -> tuple[Any, list[tuple[str, str]]]:
            check_type(res_type)
            return await read_json_body(request, self.limits), self._create_condition(request)

        body, params = await self.parse_audited(
            request, principal, Action.CREATE, res_type, None, parse
        )
        if params:
            # Conditional create (R4 http.html#ccreate): 200 with the match, 412 if several.
            written = await self._bundles(
                request, principal, lambda b: b.conditional_create(res_type, body, params)
            )
            if written.stored is None:  # pragma: no cover - a create always stores or finds
                raise HearthError(errors.INTERNAL)
            return self.resource_response(
                request, written.stored, status=written.status, location=written.status == 201
            )
        stored = await self.call(
            request, lambda svc, _p: svc.create(res_type, body), principal=principal
        )
        return self.resource_response(request, stored, status=201, location=True)

    @staticmethod
    def _create_condition(request: Request) -> list[tuple[str, str]]:
        """A create's condition: the ``If-None-Exist`` header (R4 http.html#ccreate), or search
        parameters in the query, as fhirpy's ``create(**params)`` and ``get_or_create`` send it.
        Either way the create happens only if nothing matches; a query parameter is never
        dropped, since a create that ignored its condition would make the duplicate the client
        meant to avoid. Both at once are refused."""
        header = request.headers.get("if-none-exist")
        query = [
            (k, v) for k, v in request.query_params.multi_items() if k not in FORMAT_PARAMETERS
        ]
        if header and query:
            raise HearthError(
                errors.BAD_REQUEST,
                "A create takes its condition from If-None-Exist or from the query, not both.",
            )
        if header:
            return parse_qsl(header.split("?", 1)[-1], keep_blank_values=True)
        return query

    async def instance_post(self, request: Request) -> Response:
        """``POST [type]/[id]``: FHIR posts only operations here (``Patient/$validate``), and
        this server has none at that level."""
        _no_operation(request)
        raise HearthError(errors.METHOD_NOT_ALLOWED)

    async def _bundles(
        self, request: Request, principal: Principal, work: Callable[[BundleService], T]
    ) -> T:
        request_id = request.scope.get("state", {}).get("request_id")

        def run() -> T:
            return work(self.c.bundles(principal, request_id=request_id))

        return await self.offload(run)

    def _condition(self, request: Request) -> list[tuple[str, str]]:
        if request.path_params["type"] == "metadata":
            raise HearthError(errors.METHOD_NOT_ALLOWED)
        params = [
            (k, v) for k, v in request.query_params.multi_items() if k not in FORMAT_PARAMETERS
        ]
        if not params:
            raise HearthError(
                errors.METHOD_NOT_ALLOWED, "A conditional interaction needs a condition."
            )
        return params

    async def conditional_update(self, request: Request) -> Response:
        """``PUT [type]?[search]`` (R4 http.html#cond-update): 412 when several match."""
        res_type = request.path_params["type"]
        principal = await self.authenticate(request)
        condition = self._condition(request)
        check_type(res_type)
        body = await read_json_body(request, self.limits)
        if_match = parse_if_match(request)
        written = await self._bundles(
            request,
            principal,
            lambda b: b.conditional_update(res_type, condition, body, if_match=if_match),
        )
        if written.stored is None:  # pragma: no cover - an update always stores
            raise HearthError(errors.INTERNAL)
        return self.resource_response(
            request, written.stored, status=written.status, location=written.status == 201
        )

    async def conditional_patch(self, request: Request) -> Response:
        """``PATCH [type]?[search]`` (R4 http.html#patch): 412 when several match."""
        res_type = request.path_params["type"]
        principal = await self.authenticate(request)
        condition = self._condition(request)
        check_type(res_type)
        # The same formats as instance PATCH: a JSON Patch array, or a merge patch object.
        document = await read_json_body(
            request, self.limits, media_types=PATCH_TYPES, resource=False
        )
        merge = content_type(request) != "application/json-patch+json"
        if_match = parse_if_match(request)
        written = await self._bundles(
            request,
            principal,
            lambda b: b.conditional_patch(
                res_type, condition, document, if_match=if_match, merge=merge
            ),
        )
        if written.stored is None:  # pragma: no cover - a patch always stores
            raise HearthError(errors.INTERNAL)
        return self.resource_response(request, written.stored)

    async def conditional_delete(self, request: Request) -> Response:
        """``DELETE [type]?[search]`` (R4 http.html#cdelete): every match, up to a bound."""
        res_type = request.path_params["type"]
        principal = await self.authenticate(request)
        condition = self._condition(request)
        check_type(res_type)
        await self._bundles(request, principal, lambda b: b.conditional_delete(res_type, condition))
        return fhir_response(None, status=204)

    async def bundle(self, request: Request) -> Response:
        """``POST [base]`` with a batch or transaction Bundle (R4 http.html#transaction)."""
        principal = await self.authenticate(request)
        body = await read_json_body(request, self.limits)
        base = self.base(request)
        # Bundle entries carry their resources only when the client asks for them.
        representation = prefer_return(request, default="") == "representation"
        result = await self._bundles(
            request,
            principal,
            lambda b: b.process(body, base=base, representation=representation),
        )
        return fhir_response(result, pretty=pretty(request))

    async def search_type(self, request: Request) -> Response:
        """``GET [type]?...`` and ``POST [type]/_search`` (R4 http.html#search).

        The form body of ``POST _search`` is preferred: it keeps search values, which are PHI,
        out of URLs and logs. Paging links carry only an opaque token.
        """
        _no_operation(request)
        principal = await self.authenticate(request)
        res_type = request.path_params["type"]
        check_type(res_type)
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            params += await read_form_body(request, self.limits)
        return await self._search(request, principal, res_type, params, None)

    async def search_compartment(self, request: Request) -> Response:
        """``GET Patient/[id]/[type]`` (R4 compartmentdefinition.html#search)."""
        _no_operation(request)
        principal = await self.authenticate(request)
        if request.path_params["ctype"] != "Patient":
            raise HearthError(errors.ROUTE_NOT_FOUND, "Only the Patient compartment is searched.")
        res_type = request.path_params["type"]
        check_type(res_type)
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            params += await read_form_body(request, self.limits)
        return await self._search(request, principal, res_type, params, request.path_params["id"])

    async def _search(
        self,
        request: Request,
        principal: Principal,
        res_type: str,
        params: list[tuple[str, str]],
        compartment: str | None,
    ) -> Response:
        page_token = next((v for k, v in params if k == "_page"), None)
        query = SearchQuery(
            res_type,
            [(k, v) for k, v in params if k != "_page"],
            strict=prefer_handling(request),
            compartment=compartment,
            page_token=page_token,
        )
        base = self.base(request)
        path = f"Patient/{compartment}/{res_type}" if compartment else res_type
        request_id = request.scope.get("state", {}).get("request_id")

        def run() -> dict[str, Any]:
            service = self.c.search(principal, request_id=request_id)
            return service.search(query, base=base, url=f"{base}/{path}")

        bundle = await self.offload(run)
        return fhir_response(bundle, pretty=pretty(request))

    async def everything(self, request: Request) -> Response:
        """``Patient/[id]/$everything`` (R4 patient-operation-everything.html)."""
        principal = await self.authenticate(request)
        patient_id = request.path_params["id"]
        query = request.query_params
        allowed = {"_count", "_since", "_type", "_page", "_format", "_pretty"}
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise HearthError(
                errors.BAD_PARAMETER, f"Unsupported $everything parameter {unknown[0]}."
            )
        types = [t for t in query.get("_type", "").split(",") if t] or None
        since = parse_instant(query.get("_since"), "_since")
        count = parse_count(query.get("_count"), self.limits) if "_count" in query else None
        base = self.base(request)
        request_id = request.scope.get("state", {}).get("request_id")

        def run() -> dict[str, Any]:
            return self.c.search(principal, request_id=request_id).everything(
                patient_id,
                types=types,
                since=since,
                count=count,
                page_token=query.get("_page"),
                base=base,
                url=f"{base}/Patient/{patient_id}/$everything",
            )

        bundle = await self.offload(run)
        return fhir_response(bundle, pretty=pretty(request))

    # -- history ------------------------------------------------------------------------------
    async def history(self, request: Request) -> Response:
        res_type = request.path_params.get("type")
        res_id = request.path_params.get("id")
        query = request.query_params
        allowed = {"_count", "_since", "_page", "_format", "_pretty"}
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise HearthError(errors.BAD_PARAMETER, f"Unsupported history parameter {unknown[0]}.")
        page_token = query.get("_page")

        def work(svc: RecordService, principal: Principal) -> dict[str, Any]:
            if page_token is not None:
                state = self.c.pages.open(principal, page_token)
                since_raw, before, count = state.get("since"), state.get("before"), state["count"]
                if state.get("type") != res_type or state.get("id") != res_id:
                    raise HearthError(
                        errors.PAGE_LINK_INVALID, "The page link is for another list."
                    )
            else:
                since_raw, before = query.get("_since"), None
                count = parse_count(query.get("_count"), self.limits)
            since = parse_instant(since_raw, "_since")
            page = svc.history(
                res_type=res_type, res_id=res_id, since=since, before_seq=before, count=count
            )
            path = "/".join(p for p in (res_type, res_id) if p)
            url = f"{self.base(request)}/{path + '/' if path else ''}_history"
            next_link = None
            if page.next_before_seq is not None:
                token = self.c.pages.issue(
                    principal,
                    {
                        "type": res_type,
                        "id": res_id,
                        "since": since_raw,
                        "before": page.next_before_seq,
                        "count": count,
                    },
                )
                next_link = f"{url}?_page={token}"
            # The self link names this page: its page token, or the first page's parameters
            # (a count and an instant, never PHI).
            if page_token is not None:
                self_link = f"{url}?_page={page_token}"
            else:
                shown = [(k, v) for k in ("_since", "_count") if (v := query.get(k)) is not None]
                self_link = f"{url}?{urlencode(shown)}" if shown else url
            return history_bundle(
                self.base(request),
                page.entries,
                total=page.total,
                self_link=self_link,
                next_link=next_link,
                now=datetime.now(UTC),
            )

        bundle = await self.call(request, work)
        return fhir_response(bundle, pretty=pretty(request))


def fhir_routes(container: Container) -> list[Route]:
    api = FhirApi(container)
    return [
        Route("/fhir/metadata", api.metadata, methods=["GET"]),
        Route("/fhir/_history", api.history, methods=["GET"]),
        Route("/fhir/{type}/_history", api.history, methods=["GET"]),
        Route("/fhir/{type}/{id}/_history", api.history, methods=["GET"]),
        Route("/fhir/{type}/{id}/_history/{vid}", api.vread, methods=["GET"]),
        Route("/fhir/{type}/_search", api.search_type, methods=["POST"]),
        Route("/fhir/Patient/{id}/$everything", api.everything, methods=["GET"]),
        Route("/fhir/{ctype}/{id}/{type}", api.search_compartment, methods=["GET"]),
        Route("/fhir/{ctype}/{id}/{type}/_search", api.search_compartment, methods=["POST"]),
        Route("/fhir/{type}/{id}", api.read, methods=["GET"]),
        Route("/fhir/{type}/{id}", api.update, methods=["PUT"]),
        Route("/fhir/{type}/{id}", api.patch, methods=["PATCH"]),
        Route("/fhir/{type}/{id}", api.delete, methods=["DELETE"]),
        Route("/fhir/{type}/{id}", api.instance_post, methods=["POST"]),
        Route("/fhir", api.base_url_get, methods=["GET"]),
        Route("/fhir/", api.base_url_get, methods=["GET"]),
        Route("/fhir", api.bundle, methods=["POST"]),
        Route("/fhir/", api.bundle, methods=["POST"]),
        Route("/fhir/{type}", api.create, methods=["POST"]),
        Route("/fhir/{type}", api.conditional_update, methods=["PUT"]),
        Route("/fhir/{type}", api.conditional_patch, methods=["PATCH"]),
        Route("/fhir/{type}", api.conditional_delete, methods=["DELETE"]),
        Route("/fhir/{type}", api.search_type, methods=["GET"]),
    ]
