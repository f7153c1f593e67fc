"""The administrators' alarm API (JSON under ``/api/alarms``): list, show, acknowledge, resolve.

Callers authenticate with a bearer token, like the FHIR API, and must hold an administrator
role: alarms name the records and accounts under attack. Each handler parses, calls the alarm
service in one worker thread, renders. Errors are OperationOutcome JSON with a stable code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.domain import AlarmKind, AlarmState, HearthError, Principal, errors
from hearth.services.alarms import AlarmService, alarm_document
from hearth.web.requests import client_address
from hearth.wiring import Container

__all__ = ["alarm_routes"]

T = TypeVar("T")
_MAX_BODY = 16 * 1024


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body),
        status,
        headers={"Cache-Control": "no-store"},
        media_type="application/json",
    )


class AlarmApi:
    def __init__(self, container: Container) -> None:
        self.c = container

    async def _call(self, request: Request, work: Callable[[AlarmService, Principal], T]) -> T:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")

        def run() -> T:
            principal = self.c.authenticator.authenticate_bearer(
                token.strip() if scheme.lower() == "bearer" else None,
                source=client_address(request),
            )
            service = self.c.alarm_service
            service.require_admin(principal)
            return work(service, principal)

        return await run_in_threadpool(run)

    async def list_alarms(self, request: Request) -> Response:
        query = request.query_params
        try:
            states = tuple(AlarmState(s) for s in query.getlist("state"))
            kind = AlarmKind(query["kind"]) if "kind" in query else None
            limit = int(query.get("limit", "100"))
        except ValueError:
            raise HearthError(errors.BAD_PARAMETER, "state, kind or limit is not valid.") from None
        alarms = await self._call(
            request, lambda svc, _p: svc.list_alarms(states=states, kind=kind, limit=limit)
        )
        return _json({"alarms": [alarm_document(a, deliveries=False) for a in alarms]})

    async def show(self, request: Request) -> Response:
        alarm_id = request.path_params["alarm_id"]
        alarm = await self._call(request, lambda svc, _p: svc.get(alarm_id))
        return _json(alarm_document(alarm))

    async def _note(self, request: Request) -> str | None:
        raw = await request.body()
        if not raw:
            return None
        if len(raw) > _MAX_BODY:
            raise HearthError(errors.PAYLOAD_TOO_LARGE)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise HearthError(errors.MALFORMED_JSON) from None
        note = body.get("note") if isinstance(body, dict) else None
        if note is not None and not isinstance(note, str):
            raise HearthError(errors.BAD_PARAMETER, "note is a string.")
        return note

    async def acknowledge(self, request: Request) -> Response:
        alarm_id = request.path_params["alarm_id"]
        note = await self._note(request)
        alarm = await self._call(
            request, lambda svc, p: svc.acknowledge(alarm_id, by=p.subject, note=note)
        )
        return _json(alarm_document(alarm))

    async def resolve(self, request: Request) -> Response:
        alarm_id = request.path_params["alarm_id"]
        note = await self._note(request)
        alarm = await self._call(
            request, lambda svc, p: svc.resolve(alarm_id, by=p.subject, note=note)
        )
        return _json(alarm_document(alarm))


def alarm_routes(container: Container) -> list[Route]:
    api = AlarmApi(container)
    return [
        Route("/api/alarms", api.list_alarms, methods=["GET"]),
        Route("/api/alarms/{alarm_id}", api.show, methods=["GET"]),
        Route("/api/alarms/{alarm_id}/acknowledge", api.acknowledge, methods=["POST"]),
        Route("/api/alarms/{alarm_id}/resolve", api.resolve, methods=["POST"]),
    ]
