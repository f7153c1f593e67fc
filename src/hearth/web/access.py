"""Access control over HTTP: the administration API (JSON under ``/api/access``) and the
break-the-glass page of the console (``/access/break-glass``).

Who may call what:

- **Changes to users and roles** (role definitions, role assignments, links to a Practitioner or
  Patient, care teams, approving or rejecting a pending change, lifting a snooping pause) are
  accepted only from a console session whose user showed a second factor within ``[sessions]
  step_up_minutes`` (ASVS v5.0.0-7.5.3), with the session's CSRF token in ``X-CSRF-Token``. A
  bearer token (API token or OAuth access token) is refused with ``HRT-0721``, audited: a token
  is never proof that its holder is present (X-06), and an operator who holds the instance's
  files uses ``hearth user`` / ``hearth role`` on the server instead. No step-up: ``HRT-0705``.
- **Declaring an emergency** (``POST /api/access/break-glass``, JSON) is a change of the same
  kind: a console session with a recent step-up and its CSRF token; a bearer token is refused
  (``HRT-0721``), audited as ``break-glass.declare``.
- **Reads and the break-the-glass review** accept a bearer token, like the FHIR API, or the
  console session.

What each may do is then decided by the one decision point (capabilities ``roles.admin``,
``break-glass.review``, ``audit.read``). Each handler parses, calls one service in one worker
thread, renders. A change that needs a second administrator answers ``202 Accepted`` with the
request id.

Declaring an emergency needs step-up authentication: a second factor shown in this console
session within ``[sessions] step_up_minutes``. That proof exists only in a console session (an
access token is never proof of presence, X-06), so the declaration is made on the page, or by
the console's own script through the JSON route above with the session. The grant it returns
is then invoked on FHIR requests with the ``X-Hearth-Break-Glass`` header, or carried in an
OAuth access token (``hearth_break_glass`` on the authorization or refresh request; see
``hearth.services.oauth.tokens``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.domain import HearthError, Principal, errors
from hearth.security import EMERGENCY_PURPOSE, Capability, role_to_json
from hearth.services.access import AdminResult
from hearth.services.breakglass import FINDINGS, BreakGlassGrant, grant_document
from hearth.web.auth.guard import (
    SESSION_COOKIE,
    container_of,
    require_console_user,
    require_user,
)
from hearth.web.auth.pages import Nav, e, field, form, page
from hearth.web.auth.routes import read_form
from hearth.web.fhir import bearer_principal
from hearth.wiring import Container

__all__ = ["access_routes"]

T = TypeVar("T")
_MAX_BODY = 64 * 1024


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body),
        status,
        headers={"Cache-Control": "no-store"},
        media_type="application/json",
    )


def _result(result: AdminResult) -> Response:
    if result.applied:
        return _json({"applied": True})
    return _json({"applied": False, "request_id": result.request_id}, status=202)


class AccessApi:
    def __init__(self, container: Container) -> None:
        self.c = container

    def _bearer(self, request: Request) -> Principal:
        """A bearer token of either kind, API token or OAuth access token, as the FHIR API
        takes them: an access token is then refused by what it may not do, not mistaken for an
        unknown token."""
        return bearer_principal(self.c, request)

    async def _call(self, request: Request, work: Callable[[Principal], T]) -> T:
        """A read or a review: a bearer token, or else the console session."""
        if "authorization" not in request.headers and SESSION_COOKIE in request.cookies:
            signed_in = await require_console_user(request)
            return await run_in_threadpool(work, signed_in.principal)
        return await run_in_threadpool(lambda: work(self._bearer(request)))

    async def _change(self, request: Request, action: str, work: Callable[[Principal], T]) -> T:
        """User and role administration: only a console session with a recent step-up."""
        if "authorization" in request.headers:

            def refuse() -> T:
                principal = self._bearer(request)  # an invalid token is a 401, audited there
                raise self.c.access.refuse(
                    principal, action, HearthError(errors.ADMIN_NEEDS_CONSOLE)
                )

            return await run_in_threadpool(refuse)
        signed_in = await require_console_user(request)

        def run() -> T:
            try:
                self.c.sessions.require_step_up(signed_in.session)
            except HearthError as error:
                raise self.c.access.refuse(signed_in.principal, action, error) from None
            return work(signed_in.principal)

        return await run_in_threadpool(run)

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise HearthError(errors.UNSUPPORTED_MEDIA_TYPE)
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise HearthError(errors.PAYLOAD_TOO_LARGE)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise HearthError(errors.MALFORMED_JSON) from None
        if not isinstance(value, dict):
            raise HearthError(errors.BAD_REQUEST, "Send a JSON object.")
        return value

    # -- roles ------------------------------------------------------------------------------------
    async def roles(self, request: Request) -> Response:
        def work(principal: Principal) -> dict[str, Any]:
            if not self.c.access.allows(principal, Capability.ROLES_ADMIN).allowed:
                raise self.c.access.refuse(principal, "access.roles", HearthError(errors.FORBIDDEN))
            catalog = self.c.access.catalog
            return {
                "version": catalog.version,
                "roles": {
                    r.name: {
                        **role_to_json(r),
                        "edited": r.name in catalog.edited,
                        "builtin": r.builtin,
                    }
                    for r in self.c.access.roles()
                },
            }

        return _json(await self._call(request, work))

    async def set_role(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self._body(request)
        return _result(
            await self._change(
                request, "access.role-set", lambda p: self.c.access.set_role(p, name, body)
            )
        )

    async def delete_role(self, request: Request) -> Response:
        name = request.path_params["name"]
        await self._change(
            request, "access.role-delete", lambda p: self.c.access.delete_role(p, name)
        )
        return Response(status_code=204)

    async def reset_role(self, request: Request) -> Response:
        name = request.path_params["name"]
        return _result(
            await self._change(
                request, "access.role-reset", lambda p: self.c.access.reset_role(p, name)
            )
        )

    # -- users, links, care teams -------------------------------------------------------------
    async def user_roles(self, request: Request) -> Response:
        username = request.path_params["username"]
        body = await self._body(request)
        roles = body.get("roles")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise HearthError(errors.BAD_PARAMETER, "roles is a list of role names.")
        return _result(
            await self._change(
                request,
                "access.user-roles",
                lambda p: self.c.access.assign_roles(p, username, frozenset(roles)),
            )
        )

    async def user_link(self, request: Request) -> Response:
        username = request.path_params["username"]
        body = await self._body(request)
        ids = {k: body.get(k) for k in ("practitioner", "patient")}
        if not all(v is None or isinstance(v, str) for v in ids.values()):
            raise HearthError(errors.LINK_INVALID)
        return _result(
            await self._change(
                request,
                "access.link",
                lambda p: self.c.access.link_user(
                    p, username, practitioner=ids["practitioner"], patient=ids["patient"]
                ),
            )
        )

    async def care_team(self, request: Request) -> Response:
        body = await self._body(request)
        practitioner, patient = body.get("practitioner"), body.get("patient")
        if not isinstance(practitioner, str) or not isinstance(patient, str):
            raise HearthError(errors.LINK_INVALID)
        return _result(
            await self._change(
                request,
                "access.care-team",
                lambda p: self.c.access.assign_care_team(
                    p, practitioner=practitioner, patient=patient
                ),
            )
        )

    async def resume(self, request: Request) -> Response:
        """Lift a snooping pause (privacy officers)."""
        user_id = request.path_params["user_id"]

        def work(principal: Principal) -> None:
            if not self.c.access.allows(principal, Capability.BREAK_GLASS_REVIEW).allowed:
                raise self.c.access.refuse(
                    principal, "access.resume", HearthError(errors.FORBIDDEN)
                )
            self.c.monitor.lift(principal, user_id)

        await self._change(request, "access.resume", work)
        return Response(status_code=204)

    # -- approvals ------------------------------------------------------------------------------
    async def requests(self, request: Request) -> Response:
        status = request.query_params.get("status", "pending")
        wanted = None if status == "all" else status
        found = await self._call(request, lambda p: self.c.access.requests(p, wanted))
        return _json(
            {
                "requests": [
                    {
                        "request_id": r.request_id,
                        "kind": r.kind,
                        "target": r.target,
                        "payload": r.payload,
                        "requested_by": r.requested_by,
                        "requested": r.requested.isoformat(),
                        "expires": r.expires.isoformat(),
                        "status": r.status,
                        "decided_by": r.decided_by,
                    }
                    for r in found
                ]
            }
        )

    async def decide(self, request: Request) -> Response:
        request_id = request.path_params["request_id"]
        verdict = request.path_params["verdict"]
        if verdict not in ("approve", "reject"):
            raise HearthError(errors.ROUTE_NOT_FOUND)
        approve = verdict == "approve"
        await self._change(
            request,
            "access.approve" if approve else "access.reject",
            lambda p: self.c.access.decide(p, request_id, approve=approve),
        )
        return _json({"request_id": request_id, "status": "approved" if approve else "rejected"})

    # -- the break-the-glass review queue -------------------------------------------------------
    async def queue(self, request: Request) -> Response:
        status = request.query_params.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise HearthError(errors.BAD_PARAMETER, "status is open, closed or all.")
        patient = request.query_params.get("patient")
        grants = await self._call(
            request,
            lambda p: self.c.break_glass.queue(
                p, status=None if status == "all" else status, patient_id=patient
            ),
        )
        return _json({"grants": [grant_document(g) for g in grants]})

    async def declare(self, request: Request) -> Response:
        """Declare an emergency for one patient (the page's JSON twin, for the console's script)."""
        body = await self._body(request)
        patient, reason = body.get("patient"), body.get("reason")
        purpose = body.get("purpose", EMERGENCY_PURPOSE)
        if not all(isinstance(v, str) for v in (patient, reason, purpose)):
            raise HearthError(errors.BREAK_GLASS_REASON)
        grant = await self._change(
            request,
            "break-glass.declare",
            lambda p: self.c.break_glass.declare(
                p, str(patient).strip(), reason=str(reason), purpose=str(purpose)
            ),
        )
        return _json(grant_document(grant), status=201)

    async def grant(self, request: Request) -> Response:
        grant_id = request.path_params["grant_id"]
        found = await self._call(request, lambda p: self.c.break_glass.get(p, grant_id))
        return _json(grant_document(found))

    async def review(self, request: Request) -> Response:
        grant_id = request.path_params["grant_id"]
        body = await self._body(request)
        finding, note = body.get("finding"), body.get("note")
        if not isinstance(finding, str) or not (note is None or isinstance(note, str)):
            raise HearthError(errors.BAD_PARAMETER, f"finding is one of {', '.join(FINDINGS)}.")
        found = await self._call(
            request,
            lambda p: self.c.break_glass.review(p, grant_id, finding=finding, note=note),
        )
        return _json(grant_document(found))

    async def end(self, request: Request) -> Response:
        grant_id = request.path_params["grant_id"]
        await self._call(request, lambda p: self.c.break_glass.end(p, grant_id))
        return Response(status_code=204)


# -- the console page ------------------------------------------------------------------------------


def _grant_list(grants: list[BreakGlassGrant]) -> str:
    if not grants:
        return "<p>You have no active emergency access.</p>"
    items = "".join(
        f"<li><code>{e(g.grant_id)}</code> for Patient/{e(g.patient_id)}, until "
        f"{e(g.expires.strftime('%H:%M UTC'))}</li>"
        for g in grants
    )
    return f"<h2>Your active emergency access</h2><ul>{items}</ul>"


def _declare_form(csrf: str) -> str:
    return form(
        "/access/break-glass",
        csrf,
        field("patient", "Patient id", hint="The id of the Patient resource you need.")
        + '<p class="field"><label for="reason">Reason</label>'
        '<textarea id="reason" name="reason" required minlength="10" maxlength="2000" '
        'aria-describedby="reason-hint"></textarea></p>'
        '<p class="hint" id="reason-hint">Why you need this record now. A privacy officer '
        "is alerted at once and will review this access.</p>"
        '<p class="field"><label for="purpose">Purpose of use</label>'
        '<select id="purpose" name="purpose"><option value="ETREAT">Emergency treatment '
        "(ETREAT)</option></select></p>"
        '<p><button type="submit">Break the glass</button></p>',
    )


async def _signed_in_page(request: Request) -> tuple[Container, Principal, Nav, str]:
    signed_in = await require_user(request, step_up=True)
    c = container_of(request)
    name = signed_in.principal.attributes.get("display_name") or signed_in.principal.attributes.get(
        "username", "?"
    )
    return c, signed_in.principal, Nav(name, signed_in.session.csrf), signed_in.session.csrf


async def break_glass_page(request: Request) -> Response:
    """Declare an emergency (after step-up); shows the user's active grants."""
    c, principal, nav, csrf = await _signed_in_page(request)
    if not await run_in_threadpool(c.break_glass.may_declare, principal):
        refusal = "<p>Your role cannot break the glass.</p>"
        return page("Emergency access", refusal, nav=nav, status=403)
    mine = await run_in_threadpool(c.break_glass.mine, principal)
    body = (
        "<p>Use this only when a patient needs care now and their record is closed to you. "
        f"Access lasts {c.break_glass.minutes} minutes, covers that patient only, and every "
        "record you open is recorded as emergency access.</p>"
        + _declare_form(csrf)
        + _grant_list(mine)
    )
    return page("Emergency access", body, nav=nav)


async def break_glass_post(request: Request) -> Response:
    c, principal, nav, csrf = await _signed_in_page(request)
    values = await read_form(request)
    try:
        grant = await run_in_threadpool(
            lambda: c.break_glass.declare(
                principal,
                values.get("patient", "").strip(),
                reason=values.get("reason", ""),
                purpose=values.get("purpose", "ETREAT"),
            )
        )
    except HearthError as error:
        body = _declare_form(csrf)
        return page("Emergency access", body, nav=nav, status=error.status, error=error.detail)
    body = (
        f"<p>Emergency access to Patient/{e(grant.patient_id)} is open until "
        f"{e(grant.expires.strftime('%H:%M UTC'))}. A privacy officer has been alerted.</p>"
        f"<p>Grant: <code>{e(grant.grant_id)}</code>. Send it as the "
        "<code>X-Hearth-Break-Glass</code> header with your FHIR requests, or let your app ask "
        "for it (<code>hearth_break_glass</code>) when it asks for access; every access under "
        "it is recorded as emergency treatment.</p>"
    )
    return page("Emergency access granted", body, nav=nav, status=201)


def access_routes(container: Container) -> list[Route]:
    api = AccessApi(container)
    base = "/api/access"
    return [
        Route(f"{base}/roles", api.roles, methods=["GET"]),
        Route(f"{base}/roles/{{name}}", api.set_role, methods=["PUT"]),
        Route(f"{base}/roles/{{name}}", api.delete_role, methods=["DELETE"]),
        Route(f"{base}/roles/{{name}}/reset", api.reset_role, methods=["POST"]),
        Route(f"{base}/users/{{username}}/roles", api.user_roles, methods=["PUT"]),
        Route(f"{base}/users/{{username}}/link", api.user_link, methods=["PUT"]),
        Route(f"{base}/users/{{user_id}}/resume", api.resume, methods=["POST"]),
        Route(f"{base}/care-teams", api.care_team, methods=["POST"]),
        Route(f"{base}/requests", api.requests, methods=["GET"]),
        Route(f"{base}/requests/{{request_id}}/{{verdict:str}}", api.decide, methods=["POST"]),
        Route(f"{base}/break-glass", api.queue, methods=["GET"]),
        Route(f"{base}/break-glass", api.declare, methods=["POST"]),
        Route(f"{base}/break-glass/{{grant_id}}", api.grant, methods=["GET"]),
        Route(f"{base}/break-glass/{{grant_id}}/review", api.review, methods=["POST"]),
        Route(f"{base}/break-glass/{{grant_id}}/end", api.end, methods=["POST"]),
        Route("/access/break-glass", break_glass_page, methods=["GET"]),
        Route("/access/break-glass", break_glass_post, methods=["POST"]),
    ]
